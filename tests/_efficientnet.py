"""Test helpers for EfficientNet-Lite: the reference implementation (``pip install --no-deps
efficientnet-lite-pytorch==0.1.0``), random-weight checkpoints in the published ``.pth`` layout,
real photos from scikit-image's wheel (read as files) and synthetic images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = (967, 968, 504)  # espresso, cup, coffee mug
PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "astronaut.png")


@pytest.fixture
def one_thread():
    """Tests run torch on one thread: on a shared 2-core machine two OpenMP threads spin-wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reference_package():
    return pytest.importorskip("efficientnet_lite_pytorch")


def reference(variant: str, weights: Path | None = None, *, image_size: int | None = -1) -> torch.nn.Module:
    """The reference network of ``"lite0"``..``"lite4"`` in eval mode, with ``weights`` (a .pth) or
    its own random init. ``image_size=None`` gives it dynamic TF padding (any input size); the
    default keeps its static padding for the variant's own resolution."""
    ref = reference_package()
    override = {} if image_size == -1 else {"image_size": image_size}
    net = ref.EfficientNet.from_name(f"efficientnet-{variant}", **override)
    if weights is not None:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return net.eval()


def reference_outputs(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pooled features) of the reference for (n, 3, H, W) pixels."""
    with torch.no_grad():
        features = net._avg_pooling(net.extract_features(x)).flatten(1)
        return net._fc(features), features


def randomized(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every batch norm non-trivial statistics and affine terms, so BN folding is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.2)
                m.weight.copy_(1 + torch.randn(n, generator=g) * 0.2)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return net


def skimage_photo(name: str) -> Image.Image:
    """A photo from scikit-image's wheel (its data folder is found without importing skimage)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-image is not installed (test extra)")
    path = Path(spec.origin).parent / "data" / name
    if not path.is_file():
        pytest.skip(f"scikit-image ships no {name}")
    return Image.open(path)


def synthetic_images(seed: int = 0) -> list[Image.Image]:
    """Images of several sizes and modes: gradient, noise, stripes, a grey and an RGBA one."""
    rng = np.random.default_rng(seed)
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w]
    gradient = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1).astype(np.uint8)
    noise = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    stripes = np.zeros((256, 256, 3), np.uint8)
    stripes[:, ::16] = (255, 40, 40)
    grey = Image.fromarray((rng.random((180, 180)) * 255).astype(np.uint8), "L")
    rgba = Image.fromarray(np.dstack([gradient, np.full((h, w), 200, np.uint8)]), "RGBA")
    return [Image.fromarray(gradient), Image.fromarray(noise), Image.fromarray(stripes), grey, rgba]


def cosine(a, b) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(torch.as_tensor(a), torch.as_tensor(b), dim=-1)
