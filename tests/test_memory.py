"""faceid.common.memory: the heap kept for the next batch (features stage) and handed back
(crop stage, demo server), measured by the page faults and resident memory of a child."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

_CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from faceid.common.memory import release_heap, retain_heap
    applied = retain_heap() if sys.argv[1] == "retain" else None
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    before = faults()
    for _ in range(40):  # a batch's activations: a few mid-size arrays, allocated and freed
        layers = [np.ones(1 << 20) for _ in range(6)]  # 6 x 8 MB
        del layers
    during = faults() - before
    release_heap()
    print(json.dumps({"applied": applied, "faults": during}))
""")


def _child(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_a_retained_heap_faults_in_each_batch_once_not_every_time():
    plain, retained = _child("plain"), _child("retain")
    assert retained["applied"] is True
    # 40 batches x 48 MB (12k pages of 4 KB): by default glibc hands freed arrays back and
    # faults fresh pages in again, batch after batch (measured: 122k faults); with the heap
    # kept, a batch's pages fault in once (3k)
    assert plain["faults"] > 4 * 12_000, plain
    assert retained["faults"] < plain["faults"] / 10, (plain, retained)
