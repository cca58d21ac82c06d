"""The study's network: the head, loading a backbone, freezing, and the input transform."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cxrtl.errors import CxrtlError
from cxrtl.model import build_model, paper_head, set_backbone_trainable
from cxrtl.transforms import to_model_input
from cxrtl.weights import stand_in_backbone


@pytest.fixture(scope="module")
def backbone() -> dict[str, torch.Tensor]:
    return stand_in_backbone("imagenet", seed=5)


def test_head_is_the_studys_dropout_mlp():
    head = build_model().fc
    assert isinstance(head, nn.Sequential)
    expected = [
        (nn.Linear, (2048, 2048)),
        (nn.Dropout, 0.5),
        (nn.Linear, (2048, 2048)),
        (nn.ReLU, None),
        (nn.Dropout, 0.5),
        (nn.Linear, (2048, 2)),
    ]
    assert len(head) == len(expected)
    for layer, (kind, shape) in zip(head, expected, strict=True):
        assert type(layer) is kind
        if kind is nn.Linear:
            assert (layer.in_features, layer.out_features) == shape and layer.bias is not None
        elif kind is nn.Dropout:
            assert layer.p == shape
    assert [type(m) for m in paper_head()] == [type(m) for m in head]


def test_build_model_loads_every_backbone_tensor_bit_identical(backbone):
    model = build_model(backbone)
    state = model.state_dict()
    assert len(backbone) == 318
    assert set(state) - set(backbone) == {k for k in state if k.startswith("fc.")}
    for name, tensor in backbone.items():
        assert state[name].dtype == tensor.dtype
        assert torch.equal(state[name], tensor), name
    # Without a backbone it is a fresh initialisation, not the stand-in.
    assert not torch.equal(build_model().state_dict()["conv1.weight"], backbone["conv1.weight"])


def test_build_model_refuses_a_backbone_that_does_not_fit(backbone):
    missing = {k: v for k, v in backbone.items() if k != "layer4.2.conv3.weight"}
    with pytest.raises(CxrtlError, match=r"layer4\.2\.conv3\.weight"):
        build_model(missing)
    with pytest.raises(CxrtlError, match="projection"):
        build_model({**backbone, "projection.weight": torch.zeros(3)})


def test_forward_gives_two_logits_per_image(backbone):
    model = build_model(backbone).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 32, 32))
    assert out.shape == (3, 2) and torch.isfinite(out).all()


def test_set_backbone_trainable_freezes_all_but_the_head():
    model = build_model()
    set_backbone_trainable(model, False)
    params = dict(model.named_parameters())
    trainable = {name for name, p in params.items() if p.requires_grad}
    assert trainable == {name for name in params if name.startswith("fc.")}
    assert len(trainable) == 6  # three Linear layers, weight and bias
    set_backbone_trainable(model, True)
    assert all(p.requires_grad for p in model.parameters())


def test_frozen_backbone_gets_no_gradient_but_batchnorm_statistics_still_move():
    model = build_model().train()
    set_backbone_trainable(model, False)
    before = model.bn1.running_mean.clone()
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    assert model.conv1.weight.grad is None and model.bn1.weight.grad is None
    assert model.fc[0].weight.grad is not None
    assert not torch.equal(model.bn1.running_mean, before)


def test_to_model_input_repeats_gray_into_three_channels_in_unit_range():
    batch = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8).repeat(2, 1, 1)
    x = to_model_input(batch, normalize=False)
    assert x.shape == (2, 3, 2, 2) and x.dtype == torch.float32 and x.is_contiguous()
    expected = torch.tensor([[0.0, 1.0], [0.2, 0.4]])
    for channel in range(3):
        assert torch.allclose(x[0, channel], expected)
    assert batch.dtype == torch.uint8 and batch[0, 0, 1] == 255  # the stored batch is left alone


def test_to_model_input_normalises_with_imagenet_statistics():
    batch = torch.tensor([[[0, 255]]], dtype=torch.uint8)
    x = to_model_input(batch, normalize=True)
    assert x.shape == (1, 3, 1, 2)
    # torchvision's ImageNet statistics, written out: the test must not take them from the code it checks.
    imagenet = ((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))
    for channel, (mean, std) in enumerate(imagenet):
        assert x[0, channel, 0, 0].item() == pytest.approx(-mean / std, abs=1e-6)
        assert x[0, channel, 0, 1].item() == pytest.approx((1 - mean) / std, abs=1e-6)
