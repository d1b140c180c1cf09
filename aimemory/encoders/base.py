"""The small protocol every encoder implements, and the views it produces.

An encoder maps decoded items into one L2-normalised embedding space of width ``dim``. The store only
talks to this interface; native CLIP, the built-in ``aimemory-mini`` model and test fixtures all
implement it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Sequence

import numpy as np

from ..device import CPU, Placement
from ..errors import UnsupportedInputError

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

    from ..inputs import Audio

# Long texts are embedded as several chunks; CLIP's text context is 77 BPE tokens, about 50 words.
CHUNK_WORDS = 48
CHUNK_OVERLAP_WORDS = 8


class QueryPlan(NamedTuple):
    """One search a query runs: ``vector`` (dim,) against the views of ``kinds`` (None: every kind
    but the encoder's private ones). With several plans, recall ranks by each plan's cosine
    standardised against a background sample of the store, minus ``penalty`` (in standard
    deviations): a plan that is less trustworthy must stand out more to win. ``modality`` names the
    query's side of the calibrated modality pair when it is not the item's own (a spoken query's
    transcript searches as text but is calibrated as ``"speech"``)."""

    vector: np.ndarray
    kinds: frozenset[str] | None = None
    penalty: float = 0.0
    modality: str | None = None


@dataclass(frozen=True)
class View:
    """One vector of a memory: ``kind`` is its modality tag (``image``, ``text``, ``text.chunk``,
    ``audio.sound``, ``audio.speech``); ``start``/``end`` are seconds for time-coded views and
    ``text`` is the chunk or transcript snippet the vector came from."""

    kind: str
    vector: np.ndarray  # (dim,) float32, unit norm
    start: float | None = None
    end: float | None = None
    text: str | None = None


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """(n, d) -> (n, d) float32 rows of unit norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def chunk_text(text: str, words: int = CHUNK_WORDS, overlap: int = CHUNK_OVERLAP_WORDS) -> list[str]:
    """Split a long text into overlapping word windows; short texts come back whole."""
    tokens = re.findall(r"\S+", text)
    if len(tokens) <= words:
        return [text.strip()]
    step = max(1, words - overlap)
    chunks = []
    for start in range(0, len(tokens), step):
        chunks.append(" ".join(tokens[start : start + words]))
        if start + words >= len(tokens):
            break
    return chunks


class Encoder:
    """Base class: subclasses set ``model_id``, ``dim``, ``modalities`` and implement the
    ``embed_*`` methods for the modalities they support.

    ``model_id`` is what the store's manifest records: two encoders with the same ``model_id`` and
    ``dim`` must produce the same space.
    """

    model_id: str
    dim: int
    modalities: ClassVar[frozenset[str]] = frozenset()
    #: exp of the learned temperature, used to turn cosines into zero-shot probabilities
    logit_scale: float = 100.0
    #: view kinds only a query vector of that kind may match (e.g. ``image.appearance``)
    private_kinds: ClassVar[frozenset[str]] = frozenset()
    #: where the networks run (CPU unless :meth:`to` moved them)
    placement: "Placement" = CPU

    # -- what subclasses implement -------------------------------------------------------------
    def embed_images(self, images: Sequence["Image"]) -> np.ndarray:
        """RGB PIL images -> (n, dim) float32, unit rows."""
        raise UnsupportedInputError(f"model {self.model_id!r} cannot embed images; use a store whose "
                                    "model has an image tower (a CLIP, or model='aimemory-mini')")

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> (n, dim) float32, unit rows."""
        raise UnsupportedInputError(f"model {self.model_id!r} cannot embed text; use a store whose "
                                    "model has a text tower (a CLIP, or model='aimemory-mini')")

    def embed_audio(self, clips: Sequence["Audio"]) -> list[list[View]]:
        """Waveforms -> per clip, one or more time-coded views (``audio.sound`` / ``audio.speech``)."""
        raise UnsupportedInputError(
            f"model {self.model_id!r} cannot embed audio; use model='aimemory-mini' or "
            "configure an audio tower"
        )

    #: shared text encoder calls (aimemory.encode_batch) that may run at once. More than one pays
    #: only where the text forward runs without the GIL; an eager torch forward hands the GIL back
    #: after every op, so two calls slow each other down
    parallel_text_calls: int = 1

    #: the shorter side an image needs when decoded for this encoder; JPEGs decode at a reduced
    #: scale down to it (None: full size, e.g. for encoders with several crops per image)
    image_decode_side: int | None = None

    def prepare_image(self, image: "Image") -> None:
        """Work on one image that can run ahead of its batch, on a decoding thread (resizing it to
        the model's input); the batch's :meth:`embed_images` then finds it done. Optional."""

    # -- what the store calls ------------------------------------------------------------------
    def views(self, modality: str, payloads: Sequence[object]) -> list[list[View]]:
        """Embed source items of one modality; each item may yield several views."""
        if not payloads:
            return []
        if modality == "image":
            vecs = self.embed_images(payloads)  # type: ignore[arg-type]
            return [[View("image", v)] for v in vecs]
        if modality == "text":
            per_item = [chunk_text(t) for t in payloads]  # type: ignore[arg-type]
            flat = [c for chunks in per_item for c in chunks]
            vecs = self.embed_texts(flat)
            out, i = [], 0
            for chunks in per_item:
                kind = "text" if len(chunks) == 1 else "text.chunk"
                out.append([View(kind, vecs[i + j], text=c if kind == "text.chunk" else None)
                            for j, c in enumerate(chunks)])
                i += len(chunks)
            return out
        if modality == "audio":
            return self.embed_audio(payloads)  # type: ignore[arg-type]
        raise UnsupportedInputError(f"unknown modality {modality!r}; expected image, text or audio")

    def query_vectors(self, modality: str, payloads: Sequence[object]) -> np.ndarray:
        """Embed queries: one (dim,) vector per item -> (n, dim)."""
        if modality == "image":
            return self.embed_images(payloads)  # type: ignore[arg-type]
        if modality == "text":
            return self.embed_texts(payloads)  # type: ignore[arg-type]
        if modality == "audio":
            rows = []
            for views in self.embed_audio(payloads):  # type: ignore[arg-type]
                sound = [v.vector for v in views if v.kind == "audio.sound"] or [v.vector for v in views]
                rows.append(np.mean(sound, axis=0))
            return l2_normalize(np.stack(rows))
        raise UnsupportedInputError(f"unknown modality {modality!r}; expected image, text or audio")

    def query_plans(self, modality: str, payload: object) -> list[QueryPlan]:
        """The searches one query runs (see :class:`QueryPlan`); one by default."""
        return [QueryPlan(self.query_vectors(modality, [payload])[0])]

    def to(self, placement: "Placement") -> "Encoder":
        """This encoder with its networks on ``placement``'s device (see :mod:`aimemory.device`).
        Encoders without torch networks (and custom ones) stay where they are."""
        self.placement = placement
        return self

    def close(self) -> None:
        """Release model memory (optional)."""
