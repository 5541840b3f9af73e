"""Render a small dataset, crop it (optional) and make its pairs with the stages' own code;
print {file: sha256} of everything written, as JSON. tests/test_isa.py runs this under
forced instruction sets (NPY_DISABLE_CPU_FEATURES, ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
JSIMD_FORCENONE) and compares.

    python tests/_isa_outputs.py OUT_DIR [--crop]

Without --crop the pairs come from a manifest of the dataset's own annotations (every
image `detected`), so they depend on the rendered dataset alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from stages import crop, dataset, pairs  # noqa: E402

from faceid.data.celeba import load_dataset  # noqa: E402
from tests._params import write_params  # noqa: E402

SMALL = {
    "dataset": {"synthetic": {"n_identities": 14, "min_images_per_identity": 4, "max_images_per_identity": 6,
                              "partition_fractions": [0.5, 0.25, 0.25], "workers": 1,
                              "exposure": 0.2, "white_balance": 0.05, "gamma": 0.2}},
    "pairs": {"verification": {"genuine_per_condition": 50, "impostor_per_condition": 50,
                               "orig_genuine": 100, "orig_impostor": 100},
              "identification": {"n_identities": 4, "n_images": 20}},
    "train": {"tasks": ["Eyeglasses"], "backbones": ["resnet50"]},
    "evaluate": {"attributes": ["Smiling", "Male"]},
    "crop": {"device": "cpu", "chunk_size": 64},
}  # fmt: skip


def _annotation_manifest(celeba: Path, out: Path) -> Path:
    table = load_dataset(celeba, layout="aligned").assign(status="detected")
    path = out / "manifest.parquet"
    table.to_parquet(path, index=False)
    return path


def produce(out: Path, with_crop: bool) -> dict[str, str]:
    params = write_params(out / "params.yaml", SMALL)
    wild = write_params(out / "wild.yaml", {**SMALL, "dataset": {**SMALL["dataset"], "layout": "wild"}})
    # every path inside `out` (the stage's defaults are the repository's data/ folders)
    dataset.main(["--params", str(params), "--out", str(out / "celeba"), "--inputs", str(out / "celeba-input"),
                  "--metrics", str(out / "dataset.json")])  # fmt: skip
    dataset.main(["--params", str(wild), "--out", str(out / "wild"), "--inputs", str(out / "wild-input"),
                  "--metrics", str(out / "wild.json")])  # fmt: skip
    if with_crop:
        # the review sheet (a picture for people) beside `out`: the bytes compared are the data's
        review = out.with_name(f"{out.name}-review.png")
        crop.main(["--params", str(params), "--dataset", str(out / "celeba"), "--out", str(out / "crops"),
                   "--metrics", str(out / "crop.json"), "--review", str(review)])  # fmt: skip
        manifest = out / "crops" / "manifest.parquet"
    else:
        manifest = _annotation_manifest(out / "celeba", out)
    pairs.main(["--params", str(params), "--manifest", str(manifest), "--out", str(out / "pairs"),
                "--metrics", str(out / "pairs.json"), "--detail", str(out / "pairs_detail.json")])  # fmt: skip
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.suffix not in (".yaml", ".lock") and not p.name.startswith(".")
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--crop", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(json.dumps(produce(args.out, args.crop), indent=1))
