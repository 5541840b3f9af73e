"""Embedding backbones: a registry of builders returning L2-normalised 512-d embeddings.

Every backbone takes float images (N, 3, H, W) normalised with (x - 127.5) / 128 and
returns (N, 512) L2-normalised embeddings. Pretrained weights come from a file written by
the weights stage (data/weights/<backbone>.pt); constructors never download.

Backbones are split into named *stages* (stem first) so that the leading ones can be
frozen: `freeze_stages(model, spec, 2)` or `freeze_stages(model, spec, "repeat_1")`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceid.config.weights import WeightSource
from faceid.errors import FaceidError

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch loads when a network is built (faceid.backbones.nets), not on import: the params
# checks read this registry, and `faceid check-params` took 8 s importing torch for it

__all__ = [
    "BACKBONES",
    "EMBEDDING_SIZE",
    "BackboneError",
    "BackboneSpec",
    "WeightSource",
    "build_backbone",
    "freeze_batchnorm",
    "freeze_stages",
    "get_spec",
    "load_pretrained",
    "neck_parameters",
    "network",
]

EMBEDDING_SIZE = 512


class BackboneError(FaceidError, ValueError):
    """A backbone name, init or weights file that does not fit."""


@dataclass(frozen=True)
class BackboneSpec:
    """Everything about one backbone: adding a backbone is its network class (in
    faceid.backbones.nets) and one entry in BACKBONES (and its name in params.yaml's
    train.backbones with a train.backbone.<name> block)."""

    name: str
    # dropout -> module with `net`, `features`, `embed_features` (`network("ClassName")`
    # for a class of faceid.backbones.nets)
    build: Callable[[float], nn.Module]
    # pretrained weight sets (besides "none"): init name -> the original file
    weights: Mapping[str, WeightSource]
    # parameter-name prefixes of an original checkpoint's classifier: dropped when
    # loading, and (if `net` has such a layer) the new embedding head a checkpoint lacks
    classifier_prefixes: tuple[str, ...]
    # named stages in forward order, each a tuple of attribute names of `net`
    stages: tuple[tuple[str, tuple[str, ...]], ...]
    min_image_size: int  # smaller inputs collapse to an empty feature map
    # attribute names of `net` forming the embedding layer (pooled features -> 512-d):
    # trained alone on cached features in the neck phase
    neck: tuple[str, ...]
    feature_size: int  # width of the pooled features the neck takes

    @property
    def inits(self) -> tuple[str, ...]:
        """The pretrained weight sets' names (train.backbone.<name>.init besides none)."""
        return tuple(self.weights)

    def adapt_weights(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An original checkpoint -> state dict of `net` (without the classifier)."""
        return {k: v for k, v in state.items() if not k.startswith(self.classifier_prefixes)}


_FACENET = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"


def network(class_name: str) -> Callable[[float], nn.Module]:
    """The builder of faceid.backbones.nets.<class_name>(dropout): torch is imported when
    it is called, not when the registry is read."""

    def build(dropout: float) -> nn.Module:
        from faceid.backbones import nets

        return getattr(nets, class_name)(dropout)

    build.__qualname__ = build.__name__ = class_name
    return build


def __getattr__(name: str) -> Any:
    """The network classes, imported (with torch) on first use: `faceid.backbones.registry.ResNet50Embedding`."""
    if name in {spec.build.__name__ for spec in BACKBONES.values()}:
        from faceid.backbones import nets

        return getattr(nets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


BACKBONES: dict[str, BackboneSpec] = {
    "inception_resnet_v1": BackboneSpec(
        name="inception_resnet_v1",
        build=network("InceptionResnetV1Embedding"),
        weights={
            "vggface2": WeightSource(_FACENET + "20180402-114759-vggface2.pt", "20180402-114759-vggface2.pt"),
            "casia-webface": WeightSource(
                _FACENET + "20180408-102900-casia-webface.pt", "20180408-102900-casia-webface.pt"
            ),
        },
        # the facenet checkpoints carry the 8631/10575-class training classifier
        classifier_prefixes=("logits.",),
        stages=(
            ("stem", ("conv2d_1a", "conv2d_2a", "conv2d_2b", "conv2d_3b", "conv2d_4a", "conv2d_4b")),
            ("repeat_1", ("repeat_1",)),
            ("repeat_2", ("mixed_6a", "repeat_2")),
            ("repeat_3", ("mixed_7a", "repeat_3")),
            ("block8", ("block8",)),
        ),
        min_image_size=80,
        neck=("last_linear", "last_bn"),
        feature_size=1792,
    ),
    "resnet50": BackboneSpec(
        name="resnet50",
        build=network("ResNet50Embedding"),
        weights={
            "imagenet": WeightSource(
                "https://download.pytorch.org/models/resnet50-11ad3fa6.pth", "resnet50-11ad3fa6.pth", "11ad3fa6"
            ),
        },
        # ImageNet's 1000-class fc is replaced by the embedding head (fc.1 / fc.2)
        classifier_prefixes=("fc.",),
        stages=(
            ("stem", ("conv1", "bn1")),
            ("layer1", ("layer1",)),
            ("layer2", ("layer2",)),
            ("layer3", ("layer3",)),
            ("layer4", ("layer4",)),
        ),
        min_image_size=32,
        neck=("fc",),
        feature_size=2048,
    ),
}


def get_spec(name: str) -> BackboneSpec:
    """The registry entry for `name`; an unknown name lists the choices."""
    if name not in BACKBONES:
        raise BackboneError(
            f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}"
        )
    return BACKBONES[name]


def build_backbone(name: str, init: str, weights: str | Path | None = None, *, dropout: float) -> nn.Module:
    """A backbone with `init` weights ("none" = random) read from the file `weights`;
    `init` and `dropout` are a run's (train.backbone.<name>.init, train.common.dropout)."""
    spec = get_spec(name)
    model = spec.build(dropout)
    if init == "none":
        return model
    if init not in spec.inits:
        raise BackboneError(
            f"backbone {name}: unknown init {init!r}; valid: {', '.join((*spec.inits, 'none'))}"
        )
    if weights is None:
        raise BackboneError(
            f"backbone {name}: init {init!r} needs a weights file; run `dvc repro weights` "
            "or set init: none"
        )
    load_pretrained(model, spec, weights)
    return model


def load_pretrained(model: nn.Module, spec: BackboneSpec, path: str | Path) -> None:
    """Load a converted weights file (data/weights/<backbone>.pt) into `model.net`."""
    path = Path(path)
    if not path.exists():
        raise BackboneError(
            f"{path}: no weights file for {spec.name}; run `dvc repro weights@{spec.name}` "
            "or set train.backbone.<name>.init: none"
        )
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not state:
        raise BackboneError(
            f"{path}: is the empty marker written for init: none, but pretrained weights "
            f"were asked for; rerun `dvc repro weights@{spec.name}`"
        )
    missing, unexpected = model.net.load_state_dict(spec.adapt_weights(state), strict=False)
    # only a new embedding head in the classifier's place may be missing (resnet50: fc.*)
    missing = [k for k in missing if not k.startswith(spec.classifier_prefixes)]
    if missing or unexpected:
        raise BackboneError(
            f"{path}: does not fit {spec.name}: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}; rerun the weights stage for this backbone"
        )


def _stage_count(spec: BackboneSpec, frozen: int | str) -> int:
    names = [name for name, _ in spec.stages]
    if isinstance(frozen, str):
        if frozen not in names:
            raise BackboneError(
                f"backbone {spec.name}: unknown stage {frozen!r} to freeze; valid: {', '.join(names)}"
            )
        return names.index(frozen) + 1
    if not 0 <= frozen <= len(names):
        raise BackboneError(
            f"backbone {spec.name}: frozen_blocks {frozen} out of range 0..{len(names)}"
        )
    return frozen


def freeze_stages(model: nn.Module, spec: BackboneSpec, frozen: int | str) -> list[str]:
    """Stop gradients in the leading stages (a count, or the last frozen stage's name).

    Frozen stages also keep their BatchNorm statistics (see freeze_batchnorm). Returns the
    names of the frozen stages.
    """
    count = _stage_count(spec, frozen)
    frozen_names = []
    for name, attributes in spec.stages[:count]:
        for attribute in attributes:
            for parameter in getattr(model.net, attribute).parameters():
                parameter.requires_grad_(False)
        frozen_names.append(name)
    return frozen_names


def freeze_batchnorm(model: nn.Module, spec: BackboneSpec, frozen: int | str, all_bn: bool) -> None:
    """Put BatchNorm layers in eval mode: all of them, or those in the frozen stages.

    Call after every model.train(): train() switches them back. Small fine-tuning subsets
    give noisy batch statistics that drift the pretrained running means.
    """
    if all_bn:
        modules = [model]
    else:
        count = _stage_count(spec, frozen)
        modules = [getattr(model.net, a) for _, attrs in spec.stages[:count] for a in attrs]
    from torch import nn

    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.eval()


def neck_parameters(model: nn.Module, spec: BackboneSpec) -> list[nn.Parameter]:
    """The embedding layer's parameters (see BackboneSpec.neck)."""
    return [p for name in spec.neck for p in getattr(model.net, name).parameters()]
