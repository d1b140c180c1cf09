"""aimemory as a LangChain ``VectorStore`` (the ``langchain`` extra).

    from aimemory.integrations.langchain import AimemoryVectorStore
    vs = AimemoryVectorStore("./memory")                        # the store's own model embeds
    vs.add_texts(["the cat sleeps on the sofa"], ids=["cat"])
    vs.add_images(["photos/beach.jpg"])                         # multimodal: found by text queries
    vs.similarity_search("a cat", k=3)

With ``embedding=`` (any LangChain ``Embeddings``) the vectors come from it instead, at its width:
the store records the model as ``langchain:<class>[:<model name>]`` in its manifest, so a store
written with one embedding model refuses another. Ids are the caller's (upsert: an id already held
is replaced), ``delete`` of missing ids is no error, and each document's metadata is kept exactly
as given (under the memory's ``"langchain"`` metadata key). The async methods are LangChain's
defaults, which run the sync ones in an executor (the store is thread-safe).

Filters (``filter=``) are a dict over the documents' metadata, with LangGraph's operators
(``{"year": {"$gte": 2020}, "kind": "note"}``; see :func:`aimemory.integrations.common.matches`),
or a callable taking a ``Document``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from ..encoders.external import ExternalEncoder
from ..errors import UnsupportedInputError
from ..store import DEFAULT_NAMESPACE
from .common import Listed, forget_present, list_memories, matches, open_store, stored_dim, upsert

if TYPE_CHECKING:  # pragma: no cover
    from ..encoders.base import Encoder
    from ..records import Memory
    from ..store import MemoryStore

#: the memory metadata key under which a document's own metadata is kept, exactly
META_KEY = "langchain"
#: the query text under which a vector handed to ``similarity_search_by_vector`` is searched
VECTOR_QUERY = "\x1fvector query"

Filter = dict[str, Any] | Callable[[Document], bool] | None


def embeddings_model_id(embedding: Embeddings) -> str:
    """``langchain:<class>[:<model name>]``: what the manifest records for an ``Embeddings``."""
    name = getattr(embedding, "model", None) or getattr(embedding, "model_name", None)
    base = f"langchain:{type(embedding).__name__}"
    return f"{base}:{name}" if isinstance(name, str) and name else base


def embeddings_encoder(embedding: Embeddings, *, model_id: str | None = None,
                       dim: int | None = None) -> ExternalEncoder:
    """An aimemory encoder whose text vectors come from ``embedding``."""
    return ExternalEncoder(embedding.embed_documents, embedding.embed_query,
                           model_id=model_id or embeddings_model_id(embedding), dim=dim)


class AimemoryEmbeddings(Embeddings):
    """LangChain ``Embeddings`` from an aimemory model (``"auto"``: the offline ``aimemory-base``
    when no CLIP is cached), for frameworks that want an embedding function (mem0, LangGraph's
    ``IndexConfig``). Texts are embedded whole, as queries are."""

    def __init__(self, model: "str | os.PathLike | Encoder" = "auto"):
        from ..encoders.registry import load_encoder

        self.encoder = load_encoder(model)
        self.model = self.encoder.model_id  # what the manifest of a store using these records

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self.encoder.query_vectors("text", list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class AimemoryVectorStore(VectorStore):
    """A LangChain vector store on an aimemory store (a ``MemoryStore`` or a folder path)."""

    def __init__(self, store: "MemoryStore | str | os.PathLike", *, embedding: Embeddings | None = None,
                 namespace: str = DEFAULT_NAMESPACE, model_id: str | None = None):
        self._embedding = embedding
        model: Any = "auto"
        if embedding is not None:
            dim = stored_dim(store) if isinstance(store, (str, os.PathLike)) else None
            model = embeddings_encoder(embedding, model_id=model_id, dim=dim)
        self.store = open_store(store, model)
        self.namespace = namespace

    @property
    def embeddings(self) -> Embeddings | None:
        return self._embedding

    # -- writing -------------------------------------------------------------------------------
    def add_texts(self, texts: Iterable[str], metadatas: list[dict] | None = None, *,
                  ids: list[str | None] | None = None, **kwargs: Any) -> list[str]:
        """Add or replace texts; ids not given (or None) are generated (UUID4)."""
        texts = list(texts)
        return self._add(texts, metadatas, ids, sources=None)

    def add_embeddings(self, embeddings: Sequence[Sequence[float]], metadatas: list[dict] | None = None, *,
                       ids: list[str | None] | None = None, texts: Sequence[str] | None = None) -> list[str]:
        """Add texts with vectors computed elsewhere (stores opened with ``embedding=`` only). The
        texts default to each metadata's ``"data"`` (what mem0 stores its memory text under)."""
        encoder = self._external()
        metadatas = list(metadatas) if metadatas is not None else [{}] * len(embeddings)
        if texts is None:
            texts = [str((m or {}).get("data", "")) for m in metadatas]
        texts = list(texts)
        if len(set(texts)) < len(texts):  # one vector per text in a call
            out: list[str] = []
            for i in range(len(texts)):
                out += self.add_embeddings([embeddings[i]], [metadatas[i]], ids=None if ids is None else [ids[i]],
                                           texts=[texts[i]])
            return out
        with encoder.supplied(dict(zip(texts, embeddings))):
            return self.add_texts(texts, metadatas, ids=ids)

    def _external(self) -> ExternalEncoder:
        encoder = self.store.encoder
        if not isinstance(encoder, ExternalEncoder):
            raise UnsupportedInputError("vectors computed elsewhere need a store whose vectors come from "
                                        "`embedding=`; with the store's own model pass text, images or audio")
        return encoder

    def add_images(self, paths: Sequence[str | os.PathLike], metadatas: list[dict] | None = None, *,
                   ids: list[str | None] | None = None) -> list[str]:
        """Add image files (needs a store model with an image tower, i.e. no ``embedding=``)."""
        return self._add([Path(p) for p in paths], metadatas, ids, sources=[str(p) for p in paths])

    def add_audio(self, paths: Sequence[str | os.PathLike], metadatas: list[dict] | None = None, *,
                  ids: list[str | None] | None = None) -> list[str]:
        """Add audio files (needs a store model with an audio tower, i.e. no ``embedding=``)."""
        return self._add([Path(p) for p in paths], metadatas, ids, sources=[str(p) for p in paths])

    def _add(self, items: list, metadatas: list[dict] | None, ids: Sequence[str | None] | None,
             sources: list[str | None] | None) -> list[str]:
        metadatas = list(metadatas) if metadatas is not None else [{}] * len(items)
        ids = list(ids) if ids is not None else [None] * len(items)
        if not (len(metadatas) == len(ids) == len(items)):
            raise ValueError(f"got {len(items)} items, {len(metadatas)} metadatas and {len(ids)} ids; "
                             "pass one of each per item")
        ids = [i if i is not None else str(uuid.uuid4()) for i in ids]
        upsert(self.store, items, [{META_KEY: dict(m or {})} for m in metadatas], ids, self.namespace,
               sources=sources)
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete by id; ids that are not stored are ignored. ``ids=None`` deletes every memory of
        this store's namespace, as LangChain's contract says (mem0's ``reset()`` relies on it)."""
        if ids is None:
            ids = [m.id for m in list_memories(self.store, self.namespace)]
        forget_present(self.store, ids, self.namespace)
        return True

    def delete_collection(self) -> None:
        """Delete every memory of this store's namespace (what mem0 calls to reset a collection)."""
        self.delete(None)

    @property
    def _collection(self) -> "ChromaStyleListing":
        """mem0's LangChain provider lists memories (``get_all``, ``delete_all``) only through
        Chroma's ``_collection.get``: answered here in that form."""
        return ChromaStyleListing(self)

    # -- reading -------------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents of the ids that exist, in the order asked."""
        from ..errors import NotFoundError

        out = []
        for mid in ids:
            try:
                out.append(self._document(self.store.get(mid, self.namespace)))
            except NotFoundError:
                continue
        return out

    @staticmethod
    def _document(memory: "Memory") -> Document:
        metadata = memory.metadata.get(META_KEY)
        page = memory.text if memory.text is not None else (memory.source or "")
        if metadata is None:  # a memory written by aimemory itself: show its own metadata
            metadata = {k: v for k, v in memory.metadata.items() if k != "tags" or v}
        return Document(page_content=page, metadata=dict(metadata), id=memory.id)

    def _allowed(self, filter: Filter) -> list[str] | None:
        """Ids that pass ``filter`` (None: no filter)."""
        if filter is None:
            return None
        listed = list_memories(self.store, self.namespace)
        if callable(filter):
            return [m.id for m in listed if filter(self._listed_document(m))]
        if not isinstance(filter, dict):
            raise TypeError(f"filter= takes a dict or a callable; got {type(filter).__name__}")
        return [m.id for m in listed if matches(m.metadata.get(META_KEY, m.metadata), filter)]

    @staticmethod
    def _listed_document(m: Listed) -> Document:
        page = m.text if m.text is not None else (m.source or "")
        return Document(page_content=page, metadata=dict(m.metadata.get(META_KEY, m.metadata)), id=m.id)

    def similarity_search_with_score(self, query: str, k: int = 4, filter: Filter = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """The ``k`` closest documents with their cosine similarity (higher is closer)."""
        if k < 1:
            return []
        where = None
        if filter is not None:
            allowed = self._allowed(filter)
            if not allowed:
                return []
            where = {"id": allowed}
        hits = self.store.recall(query, k=k, namespace=self.namespace, where=where)
        return [(self._document(h.memory), h.score) for h in hits]

    def similarity_search(self, query: str, k: int = 4, filter: Filter = None,
                          **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score_by_vector(self, embedding: Sequence[float], k: int = 4, filter: Filter = None,
                                               **kwargs: Any) -> list[tuple[Document, float]]:
        """Search by a vector of the embedding model (stores opened with ``embedding=`` only)."""
        with self._external().supplied({VECTOR_QUERY: embedding}):
            return self.similarity_search_with_score(VECTOR_QUERY, k, filter, **kwargs)

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: Filter = None,
                                    **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda cosine: (1.0 + cosine) / 2.0  # cosine in [-1, 1] -> relevance in [0, 1]

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None, metadatas: list[dict] | None = None,
                   *, ids: list[str] | None = None, store: "MemoryStore | str | os.PathLike | None" = None,
                   namespace: str = DEFAULT_NAMESPACE, **kwargs: Any) -> "AimemoryVectorStore":
        """A store at ``store=`` (a path or MemoryStore; required) holding ``texts``."""
        if store is None:
            raise TypeError("from_texts needs store= (a folder path or a MemoryStore) to write to")
        vs = cls(store, embedding=embedding, namespace=namespace, **kwargs)
        vs.add_texts(texts, metadatas, ids=ids)
        return vs


class ChromaStyleListing:
    """``get(where=..., limit=...)`` -> ``{"ids", "documents", "metadatas"}`` over an
    :class:`AimemoryVectorStore`'s namespace, as Chroma's collection answers it."""

    def __init__(self, vectors: AimemoryVectorStore):
        self.vectors = vectors

    def get(self, where: dict | None = None, limit: int | None = None, **kwargs: Any) -> dict[str, list]:
        docs = [self.vectors._listed_document(m) for m in list_memories(self.vectors.store, self.vectors.namespace)]
        if where:
            docs = [d for d in docs if matches(d.metadata, where)]
        docs = docs[:limit] if limit else docs
        return {"ids": [d.id for d in docs], "documents": [d.page_content for d in docs],
                "metadatas": [d.metadata for d in docs]}
