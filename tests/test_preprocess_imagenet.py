"""ImageNet preprocessing for EfficientNet-Lite: TF's eval crop geometry, normalisation, EXIF
orientation, odd modes, channels-last output, and the multi-view ``crops`` helper."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from aimemory.preprocess.imagenet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_VIEWS,
    ImageNetPreprocessor,
    crops,
)


def _photo(w: int = 451, h: int = 300, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    arr[: h // 3] = (250, 10, 10)  # a red band on top: orientation shows
    return Image.fromarray(arr)


def test_crop_geometry_follows_tf():
    pre = ImageNetPreprocessor(size=224)
    assert pre.crop_box(451, 300) == (95, 19, 357, 281)  # side int(224/256 * 300) = 262, odd pixel before
    assert pre.crop_box(256, 256) == (16, 16, 240, 240)  # 0.875 at 224
    side = ImageNetPreprocessor(size=260).crop_box(1000, 1000)
    assert side[2] - side[0] == int(260 / 292 * 1000)


def test_output_layout_and_normalisation():
    pre = ImageNetPreprocessor(size=240)
    grey = Image.new("RGB", (300, 200), (127, 127, 127))
    white = Image.new("RGB", (200, 300), (255, 255, 255))
    x = pre([grey, white])
    assert x.shape == (2, 3, 240, 240) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.all(x[0] == 0) and torch.allclose(x[1], torch.full_like(x[1], 128 / 128))
    imagenet = ImageNetPreprocessor(mean=IMAGENET_MEAN, std=IMAGENET_STD)([white])
    white = torch.tensor([(255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
    assert torch.allclose(imagenet[0, :, 0, 0], white)
    assert pre([]).shape == (0, 3, 240, 240)


def test_exif_orientation_is_applied():
    photo = _photo()
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    photo.save(buf, "JPEG", quality=95, exif=exif)
    tagged = Image.open(io.BytesIO(buf.getvalue()))
    pre = ImageNetPreprocessor()
    upright = pre.to_uint8(tagged)
    stored = np.asarray(Image.open(io.BytesIO(buf.getvalue())))  # as stored, no orientation applied
    np.testing.assert_array_equal(upright, pre.to_uint8(Image.fromarray(np.rot90(stored, k=-1).copy())))
    assert upright[:, -20:, 0].mean() > 200 and upright[:, :20, 0].mean() < 200  # the red band is now on the right


def test_modes_become_rgb():
    pre = ImageNetPreprocessor(size=64)
    rgba = Image.new("RGBA", (80, 80), (0, 0, 0, 0))  # fully transparent: white, like the CLIP path
    x = pre([rgba, Image.new("L", (80, 90), 30), Image.new("P", (70, 70)), np.zeros((50, 60, 3), np.uint8)])
    assert x.shape == (4, 3, 64, 64)
    assert torch.allclose(x[0], torch.full_like(x[0], 1.0))


def test_crops_views():
    photo = _photo()
    pre = ImageNetPreprocessor(size=224)
    views = crops(photo, 224, MAX_VIEWS)
    assert views.shape == (MAX_VIEWS, 3, 224, 224)
    assert torch.equal(views[0], pre([photo])[0])  # the first view is the eval view
    assert torch.equal(views[1], views[0].flip(-1))
    assert torch.equal(views[4], views[2].flip(-1)) and torch.equal(views[5], views[3].flip(-1))
    squashed_top = views[2][0, :40].mean()  # the whole red band is in the squashed view
    assert squashed_top > 0.8
    padded = views[3]  # letterboxed: grey (zero) bars above and below a wide photo
    assert torch.all(padded[:, :20].abs() < 0.02) and torch.all(padded[:, -20:].abs() < 0.02)
    assert crops(photo, 224, 1).shape == (1, 3, 224, 224)
    assert torch.equal(pre.crops(photo, 3), views[:3])
    for bad in (0, MAX_VIEWS + 1):
        with pytest.raises(ValueError):
            crops(photo, 224, bad)


def test_a_long_panorama_is_reduced_before_its_padded_canvas(monkeypatch):
    """The padded view's canvas is the long side squared: a 60000 x 2 image asked for 10 GB."""
    from aimemory.preprocess import imagenet

    made = []
    real_new = Image.new
    monkeypatch.setattr(Image, "new", lambda mode, size, *a: made.append(size) or real_new(mode, size, *a))
    panorama = real_new("RGB", (60000, 2), (200, 30, 30))
    views = crops(panorama, 224, 4)
    assert views.shape == (4, 3, 224, 224) and torch.isfinite(views).all()
    assert max(max(s) for s in made) <= imagenet.PAD_SIDE_MAX
    # just over the bound the padded view is still the picture: reduced first, then padded
    wide = Image.fromarray(np.tile(np.linspace(0, 255, 4100, dtype=np.uint8), (1000, 1))).convert("RGB")
    made.clear()
    padded = crops(wide, 224, 4)[3]
    assert max(max(s) for s in made) <= imagenet.PAD_SIDE_MAX
    canvas = real_new("RGB", (4100, 4100), tuple(int(round(m)) for m in imagenet.TF_LITE_MEAN))
    canvas.paste(wide, (0, 1550))
    resized = np.array(canvas.resize((224, 224), imagenet.RESAMPLE))  # (224, 224, 3)
    reference = ImageNetPreprocessor(size=224).normalize(resized[None])[0]
    assert (padded - reference).abs().mean() < 0.01
