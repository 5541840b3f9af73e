
import pytest
import torch
from torch import nn

from faceid.backbones.registry import (
    BACKBONES,
    EMBEDDING_SIZE,
    BackboneError,
    BackboneSpec,
    WeightSource,
    build_backbone,
    freeze_batchnorm,
    freeze_stages,
    get_spec,
)
from faceid.config.engine import ParamsError
from faceid.config.train import resolve_train_params
from faceid.config.whole import load_all_params
from tests._params import write_params

DROPOUT = 0.3  # any rate: these tests are about weights and shapes


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_the_registry_entry_describes_the_network(name):
    """Sizes come from the registry: features at min_image_size are feature_size wide,
    embeddings L2-normalised EMBEDDING_SIZE, the neck and stages are attributes of `net`."""
    torch.manual_seed(0)
    spec = get_spec(name)
    model = build_backbone(name, "none", dropout=DROPOUT).eval()
    size = spec.min_image_size
    with torch.no_grad():
        features = model.features(torch.randn(2, 3, size, size))
        out = model.embed_features(features)
    assert features.shape == (2, spec.feature_size)
    assert out.shape == (2, EMBEDDING_SIZE)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    assert all(hasattr(model.net, a) for a in (*spec.neck, *(a for _, attrs in spec.stages for a in attrs)))


class TinyEmbedding(nn.Module):
    """A two-stage conv net with the interface BackboneSpec.build promises."""

    def __init__(self, dropout: float):
        super().__init__()
        self.net = nn.Module()
        self.net.conv1 = nn.Conv2d(3, 4, 3, stride=2)
        self.net.conv2 = nn.Conv2d(4, 8, 3, stride=2)
        self.net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(8, EMBEDDING_SIZE))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.conv2(self.net.conv1(images)).mean((2, 3))  # (N, 8)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.net.fc(features), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed_features(self.features(images))


TINY = BackboneSpec(
    name="tiny", build=TinyEmbedding, weights={"toy": WeightSource("http://127.0.0.1:9/t.pt", "t.pt")},
    classifier_prefixes=("fc.",), stages=(("conv1", ("conv1",)), ("conv2", ("conv2",))),
    min_image_size=8, neck=("fc",), feature_size=8,
)  # fmt: skip


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(BACKBONES, "tiny", TINY)
    return TINY


def test_a_registered_backbone_validates_in_params_and_builds(tiny, tmp_path):
    def edit(data):
        data["train"]["backbones"].append("tiny")
        data["train"]["backbone"]["tiny"] = {**data["train"]["backbone"]["resnet50"], "init": "toy", "image_size": 16}

    params = load_all_params(write_params(tmp_path / "params.yaml", edit))
    run = resolve_train_params(params.train, "Eyeglasses", "tiny")
    assert (run.weights_init, run.image_size, run.task_init) == ("toy", 16, "orig")
    donor = build_backbone("tiny", "none", dropout=DROPOUT)
    torch.save({**donor.net.state_dict(), "fc.1.weight": torch.zeros(3, 8)}, tmp_path / "t.pt")
    model = build_backbone("tiny", "toy", tmp_path / "t.pt", dropout=DROPOUT)  # the checkpoint's classifier is dropped
    torch.testing.assert_close(model.net.conv2.weight, donor.net.conv2.weight)
    assert freeze_stages(model, tiny, "conv1") == ["conv1"] and not model.net.conv1.weight.requires_grad
    assert model(torch.randn(2, 3, run.image_size, run.image_size)).shape == (2, EMBEDDING_SIZE)


def test_a_registered_backbone_below_its_minimum_size_is_named(tiny, tmp_path):
    def edit(data):
        data["train"]["backbones"] = ["tiny"]
        data["train"]["backbone"]["tiny"] = {**data["train"]["backbone"]["resnet50"], "init": "none", "image_size": 4}

    with pytest.raises(ParamsError, match=r"train.backbone.tiny.image_size: tiny takes inputs of at least 8 px, got 4"):
        load_all_params(write_params(tmp_path / "params.yaml", edit))


def test_bad_backbone_name_lists_choices():
    with pytest.raises(BackboneError, match=r"unknown backbone 'vgg'; valid: inception_resnet_v1, resnet50"):
        build_backbone("vgg", "none", dropout=DROPOUT)


def test_bad_init_lists_choices():
    with pytest.raises(BackboneError, match="unknown init 'imagenet'; valid: vggface2, casia-webface, none"):
        build_backbone("inception_resnet_v1", "imagenet", "x.pt", dropout=DROPOUT)


def test_missing_weights_file_names_it(tmp_path):
    with pytest.raises(BackboneError, match=r"nope\.pt: no weights file for resnet50"):
        build_backbone("resnet50", "imagenet", tmp_path / "nope.pt", dropout=DROPOUT)


def test_marker_file_is_rejected_for_pretrained(tmp_path):
    torch.save({}, tmp_path / "marker.pt")
    with pytest.raises(BackboneError, match="empty marker"):
        build_backbone("resnet50", "imagenet", tmp_path / "marker.pt", dropout=DROPOUT)


def test_irv1_checkpoint_with_logits_loads(tmp_path):
    torch.manual_seed(1)
    donor = build_backbone("inception_resnet_v1", "none", dropout=DROPOUT)
    state = dict(donor.net.state_dict())
    state["logits.weight"] = torch.zeros(8631, 512)  # as in the facenet checkpoint
    state["logits.bias"] = torch.zeros(8631)
    torch.save(state, tmp_path / "w.pt")
    model = build_backbone("inception_resnet_v1", "vggface2", tmp_path / "w.pt", dropout=DROPOUT)
    torch.testing.assert_close(model.net.block8.conv2d.weight, donor.net.block8.conv2d.weight)


def test_resnet_imagenet_checkpoint_loads_without_fc(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(2)
    imagenet = resnet50(weights=None)
    torch.save(imagenet.state_dict(), tmp_path / "r.pt")
    model = build_backbone("resnet50", "imagenet", tmp_path / "r.pt", dropout=DROPOUT)
    torch.testing.assert_close(model.net.layer4[0].conv1.weight, imagenet.layer4[0].conv1.weight)
    assert isinstance(model.net.fc[1], nn.Linear) and model.net.fc[1].out_features == 512


def test_foreign_checkpoint_is_rejected(tmp_path):
    torch.save({"something.weight": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(BackboneError, match="does not fit resnet50"):
        build_backbone("resnet50", "imagenet", tmp_path / "x.pt", dropout=DROPOUT)


def test_freeze_by_count_and_by_name():
    spec = get_spec("resnet50")
    model = build_backbone("resnet50", "none", dropout=DROPOUT)
    assert freeze_stages(model, spec, "layer1") == ["stem", "layer1"]
    assert not any(p.requires_grad for p in model.net.layer1.parameters())
    assert all(p.requires_grad for p in model.net.layer2.parameters())
    model = build_backbone("resnet50", "none", dropout=DROPOUT)
    assert freeze_stages(model, spec, 3) == ["stem", "layer1", "layer2"]
    assert not model.net.conv1.weight.requires_grad
    with pytest.raises(BackboneError, match=r"unknown stage 'layer9'.*valid: stem, layer1"):
        freeze_stages(model, spec, "layer9")


def test_freeze_batchnorm_keeps_running_stats():
    spec = get_spec("resnet50")
    model = build_backbone("resnet50", "none", dropout=DROPOUT).train()
    freeze_batchnorm(model, spec, "stem", all_bn=False)
    before_stem = model.net.bn1.running_mean.clone()
    before_l1 = model.net.layer1[0].bn1.running_mean.clone()
    model(torch.randn(2, 3, 64, 64) * 5)
    torch.testing.assert_close(model.net.bn1.running_mean, before_stem)
    assert not torch.equal(model.net.layer1[0].bn1.running_mean, before_l1)
    freeze_batchnorm(model, spec, 0, all_bn=True)
    before = model.net.fc[2].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(model.net.fc[2].running_mean, before)
