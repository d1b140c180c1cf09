"""Bring-your-own embeddings: an :class:`Encoder` whose text vectors come from functions you supply
(a LangChain ``Embeddings``, a LlamaIndex embedding model, an HTTP client of an embedding API).

    from aimemory import MemoryStore
    from aimemory.encoders.external import ExternalEncoder
    enc = ExternalEncoder(my_embed_many, my_embed_one, model_id="acme:embed-v2", dim=768)
    store = MemoryStore("./memory", model=enc)

``model_id`` is recorded in the store's manifest like any model's, so a store written with one
embedding model refuses another (:class:`~aimemory.errors.ModelMismatchError`). Texts are embedded
whole (no chunking: frameworks hand over texts they already split), and every vector is L2-normalised
so recall ranks by cosine. Vectors computed elsewhere can be handed in with :meth:`supplied` (the
frameworks whose vector-store contract carries ready vectors, such as LlamaIndex's nodes).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, ClassVar, Iterator, Mapping, Sequence

import numpy as np

from ..errors import ModelError
from .base import Encoder, View, l2_normalize

EmbedMany = Callable[[list[str]], Sequence[Sequence[float]]]
EmbedOne = Callable[[str], Sequence[float]]
# the text embedded once to learn the width when none is given
PROBE_TEXT = "dimension probe"


class ExternalEncoder(Encoder):
    """Text vectors from ``embed_documents(texts) -> vectors``; queries through ``embed_query(text)
    -> vector`` (``embed_documents`` of one text when None). ``dim`` is probed with one call when
    not given."""

    modalities: ClassVar[frozenset[str]] = frozenset({"text"})

    def __init__(self, embed_documents: EmbedMany, embed_query: EmbedOne | None = None, *,
                 model_id: str, dim: int | None = None):
        if not isinstance(model_id, str) or not model_id:
            raise ModelError("ExternalEncoder needs a model_id naming the embedding model, e.g. "
                             "'openai:text-embedding-3-small'; it is recorded in the store's manifest")
        self.model_id = model_id
        self._embed_documents = embed_documents
        self._embed_query = embed_query
        self._dim = dim
        self._supplied: dict[str, np.ndarray] = {}
        self._supply_lock = threading.RLock()

    @property
    def dim(self) -> int:  # type: ignore[override]
        if self._dim is None:
            self._dim = int(np.asarray(self._embed_documents([PROBE_TEXT])[0]).shape[-1])
        return self._dim

    @contextmanager
    def supplied(self, vectors: Mapping[str, Sequence[float]]) -> Iterator[None]:
        """While the block runs, texts found in ``vectors`` get that vector instead of a call to the
        embedding function (documents and queries alike). Blocks from several threads take turns."""
        with self._supply_lock:
            before = self._supplied
            self._supplied = {**before, **{t: self._checked([v])[0] for t, v in vectors.items()}}
            try:
                yield
            finally:
                self._supplied = before

    def _checked(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        """Vectors from outside -> (n, dim) float32 unit rows, refusing another width."""
        arr = np.asarray(rows, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ModelError(f"embedding model {self.model_id!r} gave vectors of shape {arr.shape}; this "
                             f"store holds width {self.dim}: use the model the store was created with")
        return l2_normalize(arr)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n,) strings -> (n, dim); supplied vectors first, one call for the rest."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        todo = [i for i, t in enumerate(texts) if t not in self._supplied]
        for i, t in enumerate(texts):
            if t in self._supplied:
                out[i] = self._supplied[t]
        if todo:
            out[todo] = self._checked(self._embed_documents([texts[i] for i in todo]))
        return out

    def views(self, modality: str, payloads: Sequence[object]) -> list[list[View]]:
        """Texts are embedded whole: one ``text`` view each (frameworks split documents themselves)."""
        if modality != "text" or not payloads:
            return super().views(modality, payloads)
        return [[View("text", v)] for v in self.embed_texts(payloads)]  # type: ignore[arg-type]

    def query_vectors(self, modality: str, payloads: Sequence[object]) -> np.ndarray:
        if modality != "text" or self._embed_query is None:
            return super().query_vectors(modality, payloads)
        rows = [self._supplied[p] if p in self._supplied else self._checked([self._embed_query(p)])[0]
                for p in payloads]  # type: ignore[index, arg-type]
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
