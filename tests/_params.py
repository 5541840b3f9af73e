"""Params for tests, always starting from the repository's params.yaml.

The schema's dataclasses hold no default values (params.yaml is the one source of
them), so a test builds a section as params.yaml's, changed only where it says:

    repo_params()                          params.yaml as a dict (a fresh deep copy)
    section(CropParams, margin=8)          a section, or a nested block found at one place
                                           of the schema (SyntheticParams, TrainCommonParams,
                                           BootstrapParams, ...), with top-level fields replaced
    write_params(path, {"crop": {"margin": 8}})   params.yaml deep-merged with overrides
    write_params(path, edit)               params.yaml as a dict, edited in place by edit(d)

write_params merges as `faceid profile` does (faceid.config.profile.merge_overrides): a
mapping merges key by key, anything else replaces, and an override of a key params.yaml
does not have is an error (use a callable to write a deliberately wrong file).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from faceid.config.engine import load_sections
from faceid.config.profile import merge_overrides
from faceid.config.whole import Params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"

__all__ = ["PARAMS", "ROOT", "repo_params", "section", "write_params"]


@functools.cache
def _parsed() -> dict[str, Any]:
    return yaml.safe_load(PARAMS.read_text())


def repo_params() -> dict[str, Any]:
    """The repository's params.yaml as a dict (a deep copy: edit it freely)."""
    return copy.deepcopy(_parsed())


def _paths(cls: type, tp: type = Params, where: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every place of the schema (field names from Params down) holding a `cls`."""
    found = []
    for name, hint in typing.get_type_hints(tp).items():
        if hint is cls:
            found.append((*where, name))
        elif dataclasses.is_dataclass(hint):
            found += _paths(cls, hint, (*where, name))
    return found


@functools.cache
def _repo_section(cls: type) -> Any:
    paths = _paths(cls)
    if len(paths) != 1:
        raise TypeError(f"{cls.__name__} is at {len(paths)} places of the schema; build it from its section")
    top, *rest = paths[0]
    value = load_sections(PARAMS, typing.get_type_hints(Params)[top])[0]
    for name in rest:
        value = getattr(value, name)
    return value


def section(cls: type, **changes: Any) -> Any:
    """params.yaml's `cls` (a section or a block at one place of the schema), with
    top-level field replacements; nested blocks via dataclasses.replace by the caller."""
    return dataclasses.replace(_repo_section(cls), **changes)


def write_params(path: str | Path, overrides: Mapping[str, Any] | Callable[[dict], Any] | None = None) -> Path:
    """Write params.yaml deep-merged with `overrides` (or edited by it, a callable) to `path`."""
    data = repo_params()
    if callable(overrides):
        overrides(data)
    elif overrides:
        merge_overrides(data, overrides)
    path = Path(path)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
