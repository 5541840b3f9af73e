"""params.yaml and the study profile are valid; cross-section rules name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from faceid.config.engine import ParamsError
from faceid.config.whole import load_params

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


def _set(dotted: str, value):
    """An edit of the default params.yaml setting `dotted` (created where missing)."""

    def edit(data):
        *parents, last = dotted.split(".")
        for key in parents:
            data = data.setdefault(key, {})
        data[last] = value

    return edit


# every bad value of issue 13 (and a few more), with the key the message must name
BAD_VALUES = [
    ("train.common.margin", 5.0),
    ("train.common.margin", 0.0),
    ("train.common.scale", -64),
    ("train.common.batch_size", 0),
    ("train.common.lr", -0.5),
    ("train.common.dropout", 2),
    ("train.common.epochs", -1),
    ("train.common.neck_epochs", -1),
    ("train.common.neck_lr", 0.0),
    ("train.common.bn_recalibration_images", -5),
    ("train.common.eval_batch_size", 0),
    ("train.common.momentum", 1.5),
    ("train.common.max_steps_per_epoch", 0),
    ("train.task.orig.epochs", -1),
    ("train.task.Eyeglasses.lr", -0.5),
    ("train.task.Eyeglasses.max_steps_per_epoch", 0),
    ("train.backbone.resnet50.lr_scale", -1.0),
    ("train.backbone.resnet50.init", "vggface2"),
    ("train.backbone.inception_resnet_v1.image_size", 40),
    ("train.task.Eyglasses", {"init": "orig", "lr": 0.02}),
    ("crop.min_face_size", 0),
    ("crop.batch_size", 0),
    ("dataset.synthetic.partition_fractions", [0.7, 0.7, 0.15]),
    ("dataset.synthetic.attribute_rates.Eyeglasses", 1.5),
    ("dataset.download_timeout_s", 0),
    ("weights.download_timeout_s", -1.0),
    ("demo.max_concurrent", 0),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES, ids=[f"{k}={v}" for k, v in BAD_VALUES])
def test_every_bad_value_is_named(tmp_path, key, value):
    path = _write(tmp_path, _set(key, value))
    with pytest.raises(ParamsError) as caught:
        load_params(path)
    assert key in str(caught.value), str(caught.value)
    if not isinstance(value, list | dict):
        assert repr(value) in str(caught.value) or str(value) in str(caught.value)


def test_a_run_with_no_phase_is_named(tmp_path):
    def edit(data):
        data["train"]["task"]["Blurry"] = {"init": "orig", "head_epochs": 0, "neck_epochs": 0, "epochs": 0}

    with pytest.raises(ParamsError, match=r"train@Blurry-inception_resnet_v1: head_epochs, neck_epochs and epochs are all 0"):
        load_params(_write(tmp_path, edit))


def test_misspelled_task_block_lists_the_trained_tasks(tmp_path):
    path = _write(tmp_path, _set("train.task.Eyglasses", {"init": "orig"}))
    with pytest.raises(ParamsError, match=r"train.task.Eyglasses: no such task, .*did you mean 'Eyeglasses'\? Trained tasks: orig, Eyeglasses"):
        load_params(path)


def test_a_block_of_an_attribute_a_narrower_profile_does_not_train_is_allowed(tmp_path):
    path = _write(tmp_path, _set("train.tasks", ["Eyeglasses"]))  # Blurry's block stays
    assert "Blurry" in load_params(path).train.task


def test_image_size_below_the_backbone_minimum_names_the_key_that_set_it(tmp_path):
    def edit(data):
        data["train"]["common"]["image_size"] = 40
        data["train"]["backbone"]["inception_resnet_v1"]["image_size"] = None

    with pytest.raises(ParamsError, match=r"train.common.image_size: inception_resnet_v1 takes .* 80 px, got 40 .*evaluate-base"):
        load_params(_write(tmp_path, edit))


def test_a_crop_size_below_the_minimum_is_named_when_train_uses_it(tmp_path):
    def edit(data):
        data["crop"]["image_size"] = 64
        data["train"]["backbone"]["inception_resnet_v1"]["image_size"] = None

    with pytest.raises(ParamsError, match=r"crop.image_size .*: inception_resnet_v1 takes"):
        load_params(_write(tmp_path, edit))


@pytest.mark.parametrize("text", ["1e-3", "1E-3", "+1e-3", "0.001"])
def test_exponent_written_without_a_dot_is_a_float(tmp_path, text):
    path = tmp_path / "params.yaml"
    source = (ROOT / "params.yaml").read_text()
    assert "    lr: 0.002 " in source
    path.write_text(source.replace("    lr: 0.002 ", f"    lr: {text} ", 1))
    assert load_params(path).train.common.lr == pytest.approx(1e-3)


def test_a_word_is_still_not_a_float(tmp_path):
    path = _write(tmp_path, _set("train.common.lr", "1e-3x"))
    with pytest.raises(ParamsError, match=r"train.common.lr: expected a number, got str '1e-3x'"):
        load_params(path)
