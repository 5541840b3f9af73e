"""Every params key a message or docstring of src/ and stages/ names is a key of params.yaml.

An error that tells the user to change `train.common.processes` when the key is
`train.processes` sends them to edit a key the schema then rejects. Keys are found in the
string constants of the code (f-strings with their placeholders as wildcards), as dotted
names starting with a section of params.yaml; a file name (`crop.json`) or a module
path (`faceid.crop.detect`) is not a key.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from faceid.backbones.registry import BACKBONES

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())

WILDCARD = "*"
# a placeholder in prose: <name>, <task>, {backbone}
_PLACEHOLDER = re.compile(r"<[^<>]*>|\{[^{}]*\}")
_SEGMENT = r"[A-Za-z_*][A-Za-z0-9_*]*"
_KEY = re.compile(rf"(?<![\w./\-*]){_SEGMENT}(?:\.{_SEGMENT})+")
_FILE_SUFFIXES = {"py", "json", "parquet", "png", "npz", "npy", "pt", "pth", "txt", "yaml", "yml", "md", "csv",
                  "tsv", "zip", "jpg", "jpeg", "lock", "html", "css", "js", "partial", "tmp", "resume"}  # fmt: skip


def _text(node: ast.AST) -> str | None:
    """A string constant, or an f-string with each placeholder as a wildcard."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else WILDCARD for v in node.values)
    return None


def mentioned_keys(source: str) -> set[str]:
    """Dotted names beginning with a params.yaml section, in the string literals of `source`."""
    found = set()
    tree = ast.parse(source)
    inner = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    for node in ast.walk(tree):
        text = None if id(node) in inner else _text(node)
        if text is None:
            continue
        for match in _KEY.finditer(_PLACEHOLDER.sub(WILDCARD, text)):
            key = match.group(0)
            parts = key.split(".")
            if parts[0] in PARAMS and parts[-1].lower() not in _FILE_SUFFIXES:
                found.add(key)
    return found


def _children(node: Any, part: str, path: tuple[str, ...]) -> list[Any]:
    """The values under `node` that `part` (a name, a wildcard or a glob) can name."""
    if not isinstance(node, dict):
        return []
    if path == ("train", "task"):  # a task block: any task name, the keys task_defaults and common hold
        block = {**PARAMS["train"]["common"], **PARAMS["train"]["task_defaults"], "init": None}
        return [block]
    if path == ("train", "backbone") and (part == WILDCARD or part in BACKBONES):
        return list(node.values())
    if WILDCARD in part:
        return [value for name, value in node.items() if fnmatch.fnmatchcase(str(name), part)]
    return [node[part]] if part in node else []


def key_exists(key: str) -> bool:
    nodes: list[Any] = [PARAMS]
    parts = key.split(".")
    for depth, part in enumerate(parts):
        nodes = [child for node in nodes for child in _children(node, part, tuple(parts[:depth]))]
        if not nodes:
            return False
    return True


def unknown_keys(sources: dict[str, str]) -> dict[str, list[str]]:
    """file -> the keys it names that params.yaml does not have."""
    bad = {}
    for name, source in sources.items():
        missing = sorted(k for k in mentioned_keys(source) if not key_exists(k))
        if missing:
            bad[name] = missing
    return bad


def _project_sources() -> dict[str, str]:
    files = sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "stages").glob("*.py")])
    return {str(f.relative_to(ROOT)): f.read_text() for f in files}


def test_every_key_the_code_names_is_in_params_yaml():
    sources = _project_sources()
    assert sum(len(mentioned_keys(s)) for s in sources.values()) > 100  # the scan finds the keys at all
    assert unknown_keys(sources) == {}


@pytest.mark.parametrize(
    ("line", "bad"),
    [
        ('raise E("change batch_size or train.common.processes")', ["train.common.processes"]),
        ('raise E(f"set train.backbone.{name}.lr_rate")', ["train.backbone.*.lr_rate"]),
        ('raise E(f"train.task.{task}.head_lr_scale: too small")', ["train.task.*.head_lr_scale"]),
        ('"""Reads evaluate.bootstrap.n_boots."""', ["evaluate.bootstrap.n_boots"]),
    ],
)
def test_a_planted_bad_key_is_found(line, bad):
    assert unknown_keys({"planted.py": line}) == {"planted.py": bad}


@pytest.mark.parametrize(
    "line",
    [
        'raise E("change batch_size or train.processes")',
        'raise E(f"train.backbone.{name}.init: unknown; see train.backbone.<name>.frozen_blocks")',
        'raise E(f"train.task.{task}.neck_lr and train.task.orig.init")',
        '"""pairs.verification.*_per_condition pairs; writes pairs.parquet, metrics/crop.json, stages/crop.py"""',
        '"""faceid.crop.detect and faceid.train.run are modules, not keys; train.backbone.resnet50.init"""',
    ],
)
def test_real_keys_files_and_modules_pass(line):
    assert unknown_keys({"ok.py": line}) == {}
