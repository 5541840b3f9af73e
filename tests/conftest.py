"""Session-wide settings for the suite, and the fixtures that several test files share
(each imports what it builds only when asked for, so that collecting the suite stays light)."""

import os

import pytest

# stages that the tests run through `dvc repro` (each tiny project its own warm process
# server, faceid.forkserver) leave their servers idle for 30 s, not the default 120 s
os.environ.setdefault("FACEID_FORKSERVER_IDLE_S", "30")
# a stage a test runs once (`python stages/x.py …`) would start a warm server that imports
# torch & co. for nothing (≈ 5 CPU s each, beside the next tests): off, except in the tests
# that run dvc (tests.test_pipeline._run and test_study's profile switch turn it on, as a
# user's `dvc repro` has it) and test_forkserver's own
os.environ.setdefault("FACEID_FORKSERVER", "0")


@pytest.fixture(scope="module")
def detector():
    """MTCNN on cpu with the crop tests' params (tests._crop_fixtures.cpu_params)."""
    import torch

    from faceid.crop.detect import make_detector
    from tests._crop_fixtures import cpu_params

    return make_detector(cpu_params(), torch.device("cpu"))


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory):
    """The demo tests' project (tests._demo_fixtures) with its people enrolled; shared by
    every demo test file (building it takes ~15 s), each test leaving it as it found it."""
    from faceid.cli import main
    from tests._demo_fixtures import make_demo_project

    demo = make_demo_project(tmp_path_factory.mktemp("demo"))
    assert main(["enroll", "--folder", str(demo.people), *demo.dirs()]) == 0
    return demo


@pytest.fixture(scope="module")
def pairs_manifest():
    """A small crop manifest of 60 identities, every status (tests._pairs_fixtures.make_manifest)."""
    from tests._pairs_fixtures import make_manifest

    return make_manifest()


@pytest.fixture(scope="module")
def pairs_result(pairs_manifest):
    """build_pairs of `pairs_manifest` for the pairs tests' TASKS and small params."""
    from faceid.pairs import build_pairs
    from tests._pairs_fixtures import TASKS, small_params

    return build_pairs(pairs_manifest, small_params(), TASKS, ())
