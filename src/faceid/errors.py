"""The project's own error type and the wrapper that turns it into one line for people.

Every error a user can cause and fix (a bad param, a missing or corrupt input file, a
checksum mismatch, weights unavailable offline, an empty evaluation cell …) is a
`FaceidError`. Stages and the `faceid` command run their `main` through `run_cli`: a
FaceidError becomes `error: <message>` on stderr and exit status 1, without a
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = [
    "EXIT_USER_ERROR",
    "DeviceUnavailableError",
    "FaceidError",
    "MissingInputError",
    "format_error",
    "run_cli",
]

EXIT_USER_ERROR = 1


class FaceidError(Exception):
    """An error in the user's inputs or setup, with a message saying what to do."""


class MissingInputError(FaceidError, FileNotFoundError):
    """A file the project expects (a model, a gallery, an upstream output) is missing."""


class DeviceUnavailableError(FaceidError, RuntimeError):
    """A params `device: cuda` on a machine where torch sees no CUDA device."""


def format_error(exc: BaseException) -> str:
    """`error: <message>` on one line (multi-line messages stay, indented)."""
    message = str(exc) or type(exc).__name__
    return "error: " + message.replace("\n", "\n  ")


def run_cli(main: Callable[[], Any]) -> None:
    """Run a stage's or command's `main()` and exit: 0, its int status, or 1 with one
    `error:` line for a FaceidError. Use as `if __name__ == "__main__": run_cli(main)`."""
    try:
        status = main()
    except FaceidError as exc:
        print(format_error(exc), file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)
