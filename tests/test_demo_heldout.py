import numpy as np
import pytest

from faceid.demo.gallery import GalleryError, build_gallery
from faceid.demo.heldout import heldout_identification


def _gallery(embeddings, names):
    return build_gallery(np.asarray(embeddings, np.float32), names, [f"{i}.jpg" for i in range(len(names))], {})


def test_heldout_rates_follow_the_demo_rule():
    # two photos each; carol's two photos look nothing alike (one looks like alice), so
    # whichever is held back, she is not ranked first; alice and bob are
    axes = np.eye(4, dtype=np.float32)
    rows = [axes[0], axes[0], axes[1], axes[1], axes[3], axes[0]]
    names = ["alice", "alice", "bob", "bob", "carol", "carol"]
    result = heldout_identification(_gallery(rows, names), threshold=0.9, score="max", seed=0)
    assert (result["identities"], result["held_back"], result["enrolled"]) == (3, 3, 3)
    assert result["rank1"] == pytest.approx(2 / 3) and result["top5"] == 1.0
    assert result["named_rate"] == pytest.approx(2 / 3)  # both right names are at 1.0 > 0.9


def test_threshold_makes_names_unknown():
    axes = np.eye(3, dtype=np.float32)
    rows = [axes[0], axes[0] * 0.8 + axes[2] * 0.6, axes[1], axes[1]]
    names = ["alice", "alice", "bob", "bob"]
    low = heldout_identification(_gallery(rows, names), threshold=0.5, score="max", seed=0)
    high = heldout_identification(_gallery(rows, names), threshold=0.95, score="max", seed=0)
    assert low["rank1"] == high["rank1"] == 1.0
    assert low["unknown_rate"] == 0.0 and low["named_rate"] == 1.0
    assert high["unknown_rate"] == 0.5 and high["named_rate"] == 0.5  # alice's pair is at 0.8


def test_no_identity_with_two_photos_is_an_error():
    with pytest.raises(GalleryError, match="nothing to hold back"):
        heldout_identification(_gallery(np.eye(2), ["a", "b"]), threshold=0.5, score="max", seed=0)
