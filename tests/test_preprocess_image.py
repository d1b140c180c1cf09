"""Native image preprocessing == transformers' CLIP image processor (PIL backend), pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")

from aimemory.preprocess.image import ImagePreprocessor, center_crop  # noqa: E402


def reference(**kw):
    """The PIL-backend processor (what ``CLIPImageProcessor`` is without torchvision)."""
    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(**kw)


def rand_image(w, h, mode="RGB", seed=0):
    rng = np.random.default_rng(seed + w * 7 + h)
    if mode == "P":
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).quantize(16)
        return im
    bands = len(Image.new(mode, (1, 1)).getbands())
    arr = rng.integers(0, 256, (h, w, bands) if bands > 1 else (h, w), dtype=np.uint8)
    return Image.fromarray(arr, mode if mode != "RGB" else None) if mode in ("RGB", "RGBA", "L", "LA") \
        else Image.fromarray(arr[..., :3] if bands > 1 else arr).convert(mode)


def p_with_transparency():
    im = rand_image(50, 30, "P")
    im.info["transparency"] = 3  # palette index 3 is transparent -> composited on white
    return im


CASES = {
    "rgb_landscape": rand_image(640, 480),
    "rgb_portrait": rand_image(333, 517),
    "rgb_exact": rand_image(224, 224),
    "rgba": rand_image(300, 200, "RGBA"),
    "l": rand_image(257, 129, "L"),
    "la": rand_image(90, 260, "LA"),
    "p": rand_image(120, 99, "P"),
    "p_transparent": p_with_transparency(),
    "cmyk": rand_image(230, 240, "CMYK"),
    "tiny": rand_image(1, 1),
    "tiny_odd": rand_image(3, 2),
    "wide": rand_image(2000, 5),
    "tall": rand_image(7, 1500),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_equal_to_reference_default(name):
    image = CASES[name]
    ref = reference()(images=[image], return_tensors="np")["pixel_values"]
    ours = ImagePreprocessor()([image]).numpy()
    assert ours.shape == ref.shape == (1, 3, 224, 224) and ours.dtype == np.float32
    assert np.array_equal(ours, ref), f"max abs diff {np.abs(ours - ref).max()}"


def test_batch_and_config_from_folder(tmp_path):
    """A saved preprocessor config (other size, crop, mean/std) is read; batches match one by one."""
    kw = dict(size={"shortest_edge": 64}, crop_size={"height": 48, "width": 56}, image_mean=[0.5, 0.4, 0.3],
              image_std=[0.2, 0.25, 0.3])
    ref_proc = reference(**kw)
    ref_proc.save_pretrained(tmp_path)
    ours = ImagePreprocessor.from_folder(tmp_path)
    assert (ours.size, ours.crop_height, ours.crop_width) == (64, 48, 56)
    images = [CASES[k] for k in ("rgb_landscape", "rgba", "l", "wide", "tiny")]
    ref = ref_proc(images=images, return_tensors="np")["pixel_values"]
    got = ours(images)
    assert isinstance(got, torch.Tensor) and np.array_equal(got.numpy(), ref)


def test_crop_larger_than_resize_pads_like_reference():
    kw = dict(size={"shortest_edge": 20}, crop_size={"height": 32, "width": 27})
    images = [rand_image(41, 23), rand_image(20, 20), rand_image(5, 90)]
    ref = reference(**kw)(images=images, return_tensors="np")["pixel_values"]
    ours = ImagePreprocessor.from_config({k: v for k, v in kw.items()})(images).numpy()
    assert np.array_equal(ours, ref)


def test_center_crop_offsets():
    arr = np.arange(5 * 6).reshape(5, 6, 1)
    assert center_crop(arr, 2, 3)[..., 0].tolist() == [[7, 8, 9], [13, 14, 15]]  # top=(5-2)//2, left=(6-3)//2


def test_openai_size_defaults():
    p = ImagePreprocessor.for_size(336)
    assert p([rand_image(400, 500)]).shape == (1, 3, 336, 336)


def test_a_panorama_resizes_only_the_box_that_becomes_the_centre_crop(monkeypatch):
    """A 60000 x 2 image resized to a 224 short side is 6.7M x 224 pixels (4.5 GB): only the source
    box of the crop is resized, with the pixels the whole resize would have given."""
    import aimemory.preprocess.image as image_mod

    pre = image_mod.ImagePreprocessor()
    rng = np.random.default_rng(0)
    wide = Image.fromarray(rng.integers(0, 256, (20, 1600, 3), dtype=np.uint8))  # resized to 17920 x 224
    monkeypatch.setattr(image_mod, "RESIZE_MAX_PIXELS", 3_000_000)
    boxed = pre.to_uint8(wide)
    monkeypatch.setattr(image_mod, "RESIZE_MAX_PIXELS", 10**12)
    whole = pre.to_uint8(wide)
    assert boxed.shape == whole.shape == (224, 224, 3)
    assert np.abs(boxed.astype(int) - whole.astype(int)).mean() < 1.0
    monkeypatch.undo()
    assert pre.to_uint8(Image.new("RGB", (60000, 2), (10, 20, 30))).shape == (224, 224, 3)
