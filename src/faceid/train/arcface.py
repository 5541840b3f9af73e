"""ArcFace additive angular margin head (Deng et al., 2019).

For an L2-normalised embedding x and class weights W (rows L2-normalised), cos θ_j = W_j·x.
The logit of the true class y is s·cos(θ_y + m), every other logit is s·cos θ_j; the
cross-entropy of these logits is the ArcFace loss.

Beyond θ_y > π − m, cos(θ_y + m) would rise again as θ_y grows (cos is not monotonic past
π), rewarding the model for moving *away* from its class. There we use
cos θ_y − m·sin m instead (insightface's choice), which keeps the target logit
non-increasing in θ_y everywhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ArcFaceHead", "arcface_logits"]


def arcface_logits(
    cosine: torch.Tensor, labels: torch.Tensor, margin: float, scale: float, eps: float = 1e-6
) -> torch.Tensor:
    """Logits (N, C) from cosines (N, C) and labels (N,): margin on the true class only."""
    cosine = cosine.float()
    # acos has an infinite derivative at ±1: clamp first so gradients stay finite
    target = cosine.gather(1, labels[:, None]).clamp(-1.0 + eps, 1.0 - eps)  # (N, 1)
    theta = torch.acos(target)
    with_margin = torch.where(
        theta + margin <= math.pi,
        torch.cos(theta + margin),
        target - margin * math.sin(margin),
    )
    logits = cosine.scatter(1, labels[:, None], with_margin)
    return logits * scale


class ArcFaceHead(nn.Module):
    """Class-weight matrix (C, D) and the ArcFace logits; always computed in fp32."""

    def __init__(self, embedding_size: int, n_classes: int, margin: float, scale: float):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"ArcFace needs at least 2 classes, got {n_classes}")
        self.margin = margin
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(n_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """cos θ (N, C) between embeddings (N, D) and every class centre."""
        # bf16 cosines near 1 lose the margin's effect entirely (3 significant digits)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return F.linear(
                F.normalize(embeddings.float(), dim=1), F.normalize(self.weight.float(), dim=1)
            )

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits (N, C), fp32, for F.cross_entropy."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return arcface_logits(self.cosine(embeddings), labels, self.margin, self.scale)
