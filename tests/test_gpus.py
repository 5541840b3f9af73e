"""faceid.common.gpus: parallel queue workers each claim a GPU of FACEID_GPUS."""

from __future__ import annotations

import os

import pytest

from faceid.common import gpus
from faceid.common.gpus import GpuClaimError, claim_gpu, claim_gpu_from_env


def test_gpu_claims_are_exclusive_and_narrow_the_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setattr(gpus, "_claims", [])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    try:
        assert claim_gpu_from_env({}) is None
        env = {"FACEID_GPUS": "2, 0", "FACEID_GPU_LOCKS": str(tmp_path)}
        assert claim_gpu_from_env(env) == "2" and os.environ["CUDA_VISIBLE_DEVICES"] == "2"
        assert claim_gpu_from_env(env) == "0"  # 2 is held (a lock per open file, even here)
        with pytest.raises(GpuClaimError, match=r"all of GPUs 2,0 stayed taken for 0 s"):
            claim_gpu(["2", "0"], tmp_path, wait_s=0)
        gpus._claims.pop(0).close()  # the first holder ends
        assert claim_gpu(["2", "0"], tmp_path, wait_s=0) == "2"
    finally:
        for handle in gpus._claims:
            handle.close()


def test_a_torchrun_process_leaves_the_choice_to_torchrun(tmp_path, monkeypatch):
    monkeypatch.setattr(gpus, "_claims", [])
    env = {"FACEID_GPUS": "0,1", "FACEID_GPU_LOCKS": str(tmp_path), "LOCAL_RANK": "1"}
    assert claim_gpu_from_env(env) is None and gpus._claims == []
