"""evaluate stage: one model's embeddings of the evaluation split → metrics/eval/<name>.json.

Either a trained model (`--model data/models/<task>-<backbone>/model.pt`) or a
backbone's starting point (`--base <backbone>`: the pretrained network, or in the
embedded default the untrained one, exactly as training starts from it).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from faceid.config import ORIG_TASK, load_params, resolve_train_params
from faceid.data import CropStore
from faceid.embed import embed
from faceid.errors import run_cli
from faceid.evaluate import evaluate_embeddings, json_ready, plot_data
from faceid.train import initial_model, load_model, select_device

log = logging.getLogger("evaluate")


def _model(args, params):
    """(network, metadata) of the model to evaluate."""
    if args.model:
        model, info = load_model(args.model)
        run = info["params"]
        return model, {"backbone": info["backbone"], "task": run["task"], "init": info["init"], "start": None,
                       "epoch": info["epoch"], "image_size": run["image_size"]}  # fmt: skip
    run = resolve_train_params(params.train, ORIG_TASK, args.base)
    torch.manual_seed(run.seed)
    model, init = initial_model(run, Path(args.weights) if args.weights else None, None)
    start = "untrained" if init == "none" else "pretrained"
    return model.eval(), {"backbone": args.base, "task": None, "init": init, "start": start, "epoch": None,
                          "image_size": run.image_size}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="data/models/<task>-<backbone>/model.pt")
    which.add_argument("--base", metavar="BACKBONE", help="evaluate this backbone's starting point")
    parser.add_argument("--weights", help="with --base: data/weights/<backbone>.pt")
    parser.add_argument("--name", required=True, help="model name in reports, e.g. Eyeglasses-resnet50")
    parser.add_argument("--crops", default="data/crops")
    parser.add_argument("--pairs", default="data/pairs")
    parser.add_argument("--embeddings", required=True, help="cache: data/embeddings/<name>.npz")
    parser.add_argument("--out", required=True, help="metrics/eval/<name>.json")
    parser.add_argument("--plots", required=True, help="folder for ROC/CMC plot data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params(args.params)
    settings = params.evaluate
    model, meta = _model(args, params)
    device = select_device(params.train.common.device)
    model.to(device, memory_format=torch.channels_last)

    pairs = pd.read_parquet(Path(args.pairs) / "pairs.parquet")
    pairs = pairs[pairs["split"] == settings.split]
    identification = pd.read_parquet(Path(args.pairs) / "identification.parquet")
    store = CropStore(args.crops)
    wanted = pd.Index(pd.unique(pd.concat([pairs["image_a"], pairs["image_b"], identification["image"]])))
    _, _, found = store.locate(wanted)
    images = wanted[found]
    log.info("%s: embedding %d images (%d without a crop)", args.name, len(images), int((~found).sum()))
    embeddings = embed(model, store.dataset(images), params.train.common.eval_batch_size, device,
                       meta["image_size"], flip_average=settings.flip_average)  # fmt: skip
    Path(args.embeddings).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.embeddings, images=np.asarray(images, dtype=str), embeddings=embeddings)

    manifest = pd.read_parquet(Path(args.crops) / "manifest.parquet")
    result = evaluate_embeddings(embeddings, list(images), pairs, manifest, identification, settings)
    result["model"] = {"name": args.name, **meta}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(json_ready(result), indent=1, allow_nan=False) + "\n")
    for relative, data in plot_data(result).items():
        path = Path(args.plots) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(json_ready(data), allow_nan=False) + "\n")
    orig = result["tasks"].get(ORIG_TASK, {}).get("pooled", {})
    log.info("%s: orig AUC %s, top-1 %s", args.name, orig.get("auc"), (result.get("identification") or {}).get("top_k"))
    return result


if __name__ == "__main__":
    run_cli(main)
