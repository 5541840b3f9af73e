"""CI check of a finished default `dvc repro`: the outputs every stage promises exist and are sane."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    problems: list[str] = []
    dataset = json.loads(Path("metrics/dataset.json").read_text())
    if dataset["images"] < 100 or dataset["identities"] < 10:
        problems.append(f"metrics/dataset.json: too small a dataset: {dataset['images']} images")
    for name in ("img_align_celeba.zip", "list_attr_celeba.txt", "identity_CelebA.txt"):
        if not (Path("data/celeba") / name).exists():
            problems.append(f"data/celeba/{name} missing")
    for problem in problems:
        print("FAIL", problem)
    if not problems:
        print("outputs OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
