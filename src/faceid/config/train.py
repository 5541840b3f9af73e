"""Schema of params.yaml's `train` section and the merge rule of one run.

`resolve_train_params(train, task, backbone)` merges train.common, the backbone's block,
train.task_defaults (attribute tasks only) and the task's own block into the settings of
one train@<task>-<backbone> run. A task needs no block of its own: every attribute task
gets train.task_defaults, and its block (if any) overrides single values.

The runs stage writes each resolved run to data/runs/<task>-<backbone>.json
(`run_record`), and the train stages read it back (`load_run`): DVC tracks each run's own
file, so editing one task's settings re-runs only that task's stages, and a task needs
nothing in params.yaml but its name in train.tasks.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from faceid.config.crop import CropParams
from faceid.config.engine import ParamsError, from_mapping
from faceid.config.tasks import ORIG_TASK, all_tasks, check_tasks
from faceid.data.celeba import ATTRIBUTE_NAMES

__all__ = [
    "TrainBackboneParams",
    "TrainCommonParams",
    "TrainParams",
    "TrainRunParams",
    "TrainTaskParams",
    "load_run",
    "resolve_train_params",
    "run_record",
]

TaskInit = Literal["pretrained", "orig", "none"]
# train.common.optimizer: faceid.train.schedule.OPTIMIZERS builds each (named here too, so
# that checking params needs no torch; tests/test_hygiene.py keeps the two equal)
Optimizer = Literal["sgd", "adamw"]


@dataclass(frozen=True)
class TrainCommonParams:
    """ArcFace fine-tuning settings shared by every (task, backbone) run."""

    optimizer: Optimizer
    lr: float  # peak learning rate of the ArcFace head (backbone: lr * lr_scale)
    weight_decay: float
    momentum: float  # SGD momentum (AdamW: beta1)
    warmup_epochs: float  # linear warm-up from 0, then cosine decay
    min_lr_ratio: float  # the cosine decay ends at lr * min_lr_ratio
    # phases (faceid.train.run): the ArcFace head alone, then the embedding layer with it,
    # both on cached trunk features; then `epochs` over images for every unfrozen block
    head_epochs: int
    head_lr: float | None  # null = lr
    neck_epochs: int
    neck_lr: float | None  # null = lr
    epochs: int  # the backbone phase (0 = none)
    # crops to re-estimate every BatchNorm's running statistics on before training
    # (0 = keep them): a random network's init statistics collapse its embeddings
    bn_recalibration_images: int
    # neck phase: standardise the pooled features first (their training-set mean / std,
    # stored in the model, set once: a fine-tune keeps its init model's); for a neck
    # trained from scratch, not a pretrained one
    standardize_features: bool
    batch_size: int
    # training/eval input size; crops of another size are resized on the device.
    # null = the crop size
    image_size: int | None
    flip: bool  # random horizontal flips
    margin: float  # ArcFace additive angular margin m, radians
    scale: float  # ArcFace logit scale s
    # which epoch's weights become model.pt: best AUC on the task's own val pairs,
    # best on the orig val pairs, or the last epoch
    select_epoch: Literal["best_task_auc", "best_orig_auc", "last"]
    seed: int
    # DataLoader worker processes (0 = load in the main process); auto = the machine's
    # cores less one, up to 8 (faceid.crop.reader.loader_workers): a profile fits any machine
    num_workers: int | Literal["auto"]
    freeze_bn: bool  # keep BatchNorm running statistics fixed (eval mode)
    # leading backbone stages whose weights stay fixed: a count, or the name of the
    # last frozen stage (see faceid.backbones.registry); 0 = train everything
    frozen_blocks: int | str
    eval_batch_size: int
    device: Literal["auto", "cpu", "cuda"]
    max_steps_per_epoch: int | None  # cap for smoke runs; null = the whole subset
    # dropout before the 512-d embedding layer, both backbones (facenet-pytorch uses 0.6)
    dropout: float


@dataclass(frozen=True)
class TrainBackboneParams:
    """Per-backbone settings; a non-null value overrides train.common."""

    # pretrained weights: inception_resnet_v1 vggface2|casia-webface|none,
    # resnet50 imagenet|none
    init: str
    lr_scale: float  # backbone lr = lr * lr_scale (the head keeps lr)
    batch_size: int | None
    image_size: int | None
    freeze_bn: bool | None
    frozen_blocks: int | str | None


@dataclass(frozen=True)
class TrainTaskParams:
    """Task settings (train.task_defaults, train.task.<name>); a non-null value overrides
    the blocks above it (see resolve_train_params).

    The one section class whose fields default (to None): an override block sets only
    what differs, so a key it leaves out means "inherit", the same as null; None is not
    a value of its own (a block such as `Eyeglasses: {lr: 0.01}` relies on it).
    """

    # where training starts: pretrained = the backbone's weights (train.backbone.<name>.init);
    # orig = the orig task's model of the same backbone; none = random; null = inherited
    # (from train.task_defaults for an attribute task; pretrained for orig)
    init: TaskInit | None = None
    head_epochs: int | None = None
    head_lr: float | None = None
    neck_epochs: int | None = None
    neck_lr: float | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    max_steps_per_epoch: int | None = None
    frozen_blocks: int | str | None = None
    warmup_epochs: float | None = None


@dataclass(frozen=True)
class TrainParams:
    """ArcFace training runs: which, and with what settings (see resolve_train_params)."""

    SECTION: ClassVar[str] = "train"
    REQUIRES: ClassVar[tuple[type, ...]] = (CropParams,)

    # the one task list (faceid.config.tasks): CelebA attributes, each given pairs, a
    # model per backbone and an evaluation; orig is implied (stages train-orig, evaluate-orig)
    tasks: tuple[str, ...]
    # backbones trained and evaluated (dvc.yaml's matrices); each needs a backbone block
    backbones: tuple[str, ...]
    # processes per training run on this machine (torchrun; dvc.yaml's cmd passes it to
    # stages/train.py --processes); 0 = one per visible GPU. Not part of a run's params:
    # N processes train the same model as one (README "Training under torchrun")
    processes: int
    common: TrainCommonParams
    backbone: dict[str, TrainBackboneParams]
    # every attribute task's settings (not orig's); a task's own block overrides them
    task_defaults: TrainTaskParams
    task: dict[str, TrainTaskParams]  # optional blocks, by task name

    def validate(self, sections: dict[str, Any]) -> None:
        """The task list, backbone blocks, value ranges and (crop.image_size) input sizes."""
        check_tasks(self.tasks)
        _check_backbone_blocks(self)
        _check_train_values(self, sections["crop"])


@dataclass(frozen=True)
class TrainRunParams(TrainCommonParams):
    """The merged settings of one train@<task>-<backbone> run (see resolve_train_params)."""

    task: str
    backbone: str
    weights_init: str  # the backbone's pretrained weights name
    task_init: TaskInit
    lr_scale: float


def _task_blocks(train: TrainParams, task: str) -> tuple[TrainTaskParams, ...]:
    """The task blocks of `task`, least specific first."""
    own = (train.task[task],) if task in train.task else ()
    return own if task == ORIG_TASK else (train.task_defaults, *own)


def resolve_train_params(train: TrainParams, task: str, backbone: str) -> TrainRunParams:
    """Merge train.common, train.backbone.<backbone>, train.task_defaults and train.task.<task>.

    Rule: start from train.common; every non-null field of the backbone block that
    shares a name with a common field replaces it; then every non-null such field of
    train.task_defaults (attribute tasks only, never orig), then of the task's own block
    (optional) replaces that. `init` is not merged into the common fields: the backbone's
    is the pretrained weights name (weights_init); the most specific non-null task init
    says where training starts (task_init; pretrained if none is set). A backbone
    without a block is an error.
    """
    if backbone not in train.backbone:
        raise ParamsError(
            f"train.backbone.{backbone}: missing; add a block for it "
            f"(defined: {', '.join(train.backbone) or 'none'})"
        )
    bb = train.backbone[backbone]
    tasks = _task_blocks(train, task)
    task_init = next((tk.init for tk in reversed(tasks) if tk.init is not None), "pretrained")
    if task == ORIG_TASK and task_init == "orig":
        raise ParamsError(
            f"train.task.{task}.init: 'orig' would start the orig task from itself; "
            "use pretrained or none"
        )
    values = dataclasses.asdict(train.common)
    for block in (bb, *tasks):
        for f in dataclasses.fields(block):
            value = getattr(block, f.name)
            if f.name in values and f.name != "init" and value is not None:
                values[f.name] = value
    return TrainRunParams(
        **values, task=task, backbone=backbone, weights_init=bb.init, task_init=task_init, lr_scale=bb.lr_scale
    )


def _check_backbone_blocks(train: TrainParams) -> None:
    """Every backbone of train.backbones has its block (dvc.yaml's matrices rely on it)."""
    for i, backbone in enumerate(train.backbones):
        if backbone not in train.backbone:
            raise ParamsError(
                f"train.backbones[{i}]: {backbone!r} has no train.backbone.{backbone} block "
                f"(blocks: {', '.join(train.backbone)})"
            )


def run_record(run: TrainRunParams) -> dict[str, Any]:
    """A resolved run as JSON-ready values (data/runs/<task>-<backbone>.json; see load_run)."""
    return dataclasses.asdict(run)


def load_run(path: str | Path) -> TrainRunParams:
    """The resolved run the runs stage wrote at `path`, checked as params.yaml's blocks are."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(
            f"{path}: no such run file; `dvc repro` writes it (stage runs), or pass --task and --backbone"
        )
    try:
        run = from_mapping(TrainRunParams, json.loads(path.read_text()), "")
        _check_block(run, "run")
    except (ParamsError, json.JSONDecodeError) as exc:
        raise ParamsError(f"{path}: {exc}; `dvc repro` rewrites it from params.yaml (stage runs)") from exc
    return run


# --------------------------------------------------------------------------- value ranges


def _at_least(least: float) -> Callable[[Any], bool]:
    return lambda v: v >= least


def _open_interval(low: float, high: float) -> Callable[[Any], bool]:
    return lambda v: low < v < high


def _half_open(low: float, high: float) -> Callable[[Any], bool]:
    return lambda v: low <= v < high


# train value rules by field name, for train.common and every backbone/task block that
# sets the field (a null in a block means "inherit" and is not checked)
_TRAIN_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lr": (_open_interval(0.0, math.inf), "a learning rate > 0"),
    "lr_scale": (_at_least(0.0), "a factor >= 0 (0 keeps the backbone fixed)"),
    "weight_decay": (_at_least(0.0), "a number >= 0"),
    "momentum": (_half_open(0.0, 1.0), "a number in [0, 1)"),
    "warmup_epochs": (_at_least(0.0), "a number of epochs >= 0"),
    "min_lr_ratio": (lambda v: 0.0 <= v <= 1.0, "a ratio in [0, 1]"),
    "epochs": (_at_least(0), "an integer >= 0 (0 = no backbone phase)"),
    "head_epochs": (_at_least(0), "an integer >= 0"),
    "neck_epochs": (_at_least(0), "an integer >= 0"),
    "head_lr": (_open_interval(0.0, math.inf), "a learning rate > 0 or null (= lr)"),
    "neck_lr": (_open_interval(0.0, math.inf), "a learning rate > 0 or null (= lr)"),
    "bn_recalibration_images": (_at_least(0), "a number of crops >= 0 (0 = keep the statistics)"),
    "batch_size": (_at_least(1), "an integer >= 1"),
    "eval_batch_size": (_at_least(1), "an integer >= 1"),
    "image_size": (_at_least(1), "an integer >= 1 or null (the crop size)"),
    "margin": (_open_interval(0.0, math.pi / 2), "an angle in radians in (0, pi/2) (ArcFace's is 0.5)"),
    "scale": (_open_interval(0.0, math.inf), "a logit scale > 0 (ArcFace's is 64)"),
    "num_workers": (lambda v: v == "auto" or v >= 0, "an integer >= 0 or auto"),
    "max_steps_per_epoch": (_at_least(1), "an integer >= 1 or null (the whole subset)"),
    "dropout": (_half_open(0.0, 1.0), "a probability in [0, 1)"),
    "frozen_blocks": (lambda v: isinstance(v, str) or v >= 0, "a count >= 0 or a stage name"),
}


def _check_block(block: Any, where: str) -> None:
    for f in dataclasses.fields(block):
        value = getattr(block, f.name)
        rule = _TRAIN_RULES.get(f.name)
        if rule is None or value is None or isinstance(value, bool):
            continue  # null = inherited from the block above
        ok, expected = rule
        if not ok(value):
            raise ParamsError(f"{where}.{f.name}: expected {expected}, got {value!r}")


def _check_train_values(train: TrainParams, crop: CropParams) -> None:
    """Ranges of every train value, known backbones and inits, task blocks of trained
    tasks, and input sizes every backbone can take wherever a run or evaluation uses one."""
    from faceid.backbones.registry import BACKBONES  # torch: only once params are otherwise valid

    if train.processes < 0:
        raise ParamsError(
            f"train.processes: {train.processes}; expected 1 or more processes per run, or 0 for one per visible GPU"
        )
    _check_block(train.common, "train.common")
    _check_block(train.task_defaults, "train.task_defaults")
    for name, block in train.backbone.items():
        if name not in BACKBONES:
            raise ParamsError(f"train.backbone.{name}: unknown backbone; valid: {', '.join(BACKBONES)}")
        inits = (*BACKBONES[name].inits, "none")
        if block.init not in inits:
            raise ParamsError(
                f"train.backbone.{name}.init: {block.init!r} is not a valid choice; valid: {', '.join(inits)}"
            )
        _check_block(block, f"train.backbone.{name}")
    trained = all_tasks(train.tasks)
    for name, block in train.task.items():
        # a block of an attribute a narrower profile does not train is kept (and unused);
        # any other name is a typo whose settings would silently never apply
        if name not in trained and name not in ATTRIBUTE_NAMES:
            close = difflib.get_close_matches(name, (*trained, *ATTRIBUTE_NAMES), n=1)
            raise ParamsError(
                f"train.task.{name}: no such task, so this block would be ignored"
                f"{f'; did you mean {close[0]!r}?' if close else ''} Trained tasks: "
                f"{', '.join(trained)} (train.tasks plus orig; names are case-sensitive)"
            )
        _check_block(block, f"train.task.{name}")
    for backbone in train.backbones:
        if backbone not in train.backbone:
            continue  # _check_backbone_blocks names it
        least = BACKBONES[backbone].min_image_size
        for task in trained:
            run = resolve_train_params(train, task, backbone)
            if run.head_epochs + run.neck_epochs + run.epochs < 1:
                raise ParamsError(
                    f"train@{task}-{backbone}: head_epochs, neck_epochs and epochs are all 0 "
                    f"(train.common, train.backbone.{backbone}, train.task_defaults, train.task.{task}); "
                    "set at least one >= 1"
                )
            size = run.image_size if run.image_size is not None else crop.image_size
            if size < least:
                source = _image_size_source(train, task, backbone)
                raise ParamsError(
                    f"{source}: {backbone} takes inputs of at least {least} px, got {size} "
                    f"(used by train@{task}-{backbone}"
                    f"{' and evaluate-base@' + backbone if task == ORIG_TASK else ''}); set it to >= {least}"
                )


def _image_size_source(train: TrainParams, task: str, backbone: str) -> str:
    """The key that set a run's input size (the most specific non-null one)."""
    if train.backbone[backbone].image_size is not None:
        return f"train.backbone.{backbone}.image_size"
    if train.common.image_size is not None:
        return "train.common.image_size"
    return "crop.image_size (train image_size null = the crop size)"

