"""Which torch device a stage runs on: one rule for every stage and the demo."""

from __future__ import annotations

import torch

from faceid.errors import DeviceUnavailableError

__all__ = ["DEVICE_CHOICES", "select_device"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def select_device(choice: str, key: str = "device", local_rank: int = 0) -> torch.device:
    """`auto` → CUDA when torch sees a GPU, else CPU; `cuda` without one is an error naming `key`.

    Under torchrun each process takes the GPU of its `local_rank` (cuda:LOCAL_RANK).
    """
    if choice not in DEVICE_CHOICES:
        raise DeviceUnavailableError(f"{key}: expected one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise DeviceUnavailableError(f"{key} is 'cuda' but torch sees no CUDA device; set {key} to auto or cpu")
    if local_rank >= count:
        raise DeviceUnavailableError(
            f"{key}: process LOCAL_RANK {local_rank} but only {count} CUDA devices on this node; "
            f"launch at most --nproc_per_node={count}"
        )
    return torch.device("cuda", local_rank)
