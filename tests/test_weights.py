import dataclasses
import hashlib
import http.server
import threading
from functools import partial
from typing import ClassVar

import pytest
import torch
from stages import weights as weights_stage

from faceid.backbones import registry as backbones
from faceid.backbones.weights import WeightsError, find_weights, locate_weights, prepare_weights
from faceid.config.weights import WeightSource, WeightsParams
from tests._params import section, write_params


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served."""
    root = tmp_path / "served"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _tiny_checkpoint(path):
    state = {"conv2d_1a.conv.weight": torch.ones(2, 2), "logits.weight": torch.zeros(3, 2)}
    torch.save(state, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _params(**kwargs):
    return section(
        WeightsParams,
        **{
            "local_dir": None,
            "offline": False,
            "download_retries": 0,
            "download_timeout_s": 5.0,
            "download_backoff_s": 0.0,
            **kwargs,
        },
    )


def _source(url, file, sha256):
    return WeightSource(url=f"{url}/{file}", file=file, sha256=sha256)


@pytest.fixture
def vggface2_from(monkeypatch):
    """Point inception_resnet_v1's vggface2 weight set at another source (the registry holds it)."""

    def point(source):
        spec = backbones.BACKBONES["inception_resnet_v1"]
        monkeypatch.setitem(backbones.BACKBONES, spec.name, dataclasses.replace(spec, weights={"vggface2": source}))

    return point


def test_download_verified_and_classifier_dropped(server, empty_torch_home, tmp_path, vggface2_from):
    root, url = server
    vggface2_from(_source(url, "vgg.pt", _tiny_checkpoint(root / "vgg.pt")))
    out = prepare_weights("inception_resnet_v1", "vggface2", _params(), tmp_path / "w" / "irv1.pt")
    state = torch.load(out, weights_only=True)
    assert set(state) == {"conv2d_1a.conv.weight"}
    # the download is kept as the file the conversion depends on (data/pretrained/<backbone>)
    folder = tmp_path / "w" / "irv1.pretrained"
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["irv1.pretrained", "irv1.pt"]
    assert [p.name for p in folder.iterdir()] == ["vgg.pt"] and not (folder / "vgg.pt").is_symlink()


class _FailsOnce(http.server.SimpleHTTPRequestHandler):
    """503 on the first request, then the file: a server having a bad moment."""

    calls: ClassVar[list[str]] = []

    def do_GET(self):
        self.calls.append(self.path)
        if len(self.calls) == 1:
            self.send_error(503)
        else:
            super().do_GET()

    def log_message(self, *args):
        pass


def test_a_server_error_is_retried_by_the_shared_download_path(tmp_path, empty_torch_home, monkeypatch):
    """The weights stage downloads through faceid.common.transfer (as CelebA does): retried, verified."""
    served = tmp_path / "served"
    served.mkdir()
    digest = _tiny_checkpoint(served / "vgg.pt")
    monkeypatch.setattr(_FailsOnce, "calls", [])
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_FailsOnce, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        with pytest.raises(
            WeightsError, match=r"vgg\.pt: download .* failed after 1 attempts \(_TransientError: HTTP 503"
        ):
            find_weights(_source(url, "vgg.pt", digest), _params(), tmp_path / "a")
        _FailsOnce.calls.clear()
        path = find_weights(_source(url, "vgg.pt", digest), _params(download_retries=1), tmp_path / "b")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert path.read_bytes() == (served / "vgg.pt").read_bytes() and _FailsOnce.calls == ["/vgg.pt"] * 2


def test_hash_prefix_accepted(server, empty_torch_home, tmp_path):
    root, url = server
    digest = _tiny_checkpoint(root / "vgg.pt")
    path = find_weights(_source(url, "vgg.pt", digest[:8]), _params(), tmp_path)
    assert path.read_bytes() == (root / "vgg.pt").read_bytes()


def test_wrong_hash_is_an_error(server, empty_torch_home, tmp_path):
    root, url = server
    _tiny_checkpoint(root / "vgg.pt")
    with pytest.raises(WeightsError, match=r"vgg\.pt: sha256 [0-9a-f]+ does not match the expected deadbeef"):
        find_weights(_source(url, "vgg.pt", "deadbeef"), _params(), tmp_path)


def test_html_answer_is_an_error(server, empty_torch_home, tmp_path):
    root, url = server
    (root / "page.html").write_text("<html>quota exceeded</html>")
    with pytest.raises(
        WeightsError, match=r"page\.html: http://\S+ answered an HTML page instead of the file; put page\.html in"
    ):
        find_weights(_source(url, "page.html", None), _params(), tmp_path)


def test_unreachable_server_is_an_error_naming_where_to_put_the_file(empty_torch_home, tmp_path):
    with pytest.raises(
        WeightsError,
        match=r"vgg\.pt: download from \S+ failed after 1 attempts"
        r".*put vgg\.pt in \$TORCH_HOME/checkpoints.*init: none",
    ):
        find_weights(_source("http://127.0.0.1:9", "vgg.pt", None), _params(), tmp_path)


def test_torch_home_checkpoint_used_offline(empty_torch_home, tmp_path, vggface2_from):
    (empty_torch_home / "checkpoints").mkdir(parents=True)
    vggface2_from(
        _source("http://127.0.0.1:9", "vgg.pt", _tiny_checkpoint(empty_torch_home / "checkpoints" / "vgg.pt"))
    )
    out = prepare_weights("inception_resnet_v1", "vggface2", _params(offline=True), tmp_path / "irv1.pt")
    assert set(torch.load(out, weights_only=True)) == {"conv2d_1a.conv.weight"}


def test_offline_missing_names_file_place_and_init_none(empty_torch_home, tmp_path, vggface2_from):
    vggface2_from(_source("http://127.0.0.1:9", "vgg.pt", None))
    with pytest.raises(
        WeightsError, match=r"vgg\.pt: not found and weights.offline is true.*torch_home/checkpoints.*init: none"
    ):
        prepare_weights("inception_resnet_v1", "vggface2", _params(offline=True), tmp_path / "irv1.pt")


def test_a_source_in_params_replaces_the_registrys(server, empty_torch_home, tmp_path):
    """weights.sources (a mirror) wins over the BACKBONES entry, which is left as it was."""
    root, url = server
    mirror = _source(url, "mirror.pt", _tiny_checkpoint(root / "mirror.pt"))
    out = prepare_weights(
        "inception_resnet_v1", "vggface2", _params(sources={"vggface2": mirror}), tmp_path / "irv1.pt"
    )
    assert set(torch.load(out, weights_only=True)) == {"conv2d_1a.conv.weight"}
    assert backbones.BACKBONES["inception_resnet_v1"].weights["vggface2"].file == "20180402-114759-vggface2.pt"


def test_init_none_writes_empty_marker(tmp_path):
    out = prepare_weights("resnet50", "none", _params(offline=True), tmp_path / "r.pt")
    assert torch.load(out, weights_only=True) == {}


def test_init_of_another_backbone_is_an_error(tmp_path):
    with pytest.raises(WeightsError, match="'imagenet' is not a weight set of inception_resnet_v1"):
        prepare_weights("inception_resnet_v1", "imagenet", _params(), tmp_path / "x.pt")


def test_stage_main_uses_local_dir(tmp_path, empty_torch_home, monkeypatch):
    """The registry entry's file for resnet50 imagenet, found in weights.local_dir and verified."""
    local = tmp_path / "local"
    local.mkdir()
    torch.save({"conv2d_1a.conv.weight": torch.ones(2, 2), "fc.weight": torch.zeros(3, 2)}, local / "r.pth")
    source = WeightSource(
        "http://127.0.0.1:9/r.pth", "r.pth", hashlib.sha256((local / "r.pth").read_bytes()).hexdigest()
    )
    spec = backbones.BACKBONES["resnet50"]
    monkeypatch.setitem(backbones.BACKBONES, "resnet50", dataclasses.replace(spec, weights={"imagenet": source}))
    params = write_params(tmp_path / "params.yaml", {
        "weights": {"local_dir": str(local), "offline": True},
        "train": {"backbone": {"resnet50": {"init": "imagenet"}}},
    })  # fmt: skip
    out, folder = tmp_path / "data" / "weights" / "resnet50.pt", tmp_path / "data" / "pretrained" / "resnet50"
    weights_stage.main(["--params", str(params), "--backbone", "resnet50", "--locate", str(folder)])
    assert (folder / "r.pth").is_symlink() and (folder / "r.pth").resolve() == (local / "r.pth").resolve()
    weights_stage.main(
        ["--params", str(params), "--backbone", "resnet50", "--pretrained", str(folder), "--out", str(out)]
    )
    assert set(torch.load(out, weights_only=True)) == {"conv2d_1a.conv.weight"}  # the classifier (fc.) dropped
    # the file replaced where it was found: the conversion checks it again
    torch.save({"fc.weight": torch.zeros(1)}, local / "r.pth")
    with pytest.raises(WeightsError, match=r"r\.pth: sha256 .* does not match"):
        weights_stage.main(
            ["--params", str(params), "--backbone", "resnet50", "--pretrained", str(folder), "--out", str(out)]
        )


def test_locate_links_the_users_file_and_drops_an_earlier_download(tmp_path, empty_torch_home, vggface2_from):
    folder = tmp_path / "pretrained"
    folder.mkdir()
    (folder / "stale.pt").write_bytes(b"another init's file")
    checkpoints = empty_torch_home / "checkpoints"
    checkpoints.mkdir(parents=True)
    vggface2_from(_source("http://127.0.0.1:9", "vgg.pt", _tiny_checkpoint(checkpoints / "vgg.pt")))
    (folder / "vgg.pt").write_bytes((checkpoints / "vgg.pt").read_bytes())  # an earlier download
    mode, links = (checkpoints / "vgg.pt").stat().st_mode, (checkpoints / "vgg.pt").stat().st_nlink
    link = locate_weights("inception_resnet_v1", "vggface2", _params(offline=True), folder)
    assert sorted(p.name for p in folder.iterdir()) == ["vgg.pt"]
    assert link.is_symlink() and link.resolve() == (checkpoints / "vgg.pt").resolve()
    assert ((checkpoints / "vgg.pt").stat().st_mode, (checkpoints / "vgg.pt").stat().st_nlink) == (mode, links)
    assert locate_weights("resnet50", "none", _params(offline=True), folder) is None
    assert not list(folder.iterdir()) and (checkpoints / "vgg.pt").is_file()
