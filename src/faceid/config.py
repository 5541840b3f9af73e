"""params.yaml → typed, frozen dataclasses.

Every section of params.yaml has a frozen dataclass here. `load_params` validates the
whole file: an unknown key, a missing required key or a value of the wrong type is a
`ParamsError` naming the dotted key, what was expected and (for unknown keys and
choices) the valid options. Stages call `load_params(path).<section>` and nothing else
reads params.yaml.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from faceid.celeba import ATTRIBUTE_NAMES, STUDY_ATTRIBUTES
from faceid.errors import FaceidError

__all__ = [
    "CropParams",
    "DatasetParams",
    "DemoParams",
    "EvaluateParams",
    "IdentificationParams",
    "IdentificationScoringParams",
    "PairsParams",
    "Params",
    "ParamsError",
    "SyntheticParams",
    "TrainBackboneParams",
    "TrainCommonParams",
    "TrainParams",
    "TrainRunParams",
    "TrainSubsetParams",
    "TrainTaskParams",
    "VerificationParams",
    "WeightSource",
    "WeightsParams",
    "WildParams",
    "from_mapping",
    "load_params",
    "resolve_train_params",
]


class ParamsError(FaceidError, ValueError):
    """A params.yaml value that does not fit its schema."""


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class WildParams:
    """In-the-wild layout: the face placed off-centre on a canvas of varied size."""

    min_size: int = 240  # shorter canvas side, pixels
    max_size: int = 420  # longer canvas side, pixels
    min_face_scale: float = 0.8  # face size relative to the aligned 178x218 rendering
    max_face_scale: float = 1.6


@dataclass(frozen=True)
class SyntheticParams:
    """The embedded CelebA-format dataset the project renders itself."""

    n_identities: int = 200
    min_images_per_identity: int = 8
    max_images_per_identity: int = 16
    seed: int = 0
    # identity-disjoint split like CelebA's list_eval_partition (train, val, test)
    partition_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    # per-image base rates; attributes not listed use CelebA's own base rate
    attribute_rates: dict[str, float] = field(default_factory=dict)
    jpeg_quality: int = 90
    # pixel noise std (0-255 scale) added before JPEG encoding
    noise: float = 4.0
    # camera variation per photo, as in real photo collections: exposure gain in
    # [1 - exposure, 1 + exposure], per-channel white-balance gain std, gamma in
    # [1 - gamma, 1 + gamma]. It keeps colour alone from telling identities apart.
    exposure: float = 0.0
    white_balance: float = 0.0
    gamma: float = 0.0
    wild: WildParams = field(default_factory=WildParams)
    # worker processes for rendering (0 = one per CPU core)
    workers: int = 0


@dataclass(frozen=True)
class DatasetParams:
    """Where the CelebA-format dataset in data/celeba comes from (see docs/celeba.md)."""

    # synthetic = rendered here; celeba = downloaded (Drive or mirror); local = a copy on disk
    source: Literal["synthetic", "celeba", "local"] = "synthetic"
    # aligned = img_align_celeba.zip (178x218); wild = img_celeba (varied sizes)
    layout: Literal["aligned", "wild"] = "aligned"
    local_dir: str | None = None  # source: local, an existing CelebA folder
    # source: celeba, an HTTP(S) mirror serving the official file names (<url>/<name>);
    # used instead of Google Drive when set
    mirror_url: str | None = None
    # check official files against torchvision's MD5 table (downloads and local copies)
    verify_md5: bool = True
    # how to bring a local copy into data/celeba: symlinks (no extra disk) or copies
    local_mode: Literal["link", "copy"] = "link"
    download_retries: int = 5  # network errors retried this many times per file
    download_timeout_s: float = 60.0  # connect/read timeout of one HTTP request
    # wait before retry k (k = 0, 1, …) is download_backoff_s * 2**k
    download_backoff_s: float = 2.0
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)


# --------------------------------------------------------------------------- crop


@dataclass(frozen=True)
class CropParams:
    """MTCNN detection and the crop cache (data/crops)."""

    # auto = cuda when torch sees a GPU, else cpu
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # mtcnn = detector box + margin, resized (facenet-pytorch's convention, the study's);
    # align5 = five-point similarity transform to the ArcFace template scaled to image_size
    method: Literal["mtcnn", "align5"] = "mtcnn"
    image_size: int = 160  # side of the square crop, pixels
    # pixels of the final crop around the face: widens the mtcnn box (facenet-pytorch's
    # rule) or shrinks the align5 template towards the centre by the same amount
    margin: int = 0
    batch_size: int = 32  # images per MTCNN call
    # smallest face searched, pixels; a larger value drops pyramid levels (faster)
    min_face_size: int = 20
    pnet_threshold: float = 0.6  # MTCNN stage-1 face score threshold
    rnet_threshold: float = 0.7  # stage 2
    onet_threshold: float = 0.7  # stage 3
    pyramid_factor: float = 0.709  # scale step between pyramid levels
    # several faces and no dataset annotation to match: keep the largest box, the one
    # nearest the image centre, or the most probable
    select: Literal["largest", "central", "probability"] = "largest"
    # images of varied sizes are letterboxed (scaled to fit, padded bottom/right) onto a
    # canvas of this size so they batch together, boxes mapped back to the original;
    # null = detect at native size, batching equal-size images together
    canvas_width: int | None = None
    canvas_height: int | None = None
    # fallback from annotated landmarks with method mtcnn: side of the square box as a
    # multiple of the landmarks' larger extent (MTCNN's box on skimage's astronaut: 1.9x
    # as wide, 2.4x as tall)
    landmark_box_scale: float = 2.2
    shard_size: int = 8192  # crops per shard file
    chunk_size: int = 512  # images per resumable chunk (the unit of progress)
    max_failure_rate: float = 0.01  # unreadable images, as a share of all images
    workers: int = 1  # JPEG-decoding threads feeding the detector
    # torch intra-op threads while detecting (0 = torch's default, one per core). MTCNN's
    # many tiny per-box ops scale badly: on a loaded 2-core machine 1 thread ran 10x
    # faster than 2, and a decode thread then has the other core
    threads: int = 1
    # crop processes, each with its own detector, taking chunks in turn (one per GPU on
    # cuda: process i uses GPU i mod count). 0 = one per visible GPU on cuda, one per CPU
    # core on cpu. The output is the same bytes for any count
    processes: int = 1

    def __post_init__(self) -> None:
        positive = ("image_size", "batch_size", "min_face_size", "shard_size", "chunk_size", "workers")
        for name in positive:
            if getattr(self, name) < 1:
                raise ParamsError(f"crop.{name}: expected an integer >= 1, got {getattr(self, name)}")
        if not 0 <= self.margin < self.image_size:
            raise ParamsError(
                f"crop.margin: expected 0 <= margin < image_size ({self.image_size}), got {self.margin}"
            )
        for name in ("pnet_threshold", "rnet_threshold", "onet_threshold", "pyramid_factor"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ParamsError(f"crop.{name}: expected a number in (0, 1), got {getattr(self, name)}")
        if self.processes < 0:
            raise ParamsError(f"crop.processes: expected 0 (one per GPU / CPU core) or more, got {self.processes}")
        if self.threads < 0:
            raise ParamsError(f"crop.threads: expected 0 (torch's default) or more, got {self.threads}")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ParamsError(f"crop.max_failure_rate: expected a share in [0, 1], got {self.max_failure_rate}")
        if self.landmark_box_scale <= 0:
            raise ParamsError(f"crop.landmark_box_scale: expected > 0, got {self.landmark_box_scale}")
        if (self.canvas_width is None) != (self.canvas_height is None):
            raise ParamsError(
                "crop.canvas_width/crop.canvas_height: set both (letterbox onto a canvas) or "
                f"neither (native sizes), got {self.canvas_width} and {self.canvas_height}"
            )
        if self.canvas_width is not None and min(self.canvas_width, self.canvas_height) < 12:
            raise ParamsError(
                f"crop.canvas_width/height: expected >= 12 pixels (MTCNN's smallest input), "
                f"got {self.canvas_width}x{self.canvas_height}"
            )

    @property
    def canvas(self) -> tuple[int, int] | None:
        """(width, height) of the letterbox canvas, or None for native sizes."""
        if self.canvas_width is None or self.canvas_height is None:
            return None
        return (self.canvas_width, self.canvas_height)


# --------------------------------------------------------------------------- pairs

ORIG_TASK = "orig"  # the unconditioned task: all usable images, condition `all`


@dataclass(frozen=True)
class VerificationParams:
    """How many verification pairs to draw per task x split (val and test alike)."""

    genuine_per_condition: int = 1000  # same-identity pairs per A/A, A/notA, notA/notA
    impostor_per_condition: int = 1000  # different-identity pairs per condition
    orig_genuine: int = 3000  # same-identity pairs of task `orig` (condition `all`)
    orig_impostor: int = 3000  # different-identity pairs of task `orig`

    def __post_init__(self) -> None:
        for name in ("genuine_per_condition", "impostor_per_condition", "orig_genuine", "orig_impostor"):
            _check_at_least(f"pairs.verification.{name}", getattr(self, name), 1)


@dataclass(frozen=True)
class TrainSubsetParams:
    """The attribute-filtered, balanced training subset of an attribute task."""

    # an identity enters with at least this many A images and this many notA images
    min_attribute_images: int = 1
    min_other_images: int = 1
    # per identity, at most floor(max_ratio * its A images) notA images (at least
    # min_other_images), drawn at random; all its A images are kept
    max_ratio: float = 1.0

    def __post_init__(self) -> None:
        _check_at_least("pairs.train.min_attribute_images", self.min_attribute_images, 1)
        _check_at_least("pairs.train.min_other_images", self.min_other_images, 1)
        if not self.max_ratio > 0:
            raise ParamsError(f"pairs.train.max_ratio: expected a number > 0, got {self.max_ratio!r}")


@dataclass(frozen=True)
class IdentificationParams:
    """Closed-set identification protocol drawn from the test partition."""

    n_identities: int = 220  # identities drawn at random among the eligible ones
    n_images: int = 1000  # images in all; every drawn identity gets min_images_per_identity
    # eligible identities have at least this many usable test images (>= 2: one probe
    # needs another image of its identity in the gallery)
    min_images_per_identity: int = 2

    def __post_init__(self) -> None:
        _check_at_least("pairs.identification.n_identities", self.n_identities, 1)
        _check_at_least("pairs.identification.min_images_per_identity", self.min_images_per_identity, 2)
        least = self.n_identities * self.min_images_per_identity
        if self.n_images < least:
            raise ParamsError(
                f"pairs.identification.n_images: {self.n_images} cannot give each of "
                f"n_identities={self.n_identities} identities min_images_per_identity="
                f"{self.min_images_per_identity} images; set it to at least {least}"
            )


@dataclass(frozen=True)
class PairsParams:
    """Verification pairs, training subsets and the identification protocol (stage pairs)."""

    # `orig` and/or CelebA attribute names (faceid.celeba.ATTRIBUTE_NAMES), one task each
    tasks: tuple[str, ...] = (ORIG_TASK, *STUDY_ATTRIBUTES)
    seed: int = 0
    verification: VerificationParams = field(default_factory=VerificationParams)
    train: TrainSubsetParams = field(default_factory=TrainSubsetParams)
    identification: IdentificationParams = field(default_factory=IdentificationParams)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ParamsError(f"pairs.tasks: expected at least one task ({ORIG_TASK!r} or an attribute)")
        valid = (ORIG_TASK, *ATTRIBUTE_NAMES)
        for i, task in enumerate(self.tasks):
            if task not in valid:
                raise ParamsError(
                    f"pairs.tasks[{i}]: unknown task {task!r}; valid: {', '.join(valid)} "
                    "(attribute names are case-sensitive, as in list_attr_celeba.txt)"
                )
        repeated = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
        if repeated:
            raise ParamsError(f"pairs.tasks: {', '.join(repeated)} listed more than once; list each task once")


def _check_at_least(key: str, value: int, least: int) -> None:
    if value < least:
        raise ParamsError(f"{key}: expected an integer >= {least}, got {value!r}")


# --------------------------------------------------------------------------- evaluate


@dataclass(frozen=True)
class BootstrapParams:
    """Cluster bootstrap of the AUC over identities."""

    n_boot: int = 200  # replicates per cell
    seed: int = 0  # numpy.random.default_rng(seed), one generator per evaluation
    level: float = 0.95  # two-sided percentile interval


@dataclass(frozen=True)
class IdentificationScoringParams:
    """Closed-set leave-one-out identification on data/pairs/identification.parquet."""

    score: Literal["max", "mean"] = "max"  # an identity's score from its other images
    ks: tuple[int, ...] = (1, 2, 3, 5)  # top-k accuracies reported
    cmc_max_rank: int = 20  # CMC curve length (capped at the gallery size)


@dataclass(frozen=True)
class EvaluateParams:
    """Verification and identification metrics computed from embeddings."""

    split: Literal["val", "test"] = "test"  # pairs.parquet split evaluated
    # the study's threshold accuracy (genuine similarity > t) and FAR at the same t
    thresholds: tuple[float, ...] = (0.6, 0.7, 0.8)
    fars: tuple[float, ...] = (1e-3, 1e-2)  # TAR@FAR operating points per cell
    # one global threshold at this FMR on the pooled impostors of task `orig`
    global_fmr: float = 1e-3
    global_task: str = "orig"  # task whose impostors set the global threshold
    bootstrap: BootstrapParams = field(default_factory=BootstrapParams)
    identification: IdentificationScoringParams = field(default_factory=IdentificationScoringParams)
    fpr_grid_size: int = 25  # ROC points per cell, log-spaced FPR
    fpr_grid_min: float = 1e-4  # lowest FPR of the grid
    # embedding step: average each image's embedding with its horizontal flip's
    flip_average: bool = True
    # the robustness map: evaluation-only A/A, A/notA, notA/notA pairs of the test split
    # per attribute (built by the pairs stage, separate from the training tasks);
    # `all` = CelebA's 40, a list = those, [] = no map
    attributes: Literal["all"] | tuple[str, ...] = "all"
    # demographic differentials (FNMR per group, FMR within and across groups at the
    # global threshold, NIST FRVT Part 3 style); each also gets its attribute pairs
    groups: tuple[str, ...] = ("Male", "Young", "Pale_Skin")

    @property
    def attribute_names(self) -> tuple[str, ...]:
        """Attributes that get evaluation-only pairs: the map's, then the groups not in it."""
        listed = ATTRIBUTE_NAMES if self.attributes == "all" else self.attributes
        return (*listed, *(g for g in self.groups if g not in listed))

    def __post_init__(self) -> None:
        for key, names in (("attributes", () if self.attributes == "all" else self.attributes),
                           ("groups", self.groups)):  # fmt: skip
            for i, name in enumerate(names):
                if name not in ATTRIBUTE_NAMES:
                    raise ParamsError(
                        f"evaluate.{key}[{i}]: unknown attribute {name!r}; valid: all (attributes only) or "
                        f"{', '.join(ATTRIBUTE_NAMES)} (case-sensitive, as in list_attr_celeba.txt)"
                    )
            if len(set(names)) != len(names):
                raise ParamsError(f"evaluate.{key}: an attribute is listed twice; list each once")
        for name, rates in (("fars", self.fars), ("global_fmr", (self.global_fmr,)),
                            ("fpr_grid_min", (self.fpr_grid_min,))):  # fmt: skip
            if any(not 0.0 < r < 1.0 for r in rates):
                raise ParamsError(f"evaluate.{name}: expected rates in (0, 1), got {rates}")
        if any(not -1.0 <= t <= 1.0 for t in self.thresholds):
            raise ParamsError(
                f"evaluate.thresholds: expected cosine similarities in [-1, 1], got {self.thresholds}"
            )
        if self.fpr_grid_size < 2:
            raise ParamsError(f"evaluate.fpr_grid_size: expected >= 2, got {self.fpr_grid_size}")
        if self.bootstrap.n_boot < 1 or not 0.0 < self.bootstrap.level < 1.0:
            raise ParamsError(
                "evaluate.bootstrap: expected n_boot >= 1 and 0 < level < 1, got "
                f"{self.bootstrap.n_boot} and {self.bootstrap.level}"
            )
        if any(k < 1 for k in self.identification.ks) or self.identification.cmc_max_rank < 1:
            raise ParamsError(
                "evaluate.identification: expected ks and cmc_max_rank >= 1, got "
                f"{self.identification.ks} and {self.identification.cmc_max_rank}"
            )


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class WeightSource:
    """Where one set of pretrained weights comes from."""

    url: str  # HTTP(S) address of the original file
    file: str  # its file name, as found in $TORCH_HOME/checkpoints or weights.local_dir
    # full sha256 hex digest or a prefix of it (torchvision names files by the first 8
    # hex digits); null = not verified, the computed digest is logged so it can be pinned
    sha256: str | None = None


def _default_weight_sources() -> dict[str, WeightSource]:
    facenet = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
    return {
        "vggface2": WeightSource(
            url=facenet + "20180402-114759-vggface2.pt", file="20180402-114759-vggface2.pt"
        ),
        "casia-webface": WeightSource(
            url=facenet + "20180408-102900-casia-webface.pt",
            file="20180408-102900-casia-webface.pt",
        ),
        "imagenet": WeightSource(
            url="https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
            file="resnet50-11ad3fa6.pth",
            sha256="11ad3fa6",
        ),
    }


@dataclass(frozen=True)
class WeightsParams:
    """Pretrained backbone weights: where to find or fetch them."""

    # init name (train.backbone.<name>.init) -> source
    sources: dict[str, WeightSource] = field(default_factory=_default_weight_sources)
    # a folder holding the files by name, searched before $TORCH_HOME/checkpoints
    local_dir: str | None = None
    offline: bool = False  # never use the network; a missing file is an error
    download_timeout_s: float = 60.0
    download_retries: int = 3

    def __post_init__(self) -> None:
        if not self.download_timeout_s > 0:
            raise ParamsError(f"weights.download_timeout_s: expected seconds > 0, got {self.download_timeout_s}")
        _check_at_least("weights.download_retries", self.download_retries, 0)


# --------------------------------------------------------------------------- train


@dataclass(frozen=True)
class TrainCommonParams:
    """ArcFace fine-tuning settings shared by every (task, backbone) run."""

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.02  # peak learning rate of the ArcFace head (backbone: lr * lr_scale)
    weight_decay: float = 5e-4
    momentum: float = 0.9  # SGD momentum (AdamW: beta1)
    warmup_epochs: float = 0.5  # linear warm-up from 0, then cosine decay
    min_lr_ratio: float = 0.01  # the cosine decay ends at lr * min_lr_ratio
    # phases (faceid.train): the ArcFace head alone, then the embedding layer with it,
    # both on cached trunk features; then `epochs` over images for every unfrozen block
    head_epochs: int = 0
    head_lr: float | None = None  # null = lr
    neck_epochs: int = 0
    neck_lr: float | None = None  # null = lr
    epochs: int = 3  # the backbone phase (0 = none)
    # crops to re-estimate every BatchNorm's running statistics on before training
    # (0 = keep them): a random network's init statistics collapse its embeddings
    bn_recalibration_images: int = 0
    # neck phase: standardise the pooled features first (their training-set mean / std,
    # stored in the model, set once: a fine-tune keeps its init model's); for a neck
    # trained from scratch, not a pretrained one
    standardize_features: bool = False
    batch_size: int = 32
    # training/eval input size; crops of another size are resized on the device.
    # null = the crop size
    image_size: int | None = None
    flip: bool = True  # random horizontal flips
    margin: float = 0.5  # ArcFace additive angular margin m, radians
    scale: float = 64.0  # ArcFace logit scale s
    # which epoch's weights become model.pt: best AUC on the task's own val pairs,
    # best on the orig val pairs, or the last epoch
    select_epoch: Literal["best_task_auc", "best_orig_auc", "last"] = "best_task_auc"
    seed: int = 0
    num_workers: int = 0  # DataLoader worker processes (0 = load in the main process)
    freeze_bn: bool = False  # keep BatchNorm running statistics fixed (eval mode)
    # leading backbone stages whose weights stay fixed: a count, or the name of the
    # last frozen stage (see faceid.backbones); 0 = train everything
    frozen_blocks: int | str = 0
    eval_batch_size: int = 128
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_steps_per_epoch: int | None = None  # cap for smoke runs; null = the whole subset
    # dropout before the 512-d embedding layer, both backbones (facenet-pytorch uses 0.6)
    dropout: float = 0.4


@dataclass(frozen=True)
class TrainBackboneParams:
    """Per-backbone settings; a non-null value overrides train.common."""

    # pretrained weights: inception_resnet_v1 vggface2|casia-webface|none,
    # resnet50 imagenet|none
    init: str = "none"
    lr_scale: float = 1.0  # backbone lr = lr * lr_scale (the head keeps lr)
    batch_size: int | None = None
    image_size: int | None = None
    freeze_bn: bool | None = None
    frozen_blocks: int | str | None = None


@dataclass(frozen=True)
class TrainTaskParams:
    """Per-task settings; a non-null value overrides train.backbone and train.common."""

    # pretrained = the backbone's weights (train.backbone.<name>.init);
    # orig = the orig task's fine-tuned model of the same backbone; none = random
    init: Literal["pretrained", "orig", "none"] = "pretrained"
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


def _default_train_backbones() -> dict[str, TrainBackboneParams]:
    return {
        "inception_resnet_v1": TrainBackboneParams(init="vggface2"),
        "resnet50": TrainBackboneParams(init="imagenet"),
    }


@dataclass(frozen=True)
class TrainParams:
    # the attribute tasks trained from the orig model (dvc.yaml's train matrix); each
    # must be one of pairs.tasks. orig itself is always trained (stage train-orig).
    tasks: tuple[str, ...] = STUDY_ATTRIBUTES
    # backbones trained and evaluated (dvc.yaml's matrices); each needs a backbone block
    backbones: tuple[str, ...] = ("inception_resnet_v1", "resnet50")
    common: TrainCommonParams = field(default_factory=TrainCommonParams)
    backbone: dict[str, TrainBackboneParams] = field(default_factory=_default_train_backbones)
    task: dict[str, TrainTaskParams] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainRunParams(TrainCommonParams):
    """The merged settings of one train@<task>-<backbone> run (see resolve_train_params)."""

    task: str = ""
    backbone: str = ""
    weights_init: str = "none"  # the backbone's pretrained weights name
    task_init: Literal["pretrained", "orig", "none"] = "pretrained"
    lr_scale: float = 1.0




def resolve_train_params(train: TrainParams, task: str, backbone: str) -> TrainRunParams:
    """Merge train.common, train.backbone.<backbone> and train.task.<task>.

    Rule: start from train.common; every non-null field of the backbone block that
    shares a name with a common field replaces it; then every non-null such field of the
    task block replaces that. `init` is not merged: the backbone's is the pretrained
    weights name (weights_init), the task's says where training starts (task_init).
    A task without a block uses TrainTaskParams' defaults; a backbone without one is an
    error.
    """
    if backbone not in train.backbone:
        raise ParamsError(
            f"train.backbone.{backbone}: missing; add a block for it "
            f"(defined: {', '.join(train.backbone) or 'none'})"
        )
    bb = train.backbone[backbone]
    tk = train.task.get(task, TrainTaskParams())
    if task == ORIG_TASK and tk.init == "orig":
        raise ParamsError(
            f"train.task.{task}.init: 'orig' would start the orig task from itself; "
            "use pretrained or none"
        )
    values = dataclasses.asdict(train.common)
    for block in (bb, tk):
        for f in dataclasses.fields(block):
            value = getattr(block, f.name)
            if f.name in values and f.name != "init" and value is not None:
                values[f.name] = value
    return TrainRunParams(
        **values,
        task=task,
        backbone=backbone,
        weights_init=bb.init,
        task_init=tk.init,
        lr_scale=bb.lr_scale,
    )


# --------------------------------------------------------------------------- demo


@dataclass(frozen=True)
class DemoParams:
    """The demo application: `faceid enroll`, `faceid identify`, `faceid serve`."""

    # model used when none is named: a folder under data/models (<task>-<backbone>)
    model: str = "orig-inception_resnet_v1"
    top_k: int = 3  # candidate identities listed per face
    # "unknown" below the threshold the evaluation set at this false-match rate: the
    # evaluation's global FMR (evaluate.global_fmr) or one of its TAR@FAR rates
    # (evaluate.fars) on the pooled cell of evaluate.global_task
    fmr: float = 1e-3
    # an identity's score: its best-matching enrolled image (as a verification pair, the
    # threshold's own meaning) or its mean template
    score: Literal["max", "mean"] = "max"
    # faces the detector is less sure of than this are not reported
    min_face_probability: float = 0.9
    # photos are shrunk to this longer side for detection (crops come from the full
    # photo): detection time grows with the pixel count
    detect_max_side: int = 1280
    max_faces: int = 32  # the largest faces of a crowded photo are kept, the rest counted
    max_upload_mb: float = 10.0  # larger uploads are refused with HTTP 413
    # larger images are refused before decoding (PIL's decompression-bomb guard)
    max_image_pixels: int = 50_000_000
    batch_size: int = 32  # crops per forward pass when enrolling
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    host: str = "127.0.0.1"  # `faceid serve` listens here; 0.0.0.0 exposes it to the network
    port: int = 5000
    # `faceid serve` decodes and identifies at most this many photos at once (each decoded
    # photo holds up to 3 bytes x max_image_pixels, several times over while converting)
    max_concurrent: int = 2
    # uploads waiting for a slot beyond these are answered 503 with Retry-After; a waiting
    # upload holds only its compressed bytes (<= max_upload_mb)
    max_waiting: int = 16

    def __post_init__(self) -> None:
        if self.max_waiting < 0:
            raise ParamsError(f"demo.max_waiting: expected an integer >= 0, got {self.max_waiting}")
        for name in ("top_k", "detect_max_side", "max_faces", "max_image_pixels", "batch_size", "max_concurrent"):
            _check_at_least(f"demo.{name}", getattr(self, name), 1)
        if not 0.0 < self.fmr < 1.0:
            raise ParamsError(f"demo.fmr: expected a rate in (0, 1), got {self.fmr}")
        if not 0.0 <= self.min_face_probability <= 1.0:
            raise ParamsError(
                f"demo.min_face_probability: expected a number in [0, 1], got {self.min_face_probability}"
            )
        if not self.max_upload_mb > 0:
            raise ParamsError(f"demo.max_upload_mb: expected a number > 0, got {self.max_upload_mb}")
        if not 0 <= self.port <= 65535:
            raise ParamsError(f"demo.port: expected 0..65535, got {self.port}")


# --------------------------------------------------------------------------- all


@dataclass(frozen=True)
class Params:
    dataset: DatasetParams = field(default_factory=DatasetParams)
    crop: CropParams = field(default_factory=CropParams)
    pairs: PairsParams = field(default_factory=PairsParams)
    weights: WeightsParams = field(default_factory=WeightsParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    demo: DemoParams = field(default_factory=DemoParams)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: no such params file; run from the project root")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ParamsError(f"{path}: expected a mapping of sections at top level")
    try:
        params = from_mapping(Params, data, "")
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from exc
    try:
        _check_attributes(params)
        _check_consistency(params, data.get("train") or {})
        _check_train_values(params)
        _check_dataset_values(params.dataset)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from exc
    return params


def _check_consistency(params: Params, given: Mapping[str, Any]) -> None:
    """Rules across sections that dvc.yaml's matrices rely on, for the lists a file sets."""
    train, pairs = params.train, params.pairs
    for i, task in enumerate(train.tasks if "tasks" in given else ()):
        if task == ORIG_TASK or task not in pairs.tasks:
            raise ParamsError(
                f"train.tasks[{i}]: {task!r} must be an attribute task of pairs.tasks "
                f"({', '.join(t for t in pairs.tasks if t != ORIG_TASK)}); orig is always trained"
            )
    if ORIG_TASK not in pairs.tasks:
        raise ParamsError(f"pairs.tasks: must include {ORIG_TASK!r}, the unconditioned baseline every task is compared with")
    for i, backbone in enumerate(train.backbones if "backbones" in given else ()):
        if backbone not in train.backbone:
            raise ParamsError(
                f"train.backbones[{i}]: {backbone!r} has no train.backbone.{backbone} block "
                f"(blocks: {', '.join(train.backbone)})"
            )


def _check_attributes(params: Params) -> None:
    for name in params.dataset.synthetic.attribute_rates:
        if name not in ATTRIBUTE_NAMES:
            raise ParamsError(
                f"dataset.synthetic.attribute_rates: unknown attribute {name!r}; "
                f"valid: {', '.join(ATTRIBUTE_NAMES)}"
            )


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
    "num_workers": (_at_least(0), "an integer >= 0"),
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


def _check_train_values(params: Params) -> None:
    """Ranges of every train value, known backbones and inits, task blocks of trained
    tasks, and input sizes every backbone can take wherever a run or evaluation uses one."""
    from faceid.backbones import BACKBONES  # torch: only once params are otherwise valid

    train = params.train
    _check_block(train.common, "train.common")
    for name, block in train.backbone.items():
        if name not in BACKBONES:
            raise ParamsError(f"train.backbone.{name}: unknown backbone; valid: {', '.join(BACKBONES)}")
        inits = (*BACKBONES[name].inits, "none")
        if block.init not in inits:
            raise ParamsError(f"train.backbone.{name}.init: {block.init!r} is not a valid choice; valid: {', '.join(inits)}")
        _check_block(block, f"train.backbone.{name}")
    trained = (ORIG_TASK, *train.tasks)
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
            continue  # _check_consistency names it
        least = BACKBONES[backbone].min_image_size
        for task in trained:
            run = resolve_train_params(train, task, backbone)
            if run.head_epochs + run.neck_epochs + run.epochs < 1:
                raise ParamsError(
                    f"train@{task}-{backbone}: head_epochs, neck_epochs and epochs are all 0 "
                    f"(train.common, train.backbone.{backbone}, train.task.{task}); set at least one >= 1"
                )
            size = run.image_size if run.image_size is not None else params.crop.image_size
            if size < least:
                source = _image_size_source(train, task, backbone)
                raise ParamsError(
                    f"{source}: {backbone} takes inputs of at least {least} px, got {size} "
                    f"(used by train@{task}-{backbone}"
                    f"{' and evaluate-base@' + backbone if task == ORIG_TASK else ''}); set it to >= {least}"
                )


def _image_size_source(train: TrainParams, task: str, backbone: str) -> str:
    """The key that set a run's input size (the most specific non-null one)."""
    if getattr(train.task.get(task), "image_size", None) is not None:
        return f"train.task.{task}.image_size"
    if train.backbone[backbone].image_size is not None:
        return f"train.backbone.{backbone}.image_size"
    if train.common.image_size is not None:
        return "train.common.image_size"
    return "crop.image_size (train image_size null = the crop size)"


def _check_dataset_values(dataset: DatasetParams) -> None:
    synthetic, wild = dataset.synthetic, dataset.synthetic.wild
    checks = [
        ("dataset.download_retries", dataset.download_retries, dataset.download_retries >= 0, "an integer >= 0"),
        ("dataset.download_timeout_s", dataset.download_timeout_s, dataset.download_timeout_s > 0, "seconds > 0"),
        ("dataset.download_backoff_s", dataset.download_backoff_s, dataset.download_backoff_s >= 0, "seconds >= 0"),
        ("dataset.synthetic.n_identities", synthetic.n_identities, synthetic.n_identities >= 3,
         "an integer >= 3 (one identity per train/val/test partition at least)"),
        ("dataset.synthetic.min_images_per_identity", synthetic.min_images_per_identity,
         synthetic.min_images_per_identity >= 1, "an integer >= 1"),
        ("dataset.synthetic.max_images_per_identity", synthetic.max_images_per_identity,
         synthetic.max_images_per_identity >= synthetic.min_images_per_identity,
         f"an integer >= min_images_per_identity ({synthetic.min_images_per_identity})"),
        ("dataset.synthetic.partition_fractions", synthetic.partition_fractions,
         all(0 <= f <= 1 for f in synthetic.partition_fractions)
         and math.isclose(sum(synthetic.partition_fractions), 1.0, abs_tol=1e-6),
         "three shares in [0, 1] summing to 1"),
        ("dataset.synthetic.jpeg_quality", synthetic.jpeg_quality, 1 <= synthetic.jpeg_quality <= 100,
         "an integer in [1, 100]"),
        ("dataset.synthetic.noise", synthetic.noise, synthetic.noise >= 0, "a pixel std >= 0"),
        ("dataset.synthetic.workers", synthetic.workers, synthetic.workers >= 0, "an integer >= 0 (0 = one per core)"),
        ("dataset.synthetic.wild.min_size", wild.min_size, wild.min_size >= 12, "pixels >= 12"),
        ("dataset.synthetic.wild.max_size", wild.max_size, wild.max_size >= wild.min_size,
         f"pixels >= wild.min_size ({wild.min_size})"),
        ("dataset.synthetic.wild.min_face_scale", wild.min_face_scale, wild.min_face_scale > 0, "a scale > 0"),
        ("dataset.synthetic.wild.max_face_scale", wild.max_face_scale, wild.max_face_scale >= wild.min_face_scale,
         f"a scale >= wild.min_face_scale ({wild.min_face_scale})"),
    ]  # fmt: skip
    for name in ("exposure", "white_balance", "gamma"):
        value = getattr(synthetic, name)
        checks.append((f"dataset.synthetic.{name}", value, 0 <= value < 1, "a number in [0, 1)"))
    for attribute, rate in synthetic.attribute_rates.items():
        checks.append((f"dataset.synthetic.attribute_rates.{attribute}", rate, 0 <= rate <= 1, "a rate in [0, 1]"))
    for key, value, ok, expected in checks:
        if not ok:
            raise ParamsError(f"{key}: expected {expected}, got {value!r}")


# --------------------------------------------------------------------------- engine


def from_mapping(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from `data`, strictly. `where` is the dotted key prefix."""
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where or 'params'}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise ParamsError(
                f"unknown key {_join(where, str(key))!r}; valid keys: {', '.join(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(f"missing required key {_join(where, name)!r}")
    return cls(**kwargs)


_YAML_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ParamsError as exc:
                errors.append(str(exc))
        raise ParamsError(errors[0] if len(errors) == 1 else f"{where}: {_describe(value)} fits none of {tp}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ParamsError(
                f"{where}: {value!r} is not a valid choice; valid: {', '.join(map(str, choices))}"
            )
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{where}: expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ParamsError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        key_tp, val_tp = get_args(tp)
        if not isinstance(value, Mapping):
            raise ParamsError(f"{where}: expected a mapping, got {_describe(value)}")
        return {
            _convert(key_tp, k, where): _convert(val_tp, v, _join(where, str(k)))
            for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where}: expected true/false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        # PyYAML (YAML 1.1) reads `1e-3` (no dot) as a string; it is a number to people
        if isinstance(value, str) and _YAML_FLOAT.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(f"{where}: expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"config engine cannot handle {tp} at {where}")  # programming error
