"""User errors end in one `error:` line, exit status 1 (the `faceid` command: 2), and no
traceback, for every stage run as dvc runs it (`python stages/x.py …`) and the CLI.

The three kinds of issue 12 — a bad param, a missing input file, a checksum mismatch — are
tried on every stage that reads them.
"""

from __future__ import annotations

import http.server
import io
import os
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from faceid.common.progress import LOG_INTERVAL_S, progress
from faceid.config.train import TrainParams
from faceid.data.celeba import ATTR_FILE
from faceid.data.download import CELEBA_FILES
from faceid.errors import FaceidError, format_error, run_cli
from faceid.train.runs import write_runs
from tests._params import section, write_params
from tests.test_local_source import write_tiny_celeba

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An HTTP server on 127.0.0.1 serving junk under every CelebA and weights file name."""
    root = tmp_path_factory.mktemp("served")
    for name in (*CELEBA_FILES, "resnet50-11ad3fa6.pth"):
        (root / name).write_bytes(b"not the official bytes\n")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _params(tmp: Path, name: str, edit) -> Path:
    return write_params(tmp / name, edit)


def _bad(data):
    data["train"]["common"]["margin"] = 5.0


def _bad_run(tmp: Path) -> Path:
    """A run file as the runs stage writes it, then edited by hand to a margin out of range."""
    folder = tmp / "runs"
    write_runs(section(TrainParams), folder)
    path = folder / "orig-resnet50.json"
    path.write_text(path.read_text().replace('"margin": 0.3', '"margin": 5.0'))
    return path


def _bad_own(data):
    """A bad value in the sections the dataset, crop and pairs stages read (each stage
    validates only its own sections: a bad train value is the train stage's error)."""
    data["dataset"]["synthetic"]["n_identities"] = -3
    data["crop"]["margin"] = -1
    data["pairs"]["seed"] = "zero"


def _local_without_annotations(tmp: Path):
    source = tmp / "copy"
    write_tiny_celeba(source)
    (source / ATTR_FILE).unlink()

    def edit(data):
        data["dataset"].update(source="local", local_dir=str(source), verify_md5=False)

    return edit


def _mirror(url: str):
    def edit(data):
        data["dataset"].update(source="celeba", mirror_url=url, download_retries=0, verify_md5=True)

    return edit


def _weights_from(url: str):
    def edit(data):
        data["train"]["backbone"]["resnet50"]["init"] = "imagenet"
        data["weights"].update(download_retries=1, download_timeout_s=5.0)
        data["weights"]["sources"] = {
            "imagenet": {"url": f"{url}/resnet50-11ad3fa6.pth", "file": "resnet50-11ad3fa6.pth", "sha256": "11ad3fa6"}
        }

    return edit


def _stage(name: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "stages" / f"{name}.py"), *args]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "faceid.cli", *args]


def _cases(tmp: Path, url: str) -> dict[str, tuple[list[str], str, int]]:
    """name → (command, text the error line must hold, exit status)."""
    bad = str(_params(tmp, "bad.yaml", _bad))
    own = str(_params(tmp, "own.yaml", _bad_own))
    good = str(_params(tmp, "good.yaml", lambda d: None))
    missing = tmp / "missing"
    out = tmp / "out"
    t = str
    # every path dvc.yaml passes (the stages require them), inside `out`
    dataset_out = ("--out", t(out / "celeba"), "--inputs", t(out / "celeba-input"), "--metrics", t(out / "d.json"))
    crop_out = ("--out", t(out / "crops"), "--metrics", t(out / "c.json"), "--review", t(out / "review.png"))
    pairs_io = ("--manifest", t(missing / "m.parquet"), "--out", t(out / "pairs"), "--metrics", t(out / "p.json"),
                "--detail", t(out / "pd.json"))  # fmt: skip
    train_io = ("--crops", t(missing), "--pairs", t(missing), "--out", t(out / "m"), "--live-dir", t(out / "live"))
    evaluate_io = ("--name", "x", "--crops", t(missing), "--pairs", t(missing), "--embeddings", t(out / "e.npz"),
                   "--out", t(out / "e.json"), "--detail", t(out / "detail.json"))  # fmt: skip
    orig_resnet = ("--task", "orig", "--backbone", "resnet50")
    tasks = str(_params(tmp, "tasks.yaml", lambda d: d["train"].update(tasks=["Eyeglases"])))
    typo = str(_params(tmp, "typo.yaml", lambda d: d["train"]["task"].update(Eyglasses={"init": "orig"})))
    small = str(_params(tmp, "small.yaml",
                        lambda d: d["train"]["backbone"]["inception_resnet_v1"].update(image_size=40)))
    local = str(_params(tmp, "local.yaml", _local_without_annotations(tmp)))
    return {
        # a bad param
        "dataset/bad-param": (_stage("dataset", "--params", own, *dataset_out), "dataset.synthetic.n_identities", 1),
        "crop/bad-param": (_stage("crop", "--params", own, "--dataset", t(missing), *crop_out), "crop.margin", 1),
        "pairs/bad-param": (_stage("pairs", "--params", own, *pairs_io), "pairs.seed", 1),
        "weights/bad-param": (_stage("weights", "--params", bad, "--backbone", "resnet50", "--locate",
                                     t(out / "pretrained")), "train.common.margin", 1),
        "pairs/bad-task-list": (_stage("pairs", "--params", tasks, *pairs_io),
                                "train.tasks[0]: unknown task 'Eyeglases'", 1),
        "runs/bad-param": (_stage("runs", "--params", bad, "--out", t(out / "runs")), "train.common.margin", 1),
        "train/missing-run-file": (_stage("train", "--params", good, "--run", t(missing / "orig-resnet50.json"),
                                          *train_io), "orig-resnet50.json: no such run file", 1),
        "train/bad-run-file": (_stage("train", "--params", good, "--run", t(_bad_run(tmp)), *train_io),
                               "run.margin: expected an angle", 1),
        "train/bad-param": (_stage("train", "--params", bad, *orig_resnet, *train_io), "train.common.margin", 1),
        "train/misspelled-task-block": (_stage("train", "--params", typo, "--task", "Eyeglasses", "--backbone",
                                               "resnet50", *train_io), "train.task.Eyglasses", 1),
        "evaluate/bad-param": (_stage("evaluate", "--params", bad, "--base", "resnet50", *evaluate_io),
                               "train.common.margin", 1),
        "evaluate/image-size-below-minimum": (_stage("evaluate", "--params", small, "--base", "inception_resnet_v1",
                                                     *evaluate_io), "train.backbone.inception_resnet_v1.image_size", 1),
        "evaluate/run-with-a-model": (_stage("evaluate", "--params", good, "--model", t(missing / "model.pt"), "--run",
                                             t(missing / "orig-resnet50.json"), *evaluate_io),
                                      "--run and --weights go with --base", 2),
        "cli-identify/bad-param": (_cli("identify", "photo.jpg", "--params", bad), "train.common.margin", 2),
        "cli-enroll/bad-param": (_cli("enroll", "--folder", t(missing), "--params", bad), "train.common.margin", 2),
        # a missing input file
        "dataset/missing-annotation": (_stage("dataset", "--params", local, *dataset_out), ATTR_FILE, 1),
        "crop/missing-annotation": (_stage("crop", "--params", good, "--dataset", t(missing), *crop_out), ATTR_FILE, 1),
        "pairs/missing-manifest": (_stage("pairs", "--params", good, *pairs_io), "m.parquet", 1),
        "train/missing-crops": (_stage("train", "--params", good, *orig_resnet, *train_io), str(missing), 1),
        "cli-identify/missing-model": (_cli("identify", "photo.jpg", "--params", good, "--models-dir", t(missing)),
                                       "does not exist", 2),
        # a checksum mismatch
        "dataset/md5-mismatch": (_stage("dataset", "--params", str(_params(tmp, "mirror.yaml", _mirror(url))),
                                        *dataset_out), "MD5", 1),
        "weights/sha256-mismatch": (_stage("weights", "--params", str(_params(tmp, "weights.yaml", _weights_from(url))),
                                           "--backbone", "resnet50", "--locate", t(out / "pretrained")), "sha256", 1),
    }  # fmt: skip


CASES = [
    "dataset/bad-param", "crop/bad-param", "pairs/bad-param", "weights/bad-param", "train/bad-param",
    "pairs/bad-task-list", "runs/bad-param", "train/missing-run-file", "train/bad-run-file",
    "train/misspelled-task-block", "evaluate/bad-param", "evaluate/image-size-below-minimum",
    "evaluate/run-with-a-model",
    "cli-identify/bad-param", "cli-enroll/bad-param",
    "dataset/missing-annotation", "crop/missing-annotation", "pairs/missing-manifest", "train/missing-crops",
    "cli-identify/missing-model", "dataset/md5-mismatch", "weights/sha256-mismatch",
]  # fmt: skip


# the cases that must not import torch & co. (5–7 s on 2 cores): a bad value costs a second
LIGHT = {"dataset/bad-param", "crop/bad-param", "pairs/bad-param", "weights/bad-param", "runs/bad-param",
         "train/bad-param", "train/misspelled-task-block", "evaluate/bad-param",
         "evaluate/image-size-below-minimum", "cli-identify/bad-param", "cli-enroll/bad-param"}  # fmt: skip
# runs the command as Python would (`python script …` or `python -m module …`), then names
# the heavy packages it imported
_RUN_THEN_NAME_IMPORTS = (
    "import runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "try:\n"
    "    if sys.argv[0] == '-m':\n"
    "        sys.argv = sys.argv[1:]\n"
    "        runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    "    else:\n"
    "        runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "finally:\n"
    "    heavy = ('torch', 'torchvision', 'sklearn', 'facenet_pytorch', 'dvclive')\n"
    "    print('heavy imports:', [m for m in heavy if m in sys.modules], file=sys.stderr)\n"
)


@pytest.mark.parametrize("case", CASES)
def test_user_error_is_one_line_without_traceback(tmp_path, served, case):
    command, expected, status = _cases(tmp_path, served)[case]
    assert command[0] == sys.executable
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "TORCH_HOME": str(tmp_path / "torch_home")}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _RUN_THEN_NAME_IMPORTS, *command[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, done.stderr
    assert expected in errors[0], errors[0]
    if case in LIGHT:
        assert "heavy imports: []" in done.stderr, done.stderr[-2000:]


def test_run_cli_exit_statuses(capsys):
    def fails():
        raise FaceidError("data/x: broken; re-run `dvc repro x`")

    with pytest.raises(SystemExit) as caught:
        run_cli(fails)
    assert caught.value.code == 1
    assert capsys.readouterr().err == "error: data/x: broken; re-run `dvc repro x`\n"
    for result, code in ((None, 0), ({"a": 1}, 0), (3, 3)):
        with pytest.raises(SystemExit) as caught:
            run_cli(lambda result=result: result)
        assert caught.value.code == code


def test_a_bug_keeps_its_traceback():
    def bug():
        raise KeyError("internal")

    with pytest.raises(KeyError):
        run_cli(bug)


def test_format_error_indents_continuation_lines():
    assert format_error(FaceidError("a\nb")) == "error: a\n  b"


def test_progress_bars_refresh_rarely_when_not_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = progress(range(3), desc="x")
    assert bar.mininterval == LOG_INTERVAL_S
    bar.close()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = progress(range(3), desc="x")
    assert bar.mininterval == 0.1  # tqdm's own default on a terminal
    bar.close()
