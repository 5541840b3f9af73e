"""Time the whole metric computation on 100k pairs / 20k embeddings vs a naive bootstrap.

    PYTHONPATH=src python benchmarks/bench_metrics.py [--pairs 100000] [--images 20000]

Builds random L2-normalised embeddings with planted identity structure, six attribute
tasks of three conditions plus `orig`, and times `evaluate_embeddings` (every
verification metric of every cell, bootstrap at the default n_boot), then
identification (max and mean score) on `--probes` images. The naive baseline is the
same cluster bootstrap as a per-replicate loop of scikit-learn's `roc_auc_score` with
sample weights, on every cell; all run in this process, one after the other.

    PYTHONPATH=src python benchmarks/bench_metrics.py --map [--map-pairs 20000]

times instead one model's robustness map at CelebA scale: 40 attributes x 3 conditions
of `--map-pairs` pairs each (half genuine, half impostor) over 2,000 test identities,
`evaluate_attributes` (AUC + interval per cell, delta AUC + interval per attribute) and
`evaluate_groups` for the default three groups, at the default n_boot (200).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from faceid.config.engine import load_sections
from faceid.config.evaluate import EvaluateParams
from faceid.data.celeba import ATTRIBUTE_NAMES
from faceid.evaluate import metrics
from faceid.evaluate.evaluation import (
    evaluate_attributes,
    evaluate_embeddings,
    evaluate_groups,
    score_pairs,
)
from faceid.evaluate.headline import task_cell

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("eyeglasses", "blurry", "lipstick", "hat", "makeup", "blond")
CONDITIONS = ("A/A", "A/notA", "notA/notA")


def build(n_pairs: int, n_images: int, n_identities: int, dim: int, rng: np.random.Generator):
    identity = rng.integers(0, n_identities, n_images)
    centres = rng.normal(size=(n_identities, dim)).astype(np.float32)
    embeddings = centres[identity] + 3.0 * rng.normal(size=(n_images, dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    images = np.array([f"{i:06d}.jpg" for i in range(n_images)])
    by_identity = pd.Series(np.arange(n_images)).groupby(identity).apply(np.asarray)
    by_identity = by_identity[by_identity.map(len) > 1]
    cells = [("orig", "all"), *[(t, c) for t in TASKS for c in CONDITIONS]]
    per_cell = n_pairs // (2 * len(cells))
    frames = []
    for task, condition in cells:
        owners = rng.choice(by_identity.index.to_numpy(), per_cell)
        a = np.array([rng.choice(by_identity[o], 2, replace=False) for o in owners])
        imp = rng.integers(0, n_images, (per_cell, 2))
        for kind, ab in (("genuine", a), ("impostor", imp)):
            frames.append(pd.DataFrame({
                "task": task, "split": "test", "kind": kind, "condition": condition,
                "image_a": images[ab[:, 0]], "image_b": images[ab[:, 1]],
                "identity_a": identity[ab[:, 0]], "identity_b": identity[ab[:, 1]],
            }))  # fmt: skip
    pairs = pd.concat(frames, ignore_index=True)
    manifest = pd.DataFrame({"image": images, "identity": identity,
                             "status": np.where(rng.random(n_images) < 0.02, "fallback", "detected")})  # fmt: skip
    return embeddings, list(images), pairs, manifest


def naive_bootstrap(scored: pd.DataFrame, n_boot: int, rng: np.random.Generator) -> None:
    """Per cell, per replicate: draw identities, weight pairs (genuine n_i, impostor
    n_i * n_j, as `metrics.bootstrap_auc`), call roc_auc_score."""
    groups = [g for _, g in scored.groupby(["task", "condition"])]
    groups += [g for t, g in scored.groupby("task") if t != "orig"]  # the pooled cells
    for cell in groups:
        labels = (cell["kind"] == "genuine").to_numpy()
        ids = cell[["identity_a", "identity_b"]].to_numpy()
        uniques, codes = np.unique(ids, return_inverse=True)
        codes = codes.reshape(ids.shape)
        for _ in range(n_boot):
            draw = np.bincount(rng.integers(0, uniques.size, uniques.size), minlength=uniques.size)
            weight = np.where(labels, draw[codes[:, 0]], draw[codes].prod(axis=1))
            if weight[labels].sum() and weight[~labels].sum():
                roc_auc_score(labels, cell["similarity"], sample_weight=weight)


def attribute_map(pairs_per_cell: int, n_identities: int, rng: np.random.Generator) -> pd.DataFrame:
    """Scored attribute pairs of 40 attributes; attribute k lowers A/notA genuine scores by k/80."""
    frames = []
    half = pairs_per_cell // 2
    for k, attribute in enumerate(ATTRIBUTE_NAMES):
        for condition in CONDITIONS:
            shift = k / 80 if condition == "A/notA" else 0.0
            a = rng.integers(0, n_identities, half)
            b = (a + 1 + rng.integers(0, n_identities - 1, half)) % n_identities
            for kind, other, mean in (("genuine", a, 0.5 - shift), ("impostor", b, 0.0)):
                frames.append(pd.DataFrame({
                    "task": attribute, "kind": kind, "condition": condition, "identity_a": a, "identity_b": other,
                    "similarity": rng.normal(mean, 0.2, half), "has_embedding": True,
                }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def bench_map(pairs_per_cell: int) -> None:
    (params,) = load_sections(ROOT / "params.yaml", EvaluateParams)
    scored = attribute_map(pairs_per_cell, 2_000, np.random.default_rng(0))
    print(f"{len(scored)} attribute pairs (40 x 3 cells of {pairs_per_cell}), n_boot={params.bootstrap.n_boot}, "
          f"cpus={os.cpu_count()}")  # fmt: skip
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    found = evaluate_attributes(scored, 0.45, params, rng)
    attributes = time.perf_counter() - start
    start = time.perf_counter()
    evaluate_groups(scored, params.groups, 0.45, params, rng)
    groups = time.perf_counter() - start
    worst = sorted(found, key=lambda a: found[a]["delta_auc"])[:3]
    print(f"worst three (planted: the last attributes): {worst}")
    print(f"evaluate_attributes, 40 attributes: {attributes:.1f} s; evaluate_groups, 3 groups: {groups:.1f} s; "
          f"one model: {attributes + groups:.1f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--identities", type=int, default=2_000)
    parser.add_argument("--probes", type=int, default=20_000, help="identification protocol images")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--map", action="store_true", help="time one model's 40-attribute robustness map instead")
    parser.add_argument("--map-pairs", type=int, default=20_000, help="pairs per attribute x condition cell")
    args = parser.parse_args()
    if args.map:
        bench_map(args.map_pairs)
        return
    rng = np.random.default_rng(0)
    embeddings, images, pairs, manifest = build(args.pairs, args.images, args.identities, args.dim, rng)
    (params,) = load_sections(ROOT / "params.yaml", EvaluateParams)
    print(f"{len(pairs)} pairs, {len(images)} embeddings x {args.dim}, n_boot={params.bootstrap.n_boot}, "
          f"{args.probes} identification images, cpus={os.cpu_count()}")  # fmt: skip

    start = time.perf_counter()
    result = evaluate_embeddings(embeddings, images, pairs, manifest, None, params)
    verification = time.perf_counter() - start
    orig = task_cell(result, "orig")
    print(f"orig AUC {orig['auc']:.4f} [{orig['auc_ci']['low']:.4f}, {orig['auc_ci']['high']:.4f}]")

    identification = {}
    for score in ("max", "mean"):
        start = time.perf_counter()
        settings = params.identification
        found = metrics.identification(embeddings[: args.probes], manifest["identity"].to_numpy()[: args.probes],
                                       score, settings.ks, settings.cmc_max_rank)  # fmt: skip
        identification[score] = time.perf_counter() - start
        print(f"identification ({score}): top-1 {found.top_k[1]:.4f}, gallery {found.gallery_size}")

    start = time.perf_counter()
    scored = score_pairs(embeddings, images, pairs)
    naive_bootstrap(scored, params.bootstrap.n_boot, np.random.default_rng(0))
    naive = time.perf_counter() - start

    print(f"evaluate_embeddings, all verification metrics incl. bootstrap: {verification:.2f} s")
    for score, seconds in identification.items():
        print(f"identification, {args.probes} probes, score={score}: {seconds:.2f} s")
    print(f"naive bootstrap alone (sklearn roc_auc_score loop, all cells): {naive:.2f} s")
    print(f"ratio naive bootstrap alone / all fast verification metrics: {naive / verification:.1f}x")

if __name__ == "__main__":
    main()
