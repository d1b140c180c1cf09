"""ImageNet classifier input as EfficientNet-Lite was trained and evaluated (TensorFlow TPU repository).

Evaluation view: the centred square whose side is ``size / (size + 32)`` of the image's shorter side
(0.875 at 224; TF's ``CROP_PADDING`` of 32), resized to ``size`` x ``size`` (bicubic; PIL's resize of
the crop box does both in one pass, antialiased). Resolution per variant: Lite0 224, Lite1 240,
Lite2 260, Lite3 280, Lite4 300.

Normalisation: Lite models were trained on ``(pixel - 127) / 128`` ("inception-style", chosen by TF
for post-quantisation), not the ImageNet mean/std of the EfficientNet-B models. The PyTorch port's
README example uses ImageNet mean/std; the checkpoints classify photos either way, but on the
scikit-image sample photos (cat, coffee, rocket, motorbike) Lite0 gives the true class a higher
probability with the training normalisation (cat 0.92 vs 0.86, coffee 0.97 vs 0.91), so that is
the default; :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` remain available.

Per image: EXIF orientation applied, any mode to RGB (transparency onto white). The batch comes out
as (n, 3, S, S) float32 in channels-last memory order (a free permute of the stacked pixels), which
is also the layout the network runs fastest in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from ..prefetch import decode_threads, thread_map
from .image import to_rgb

TF_LITE_MEAN = (127.0, 127.0, 127.0)  # on 0..255 pixels, as the Lite checkpoints were trained
TF_LITE_STD = (128.0, 128.0, 128.0)
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)  # the EfficientNet-B / torchvision convention
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
CROP_PADDING = 32  # TF's eval crop: size / (size + 32) of the shorter side
DEFAULT_SIZE = 224
RESAMPLE = Image.Resampling.BICUBIC
MAX_VIEWS = 6  # crops(): centre, centre mirrored, squashed, padded, squashed mirrored, padded mirrored
#: the padded view's square canvas is the long side squared: a 60000 x 2 panorama asked for 10 GB, so
#: an image longer than this is first reduced (a box filter; a phone's 4032 x 3024 photo is not)
PAD_SIDE_MAX = 4096


@dataclass(frozen=True)
class ImageNetPreprocessor:
    """Centre crop + resize + normalise; call it on a list of PIL images."""

    size: int = DEFAULT_SIZE
    crop_padding: int = CROP_PADDING
    mean: tuple[float, ...] = TF_LITE_MEAN
    std: tuple[float, ...] = TF_LITE_STD
    resample: int = RESAMPLE

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the centred eval square, as TF places it (odd pixel before)."""
        side = max(1, int(self.size / (self.size + self.crop_padding) * min(width, height)))
        left, top = (width - side + 1) // 2, (height - side + 1) // 2
        return left, top, left + side, top + side

    def to_uint8(self, image: Image.Image) -> np.ndarray:
        """One image -> (size, size, 3) uint8: orientation, RGB, centre crop and resize."""
        image = upright_rgb(image)
        box = self.crop_box(*image.size)
        return np.asarray(image.resize((self.size, self.size), self.resample, box=box))

    def normalize(self, u8: np.ndarray) -> torch.Tensor:
        """(n, S, S, 3) uint8 -> (n, 3, S, S) float32, channels-last in memory."""
        x = torch.from_numpy(np.ascontiguousarray(u8)).to(torch.float32)  # (n, S, S, 3)
        x.sub_(torch.tensor(self.mean, dtype=torch.float32)).div_(torch.tensor(self.std, dtype=torch.float32))
        return x.permute(0, 3, 1, 2)  # (n, 3, S, S) view: channels-last strides

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> (n, 3, size, size) float32 normalised pixels."""
        if not len(images):
            return torch.zeros((0, 3, self.size, self.size)).contiguous(memory_format=torch.channels_last)
        return self.normalize(np.stack(thread_map(self.to_uint8, images, threads=decode_threads())))

    def crops(self, image: Image.Image, n: int = 2) -> torch.Tensor:
        """Several views of one image -> (n, 3, size, size), see :func:`crops`."""
        return crops(image, self.size, n, preprocessor=self)


def upright_rgb(image: Image.Image) -> Image.Image:
    """EXIF orientation applied (phone photos), then RGB."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return to_rgb(ImageOps.exif_transpose(image))


def crops(image: Image.Image, size: int = DEFAULT_SIZE, n: int = 2, *,
          preprocessor: ImageNetPreprocessor | None = None) -> torch.Tensor:
    """Up to six views of one image, normalised like the eval view -> (n, 3, size, size), in this order:
    the eval centre crop, the same mirrored, the whole image squashed to a square, the whole image
    padded to a square (grey, the normalisation's zero), the squashed view mirrored, the padded view
    mirrored. The centre crop misses what lies near the edges of wide or tall photos; the other views
    keep it. Averaging logits over views is the caller's choice."""
    if not 1 <= n <= MAX_VIEWS:
        raise ValueError(f"n must be between 1 and {MAX_VIEWS}, got {n}")
    pre = preprocessor or ImageNetPreprocessor(size=size)
    if pre.size != size:
        raise ValueError(f"size {size} differs from the preprocessor's {pre.size}")
    image = upright_rgb(image)
    w, h = image.size
    centre = image.resize((size, size), pre.resample, box=pre.crop_box(w, h))
    squashed = image.resize((size, size), pre.resample)
    if max(w, h) > PAD_SIDE_MAX:
        image = image.reduce(-(-max(w, h) // PAD_SIDE_MAX))  # (w, h) / factor, rounded up
        w, h = image.size
    side = max(w, h)
    grey = tuple(int(round(m)) for m in pre.mean)
    canvas = Image.new("RGB", (side, side), grey)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    padded = canvas.resize((size, size), pre.resample)
    mirror = ImageOps.mirror
    views = [centre, mirror(centre), squashed, padded, mirror(squashed), mirror(padded)][:n]
    return pre.normalize(np.stack([np.asarray(v) for v in views]))
