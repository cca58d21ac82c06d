"""Grad-CAM: localisation on a hand-built network, the ResNet50's maps, the images chosen and the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cxrtl.errors import CxrtlError
from cxrtl.gradcam import GradCamSet, confident_mistakes, explain, fixed_images, grad_cam
from cxrtl.model import build_model
from cxrtl.transforms import to_model_input

SIZE = 64


class ChannelPicker(nn.Module):
    """features (identity) -> global average pool -> linear, like a ResNet's end: class 1 is the red
    channel's mean minus the blue one's, class 0 the green channel's. The classes look at different channels."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 3, kernel_size=1, bias=False)
        self.head = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.head.weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, -1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def patches_image() -> torch.Tensor:
    """Red in the top-left quarter, green in the bottom-right, blue in the top-right: [1, 3, 32, 32]."""
    x = torch.zeros(1, 3, 32, 32)
    x[0, 0, :16, :16] = 1.0
    x[0, 1, 16:, 16:] = 1.0
    x[0, 2, :16, 16:] = 1.0
    return x


def quarters(cam: np.ndarray) -> dict[str, float]:
    return {
        "top-left": cam[:16, :16].mean(),
        "top-right": cam[:16, 16:].mean(),
        "bottom-left": cam[16:, :16].mean(),
        "bottom-right": cam[16:, 16:].mean(),
    }


@pytest.mark.parametrize(("target", "region"), [(1, "top-left"), (0, "bottom-right")])
def test_the_map_lights_the_region_that_drives_the_class(target, region):
    model = ChannelPicker().eval()
    cam = grad_cam(model, model.features, patches_image(), target)[0]
    means = quarters(cam)
    assert means[region] > 0.9
    # Everything else stays dark, including the blue patch that counts against class 1.
    assert all(value < 0.1 for name, value in means.items() if name != region), means


def test_gradients_do_not_reach_the_parameters_and_hooks_are_removed():
    model = ChannelPicker().eval()
    grad_cam(model, model.features, patches_image(), 1)
    assert all(p.grad is None for p in model.parameters())
    assert not model.features._forward_hooks


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return build_model().eval()


def test_resnet_maps_have_the_image_size_are_finite_and_depend_on_the_class(resnet):
    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(rng.integers(0, 256, (2, SIZE, SIZE), dtype=np.uint8))
    x = to_model_input(pixels, normalize=True)
    covid = grad_cam(resnet, resnet.layer4, x, 1)
    normal = grad_cam(resnet, resnet.layer4, x, 0)
    per_image = grad_cam(resnet, resnet.layer4, x, torch.tensor([1, 0]))
    for cam in (covid, normal):
        assert cam.shape == (2, SIZE, SIZE)
        assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1
    assert not np.allclose(covid, normal)
    np.testing.assert_allclose(per_image[0], covid[0], atol=1e-5)
    np.testing.assert_allclose(per_image[1], normal[1], atol=1e-5)


IDS = [f"covid/{i:03d}.png" for i in range(8)] + [f"normal/{i:03d}.png" for i in range(10)]
LABELS = np.array([1] * 8 + [0] * 10)


def test_fixed_images_are_per_class_and_do_not_depend_on_file_order():
    chosen = fixed_images(IDS, LABELS, per_class=3)
    assert list(LABELS[chosen]) == [1, 1, 1, 0, 0, 0]
    order = np.random.default_rng(1).permutation(len(IDS))
    shuffled = fixed_images([IDS[i] for i in order], LABELS[order], per_class=3)
    assert [IDS[order[i]] for i in shuffled] == [IDS[i] for i in chosen]
    assert len(fixed_images(IDS[:2], LABELS[:2], per_class=3)) == 2  # fewer than asked: all there are


def test_confident_mistakes_are_wrong_the_surest_first_and_skip_the_fixed_ones():
    labels = np.array([1, 1, 0, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.45, 0.95, 0.4, 0.6])  # wrong: 1 (0.2), 3 (0.95), 4 (0.4), 5 (0.6)
    assert list(confident_mistakes(labels, p, 0.5, exclude=np.array([], dtype=int))) == [3, 1, 4]
    assert list(confident_mistakes(labels, p, 0.5, exclude=np.array([3]), limit=5)) == [1, 4, 5]
    assert len(confident_mistakes(labels, np.where(labels == 1, 0.9, 0.1), 0.5, exclude=np.array([]))) == 0


def test_explain_shows_the_same_fixed_images_for_every_model_then_its_mistakes(resnet, tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (len(IDS) + 5, SIZE, SIZE), dtype=np.uint8)
    positions = np.arange(5, len(IDS) + 5)  # the test split's images lie after five others
    to_input = lambda pixels: to_model_input(pixels, normalize=False)  # noqa: E731
    right = explain(resnet, to_input, images, positions, IDS, LABELS, np.where(LABELS == 1, 0.9, 0.1), 0.5)
    confused = np.where(LABELS == 1, 0.9, 0.1)
    confused[[0, 1, 2, 3, 8, 9]] = 1 - confused[[0, 1, 2, 3, 8, 9]]
    wrong = explain(resnet, to_input, images, positions, IDS, LABELS, confused, 0.5)

    fixed = right.kinds.count("fixed")
    assert right.kinds == ["fixed"] * 6 and right.correct.all()
    assert wrong.ids[:fixed] == right.ids and wrong.kinds[fixed:] == ["mistake"] * 3
    assert not wrong.correct[fixed:].any()
    index = {image_id: k for k, image_id in enumerate(IDS)}
    for k, image_id in enumerate(wrong.ids):
        np.testing.assert_array_equal(wrong.images[k], images[positions[index[image_id]]])
    assert list(wrong.targets) == list((wrong.probabilities >= 0.5).astype(int))
    assert wrong.maps.dtype == np.uint8 and wrong.maps.shape == wrong.images.shape and wrong.maps.max() == 255

    wrong.save(tmp_path / "gradcam.npz")
    loaded = GradCamSet.load(tmp_path / "gradcam.npz")
    assert loaded.ids == wrong.ids and loaded.kinds == wrong.kinds and loaded.threshold == 0.5
    for name in ("labels", "probabilities", "targets", "images", "maps"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(wrong, name))


@pytest.mark.parametrize("content", [b"not a zip", b"PK\x03\x04 truncated"])
def test_a_damaged_file_is_one_error_line(tmp_path, content):
    (tmp_path / "gradcam.npz").write_bytes(content)
    with pytest.raises(CxrtlError, match=r"gradcam\.npz: not a Grad-CAM file written by cxrtl"):
        GradCamSet.load(tmp_path / "gradcam.npz")
