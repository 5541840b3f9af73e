"""dvc.yaml's deps are derived from the code (tools/stage_deps.py): code deps are exactly
what each stage's script imports, a params key a stage reads is one its entry lists (the
recording here; the whole pipeline's in tests/test_pipeline.py), and the committed dvc.lock
describes only stages dvc.yaml has."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo
from tools import stage_deps

from faceid.config import engine

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("stage", sorted(stage_deps.stage_scripts()))
def test_stage_code_deps_match_imports(stage: str) -> None:
    script, listed = stage_deps.stage_scripts()[stage]
    missing, unused = stage_deps.compare(stage, script, listed)
    assert not missing, (
        f"{stage}: imports {sorted(missing)} but dvc.yaml does not list them (python tools/stage_deps.py --write)"
    )
    assert not unused, (
        f"{stage}: dvc.yaml lists {sorted(unused)} that it never imports (python tools/stage_deps.py --write)"
    )


def test_closure_follows_lazy_and_relative_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src" / "faceid"
    (src / "sub").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "a.py").write_text("def f():\n    from faceid.sub import b\n")
    (src / "sub" / "__init__.py").write_text("")
    (src / "sub" / "b.py").write_text("from . import c\nimport numpy\n")
    (src / "sub" / "c.py").write_text("")
    (src / "unused.py").write_text("")
    script = tmp_path / "stages" / "s.py"
    script.parent.mkdir()
    script.write_text("import faceid.a\n")
    monkeypatch.setattr(stage_deps, "ROOT", tmp_path)
    monkeypatch.setattr(stage_deps, "SRC", tmp_path / "src")
    stage_deps.closure.cache_clear()
    try:
        assert stage_deps.expected_files("stages/s.py") == {
            "stages/s.py",
            "src/faceid/a.py",
            "src/faceid/sub/__init__.py",
            "src/faceid/sub/b.py",
            "src/faceid/sub/c.py",
        }
        # a subpackage is named by its folder; the top package's modules stay file by file
        assert stage_deps.expected_deps("stages/s.py") == {"stages/s.py", "src/faceid/a.py", "src/faceid/sub"}
        missing, unused = stage_deps.compare(
            "s", "stages/s.py", ["stages/s.py", "src/faceid/sub/b.py", "src/faceid/unused.py"]
        )
        assert missing == {"src/faceid/a.py", "src/faceid/sub"}
        assert unused == {"src/faceid/unused.py", "src/faceid/sub/b.py"}
        # a nested package folds into its outermost package below faceid; a package the
        # stage never imports is not listed
        (src / "sub" / "deep").mkdir()
        (src / "sub" / "deep" / "__init__.py").write_text("")
        (src / "sub" / "c.py").write_text("from faceid.sub.deep import e\n")
        (src / "sub" / "deep" / "e.py").write_text("")
        (src / "other").mkdir()
        (src / "other" / "__init__.py").write_text("")
        stage_deps.closure.cache_clear()
        assert "src/faceid/sub/deep/e.py" in stage_deps.expected_files("stages/s.py")
        assert stage_deps.expected_deps("stages/s.py") == {"stages/s.py", "src/faceid/a.py", "src/faceid/sub"}
        # config's schemas stay file by file
        monkeypatch.setattr(stage_deps, "FILE_BY_FILE", {"sub"})
        assert stage_deps.expected_deps("stages/s.py") == stage_deps.expected_files("stages/s.py")
    finally:
        stage_deps.closure.cache_clear()


@dataclasses.dataclass(frozen=True)
class _Inner:
    rate: float
    names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Section:
    SECTION = "demo_section"
    inner: _Inner
    per_task: dict[str, _Inner]
    size: int

    def __post_init__(self) -> None:  # validation reads are not the stage's reads
        assert self.size > 0 and self.inner.rate >= 0


def test_a_traced_process_records_the_keys_it_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        "demo_section:\n  inner: {rate: 0.5, names: [a, b]}\n  per_task: {x: {rate: 1.0, names: []}}\n  size: 3\n"
    )
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv(engine.TRACE_ENV, str(trace))
    monkeypatch.setattr(engine, "_TRACE", engine._Trace())
    (section,) = engine.load_sections(params, _Section)
    assert engine._TRACE.keys == set()  # loading and validating read nothing on the stage's behalf
    assert section.inner.rate == 0.5 and section.per_task["x"].names == ()
    assert isinstance(section, _Section) and section == _Section(_Inner(0.5, ("a", "b")), {"x": _Inner(1.0, ())}, 3)
    assert pickle.loads(pickle.dumps(section)) == section
    engine._TRACE.flush()
    (record,) = [json.loads(line) for line in trace.read_text().splitlines()]
    # `==` above compares every field: every key is read once the section is compared
    assert set(record["keys"]) == {
        "demo_section.inner.rate", "demo_section.inner.names", "demo_section.size",
        "demo_section.per_task.x.rate", "demo_section.per_task.x.names",
    }  # fmt: skip


def test_a_read_the_entry_does_not_list_is_found() -> None:
    reads = {"train.common.device", "evaluate.bootstrap.n_boot", "evaluate.device"}
    assert stage_deps.unlisted_reads(reads, ["evaluate"]) == {"train.common.device"}
    assert stage_deps.unlisted_reads(reads, ["evaluate", "train.common.device"]) == set()
    # a key that merely starts like a listed one is not under it
    assert stage_deps.unlisted_reads({"evaluate_extra.x"}, ["evaluate"]) == {"evaluate_extra.x"}


def test_no_pipeline_stage_runs_the_demo() -> None:
    """Editing the demo (its code or its schema) must leave every pipeline stage up to date."""
    for stage, (script, _) in stage_deps.stage_scripts().items():
        demo = {p for p in stage_deps.expected_deps(script) if "demo" in Path(p).parts or Path(p).stem == "demo"}
        assert not demo, f"{stage} runs demo code {sorted(demo)}"


def test_the_lock_holds_only_the_current_stages() -> None:
    """DVC keeps a renamed or removed stage's entry in dvc.lock; a stale one misleads
    `dvc status` readers and hand merges, so the committed lock has none."""
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    with Repo(str(ROOT)) as repo:
        current = {stage.addressing for stage in repo.index.stages}
    assert set(lock["stages"]) <= current, sorted(set(lock["stages"]) - current)
