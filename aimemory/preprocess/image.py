"""CLIP image preprocessing, bit-identical to the reference (HF ``CLIPImageProcessor``, PIL backend).

Per image (PIL does the pixel work in C): RGB with transparency composited onto white, shortest side
resized to ``size`` with the long side truncated (``int(size * long / short)``), PIL bicubic, center
crop at ``(h - crop) // 2`` (zero padding when the image is smaller). The batch is then rescaled and
normalised as one tensor: uint8 -> float64 * rescale -> float32, ``(x - mean) / std`` in float32,
exactly the reference's order of float operations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..inputs import eight_bit
from ..prefetch import ReadyInputs, decode_threads, thread_map

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_SIZE = 224
RESCALE = 1 / 255
PREPROCESSOR_FILE = "preprocessor_config.json"
WHITE = (255, 255, 255, 255)
#: past this many pixels after the resize (a 48 MB RGB image; ~320:1 at 224), only the source box of
#: the centre crop is resized: the same pixels but at the box's edges, where the filter reads no further
RESIZE_MAX_PIXELS = 16_000_000
READY = ReadyInputs()  # inputs resized ahead on decoding threads (prepare), taken by to_uint8


@dataclass(frozen=True)
class ImagePreprocessor:
    """Settings of one checkpoint's image pipeline; call it on a list of PIL images."""

    size: int = DEFAULT_SIZE  # shortest edge after resize
    crop_height: int = DEFAULT_SIZE
    crop_width: int = DEFAULT_SIZE
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD
    rescale_factor: float = RESCALE
    resample: int = Image.Resampling.BICUBIC
    do_resize: bool = True
    do_center_crop: bool = True
    do_normalize: bool = True

    @classmethod
    def for_size(cls, image_size: int, **kw) -> "ImagePreprocessor":
        """OpenAI / open_clip checkpoints: resize and crop to the model's input size."""
        return cls(size=image_size, crop_height=image_size, crop_width=image_size, **kw)

    @classmethod
    def from_folder(cls, folder: str | Path, image_size: int = DEFAULT_SIZE) -> "ImagePreprocessor":
        """Read HF ``preprocessor_config.json`` when present, else CLIP defaults at ``image_size``."""
        file = Path(folder) / PREPROCESSOR_FILE
        if not file.is_file():
            return cls.for_size(image_size)
        return cls.from_config(json.loads(file.read_text()), image_size)

    @classmethod
    def from_config(cls, cfg: dict, image_size: int = DEFAULT_SIZE) -> "ImagePreprocessor":
        size = cfg.get("size", image_size)
        if isinstance(size, dict):  # {"shortest_edge": 224}; square {"height", "width"} is rare for CLIP
            size = size.get("shortest_edge") or min(size.get("height", image_size), size.get("width", image_size))
        crop = cfg.get("crop_size", size)
        ch, cw = (crop.get("height", size), crop.get("width", size)) if isinstance(crop, dict) else (crop, crop)
        return cls(
            size=int(size), crop_height=int(ch), crop_width=int(cw),
            mean=tuple(cfg.get("image_mean", OPENAI_CLIP_MEAN)), std=tuple(cfg.get("image_std", OPENAI_CLIP_STD)),
            rescale_factor=float(cfg.get("rescale_factor", RESCALE)),
            resample=int(cfg.get("resample", Image.Resampling.BICUBIC)),
            do_resize=cfg.get("do_resize", True), do_center_crop=cfg.get("do_center_crop", True),
            do_normalize=cfg.get("do_normalize", True),
        )

    # -- per image: PIL in C ---------------------------------------------------------------------
    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) -> (w, h) after the shortest-edge resize; the long side is truncated, not rounded."""
        if width <= height:
            return self.size, int(self.size * height / width)
        return int(self.size * width / height), self.size

    def to_uint8(self, image: Image.Image) -> np.ndarray:
        """One image -> (crop_h, crop_w, 3) uint8 after RGB, resize and crop."""
        ready = READY.take(self, image)
        return ready if isinstance(ready, np.ndarray) else self._resized_and_cropped(image)

    def prepare(self, image: Image.Image) -> None:
        """Resize and crop ``image`` now (on a decoding thread) for the batch that embeds it later."""
        READY.put(self, image, self._resized_and_cropped(image))

    def _resized_and_cropped(self, image: Image.Image) -> np.ndarray:
        image = to_rgb(image)
        if self.do_resize:
            w, h = self.resized_size(*image.size)
            if self.do_center_crop and w * h > RESIZE_MAX_PIXELS and w >= self.crop_width and h >= self.crop_height:
                # a panorama's resize would be huge (60000 x 2 -> 6.7M x 224): resize only the source
                # box that becomes the centre crop
                top, left = (h - self.crop_height) // 2, (w - self.crop_width) // 2
                sx, sy = image.width / w, image.height / h
                box = (left * sx, top * sy, (left + self.crop_width) * sx, (top + self.crop_height) * sy)
                return np.asarray(image.resize((self.crop_width, self.crop_height), self.resample, box=box))
            image = image.resize((w, h), resample=self.resample)
        arr = np.asarray(image)  # (h, w, 3)
        return center_crop(arr, self.crop_height, self.crop_width) if self.do_center_crop else arr

    # -- batch: one tensor op per step ---------------------------------------------------------
    def __call__(self, images: Sequence[Image.Image], device: "torch.device | None" = None) -> torch.Tensor:
        """PIL images -> (n, 3, H, W) float32 normalised pixels, on ``device`` (default: the CPU).

        A CUDA ``device`` receives the uint8 pixels and does the arithmetic there: a quarter of the
        bytes over the bus, and the CPU thread that feeds the GPU is free for the next batch."""
        # PIL resamples without the GIL, so a batch's resizes spread over the decoding threads
        u8 = torch.from_numpy(np.stack(thread_map(self.to_uint8, images, threads=decode_threads())))  # (n, H, W, 3)
        if device is not None:
            u8 = u8.to(device, non_blocking=True)
        x = (u8.to(torch.float64) * self.rescale_factor).to(torch.float32)  # float64 as the reference rescales
        if self.do_normalize:
            mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device)
            std = torch.tensor(self.std, dtype=torch.float32, device=x.device)
            x = (x - mean) / std  # broadcast over the channel-last axis
        return x.permute(0, 3, 1, 2).contiguous()  # (n, 3, H, W)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparent pixels become white, like the reference processor."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = eight_bit(image)
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def center_crop(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, c) -> (height, width, c): top/left at ``(h - height) // 2``; zero padding where the
    image is smaller, placed as the reference does (pad offset rounded up)."""
    h, w = arr.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    if top >= 0 and left >= 0:
        return arr[top:top + height, left:left + width]
    nh, nw = max(h, height), max(w, width)
    pad_top, pad_left = -(-(nh - h) // 2), -(-(nw - w) // 2)  # ceil division
    canvas = np.zeros((nh, nw) + arr.shape[2:], dtype=arr.dtype)
    canvas[pad_top:pad_top + h, pad_left:pad_left + w] = arr
    top, left = top + pad_top, left + pad_left
    return canvas[max(0, top):max(0, top) + height, max(0, left):max(0, left) + width]
