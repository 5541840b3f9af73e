import hashlib
import http.server
import threading
from functools import partial

import pytest
import torch
from stages import weights as weights_stage

from faceid.config import WeightSource, WeightsParams
from faceid.weights import WeightsError, find_weights, prepare_weights


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


def _params(url, file, sha256, **kwargs):
    return WeightsParams(
        sources={"vggface2": WeightSource(url=f"{url}/{file}", file=file, sha256=sha256)},
        download_retries=1,
        download_timeout_s=5.0,
        **kwargs,
    )


def test_download_verified_and_classifier_dropped(server, empty_torch_home, tmp_path):
    root, url = server
    digest = _tiny_checkpoint(root / "vgg.pt")
    out = prepare_weights(
        "inception_resnet_v1", "vggface2", _params(url, "vgg.pt", digest), tmp_path / "w" / "irv1.pt"
    )
    state = torch.load(out, weights_only=True)
    assert set(state) == {"conv2d_1a.conv.weight"}
    assert list((tmp_path / "w").iterdir()) == [out]  # no download left behind


def test_hash_prefix_accepted(server, empty_torch_home, tmp_path):
    root, url = server
    digest = _tiny_checkpoint(root / "vgg.pt")
    path = find_weights("vggface2", _params(url, "vgg.pt", digest[:8]), tmp_path)
    assert path.read_bytes() == (root / "vgg.pt").read_bytes()


def test_wrong_hash_is_an_error(server, empty_torch_home, tmp_path):
    root, url = server
    _tiny_checkpoint(root / "vgg.pt")
    with pytest.raises(WeightsError, match=r"vgg\.pt: sha256 [0-9a-f]+ does not match the expected deadbeef"):
        find_weights("vggface2", _params(url, "vgg.pt", "deadbeef"), tmp_path)


def test_html_answer_is_an_error(server, empty_torch_home, tmp_path):
    root, url = server
    (root / "page.html").write_text("<html>quota exceeded</html>")
    with pytest.raises(WeightsError, match="HTML page, not a weights file"):
        find_weights("vggface2", _params(url, "page.html", None), tmp_path)


def test_unreachable_server_is_an_error_naming_where_to_put_the_file(empty_torch_home, tmp_path):
    params = _params("http://127.0.0.1:9", "vgg.pt", None)
    with pytest.raises(WeightsError, match=r"download failed after 1 tries.*put vgg\.pt in \$TORCH_HOME/checkpoints.*init: none"):
        find_weights("vggface2", params, tmp_path)


def test_torch_home_checkpoint_used_offline(empty_torch_home, tmp_path):
    (empty_torch_home / "checkpoints").mkdir(parents=True)
    digest = _tiny_checkpoint(empty_torch_home / "checkpoints" / "vgg.pt")
    params = _params("http://127.0.0.1:9", "vgg.pt", digest, offline=True)
    out = prepare_weights("inception_resnet_v1", "vggface2", params, tmp_path / "irv1.pt")
    assert set(torch.load(out, weights_only=True)) == {"conv2d_1a.conv.weight"}


def test_offline_missing_names_file_place_and_init_none(empty_torch_home, tmp_path):
    params = _params("http://127.0.0.1:9", "vgg.pt", None, offline=True)
    with pytest.raises(WeightsError, match=r"vgg\.pt: not found and weights.offline is true.*torch_home/checkpoints.*init: none"):
        prepare_weights("inception_resnet_v1", "vggface2", params, tmp_path / "irv1.pt")


def test_init_none_writes_empty_marker(tmp_path):
    out = prepare_weights("resnet50", "none", WeightsParams(offline=True), tmp_path / "r.pt")
    assert torch.load(out, weights_only=True) == {}


def test_init_of_another_backbone_is_an_error(tmp_path):
    with pytest.raises(WeightsError, match="'imagenet' is not a weight set of inception_resnet_v1"):
        prepare_weights("inception_resnet_v1", "imagenet", WeightsParams(), tmp_path / "x.pt")


def test_stage_main_uses_local_dir(tmp_path, empty_torch_home):
    local = tmp_path / "local"
    local.mkdir()
    _tiny_checkpoint(local / "resnet50-x.pth")
    params = tmp_path / "params.yaml"
    params.write_text(
        "weights:\n"
        f"  local_dir: {local}\n"
        "  offline: true\n"
        "  sources:\n"
        "    imagenet: {url: 'http://127.0.0.1:9/r.pth', file: resnet50-x.pth}\n"
        "train:\n"
        "  backbone:\n"
        "    resnet50: {init: imagenet}\n"
    )
    out = tmp_path / "data" / "weights" / "resnet50.pt"
    weights_stage.main(["--params", str(params), "--backbone", "resnet50", "--out", str(out)])
    assert "conv2d_1a.conv.weight" in torch.load(out, weights_only=True)
