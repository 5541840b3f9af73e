"""params.yaml and the study profile are valid; cross-section rules name the key."""

from __future__ import annotations

import dataclasses
import re
import shutil
import typing
from pathlib import Path

import pytest
import yaml

from faceid import cli
from faceid.backbones.registry import BACKBONES
from faceid.config.crop import CropParams
from faceid.config.dataset import WildParams
from faceid.config.engine import ParamsError, load_sections
from faceid.config.evaluate import EvaluateParams
from faceid.config.profile import apply_profile, merge_overrides
from faceid.config.tasks import ORIG_TASK, read_tasks
from faceid.config.train import TrainRunParams, TrainTaskParams, resolve_train_params
from faceid.config.weights import WeightSource
from faceid.config.whole import Params, load_all_params
from tests._params import section, write_params

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_params_keep_the_rules_the_dvc_matrices_rely_on():
    params = load_all_params(ROOT / "params.yaml")
    assert read_tasks(ROOT / "params.yaml") == params.train.tasks and ORIG_TASK not in params.train.tasks
    assert set(params.train.backbones) <= set(BACKBONES) and set(params.train.backbones) <= set(params.train.backbone)
    assert set(params.train.task) == {ORIG_TASK}  # attribute tasks need no block: task_defaults


def _schema_keys(cls: type, data: dict, where: str) -> list[str]:
    """Dotted keys of `cls`'s fields that `data` does not set (override blocks excepted)."""
    missing, hints = [], typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{where}.{f.name}" if where else f.name
        if key in ("train.task_defaults", "train.task"):
            continue  # override blocks: they set only what differs
        if f.name not in data:
            missing.append(key)
        elif dataclasses.is_dataclass(hints[f.name]):
            missing += _schema_keys(hints[f.name], data[f.name], key)
        elif typing.get_origin(hints[f.name]) is dict and dataclasses.is_dataclass(typing.get_args(hints[f.name])[1]):
            for name, block in data[f.name].items():
                missing += _schema_keys(typing.get_args(hints[f.name])[1], block, f"{key}.{name}")
    return missing


def test_params_yaml_sets_every_key_of_the_schema():
    """params.yaml is the one source of values: no pipeline value comes from a dataclass default."""
    assert _schema_keys(Params, yaml.safe_load((ROOT / "params.yaml").read_text()), "") == []


def _schema_classes(cls: type = Params, seen: list | None = None) -> list[type]:
    """Every dataclass of the schema: the sections, their blocks, the blocks of mappings."""
    seen = [] if seen is None else seen
    if cls not in seen:
        seen.append(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            for tp in (hints[f.name], *typing.get_args(hints[f.name])):
                if dataclasses.is_dataclass(tp):
                    _schema_classes(tp, seen)
    return seen


def test_no_schema_field_has_a_default():
    """The dataclasses hold types and rules, not a second set of values. The exceptions:
    an override block's keys (absent = inherit, the same as null) and WeightSource's
    digest, which the backbone registry leaves out (no digest known)."""
    classes = [*_schema_classes(), TrainRunParams]
    assert {TrainTaskParams, WeightSource, CropParams, WildParams} <= set(classes)
    with_default = {
        f"{cls.__name__}.{f.name}" for cls in classes for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }  # fmt: skip
    override_block = {f"TrainTaskParams.{f.name}" for f in dataclasses.fields(TrainTaskParams)}
    assert with_default == {*override_block, "WeightSource.sha256"}
    assert all(f.default is None for f in dataclasses.fields(TrainTaskParams))


def _remove(dotted: str):
    """An edit of params.yaml deleting the key `dotted`."""

    def edit(data):
        *parents, last = dotted.split(".")
        for key in parents:
            data = data[key]
        del data[last]

    return edit


_ADD_IT = "add it (the project's params.yaml lists every key with its meaning)"


@pytest.mark.parametrize(
    ("dotted", "message"),
    [
        ("train.common.margin", f"train.common.margin: missing; {_ADD_IT}"),
        ("crop.margin", f"crop.margin: missing; {_ADD_IT}"),
        ("dataset.synthetic.wild.min_size", f"dataset.synthetic.wild.min_size: missing; {_ADD_IT}"),
        ("train.backbone.resnet50.lr_scale", f"train.backbone.resnet50.lr_scale: missing; {_ADD_IT}"),
        ("evaluate", f"evaluate: missing section; {_ADD_IT}"),
    ],
)
def test_a_key_missing_from_params_yaml_is_one_line_naming_it(tmp_path, dotted, message):
    path = write_params(tmp_path / "params.yaml", _remove(dotted))
    with pytest.raises(ParamsError) as error:
        load_all_params(path)
    assert str(error.value) == f"{path}: {message}"


def test_a_stage_names_a_missing_section_it_loads_and_ignores_others(tmp_path):
    path = write_params(tmp_path / "params.yaml", _remove("crop"))
    with pytest.raises(ParamsError, match=rf"^{re.escape(str(path))}: crop: missing section; add it"):
        load_sections(path, CropParams)
    assert load_sections(path, EvaluateParams)[0] == section(EvaluateParams)  # reads evaluate only


def _study(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    apply_profile("celeba-study", path, ROOT / "configs")
    return path


def test_the_merged_study_profile_is_valid_and_the_study(tmp_path):
    params = load_all_params(_study(tmp_path))
    assert params.dataset.source == "celeba"
    assert {b.init for b in params.train.backbone.values()} == {"vggface2", "imagenet"}
    for task in params.train.tasks:  # every attribute task from the pretrained weights, with train.common's phases
        run = resolve_train_params(params.train, task, "resnet50")
        assert (run.task_init, run.head_epochs, run.neck_epochs, run.epochs) == ("pretrained", 2, 0, 10)
    assert resolve_train_params(params.train, ORIG_TASK, "resnet50").epochs == 5


def test_every_override_of_the_study_profile_is_a_key_of_params_yaml():
    overrides = yaml.safe_load((ROOT / "configs/celeba-study.yaml").read_text())
    merge_overrides(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides)  # raises on an unknown key


@pytest.mark.parametrize("source", ["local", "celeba"])
def test_the_study_profile_keeps_a_real_source_and_says_so(tmp_path, caplog, source):
    """It replaced `dataset.source: local` with celeba, silently dropping the user's copy."""
    params = write_params(tmp_path / "params.yaml", {"dataset": {"source": source, "local_dir": "/data/CelebA",
                                                                 "layout": "wild"}})  # fmt: skip
    with caplog.at_level("INFO"):
        apply_profile("celeba-study", params, ROOT / "configs")
    dataset = load_all_params(params).dataset
    assert (dataset.source, dataset.local_dir, dataset.layout) == (source, "/data/CelebA", "wild")
    if source == "local":
        assert "dataset.source: kept 'local'" in caplog.text
    assert "train.common.lr: 0.002 -> 0.1" in caplog.text  # what it changed, key by key
    # a profile about the source alone does change it
    (tmp_path / "source.yaml").write_text("dataset: {source: synthetic}\n")
    apply_profile("source", params, tmp_path)
    assert load_all_params(params).dataset.source == "synthetic"


def test_the_embedded_default_takes_the_profiles_source(tmp_path):
    params = write_params(tmp_path / "params.yaml", {})
    apply_profile("celeba-study", params, ROOT / "configs")
    assert load_all_params(params).dataset.source == "celeba"


def test_num_workers_auto_is_what_the_machine_has(tmp_path):
    """The study profile set num_workers: 8 whatever the machine."""
    import os

    from faceid.crop.reader import loader_workers

    params = write_params(tmp_path / "params.yaml", {})
    apply_profile("celeba-study", params, ROOT / "configs")
    assert load_all_params(params).train.common.num_workers == "auto"
    cores = len(os.sched_getaffinity(0))
    assert loader_workers("auto") == max(0, min(cores - 1, 8)) and loader_workers(3) == 3


def test_evaluation_settings_live_in_evaluate_not_in_a_run(tmp_path):
    """Changing how evaluation batches re-ran every training (train.common.eval_batch_size
    and device are written into data/runs/*.json); evaluation reads evaluate.*."""
    from faceid.config.train import run_record

    params = load_all_params(write_params(tmp_path / "params.yaml", {"evaluate": {"batch_size": 7, "device": "cpu"}}))
    assert (params.evaluate.batch_size, params.evaluate.device) == (7, "cpu")
    record = run_record(resolve_train_params(params.train, ORIG_TASK, "resnet50"))
    assert "batch_size" in record and 7 not in record.values()
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in ("evaluate-base", "evaluate-orig", "evaluate"):
        assert "evaluate" in dvc[stage]["params"]  # the whole section: device and batch_size too
    source = (ROOT / "src/faceid/evaluate/run.py").read_text()
    assert "settings.batch_size" in source and "train.common.eval_batch_size" not in source
    assert "train.common.device" not in source


def test_a_misspelled_override_is_refused_and_params_yaml_is_left_as_it_was(tmp_path):
    (tmp_path / "typo.yaml").write_text("crop: {min_face_sise: 20}\n")
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    with pytest.raises(ParamsError, match=r"typo.yaml: crop.min_face_sise: not a key of params.yaml"):
        apply_profile("typo", params, tmp_path)
    assert params.read_text() == (ROOT / "params.yaml").read_text()


def test_profile_command_merges_keeps_comments_and_is_idempotent(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    assert cli.main(["profile", "celeba-study", "--params", str(params), "--profiles-dir", str(ROOT / "configs")]) == 0
    merged = params.read_text()
    assert "  source: celeba" in merged and "# Every tunable value of the pipeline" in merged
    # nulls written empty, as params.yaml (and DVC's own writer) writes them
    assert "local_dir:               # source local" in merged and "local_dir: null" not in merged
    (tmp_path / "again").mkdir()
    assert load_all_params(params) == load_all_params(_study(tmp_path / "again"))  # the command is apply_profile
    assert cli.main(["profile", "celeba-study", "--params", str(params), "--profiles-dir", str(ROOT / "configs")]) == 0
    assert params.read_text() == merged
    assert cli.main(["check-params", "--params", str(params)]) == 0
    assert "valid (dataset, crop, pairs, weights, train, evaluate, demo)" in capsys.readouterr().out


def test_check_params_names_a_bad_demo_value(tmp_path, capsys):
    path = write_params(tmp_path / "params.yaml", _set("demo.port", 70000))
    assert cli.main(["check-params", "--params", str(path)]) == 2
    assert "demo.port: expected 0..65535, got 70000" in capsys.readouterr().err


@pytest.mark.parametrize(
    "key", ["pairs.seed", "dataset.synthetic.seed", "train.common.seed", "evaluate.bootstrap.seed"]
)
def test_check_params_refuses_a_negative_seed_in_one_line(tmp_path, capsys, key):
    """A negative seed passed check-params, then the stage died in numpy's SeedSequence."""
    path = write_params(tmp_path / "params.yaml", _set(key, -3))
    assert cli.main(["check-params", "--params", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{key}: expected an integer >= 0, got -3" in err and "Traceback" not in err


def test_check_params_refuses_a_non_finite_number(tmp_path, capsys):
    path = write_params(tmp_path / "params.yaml", _set("train.common.lr", float("nan")))
    assert cli.main(["check-params", "--params", str(path)]) == 2
    assert "train.common.lr: expected a finite number, got nan" in capsys.readouterr().err


@pytest.mark.parametrize(("tasks", "message"), [
    (["Eyeglasses", "Wig"], r"train.tasks\[1\]: unknown task 'Wig'; valid: 5_o_Clock_Shadow, .*Young"),
    (["Eyeglasses", "Smilng"], r"train.tasks\[1\]: unknown task 'Smilng' \(did you mean 'Smiling'\?\); valid: 5_o_"),
    (["eyeglasses"], r"train.tasks\[0\]: unknown task 'eyeglasses' \(did you mean 'Eyeglasses'\?\).*case-sensitive"),
    (["wearing_HAT"], r"train.tasks\[0\]: unknown task 'wearing_HAT' \(did you mean 'Wearing_Hat'\?\)"),
    (["orig", "Eyeglasses"], r"train.tasks\[0\]: 'orig' is always trained and evaluated; list only attribute tasks"),
    (["Blurry", "Eyeglasses", "Blurry"], r"train.tasks: Blurry listed more than once"),
    ("Eyeglasses", r"train.tasks: expected a list"),
])  # fmt: skip
def test_a_bad_task_list_is_named_by_every_stage_that_reads_it(tmp_path, tasks, message):
    path = write_params(tmp_path / "params.yaml", lambda d: d["train"].update(tasks=tasks))
    with pytest.raises(ParamsError, match=message):
        load_all_params(path)
    with pytest.raises(ParamsError, match=message):
        read_tasks(path)  # the pairs stage's reader


def test_the_task_list_may_be_empty_orig_alone(tmp_path):
    path = write_params(tmp_path / "params.yaml", lambda d: d["train"].update(tasks=[]))
    assert load_all_params(path).train.tasks == () == read_tasks(path)


def test_backbone_needs_its_block(tmp_path):
    path = write_params(tmp_path / "params.yaml", lambda d: d["train"].update(backbones=["resnet50", "vit"]))
    with pytest.raises(ParamsError, match=r"train.backbones\[1\]: 'vit' has no train.backbone.vit block"):
        load_all_params(path)


def test_mistyped_value_names_key(tmp_path):
    path = write_params(tmp_path / "params.yaml", lambda d: d["train"]["common"].update(lr="fast"))
    with pytest.raises(ParamsError, match=r"train.common.lr: expected a number, got str 'fast'"):
        load_all_params(path)


def _set(dotted: str, value):
    """An edit of params.yaml setting `dotted` (created where missing)."""

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
    path = write_params(tmp_path / "params.yaml", _set(key, value))
    with pytest.raises(ParamsError) as caught:
        load_all_params(path)
    assert key in str(caught.value), str(caught.value)
    if not isinstance(value, list | dict):
        assert repr(value) in str(caught.value) or str(value) in str(caught.value)


def test_a_run_with_no_phase_is_named(tmp_path):
    def edit(data):
        data["train"]["task"]["Blurry"] = {"init": "orig", "head_epochs": 0, "neck_epochs": 0, "epochs": 0}

    with pytest.raises(
        ParamsError, match=r"train@Blurry-inception_resnet_v1: head_epochs, neck_epochs and epochs are all 0"
    ):
        load_all_params(write_params(tmp_path / "params.yaml", edit))


def test_misspelled_task_block_lists_the_trained_tasks(tmp_path):
    path = write_params(tmp_path / "params.yaml", _set("train.task.Eyglasses", {"init": "orig"}))
    with pytest.raises(
        ParamsError,
        match=r"train.task.Eyglasses: no such task, .*did you mean 'Eyeglasses'\? Trained tasks: orig, Eyeglasses",
    ):
        load_all_params(path)


def test_a_block_of_an_attribute_a_narrower_profile_does_not_train_is_allowed(tmp_path):
    def edit(data):
        data["train"]["tasks"] = ["Eyeglasses"]  # Blurry's block stays
        data["train"]["task"]["Blurry"] = {"lr": 0.01}

    assert "Blurry" in load_all_params(write_params(tmp_path / "params.yaml", edit)).train.task


def _add_task(task: str, block: dict | None):
    def edit(data):
        data["train"]["tasks"].append(task)
        if block is not None:
            data["train"]["task"][task] = block

    return edit


@pytest.mark.parametrize("block", [None, {}])
def test_a_new_task_without_a_block_is_trained_like_its_siblings(tmp_path, block):
    params = load_all_params(write_params(tmp_path / "params.yaml", _add_task("Smiling", block)))
    new, sibling = (resolve_train_params(params.train, t, "resnet50") for t in ("Smiling", "Eyeglasses"))
    assert new.task_init == "orig" and dataclasses.replace(new, task="Eyeglasses") == sibling


def test_a_task_block_overrides_the_task_defaults_value_by_value(tmp_path):
    params = load_all_params(
        write_params(tmp_path / "params.yaml", _add_task("Smiling", {"neck_lr": 0.02, "init": "pretrained"}))
    )
    run = resolve_train_params(params.train, "Smiling", "resnet50")
    defaults = params.train.task_defaults
    assert (run.neck_lr, run.task_init, run.head_epochs) == (0.02, "pretrained", defaults.head_epochs)


def test_orig_does_not_get_the_task_defaults(tmp_path):
    params = load_all_params(ROOT / "params.yaml")
    run = resolve_train_params(params.train, ORIG_TASK, "resnet50")
    assert (
        run.task_init == "pretrained"
        and run.neck_epochs == params.train.common.neck_epochs != params.train.task_defaults.neck_epochs
    )


def test_image_size_below_the_backbone_minimum_names_the_key_that_set_it(tmp_path):
    def edit(data):
        data["train"]["common"]["image_size"] = 40
        data["train"]["backbone"]["inception_resnet_v1"]["image_size"] = None

    with pytest.raises(
        ParamsError, match=r"train.common.image_size: inception_resnet_v1 takes .* 80 px, got 40 .*evaluate-base"
    ):
        load_all_params(write_params(tmp_path / "params.yaml", edit))


def test_a_crop_size_below_the_minimum_is_named_when_train_uses_it(tmp_path):
    def edit(data):
        data["crop"]["image_size"] = 64
        data["train"]["backbone"]["inception_resnet_v1"]["image_size"] = None

    with pytest.raises(ParamsError, match=r"crop.image_size .*: inception_resnet_v1 takes"):
        load_all_params(write_params(tmp_path / "params.yaml", edit))


@pytest.mark.parametrize("text", ["1e-3", "1E-3", "+1e-3", "0.001"])
def test_exponent_written_without_a_dot_is_a_float(tmp_path, text):
    path = tmp_path / "params.yaml"
    source = (ROOT / "params.yaml").read_text()
    assert "    lr: 0.002 " in source
    path.write_text(source.replace("    lr: 0.002 ", f"    lr: {text} ", 1))
    assert load_all_params(path).train.common.lr == pytest.approx(1e-3)


def test_a_word_is_still_not_a_float(tmp_path):
    path = write_params(tmp_path / "params.yaml", _set("train.common.lr", "1e-3x"))
    with pytest.raises(ParamsError, match=r"train.common.lr: expected a number, got str '1e-3x'"):
        load_all_params(path)
