"""Progress bars that stay readable in logs.

Every tqdm bar of the project comes from `progress`: on a terminal it is tqdm as usual;
when stderr is not a terminal (`dvc repro` into a log file, CI, a queued experiment) the
bar is redrawn at most every LOG_INTERVAL_S seconds, so a long stage writes tens of
progress lines instead of thousands.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

__all__ = ["LOG_INTERVAL_S", "progress"]

LOG_INTERVAL_S = 10.0


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """`tqdm(iterable, **kwargs)`, refreshing every LOG_INTERVAL_S s when not on a terminal."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    return tqdm(iterable, **kwargs)
