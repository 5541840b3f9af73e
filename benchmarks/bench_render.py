"""Time the synthetic renderer against a reference revision on the same photos, in one process.

    git worktree add --detach ../faceid-ref main     # the revision to compare with
    PYTHONPATH=src python benchmarks/bench_render.py --reference ../faceid-ref [--photos 120]

Loads `faceid.data.synthetic` twice, from this tree and from the reference tree's src/,
renders the same photos of params.yaml's dataset with both, alternating photo by photo
(so a busy machine slows both alike), checks that each photo's JPEG bytes are identical,
and prints ms per photo of each and their ratio.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from pathlib import Path

from faceid.config.dataset import DatasetParams
from faceid.config.engine import load_sections

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "faceid.data.synthetic"


def load_generate(src: Path):
    """`faceid.data.synthetic.generate` as found under `src`, leaving sys.modules as it was."""
    folder = src / "faceid" / "data" / "synthetic"
    if not (folder / "generate.py").is_file():
        raise SystemExit(f"no {folder / 'generate.py'}: --reference must be a checkout of the repository")
    parent = sys.modules["faceid.data"]
    ours = [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]
    mine = {name: sys.modules.pop(name) for name in ours}
    try:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
        return importlib.import_module(PACKAGE + ".generate")
    finally:  # the loaded modules stay reachable from the returned one only
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        sys.modules.update(mine)
        if PACKAGE in mine:
            parent.synthetic = mine[PACKAGE]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="a checkout of the revision to compare with")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--photos", type=int, default=120, help="photos rendered by each, spread over the dataset")
    args = parser.parse_args(argv)
    (params,) = load_sections(args.params, DatasetParams)
    synthetic = params.synthetic
    import faceid.data.synthetic.generate as new  # this tree's

    reference = load_generate(args.reference.resolve() / "src")
    assert reference is not new and reference.render is not new.render
    jobs, _ = new.plan_photos(synthetic, params.layout)
    jobs = jobs[:: max(len(jobs) // args.photos, 1)][: args.photos]
    seconds = {"reference": 0.0, "new": 0.0}
    for job in jobs:
        photos = {}
        for name, module in (("reference", reference), ("new", new)):
            start = time.perf_counter()
            photos[name] = module.render_photo(job)
            seconds[name] += time.perf_counter() - start
        if photos["reference"].jpeg != photos["new"].jpeg:
            raise SystemExit(f"photo {new.image_name(job.index)}: the JPEG bytes differ from the reference's")
    ms = {name: 1000 * s / len(jobs) for name, s in seconds.items()}
    print(f"{len(jobs)} photos, JPEG bytes identical to {args.reference}")
    print(f"reference {ms['reference']:.1f} ms/photo, new {ms['new']:.1f} ms/photo, "
          f"speed-up {ms['reference'] / ms['new']:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
