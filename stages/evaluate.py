"""evaluate stage: one model's embeddings of the evaluation split → its headline numbers
(metrics/eval/<name>.json, level 2) and every number (metrics/detail/<name>.json, level 3).

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

from faceid.config.pairs import ORIG_TASK
from faceid.config.pipeline import load_params
from faceid.config.train import resolve_train_params
from faceid.data import CropStore
from faceid.device import select_device
from faceid.embed import embed
from faceid.errors import run_cli
from faceid.evaluate import evaluate_embeddings, headline, json_ready
from faceid.models import initial_model, load_model

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
    parser.add_argument("--out", required=True, help="headline numbers: metrics/eval/<name>.json")
    parser.add_argument("--detail", required=True, help="every number: metrics/detail/<name>.json")
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
    attribute_file = Path(args.pairs) / "attribute_pairs.parquet"  # absent when evaluate.attributes is []
    attribute_pairs = pd.read_parquet(attribute_file) if attribute_file.is_file() else None
    store = CropStore(args.crops)
    columns = [pairs["image_a"], pairs["image_b"], identification["image"]]
    if attribute_pairs is not None:
        columns += [attribute_pairs["image_a"], attribute_pairs["image_b"]]
    wanted = pd.Index(pd.unique(pd.concat(columns)))
    _, _, found = store.locate(wanted)
    images = wanted[found]
    log.info("%s: embedding %d images (%d without a crop)", args.name, len(images), int((~found).sum()))
    embeddings = embed(model, store.dataset(images), params.train.common.eval_batch_size, device,
                       meta["image_size"], flip_average=settings.flip_average)  # fmt: skip
    Path(args.embeddings).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.embeddings, images=np.asarray(images, dtype=str), embeddings=embeddings)

    manifest = pd.read_parquet(Path(args.crops) / "manifest.parquet")
    result = evaluate_embeddings(embeddings, list(images), pairs, manifest, identification, settings, attribute_pairs)
    result["model"] = {"name": args.name, **meta}
    numbers = headline(result, settings)
    for path, content in ((args.detail, json_ready(result)), (args.out, numbers)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=1, allow_nan=False) + "\n")
    log.info("%s: AUC %s, top-1 %s, threshold %s", args.name, numbers["auc"], numbers.get("top1"), numbers["threshold"])
    return result


if __name__ == "__main__":
    run_cli(main)
