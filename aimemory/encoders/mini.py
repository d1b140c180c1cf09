"""The built-in offline encoder: ``aimemory-mini`` (image, text and audio in one 256-d space)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np
import torch

from ..device import Placement
from ..nn.mini import MiniDims, MiniModel, text_batch
from ..preprocess.audio import SAMPLE_RATE, log_mel_spectrogram
from .base import Encoder, View

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

    from ..inputs import Audio

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "aimemory-mini"
MODEL_ID = "aimemory-mini-v1"
WINDOW_SECONDS = 3.0  # the audio tower was trained on 3 s clips; longer audio is windowed
HOP_SECONDS = 2.0  # 1 s overlap so a word on a boundary is whole in one window
BATCH = 64

_CACHE: dict[Path, MiniModel] = {}
_LOCK = threading.Lock()


def load_model(folder: Path = MODEL_DIR) -> MiniModel:
    """The towers with the shipped weights, built once per folder and cached (eval mode, fp32)."""
    from ..weights import assign_weights, load_state_dict

    folder = Path(folder)
    with _LOCK:
        if folder not in _CACHE:
            config = json.loads((folder / "config.json").read_text())
            state = load_state_dict(folder / "model.safetensors")
            model = MiniModel(MiniDims.from_checkpoint(state, config))
            assign_weights(model, state, source=str(folder / "model.safetensors"))
            _CACHE[folder] = model.eval()
        return _CACHE[folder]


class MiniEncoder(Encoder):
    """Encoder over :class:`~aimemory.nn.mini.MiniModel`; use :meth:`load` for the shipped weights."""

    model_id = MODEL_ID
    modalities: ClassVar[frozenset[str]] = frozenset({"image", "text", "audio"})

    def __init__(self, model: MiniModel, logit_scale: float | None = None):
        self.model = model
        self.dim = model.dims.dim
        self.logit_scale = float(logit_scale if logit_scale is not None else model.logit_scale.detach().exp())

    @classmethod
    def load(cls, folder: str | Path = MODEL_DIR) -> "MiniEncoder":
        return cls(load_model(Path(folder)))

    # -- images --------------------------------------------------------------------------------
    def _pixels(self, images: Sequence["Image"]) -> torch.Tensor:
        """PIL images -> (n, 3, S, S) in [0, 1]: flattened onto white, centre-cropped square, resized."""
        from PIL import Image as PILImage

        size = self.model.dims.image_size
        rows = []
        for im in images:
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                bg = PILImage.new("RGBA", im.size, (255, 255, 255, 255))
                im = PILImage.alpha_composite(bg, im)
            im = im.convert("RGB")
            w, h = im.size
            s = min(w, h)
            im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
            # area averaging when shrinking, as the training renders were box-downsampled
            im = im.resize((size, size), PILImage.BOX if s >= size else PILImage.BILINEAR)
            rows.append(np.asarray(im, dtype=np.uint8))
        arr = np.stack(rows)  # (n, S, S, 3)
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255)

    def to(self, placement: Placement) -> "MiniEncoder":
        new = placement.adopt(self)
        new.model, new.placement = placement.move(self.model), placement
        return new

    def _run(self, forward, *inputs: torch.Tensor) -> np.ndarray:
        """``forward`` on this encoder's device and precision -> float32 numpy on the CPU."""
        place = self.placement
        with torch.inference_mode(), place.autocast():
            return place.back(forward(*(place.put(x) for x in inputs))).numpy()

    def embed_images(self, images: Sequence["Image"]) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]  # keeps an empty input well-shaped
        for s in range(0, len(images), BATCH):
            out.append(self._run(self.model.embed_image, self._pixels(images[s: s + BATCH])))
        return np.concatenate(out).astype(np.float32)

    # -- text ----------------------------------------------------------------------------------
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        for s in range(0, len(texts), BATCH):
            ids, mask = text_batch(list(texts[s: s + BATCH]), self.model.dims.text_buckets)
            out.append(self._run(self.model.embed_text, ids, mask))
        return np.concatenate(out).astype(np.float32)

    # -- audio ---------------------------------------------------------------------------------
    def embed_audio(self, clips: Sequence["Audio"]) -> list[list[View]]:
        """Each clip -> one ``audio.sound`` view per 3 s window (hop 2 s); short clips give one."""
        win, hop = int(WINDOW_SECONDS * SAMPLE_RATE), int(HOP_SECONDS * SAMPLE_RATE)
        spans, mels = [], []
        for clip in clips:
            y = clip.resampled(SAMPLE_RATE).samples
            starts = [0] if len(y) <= win else list(range(0, len(y) - win + hop, hop))
            spans.append([])
            for st in starts:
                seg = np.zeros(win, np.float32)  # pad with silence as in training
                part = y[st: st + win]
                seg[: len(part)] = part
                mels.append(log_mel_spectrogram(seg, n_mels=self.model.dims.n_mels))
                spans[-1].append((st / SAMPLE_RATE, min(len(y), st + win) / SAMPLE_RATE))
        vecs = []
        for s in range(0, len(mels), BATCH):
            vecs.append(self._run(self.model.embed_audio, torch.stack(mels[s: s + BATCH])))
        flat = np.concatenate(vecs).astype(np.float32) if vecs else np.zeros((0, self.dim), np.float32)
        out, i = [], 0
        for sp in spans:
            out.append([View("audio.sound", flat[i + j], start, end) for j, (start, end) in enumerate(sp)])
            i += len(sp)
        return out

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
