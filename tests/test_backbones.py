import pytest
import torch
from torch import nn

from faceid.backbones import (
    BACKBONES,
    BackboneError,
    build_backbone,
    freeze_batchnorm,
    freeze_stages,
    get_spec,
)

SIZES = {"inception_resnet_v1": 80, "resnet50": 64}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_embeddings_are_l2_normalised_512(name):
    torch.manual_seed(0)
    model = build_backbone(name, "none").eval()
    size = SIZES[name]
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 512)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_bad_backbone_name_lists_choices():
    with pytest.raises(BackboneError, match=r"unknown backbone 'vgg'; valid: inception_resnet_v1, resnet50"):
        build_backbone("vgg")


def test_bad_init_lists_choices():
    with pytest.raises(BackboneError, match="unknown init 'imagenet'; valid: vggface2, casia-webface, none"):
        build_backbone("inception_resnet_v1", "imagenet", "x.pt")


def test_missing_weights_file_names_it(tmp_path):
    with pytest.raises(BackboneError, match=r"nope\.pt: no weights file for resnet50"):
        build_backbone("resnet50", "imagenet", tmp_path / "nope.pt")


def test_marker_file_is_rejected_for_pretrained(tmp_path):
    torch.save({}, tmp_path / "marker.pt")
    with pytest.raises(BackboneError, match="empty marker"):
        build_backbone("resnet50", "imagenet", tmp_path / "marker.pt")


def test_irv1_checkpoint_with_logits_loads(tmp_path):
    torch.manual_seed(1)
    donor = build_backbone("inception_resnet_v1", "none")
    state = dict(donor.net.state_dict())
    state["logits.weight"] = torch.zeros(8631, 512)  # as in the facenet checkpoint
    state["logits.bias"] = torch.zeros(8631)
    torch.save(state, tmp_path / "w.pt")
    model = build_backbone("inception_resnet_v1", "vggface2", tmp_path / "w.pt")
    torch.testing.assert_close(model.net.block8.conv2d.weight, donor.net.block8.conv2d.weight)


def test_resnet_imagenet_checkpoint_loads_without_fc(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(2)
    imagenet = resnet50(weights=None)
    torch.save(imagenet.state_dict(), tmp_path / "r.pt")
    model = build_backbone("resnet50", "imagenet", tmp_path / "r.pt")
    torch.testing.assert_close(model.net.layer4[0].conv1.weight, imagenet.layer4[0].conv1.weight)
    assert isinstance(model.net.fc[1], nn.Linear) and model.net.fc[1].out_features == 512


def test_foreign_checkpoint_is_rejected(tmp_path):
    torch.save({"something.weight": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(BackboneError, match="does not fit resnet50"):
        build_backbone("resnet50", "imagenet", tmp_path / "x.pt")


def test_freeze_by_count_and_by_name():
    spec = get_spec("resnet50")
    model = build_backbone("resnet50")
    assert freeze_stages(model, spec, "layer1") == ["stem", "layer1"]
    assert not any(p.requires_grad for p in model.net.layer1.parameters())
    assert all(p.requires_grad for p in model.net.layer2.parameters())
    model = build_backbone("resnet50")
    assert freeze_stages(model, spec, 3) == ["stem", "layer1", "layer2"]
    assert not model.net.conv1.weight.requires_grad
    with pytest.raises(BackboneError, match=r"unknown stage 'layer9'.*valid: stem, layer1"):
        freeze_stages(model, spec, "layer9")


def test_freeze_batchnorm_keeps_running_stats():
    spec = get_spec("resnet50")
    model = build_backbone("resnet50").train()
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
