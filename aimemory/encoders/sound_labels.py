"""Sounds in the sentence space: a pretrained sound tagger (YAMNet, 521 AudioSet classes, Apache-2.0)
scores each window of a recording, and the window becomes the score-weighted mean of its top classes'
sentence vectors, like images in :mod:`.labels`. "a dog barking" then finds a bark by the tagger's
"Dog" and "Bark" classes.

What it cannot do: anything outside AudioSet's 521 classes, or tell two dogs apart; its vectors say
*what kind* of sound it is, not *which* recording.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .base import View, l2_normalize

if TYPE_CHECKING:  # pragma: no cover
    from ..inputs import Audio

SOUND_TEMPLATE = "the sound of {name}"
TOP_CLASSES = 5  # tagger scores are independent sigmoids: a window rarely holds more than a few events
WINDOW_SECONDS = 5.0
SAMPLE_RATE = 16_000


def class_sentences(names: Sequence[str]) -> list[list[str]]:
    """AudioSet display names ("Dog", "Vehicle horn, car horn, honking") -> the sentences of each."""
    return [[SOUND_TEMPLATE.format(name=n.strip().lower()) for n in name.split(",")[:2] if n.strip()]
            for name in names]


def place(probs: np.ndarray, class_vecs: np.ndarray, top: int = TOP_CLASSES) -> np.ndarray:
    """(n, C) tagger probabilities -> (n, dim) unit vectors: the probability-weighted mean of each
    row's ``top`` classes' sentence vectors."""
    idx = np.argpartition(-probs, top - 1, axis=1)[:, :top]  # (n, top)
    weights = np.take_along_axis(probs, idx, axis=1).astype(np.float64)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    mixed = np.einsum("nt,ntd->nd", weights, class_vecs[idx].astype(np.float64))
    return l2_normalize(mixed.astype(np.float32))


class SoundPlacer:
    """Audio -> ``audio.sound`` views in the sentence space, one per window of about 5 s."""

    def __init__(self, tagger, class_vecs: np.ndarray):
        self.tagger = tagger
        self.class_vecs = class_vecs  # (C, dim)

    @classmethod
    def load(cls, embed: Callable[[list[str]], np.ndarray], *, tagger: str = "yamnet") -> "SoundPlacer":
        """The tagger ``tagger`` with its class sentences embedded by ``embed``; raises
        :class:`~aimemory.errors.ModelNotAvailableError` when it is not installed."""
        from .labels import class_vectors
        from .sound_tagger import SoundTagger

        tagger = SoundTagger.from_pretrained(tagger)

        vecs = class_vectors(f"audioset-{tagger.model_id}", class_sentences(tagger.label_names), embed)
        return cls(tagger, vecs)

    def to(self, placement) -> "SoundPlacer":
        """The tagger on ``placement``'s device (the class vectors stay numpy)."""
        return SoundPlacer(self.tagger.to(placement), self.class_vecs)

    def views(self, clips: Sequence["Audio"]) -> list[list[View]]:
        out = []
        for clip in clips:
            wave = clip.resampled(SAMPLE_RATE).samples
            windows = self.tagger.tag_windows(wave, WINDOW_SECONDS)
            probs = np.stack([p for _, _, p in windows])  # (w, C)
            vecs = place(probs, self.class_vecs)
            out.append([View("audio.sound", v, s, e) for v, (s, e, _) in zip(vecs, windows)])
        return out
