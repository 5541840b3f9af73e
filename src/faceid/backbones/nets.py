"""The backbones' networks (torch): L2-normalised 512-d embeddings on a standardised
neck. faceid.backbones.registry holds the registry (names, weight sets, stages, sizes) without
torch, so validating params needs no torch; it builds these through BackboneSpec.build.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from facenet_pytorch import InceptionResnetV1
from torch import nn
from torchvision.models import resnet50

from faceid.backbones.registry import EMBEDDING_SIZE

__all__ = ["InceptionResnetV1Embedding", "ResNet50Embedding"]


class _Standardized(nn.Module):
    """Pooled features are standardised before the embedding layer: (f - mean) / std.

    Identity (0 / 1) unless `set_feature_statistics` is called, which a neck trained from
    scratch needs: a random trunk's pooled features share one dominant direction (cosine
    0.9999 between any two faces), and an embedding layer fed them raw spends its training
    chasing that offset through a lagging BatchNorm mean. The buffers travel in state_dict.
    """

    def _init_statistics(self, size: int) -> None:
        self.register_buffer("feature_mean", torch.zeros(size))
        self.register_buffer("feature_std", torch.ones(size))

    def set_feature_statistics(self, features: torch.Tensor) -> None:
        """Set mean / std from (N, D) features (any float dtype; computed in float64)."""
        features = features.to(torch.float64)
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp_min(1e-6))

    def has_feature_statistics(self) -> bool:
        return bool(self.feature_mean.any() or (self.feature_std != 1).any())

    def _standardize(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.feature_mean) / self.feature_std


class ResNet50Embedding(_Standardized):
    """torchvision ResNet50 with fc replaced by dropout → Linear(2048→512) → BatchNorm1d."""

    def __init__(self, dropout: float):
        super().__init__()
        self.net = resnet50(weights=None)
        self.net.fc = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(self.net.fc.in_features, EMBEDDING_SIZE),
            nn.BatchNorm1d(EMBEDDING_SIZE),
        )
        self._init_statistics(self.net.fc[1].in_features)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 2048) pooled trunk features: everything before the embedding layer."""
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(images))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return torch.flatten(n.avgpool(x), 1)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net.fc(self._standardize(features)).float(), dim=1)  # (N, 512), L2-normalised

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.features(images))


class InceptionResnetV1Embedding(_Standardized):
    """facenet-pytorch InceptionResnetV1 (classify=False already L2-normalises)."""

    def __init__(self, dropout: float):
        super().__init__()
        self.net = InceptionResnetV1(pretrained=None, classify=False, dropout_prob=dropout)
        self._init_statistics(self.net.last_linear.in_features)

    _TRUNK = (
        "conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b",
        "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8", "avgpool_1a",
    )  # fmt: skip  # InceptionResnetV1.forward's order, up to the embedding layer

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1792) pooled trunk features: everything before the embedding layer."""
        x = images
        for name in self._TRUNK:
            x = getattr(self.net, name)(x)
        return torch.flatten(x, 1)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        n = self.net
        # normalise in fp32: under bf16 autocast a bf16 normalize loses the margin's scale
        x = n.dropout(self._standardize(features))
        return F.normalize(n.last_bn(n.last_linear(x)).float(), dim=1)  # (N, 512)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.features(images))
