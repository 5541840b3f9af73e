"""params.yaml and the study profile are valid; cross-section rules name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from faceid.config import ParamsError, load_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", ["params.yaml", "configs/celeba-study.yaml"])
def test_shipped_params_files_are_valid(path):
    params = load_params(ROOT / path)
    assert params.train.tasks and params.train.backbones


def test_study_profile_uses_pretrained_weights_and_real_celeba():
    params = load_params(ROOT / "configs/celeba-study.yaml")
    assert params.dataset.source == "celeba"
    assert {b.init for b in params.train.backbone.values()} == {"vggface2", "imagenet"}


def _write(tmp_path, edit) -> Path:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_train_task_must_be_a_pairs_task(tmp_path):
    path = _write(tmp_path, lambda d: d["train"].update(tasks=["Eyeglasses", "Smiling"]))
    with pytest.raises(ParamsError, match=r"train.tasks\[1\]: 'Smiling' must be an attribute task of pairs.tasks"):
        load_params(path)


def test_backbone_needs_its_block(tmp_path):
    path = _write(tmp_path, lambda d: d["train"].update(backbones=["resnet50", "vit"]))
    with pytest.raises(ParamsError, match=r"train.backbones\[1\]: 'vit' has no train.backbone.vit block"):
        load_params(path)


def test_orig_is_required(tmp_path):
    def edit(d):
        d["pairs"]["tasks"] = ["Eyeglasses"]
        d["train"]["tasks"] = ["Eyeglasses"]

    with pytest.raises(ParamsError, match=r"pairs.tasks: must include 'orig'"):
        load_params(_write(tmp_path, edit))


def test_mistyped_value_names_key(tmp_path):
    path = _write(tmp_path, lambda d: d["train"]["common"].update(lr="fast"))
    with pytest.raises(ParamsError, match=r"train.common.lr: expected a number, got str 'fast'"):
        load_params(path)
