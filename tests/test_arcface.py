import math

import pytest
import torch
import torch.nn.functional as F

from faceid.train.arcface import ArcFaceHead, arcface_logits


def test_target_logit_lowered_by_margin_others_unchanged():
    cosine = torch.tensor([[0.9, 0.1, -0.3], [0.2, 0.5, 0.7]])
    labels = torch.tensor([0, 2])
    logits = arcface_logits(cosine, labels, margin=0.5, scale=10.0)
    assert logits[0, 0].item() == pytest.approx(10 * math.cos(math.acos(0.9) + 0.5), abs=1e-4)
    assert logits[1, 2].item() == pytest.approx(10 * math.cos(math.acos(0.7) + 0.5), abs=1e-4)
    assert logits[0, 0] < 10 * 0.9
    torch.testing.assert_close(logits[0, 1:], 10 * cosine[0, 1:])
    torch.testing.assert_close(logits[1, :2], 10 * cosine[1, :2])


def test_zero_margin_is_scaled_cosine():
    cosine = torch.rand(4, 5) * 2 - 1
    logits = arcface_logits(cosine, torch.tensor([0, 1, 2, 3]), margin=0.0, scale=3.0)
    torch.testing.assert_close(logits, 3 * cosine, atol=1e-4, rtol=0)


def test_target_logit_monotonic_beyond_pi_minus_margin():
    margin = 0.5
    cos_values = torch.linspace(1.0, -1.0, 2001)
    cosine = torch.stack([cos_values, torch.zeros_like(cos_values)], dim=1)
    target = arcface_logits(cosine, torch.zeros(2001, dtype=torch.long), margin, 1.0)[:, 0]
    # θ grows along the grid, so the target logit must never increase
    assert torch.all(target[1:] <= target[:-1] + 1e-6)
    beyond = cos_values < math.cos(math.pi - margin)
    assert beyond.any()
    torch.testing.assert_close(
        target[beyond], cos_values[beyond] - margin * math.sin(margin), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("value", [1.0, -1.0])
def test_gradients_finite_at_cosine_extremes(value):
    cosine = torch.tensor([[value, 0.0]], requires_grad=True)
    loss = F.cross_entropy(arcface_logits(cosine, torch.tensor([0]), 0.5, 64.0), torch.tensor([0]))
    loss.backward()
    assert torch.isfinite(cosine.grad).all()


def test_head_gradients_finite_when_embedding_equals_class_weight():
    head = ArcFaceHead(8, 3, margin=0.5, scale=64.0)
    embeddings = head.weight.detach()[:2].clone().requires_grad_(True)
    loss = F.cross_entropy(head(embeddings, torch.tensor([0, 1])), torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(embeddings.grad).all() and torch.isfinite(head.weight.grad).all()


def test_head_is_fp32_under_autocast():
    head = ArcFaceHead(8, 3, margin=0.5, scale=64.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(torch.randn(4, 8).bfloat16(), torch.tensor([0, 1, 2, 0]))
    assert logits.dtype == torch.float32


def test_head_rejects_single_class():
    with pytest.raises(ValueError, match="at least 2 classes"):
        ArcFaceHead(8, 1, margin=0.5, scale=64.0)
