"""The typed-YAML engine: a params file's sections → frozen dataclasses, strictly.

A section class is a frozen dataclass with a class attribute `SECTION` (its top-level
key). `load_sections(path, CropParams, DatasetParams)` reads the file once and builds
only the sections asked for (plus those a section `REQUIRES` for its cross-section
rules), so a stage validates exactly what it reads. An unknown, missing or mistyped key
is a `ParamsError` naming the file and the dotted key, what was expected and (for
unknown keys and choices) the valid options.

The params file sets every key: the dataclasses hold types and value rules, no default
values. The exceptions say why where they are: the override blocks
(faceid.config.train.TrainTaskParams), where a key left out means "inherit", and
WeightSource.sha256, which the backbone registry leaves out.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from faceid.errors import FaceidError

__all__ = [
    "TRACE_ENV", "ParamsError", "check_at_least", "from_mapping",
    "load_all", "load_keys", "load_sections", "read_params",
]  # fmt: skip

# With this variable set to a file, every process appends the params keys it read (one JSON
# line: argv and keys) when it exits: tools/stage_deps.py checks them against dvc.yaml.
TRACE_ENV = "FACEID_PARAMS_TRACE"


class ParamsError(FaceidError, ValueError):
    """A params.yaml value that does not fit its schema."""


def check_at_least(key: str, value: int, least: int) -> None:
    if value < least:
        raise ParamsError(f"{key}: expected an integer >= {least}, got {value!r}")


def read_params(path: str | Path) -> dict[str, Any]:
    """The parsed params file: a mapping of sections."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: no such params file; run from the project root")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ParamsError(f"{path}: expected a mapping of sections at top level")
    return dict(data)


def load_sections(path: str | Path, *classes: type) -> tuple[Any, ...]:
    """The sections `classes` of the params file at `path`, validated, in that order.

    A class's `REQUIRES` (section classes its cross-section rules read) are built too;
    its `validate(sections)` method, if any, then runs with every section built so far
    by name. A section absent from the file is an error naming it.
    """
    data = read_params(path)
    built: dict[str, Any] = {}
    _TRACE.loading += 1  # reads by validation rules decide whether a stage runs, not what it computes

    def build(cls: type) -> Any:
        name = cls.SECTION
        if name not in built:
            for required in getattr(cls, "REQUIRES", ()):
                build(required)
            if name not in data:
                raise ParamsError(f"{name}: missing section; {_ADD_IT}")
            section = from_mapping(cls, data[name] or {}, name)
            if hasattr(section, "validate"):
                section.validate(built)
            built[name] = section
        return built[name]

    try:
        return tuple(build(cls) for cls in classes)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from exc
    finally:
        _TRACE.loading -= 1


def load_keys(path: str | Path, cls: type, section: str) -> Any:
    """Dataclass `cls` built from its keys alone of `section` in the params file at `path`
    (e.g. train.tasks without the rest of train); a missing key is an error naming it."""
    data = read_params(path).get(section)
    names = [f.name for f in dataclasses.fields(cls)]
    given = {k: data[k] for k in names if k in data} if isinstance(data, Mapping) else {}
    _TRACE.loading += 1
    try:
        return from_mapping(cls, given, section)
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from exc
    finally:
        _TRACE.loading -= 1


def load_all(path: str | Path, cls: type, *, only_these: bool) -> Any:
    """Aggregate dataclass `cls`, whose fields are section classes, from the file at `path`.

    only_these: a top-level key that is no field of `cls` is an error (the whole-file
    check); otherwise other sections are left to the code that reads them.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    if only_these:
        for key in read_params(path):
            if key not in names:
                raise ParamsError(f"{path}: unknown key {key!r}; valid keys: {', '.join(names)}")
    return cls(*load_sections(path, *(hints[name] for name in names)))


def from_mapping(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from `data`, strictly. `where` is the dotted key prefix."""
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where or 'params'}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ParamsError(f"unknown key {_join(where, str(key))!r}; valid keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(where, name))
            _check_number(name, kwargs[name], _join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{_join(where, name)}: missing; {_ADD_IT}")
    if _TRACE.loading and os.environ.get(TRACE_ENV):  # a params file's section (not, e.g., a run record)
        return _TRACE.traced(cls, kwargs, where)
    return cls(**kwargs)


class _Trace:
    """Which params keys this process reads (only while FACEID_PARAMS_TRACE is set).

    A traced section is an instance of a subclass of its dataclass that records, on every
    read of a field that holds a value rather than another section, the field's dotted key
    (`train.common.device`; an element of a list of sections records the list's key).
    """

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.loading = 0
        self.classes: dict[type, type] = {}
        self.registered = False

    def traced(self, cls: type, kwargs: dict[str, Any], where: str) -> Any:
        sub = self.classes.get(cls)
        if sub is None:
            sub = self.classes[cls] = type(cls.__name__, (cls,), {
                "__getattribute__": _traced_getattribute, "__reduce__": _untraced_reduce,
                "__eq__": _plain_eq, "__hash__": cls.__hash__,
                "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            })  # fmt: skip
        obj = sub(**kwargs)
        object.__setattr__(obj, "_params_key", re.sub(r"\[.*", "", where))
        return obj

    def record(self, key: str) -> None:
        if self.loading:
            return
        self.keys.add(key)
        if not self.registered:
            self.registered = True
            atexit.register(self.flush)

    def flush(self) -> None:
        path = os.environ.get(TRACE_ENV)
        if path and self.keys:
            line = json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "keys": sorted(self.keys)}) + "\n"
            with open(path, "a") as f:
                f.write(line)
            self.keys.clear()


_TRACE = _Trace()


def _traced_getattribute(self: Any, name: str) -> Any:
    value = object.__getattribute__(self, name)
    if name in type(self).__dataclass_fields__ and not _holds_sections(value):
        where = object.__getattribute__(self, "__dict__").get("_params_key")
        if where is not None:  # None: still in __init__/__post_init__ (loading)
            _TRACE.record(_join(where, name))
    return value


def _holds_sections(value: Any) -> bool:
    """A section, or a non-empty mapping or list of them: reads below it record themselves."""
    if dataclasses.is_dataclass(value):
        return True
    items = value.values() if isinstance(value, dict) else value if isinstance(value, tuple) else None
    return bool(items) and all(dataclasses.is_dataclass(v) for v in items)


def _plain(obj: Any) -> type:
    return type(obj).__mro__[1] if type(obj).__getattribute__ is _traced_getattribute else type(obj)


def _plain_eq(self: Any, other: Any) -> bool:
    """Equal to the same values in the plain class too: tracing changes no comparison."""
    if _plain(other) is not _plain(self):
        return NotImplemented
    names = [f.name for f in dataclasses.fields(self) if f.compare]
    return all(getattr(self, n) == getattr(other, n) for n in names)


def _untraced_reduce(self: Any) -> tuple:
    """Pickle (e.g. to a worker process) as the plain section class."""
    base = type(self).__mro__[1]
    state = {k: v for k, v in object.__getattribute__(self, "__dict__").items() if k != "_params_key"}
    return (_rebuild, (base, state))


def _rebuild(cls: type, state: dict[str, Any]) -> Any:
    obj = object.__new__(cls)
    obj.__dict__.update(state)
    return obj


def _check_number(name: str, value: Any, where: str) -> None:
    """Rules for every numeric key: finite; a seed >= 0 (numpy's SeedSequence and torch
    take no negative seed: the stage would die in a traceback otherwise)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"{where}: expected a finite number, got {value!r}")
    if name.endswith("seed") and isinstance(value, int) and not isinstance(value, bool) and value < 0:
        raise ParamsError(f"{where}: expected an integer >= 0, got {value!r}")


_ADD_IT = "add it (the project's params.yaml lists every key with its meaning)"
_YAML_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _convert(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    converter = _CONVERTERS.get(get_origin(tp)) or _SCALARS.get(tp)
    if converter is None:
        raise TypeError(f"config engine cannot handle {tp} at {where}")  # programming error
    return converter(tp, value, where)


def _union(tp: Any, value: Any, where: str) -> Any:
    args = get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(arg, value, where)
        except ParamsError as exc:
            errors.append(str(exc))
    raise ParamsError(errors[0] if len(errors) == 1 else f"{where}: {_describe(value)} fits none of {tp}")


def _literal(tp: Any, value: Any, where: str) -> Any:
    choices = get_args(tp)
    if value not in choices:
        raise ParamsError(f"{where}: {value!r} is not a valid choice; valid: {', '.join(map(str, choices))}")
    return value


def _tuple(tp: Any, value: Any, where: str) -> tuple:
    args = get_args(tp)
    if not isinstance(value, list | tuple):
        raise ParamsError(f"{where}: expected a list, got {_describe(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ParamsError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
    return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))


def _dict(tp: Any, value: Any, where: str) -> dict:
    key_tp, val_tp = get_args(tp)
    if not isinstance(value, Mapping):
        raise ParamsError(f"{where}: expected a mapping, got {_describe(value)}")
    return {_convert(key_tp, k, where): _convert(val_tp, v, _join(where, str(k))) for k, v in value.items()}


def _bool(tp: Any, value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ParamsError(f"{where}: expected true/false, got {_describe(value)}")
    return value


def _int(tp: Any, value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamsError(f"{where}: expected an integer, got {_describe(value)}")
    return value


def _float(tp: Any, value: Any, where: str) -> float:
    # PyYAML (YAML 1.1) reads `1e-3` (no dot) as a string; it is a number to people
    if isinstance(value, str) and _YAML_FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamsError(f"{where}: expected a number, got {_describe(value)}")
    return float(value)


def _str(tp: Any, value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ParamsError(f"{where}: expected a string, got {_describe(value)}")
    return value


_Converter = Callable[[Any, Any, str], Any]
_CONVERTERS: dict[Any, _Converter] = {
    Union: _union, types.UnionType: _union, Literal: _literal, tuple: _tuple, dict: _dict,
}  # fmt: skip
_SCALARS: dict[Any, _Converter] = {bool: _bool, int: _int, float: _float, str: _str}
