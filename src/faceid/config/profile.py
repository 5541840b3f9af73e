"""Profiles: a study's overrides (configs/<name>.yaml) deep-merged into params.yaml.

A profile holds only what differs from params.yaml, so it can never fall behind a new
param. `apply_profile` (the command `faceid profile <name>`) writes params.yaml as the
deep merge of the current params.yaml and the overrides: a mapping merges key by key,
any other value (a list, a number, null) replaces the one in params.yaml. Every key of
a profile must already exist in params.yaml (in the override blocks train.task_defaults
and train.task.<name>, any key the schema knows). params.yaml's comments and layout are kept
(a round-trip YAML edit); the merged file is validated before it replaces the old one.

A profile never drops the user's own data: where params.yaml reads a real source
(`dataset.source: local` or `celeba`), the profile's dataset source keys (SOURCE_KEYS)
are left out, unless the profile is about the source alone (a `dataset` section only).
What the merge changed, and what it kept, is logged key by key.
"""

from __future__ import annotations

import copy
import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from faceid.common.fileio import atomic_write
from faceid.config.engine import ParamsError
from faceid.config.whole import load_all_params

__all__ = ["apply_profile", "merge_overrides", "profile_path"]

PROFILES_DIR = Path("configs")
# override blocks: params.yaml sets only some of their keys, so a profile may set others
# (or add a task's block); the merged file's validation still rejects unknown keys
OPEN_BLOCKS = ("train.task_defaults", "train.task")
# where the data comes from: kept from params.yaml when it names a real source
SOURCE_KEYS = ("source", "layout", "local_dir", "local_mode", "mirror_url")

log = logging.getLogger(__name__)


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: comments, key order and flow style survive
    yaml.preserve_quotes = True
    yaml.width = 120
    # null stays ruamel's empty value, as params.yaml writes it: the layout DVC's own writer
    # (`dvc exp run -S`) keeps. (add_representer would also change ruamel's class for every
    # later writer in the process, DVC's included.)
    return yaml


def profile_path(name: str | Path, profiles_dir: str | Path = PROFILES_DIR) -> Path:
    """configs/<name>.yaml for a bare name, else the path as given."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(profiles_dir) / f"{name}.yaml"
    if not path.is_file():
        found = sorted(p.stem for p in Path(profiles_dir).glob("*.yaml"))
        raise ParamsError(f"{path}: no such profile; profiles in {profiles_dir}: {', '.join(found) or 'none'}")
    return path


def merge_overrides(
    base: Any, overrides: Mapping[str, Any], where: str = "", changes: list[str] | None = None
) -> None:
    """Deep-merge `overrides` into the mapping `base` in place; an unknown key is an error.
    Each value that changes is described in `changes` ("key: old -> new"), when given."""
    for key, value in overrides.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in base and not where.startswith(OPEN_BLOCKS):
            raise ParamsError(
                f"{dotted}: not a key of params.yaml, so this override would set nothing known; "
                "fix its spelling, or add the key to params.yaml first"
            )
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            merge_overrides(base[key], value, dotted, changes)
        else:
            if changes is not None and base.get(key) != value:
                changes.append(f"{dotted}: {base.get(key)!r} -> {value!r}")
            base[key] = value


def keep_real_source(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(`overrides` without its dataset source keys where params.yaml (`base`) reads a
    real source and the profile is not about the source alone, the keys left out)."""
    dataset = base.get("dataset") or {}
    wanted = overrides.get("dataset") or {}
    if dataset.get("source") == "synthetic" or set(overrides) == {"dataset"} or not isinstance(wanted, Mapping):
        return dict(overrides), []
    kept = [k for k in SOURCE_KEYS if k in wanted and wanted[k] != dataset.get(k)]
    trimmed = copy.deepcopy(dict(overrides))
    for key in kept:
        del trimmed["dataset"][key]
    return trimmed, [f"dataset.{k}: kept {dataset.get(k)!r} (the profile's {wanted[k]!r} is for the embedded "
                     "dataset; set it in params.yaml to change the source)" for k in kept]  # fmt: skip


def apply_profile(
    name: str | Path, params: str | Path = "params.yaml", profiles_dir: str | Path = PROFILES_DIR
) -> Path:
    """Write `params` as itself deep-merged with the profile's overrides; returns the profile's path."""
    path, params = profile_path(name, profiles_dir), Path(params)
    if not params.is_file():
        raise ParamsError(f"{params}: no such params file; run from the project root")
    yaml = _yaml()
    base = yaml.load(params.read_text())
    overrides, kept = keep_real_source(base, yaml.load(path.read_text()) or {})
    changes: list[str] = []
    try:
        merge_overrides(base, overrides, changes=changes)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from exc
    text = io.StringIO()
    yaml.dump(base, text)

    def write(tmp: Path) -> None:
        tmp.write_text(text.getvalue())
        load_all_params(tmp)  # the merged file is valid, or params.yaml stays as it was

    atomic_write(params, write, suffix=".yaml")
    for line in kept:
        log.warning("%s: %s", params, line)
    log.info("%s: %d value(s) changed by %s%s", params, len(changes), path, "".join(f"\n  {c}" for c in changes))
    return path
