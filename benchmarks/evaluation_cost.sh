#!/usr/bin/env bash
# What an evaluation change costs on the default: the 16 evaluate stages + summarize of an
# earlier commit (its code and its params, with its own pairs) against this tree's, both on
# this tree's crops and models (run `dvc repro` first), one after the other on this machine.
#
#     benchmarks/evaluation_cost.sh OLD_REV      # e.g. ab549d6 (round 3)
#
# Prints the wall seconds of each side. The earlier commit's summarize must take the
# arguments round 3's did (no embeddings); later ones take this tree's.
set -euo pipefail
old_rev=${1:?usage: benchmarks/evaluation_cost.sh OLD_REV}
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'git -C "$here" worktree remove --force "$tmp/old" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git -C "$here" worktree add -q --detach "$tmp/old" "$old_rev"
models="orig $(python -c "import yaml; print(' '.join(yaml.safe_load(open('$here/params.yaml'))['train']['tasks']))")"
backbones=$(python -c "import yaml; print(' '.join(yaml.safe_load(open('$here/params.yaml'))['train']['backbones']))")

evaluate_all() {  # code_dir pairs_dir out_dir
  local code=$1 pairs=$2 out=$3
  mkdir -p "$out/eval" "$out/detail" "$out/emb"
  for b in $backbones; do
    (cd "$code" && PYTHONPATH="$code/src:$code" python stages/evaluate.py --params params.yaml --base "$b" \
      --weights "$here/data/weights/$b.pt" --run "$here/data/runs/orig-$b.json" --name "base-$b" \
      --crops "$here/data/crops" --pairs "$pairs" --embeddings "$out/emb/base-$b.npz" \
      --out "$out/eval/base-$b.json" --detail "$out/detail/base-$b.json" >/dev/null 2>&1)
    for t in $models; do
      (cd "$code" && PYTHONPATH="$code/src:$code" python stages/evaluate.py --params params.yaml \
        --model "$here/data/models/$t-$b/model.pt" --name "$t-$b" --crops "$here/data/crops" --pairs "$pairs" \
        --embeddings "$out/emb/$t-$b.npz" --out "$out/eval/$t-$b.json" --detail "$out/detail/$t-$b.json" >/dev/null 2>&1)
    done
  done
}

old=$tmp/old
(cd "$old" && PYTHONPATH="$old/src:$old" python stages/pairs.py --params params.yaml \
  --manifest "$here/data/crops/manifest.parquet" --out "$tmp/old-pairs" --metrics "$tmp/p.json" \
  --detail "$tmp/pd.json" >/dev/null 2>&1)
t0=$(date +%s.%N); evaluate_all "$old" "$tmp/old-pairs" "$tmp/o"; t1=$(date +%s.%N)
(cd "$old" && PYTHONPATH="$old/src:$old" python stages/summarize.py --params params.yaml --details "$tmp/o/detail" \
  --headlines "$tmp/o/eval" --summary "$tmp/o/s.json" --report "$tmp/o/r/report.md" --plots "$tmp/o/p" \
  --pairs-detail "$here/metrics/pairs_detail.json" >/dev/null 2>&1)
t2=$(date +%s.%N); evaluate_all "$here" "$here/data/pairs" "$tmp/n"; t3=$(date +%s.%N)
(cd "$here" && python stages/summarize.py --params params.yaml --details "$tmp/n/detail" --headlines "$tmp/n/eval" \
  --embeddings "$tmp/n/emb" --pairs data/pairs --manifest data/crops/manifest.parquet --dataset metrics/dataset.json \
  --crop metrics/crop.json --summary "$tmp/n/s.json" --report "$tmp/n/r/report.md" --plots "$tmp/n/p" \
  --pairs-detail metrics/pairs_detail.json >/dev/null 2>&1)
t4=$(date +%s.%N)
python - "$t0" "$t1" "$t2" "$t3" "$t4" <<'PY'
import sys
t0, t1, t2, t3, t4 = map(float, sys.argv[1:])
old, new = (t1 - t0, t2 - t1), (t3 - t2, t4 - t3)
print(f"{sys.argv[0]}: old evaluate {old[0]:.0f} s + summarize {old[1]:.0f} s = {sum(old):.0f} s; "
      f"new evaluate {new[0]:.0f} s + summarize {new[1]:.0f} s = {sum(new):.0f} s; extra {sum(new) - sum(old):+.0f} s")
PY
