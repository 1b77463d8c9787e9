"""The backbone registry: feature contract vs real tensors, parity with torchvision for the same
weights, ImageNet weights from the weight store, input-channel adaptation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from _factories import make_torchvision_classifier

from densecnn.backbones import BACKBONES, Preprocess, build_backbone
from densecnn.errors import UsageError, WeightsUnavailableError
from densecnn.tasks.classify.head import build_imagenet_classifier

NAMES = BACKBONES.names()
TORCHVISION = [n for n in NAMES if BACKBONES.get(n).classifier_arch is not None]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small tensors: one intra-op thread. Two threads spin-wait on each other whenever another
    process holds a core, which made these tests several times slower on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tv_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[torch.nn.Module, Path]]:
    """arch → (seeded torchvision classifier, its state dict saved with torch.save), made on demand."""
    folder = tmp_path_factory.mktemp("tv")

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, arch: str) -> tuple[torch.nn.Module, Path]:
            model = make_torchvision_classifier(arch)
            path = folder / f"{arch}.pth"
            torch.save(model.state_dict(), path)
            self[arch] = (model, path)
            return self[arch]

    return Lazy()


def test_registry_holds_the_promised_backbones() -> None:
    assert set(NAMES) == {
        "resnet18",
        "resnet34",
        "resnet50",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "convnext_tiny",
        "lenet",
    }
    for name in TORCHVISION:
        spec = BACKBONES.get(name)
        assert spec.weights is not None and spec.weights.url.endswith(spec.weights.file_name)
        assert len(spec.preprocess.mean) == 3
    assert BACKBONES.get("lenet").weights is None
    with pytest.raises(UsageError, match="resnet18"):
        BACKBONES.get("resnet-18")


def test_registry_and_heads_import_without_torch() -> None:
    code = (
        "import sys, densecnn.backbones, densecnn.zoo.heads, densecnn.zoo.imagenet; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", NAMES)
def test_feature_info_matches_real_shapes(name: str, random_backbone: Callable) -> None:
    backbone = random_backbone(name)
    spec = BACKBONES.get(name)
    assert backbone.name == name
    assert backbone.feature_info == spec.feature_info
    assert backbone.strides == sorted(set(backbone.strides))  # strictly increasing
    h, w = 64, 96  # not square: catches swapped axes
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, h, w))
    assert [tuple(t.shape) for t in out] == [
        (2, f.channels, h // f.stride, w // f.stride) for f in backbone.feature_info
    ]


@pytest.mark.parametrize("name", ["lenet", "resnet18"])
def test_gray_input(name: str) -> None:
    backbone = build_backbone(name, in_channels=1).eval()
    assert backbone.in_channels == 1
    with torch.no_grad():
        out = backbone(torch.randn(1, 1, 32, 32))
    assert out[-1].shape[1] == backbone.channels[-1]


def _tv_stages(model: torch.nn.Module, arch: str, x: torch.Tensor) -> list[torch.Tensor]:
    """torchvision's own intermediate features at the registry's stage ends."""
    from torchvision.models.feature_extraction import create_feature_extractor

    from densecnn.backbones.registry import STAGE_ENDS

    ends = STAGE_ENDS[arch]
    nodes = (
        ["relu", "layer1", "layer2", "layer3", "layer4"] if ends is None else [f"features.{i}" for i in ends]
    )
    with torch.no_grad():
        out = create_feature_extractor(model, return_nodes=nodes)(x)
    return [out[n] for n in nodes]


def _assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal to 1e-5, relative to the tensor's scale (random-init activations shrink with depth)."""
    assert want.abs().max() > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("arch", TORCHVISION)
def test_stages_equal_torchvision_features(arch: str, tv_weights: dict) -> None:
    model, path = tv_weights[arch]
    backbone = build_backbone(arch, pretrained=path).eval()
    head_keys = ("fc.", "classifier.")
    # torchvision's parameter names, minus the classification head
    assert set(backbone.state_dict()) == {k for k in model.state_dict() if not k.startswith(head_keys)}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = backbone(x)
    want = _tv_stages(model, arch, x)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        _assert_close(g, w)


@pytest.mark.parametrize("arch", TORCHVISION)
def test_imagenet_classifier_equals_torchvision(arch: str, tv_weights: dict) -> None:
    """Backbone stages + torchvision's own head reproduce torchvision's ``model(x)`` logits."""
    model, path = tv_weights[arch]
    ours = build_imagenet_classifier(arch, weights=path).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = model(x), ours(x)
    assert got.shape == (2, 1000)
    _assert_close(got, want)


def test_pretrained_true_reads_the_weight_store(
    tv_weights: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = BACKBONES.get("resnet18")
    assert spec.weights is not None
    monkeypatch.setenv("DENSECNN_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("DENSECNN_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match=spec.weights.file_name):
        build_backbone("resnet18", pretrained=True)
    model, path = tv_weights["resnet18"]
    shutil.copy(path, tmp_path / spec.weights.file_name)
    backbone = build_backbone("resnet18", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _assert_close(backbone(x)[-1], _tv_stages(model, "resnet18", x)[-1])
    with pytest.raises(UsageError, match="no ImageNet weights"):
        build_backbone("lenet", pretrained=True)


def test_wrong_weights_file_is_a_usage_error(tv_weights: dict) -> None:
    _, path = tv_weights["resnet18"]
    with pytest.raises(UsageError, match="does not fit torchvision's resnet34"):
        build_backbone("resnet34", pretrained=path)


def test_gray_adaptation_keeps_what_rgb_weights_see(tv_weights: dict) -> None:
    """A gray image through the adapted first conv = the same image as R = G = B through torchvision."""
    model, path = tv_weights["resnet18"]
    gray = build_backbone("resnet18", pretrained=path, in_channels=1).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        got = gray(x)
    for g, w in zip(got, _tv_stages(model, "resnet18", x.expand(-1, 3, -1, -1)), strict=True):
        _assert_close(g, w)


def test_preprocess_for_channels() -> None:
    rgb = Preprocess(resize=256, crop=224, mean=(0.4, 0.5, 0.6), std=(0.2, 0.2, 0.2))
    assert rgb.for_channels(3) is rgb
    gray = rgb.for_channels(1)
    assert gray.mean == pytest.approx((0.5,)) and gray.std == pytest.approx((0.2,))
    assert rgb.for_channels(4).mean == (0.4, 0.5, 0.6, 0.4)
