"""The curves stage: every trained model's dvclive curves, one file per metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stages import curves as stage

from faceid.errors import MissingInputError
from faceid.report.curves import METRICS, collect_curves, gather
from tests._params import write_params


def _log(root: Path, model: str, losses: list[float]) -> None:
    folder = root / model / "plots" / "metrics" / "epoch"
    folder.mkdir(parents=True)
    for metric in METRICS:
        rows = "".join(f"{i}\t{v}\n" for i, v in enumerate(losses))
        (folder / f"{metric}.tsv").write_text(f"step\t{metric}\n{rows}")


def test_one_file_per_metric_with_a_line_per_model_of_params(tmp_path):
    live = tmp_path / "train"
    for model in ("orig-resnet50", "Eyeglasses-resnet50", "Smiling-resnet50"):  # Smiling: not in params any more
        _log(live, model, [3.0, 2.0, 1.5])
    params = write_params(tmp_path / "params.yaml", {"train": {"tasks": ["Eyeglasses"], "backbones": ["resnet50"]}})
    assert stage.main(["--params", str(params), "--live", str(live), "--out", str(tmp_path / "curves")]) == 0
    assert sorted(p.name for p in (tmp_path / "curves").iterdir()) == sorted(f"{m}.json" for m in METRICS)
    rows = json.loads((tmp_path / "curves" / "train_loss.json").read_text())["train_loss"]
    assert rows[:2] == [
        {"model": "orig-resnet50", "epoch": 0, "train_loss": 3.0},
        {"model": "orig-resnet50", "epoch": 1, "train_loss": 2.0},
    ]
    assert {r["model"] for r in rows} == {"orig-resnet50", "Eyeglasses-resnet50"}


def test_a_model_without_a_log_is_an_error_naming_it(tmp_path):
    _log(tmp_path, "orig-resnet50", [1.0])
    with pytest.raises(MissingInputError, match="Eyeglasses-resnet50: no training log"):
        collect_curves(tmp_path, ("Eyeglasses",), ("resnet50",))


def test_the_default_logs_make_three_plots_of_fourteen_models(tmp_path):
    root = Path(__file__).resolve().parents[1]
    written = gather(root / "params.yaml", root / "metrics" / "train", tmp_path)
    for path in written:
        rows = next(iter(json.loads(path.read_text()).values()))
        assert len({r["model"] for r in rows}) == 14
