"""dvc.yaml's code deps are exactly what each stage's script imports (tests/stage_deps.py);
the committed dvc.lock describes only stages dvc.yaml has."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from tests import stage_deps

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("stage", sorted(stage_deps.stage_scripts()))
def test_stage_code_deps_match_imports(stage: str) -> None:
    script, listed = stage_deps.stage_scripts()[stage]
    missing, unused = stage_deps.compare(stage, script, listed)
    assert not missing, (
        f"{stage}: imports {sorted(missing)} but dvc.yaml does not list them (python tests/stage_deps.py --write)"
    )
    assert not unused, (
        f"{stage}: dvc.yaml lists {sorted(unused)} that it never imports (python tests/stage_deps.py --write)"
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
        assert stage_deps.expected_deps("stages/s.py") == {
            "stages/s.py",
            "src/faceid/a.py",
            "src/faceid/sub/__init__.py",
            "src/faceid/sub/b.py",
            "src/faceid/sub/c.py",
        }
        missing, unused = stage_deps.compare(
            "s", "stages/s.py", ["stages/s.py", "src/faceid/sub", "src/faceid/unused.py"]
        )
        assert missing == {"src/faceid/a.py"} and unused == {"src/faceid/unused.py"}
    finally:
        stage_deps.closure.cache_clear()


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
