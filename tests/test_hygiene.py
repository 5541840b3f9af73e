"""The code keeps to the project's rules by construction, checked on its source:

- no keyword default stands in for a value params.yaml holds (callers pass the params value);
- the crop folder's manifest is named once (faceid.crop.shards.MANIFEST_FILE);
- registries are data: the optimizer is looked up by name, and the schema names the same choices;
- every stage's main returns an exit status, and every path dvc.yaml passes it is required.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any, get_args

import pytest
import torch
import yaml

from faceid.backbones import nets, registry
from faceid.config.engine import ParamsError
from faceid.config.train import Optimizer, TrainParams, resolve_train_params
from faceid.train.schedule import OPTIMIZERS, build_optimizer
from tests._params import section

ROOT = Path(__file__).resolve().parents[1]
CHUNKING = "memory blocking of the arithmetic, not crop.chunk_size: any value gives the same numbers"
# (file, function, parameter) -> why its default is not a params value
ALLOWED_DEFAULTS = {
    ("src/faceid/backbones/load.py", "load_model", "device"): "where the network is built; callers move it",
    ("src/faceid/crop/reader.py", "prepare_batch", "flip"): "a (B,) mask drawn per batch, not train.common.flip",
    ("src/faceid/demo/catalog.py", "open_identifier", "top_k"): "None: demo.top_k (`faceid identify --top-k`)",
    ("src/faceid/evaluate/metrics/bootstrap.py", "bootstrap_auc", "chunk_size"): CHUNKING,
    ("src/faceid/evaluate/metrics/bootstrap.py", "bootstrap_auc_difference", "chunk_size"): CHUNKING,
    ("src/faceid/evaluate/metrics/closed_set.py", "identification", "chunk_size"): CHUNKING,
    ("src/faceid/evaluate/metrics/inference.py", "paired_difference", "chunk_size"): CHUNKING,
    ("src/faceid/evaluate/metrics/inference.py", "operating_point", "chunk_size"): CHUNKING,
    ("src/faceid/evaluate/metrics/inference.py", "det_curve", "chunk_size"): CHUNKING,
    ("src/faceid/evaluate/metrics/verification.py", "pair_similarity", "chunk_size"): CHUNKING,
    ("src/faceid/pairs/manifest.py", "check_manifest", "source"): "a name for messages, not dataset.source",
    ("src/faceid/pairs/verification.py", "stream_rng", "split"): "a label of a random stream, not evaluate.split",
    ("src/faceid/project/experiments.py", "load_experiments", "source"): "a saved `dvc exp show` file",
}
# the manifest's name spelled out in modules that are still to use MANIFEST_FILE
MANIFEST_NOT_YET: set[str] = set()


def _sources() -> dict[str, ast.Module]:
    files = sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "stages").glob("*.py")])
    return {str(f.relative_to(ROOT)): ast.parse(f.read_text()) for f in files}


def _leaf_keys(node: Any) -> set[str]:
    if not isinstance(node, dict):
        return set()
    return {k for k, v in node.items() if not isinstance(v, dict)} | {
        k for v in node.values() for k in _leaf_keys(v)
    }


def _defaults(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
            pairs = [*zip(positional, defaults, strict=True), *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
            for arg, default in pairs:
                if default is not None:
                    yield node.name, arg.arg


def test_no_keyword_default_stands_in_for_a_params_value():
    keys = _leaf_keys(yaml.safe_load((ROOT / "params.yaml").read_text()))
    found = {(path, function, arg) for path, tree in _sources().items()
             for function, arg in _defaults(tree) if arg in keys}  # fmt: skip
    assert found - ALLOWED_DEFAULTS.keys() == set(), "pass the params value instead of defaulting it"
    assert ALLOWED_DEFAULTS.keys() - found == set(), "stale entries: remove them from ALLOWED_DEFAULTS"


def test_the_manifest_file_name_has_one_definition():
    spelled = {path for path, tree in _sources().items() for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and node.value == "manifest.parquet"}  # fmt: skip
    assert spelled == {"src/faceid/crop/shards.py", *MANIFEST_NOT_YET}


def test_each_backbone_is_one_registry_entry():
    for spec in registry.BACKBONES.values():
        assert getattr(registry, spec.build.__name__) is getattr(nets, spec.build.__name__)
    assert {spec.build.__name__ for spec in registry.BACKBONES.values()} == set(nets.__all__)


def test_the_schema_names_the_optimizers_the_registry_builds():
    assert tuple(OPTIMIZERS) == get_args(Optimizer)


@pytest.mark.parametrize(("name", "cls"), [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_build_optimizer_looks_the_name_up(name, cls):
    run = dataclasses.replace(resolve_train_params(section(TrainParams), "orig", "resnet50"), optimizer=name)
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.1}]
    assert type(build_optimizer(run, groups, torch.device("cpu"))) is cls


def test_an_unknown_optimizer_is_an_error_not_adamw():
    run = dataclasses.replace(resolve_train_params(section(TrainParams), "orig", "resnet50"), optimizer="adam")
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.1}]
    with pytest.raises(ParamsError, match=r"train\.common\.optimizer: 'adam' is not a valid choice; valid: sgd, adamw"):
        build_optimizer(run, groups, torch.device("cpu"))


def _main(tree: ast.Module) -> ast.FunctionDef:
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "stages").glob("[!_]*.py")))
def test_a_stage_main_returns_its_exit_status(script):
    main = _main(ast.parse((ROOT / "stages" / script).read_text()))
    assert ast.unparse(main.returns) == "int"
    returns = [n for n in ast.walk(main) if isinstance(n, ast.Return)]
    assert returns and all(isinstance(r.value, ast.Constant) and r.value.value == 0 for r in returns)


# flags dvc.yaml passes that a stage may go without: another mode of the stage, or an optional input
OPTIONAL_FLAGS = {
    ("weights", "--locate"): "pretrained@ (locate) or weights@ (--pretrained and --out)",
    ("weights", "--pretrained"): "weights@ only",
    ("weights", "--out"): "weights@ only",
    ("evaluate", "--weights"): "with --base only",
    ("evaluate", "--run"): "with --base only",
    ("evaluate", "--features"): "an optional input: without it, embeddings come from the crops",
    ("evaluate", "--model"): "--model or --base: a required group",
    ("evaluate", "--base"): "--model or --base: a required group",
    ("train", "--run"): "--run, or --task and --backbone",
    ("train", "--weights"): "init: pretrained only",
    ("train", "--init-model"): "init: orig only",
    ("train", "--features"): "an optional input",
    ("train", "--processes"): "1 by default: one process",
    ("train", "--resume-dir"): "resume state, not a DVC output (default: beside --out)",
}


def _dvc_flags() -> set[tuple[str, str]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    flags = set()
    for stage in stages.values():
        words = " ".join(stage["cmd"] if isinstance(stage["cmd"], list) else [stage["cmd"]]).split()
        script = Path(words[words.index("python") + 1]).stem
        flags |= {(script, w) for w in words if w.startswith("--")}
    return flags


def _required_flags(script: str) -> set[str]:
    required = set()
    for node in ast.walk(_main(ast.parse((ROOT / "stages" / f"{script}.py").read_text()))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            if any(k.arg == "required" and getattr(k.value, "value", False) is True for k in node.keywords):
                required |= {a.value for a in node.args if isinstance(a, ast.Constant)}
    return required


def test_every_path_dvc_yaml_passes_is_required():
    flags = _dvc_flags()
    assert {script for script, _ in flags} >= {"crop", "dataset", "evaluate", "pairs", "summarize", "train"}
    loose = {(s, f) for s, f in flags if f not in _required_flags(s) and (s, f) not in OPTIONAL_FLAGS}
    assert loose == set(), "make these required arguments (dvc.yaml always passes them)"
