"""aimemory as a LlamaIndex vector store (the ``llamaindex`` extra).

    from llama_index.core import StorageContext, VectorStoreIndex
    from aimemory.integrations.llamaindex import AimemoryVectorStore
    vector_store = AimemoryVectorStore("./memory", model_id="openai:text-embedding-3-small")
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=vector_store))

LlamaIndex hands vector stores nodes whose embeddings it already computed, and queries as vectors,
so the store's vectors are LlamaIndex's: ``model_id`` names that embedding model in the store's
manifest (a store written with one model refuses another), and the width is taken from the first
nodes added (or ``dim=``, or the manifest of an existing store). With ``embed_model=`` (a LlamaIndex
``BaseEmbedding``) nodes without an embedding, and queries given only as text, are embedded by it.

Each node is one text memory, named by its node id (upsert), with LlamaIndex's own serialisation of
the node under the ``"llamaindex"`` metadata key, so nodes come back whole. ``MetadataFilters`` use
LlamaIndex's own filter semantics (every operator, AND/OR/NOT).
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import (
    build_metadata_filter_fn,
    metadata_dict_to_node,
    node_to_metadata_dict,
)

from ..encoders.external import ExternalEncoder
from ..errors import ModelError, NotFoundError
from ..inputs import Item
from ..store import DEFAULT_NAMESPACE
from .common import forget_present, list_memories, open_store, stored_dim, upsert

if TYPE_CHECKING:  # pragma: no cover
    from ..store import MemoryStore

#: the memory metadata key holding LlamaIndex's serialisation of a node
META_KEY = "llamaindex"
DEFAULT_MODEL_ID = "llamaindex:external"
VECTOR_QUERY = "\x1fvector query"


def _no_embedder(texts: list[str]) -> list[list[float]]:
    raise ModelError("this LlamaIndex store has no embed_model: give nodes their embeddings (LlamaIndex's "
                     "indexes do) and query by vector, or pass embed_model= to AimemoryVectorStore")


def _text_item(text: str) -> Item | str:
    """A node's text as a memory; an empty text (a node of metadata only) is stored as it is."""
    if text.strip():
        return text
    return Item("text", text, None, "text/plain", None, hashlib.sha256(b"text:").hexdigest())


class AimemoryEmbedding(BaseEmbedding):
    """A LlamaIndex embedding model from an aimemory model (``"auto"``: the offline
    ``aimemory-base`` when no CLIP is cached): LlamaIndex indexes offline, on your machine."""

    _encoder: Any = PrivateAttr()

    def __init__(self, model: Any = "auto", **kwargs: Any):
        from ..encoders.registry import load_encoder

        encoder = load_encoder(model)
        super().__init__(model_name=encoder.model_id, **kwargs)
        self._encoder = encoder

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._encoder.query_vectors("text", [text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encoder.query_vectors("text", texts).tolist() if texts else []

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embedding(query)


class AimemoryVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store on an aimemory store (a folder path, or a MemoryStore opened with
    an :class:`~aimemory.encoders.external.ExternalEncoder`)."""

    stores_text: bool = True
    namespace: str = DEFAULT_NAMESPACE
    model_id: str = DEFAULT_MODEL_ID

    _target: Any = PrivateAttr()
    _store: Any = PrivateAttr(default=None)
    _encoder: Any = PrivateAttr(default=None)
    _embed_model: Any = PrivateAttr(default=None)

    def __init__(self, store: "MemoryStore | str | os.PathLike", *, namespace: str = DEFAULT_NAMESPACE,
                 model_id: str | None = None, dim: int | None = None, embed_model: Any = None):
        if model_id is None and embed_model is not None:
            model_id = f"llamaindex:{getattr(embed_model, 'model_name', None) or type(embed_model).__name__}"
        super().__init__(stores_text=True, namespace=namespace, model_id=model_id or DEFAULT_MODEL_ID)
        self._target = store
        self._embed_model = embed_model
        if not isinstance(store, (str, os.PathLike)):  # an open MemoryStore
            self._store = open_store(store)
            self._encoder = self._store.encoder
        elif dim is not None or stored_dim(store) is not None:
            self._open(dim or stored_dim(store))

    # -- the store, opened once the width is known ----------------------------------------------
    def _open(self, dim: int) -> "MemoryStore":
        if self._store is None:
            embed, query = _no_embedder, None
            if self._embed_model is not None:
                embed, query = self._embed_model.get_text_embedding_batch, self._embed_model.get_query_embedding
            self._encoder = ExternalEncoder(embed, query, model_id=self.model_id, dim=dim)
            self._store = open_store(self._target, self._encoder)
        return self._store

    @property
    def client(self) -> "MemoryStore | None":
        """The MemoryStore (None until the first nodes fix the vector width)."""
        return self._store

    # -- writing -------------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Add or replace nodes (by node id). Nodes without an embedding need ``embed_model``."""
        nodes = list(nodes)
        if not nodes:
            return []
        texts = [n.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
        vectors = []
        for node, text in zip(nodes, texts):
            vector = node.get_embedding() if node.embedding is not None else None
            if vector is None:
                vector = self._embed_missing(text)
            vectors.append(np.asarray(vector, np.float32))
        store = self._open(len(vectors[0]))
        metas = []
        for node, vector in zip(nodes, vectors):
            meta = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
            # a new embedding of the same text and metadata is a change too: it must be written
            metas.append({META_KEY: meta, "vector_sha": hashlib.sha256(vector.tobytes()).hexdigest()[:16]})
        for rnd in _rounds(texts):  # one vector per text in each remember call
            with self._encoder.supplied({texts[i]: vectors[i] for i in rnd}):
                upsert(store, [_text_item(texts[i]) for i in rnd], [metas[i] for i in rnd],
                       [nodes[i].node_id for i in rnd], self.namespace)
        return [n.node_id for n in nodes]

    def _embed_missing(self, text: str) -> list[float]:
        if self._embed_model is None:
            _no_embedder([text])
        return self._embed_model.get_text_embedding(text)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id``."""
        if self._store is None:
            return
        ids = [m.id for m in list_memories(self._store, self.namespace)
               if m.metadata.get(META_KEY, {}).get("ref_doc_id") == ref_doc_id]
        forget_present(self._store, ids, self.namespace)

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                     **delete_kwargs: Any) -> None:
        """Delete nodes by id and/or filter; ids that are not stored are ignored."""
        if self._store is None:
            return
        forget_present(self._store, self._select(node_ids, filters), self.namespace)

    def clear(self) -> None:
        if self._store is not None:
            forget_present(self._store, self._select(None, None), self.namespace)

    # -- reading -------------------------------------------------------------------------------
    def _select(self, node_ids: Sequence[str] | None, filters: MetadataFilters | None,
                doc_ids: Sequence[str] | None = None) -> list[str]:
        """Ids of the stored nodes that are in ``node_ids`` (when given) and pass ``filters``."""
        listed = {m.id: m.metadata.get(META_KEY, {}) for m in list_memories(self._store, self.namespace)}
        keep = build_metadata_filter_fn(lambda mid: listed[mid], filters)
        wanted = set(node_ids) if node_ids is not None else None
        docs = set(doc_ids) if doc_ids is not None else None
        return [mid for mid, meta in listed.items() if (wanted is None or mid in wanted)
                and (docs is None or meta.get("ref_doc_id") in docs) and keep(mid)]

    def get_nodes(self, node_ids: list[str] | None = None,
                  filters: MetadataFilters | None = None) -> list[BaseNode]:
        if self._store is None:
            return []
        ids = self._select(node_ids, filters)
        if node_ids is not None:  # in the order asked
            ids = [i for i in node_ids if i in set(ids)]
        out = []
        for mid in ids:
            try:
                memory = self._store.get(mid, self.namespace)
            except NotFoundError:
                continue
            out.append(metadata_dict_to_node(memory.metadata[META_KEY], text=memory.text or ""))
        return out

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` nodes closest to ``query_embedding`` (or to ``query_str``
        embedded by ``embed_model``), within ``filters``, ``node_ids`` and ``doc_ids``."""
        if query.mode != VectorStoreQueryMode.DEFAULT:
            raise NotImplementedError(f"query mode {query.mode!r} is not supported; use the default mode")
        if self._store is None or query.similarity_top_k < 1:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        vector = query.query_embedding
        if vector is None:
            if self._embed_model is None or not query.query_str:
                _no_embedder([])
            vector = self._embed_model.get_query_embedding(query.query_str)
        where = None
        node_ids, doc_ids = query.node_ids or None, query.doc_ids or None  # LlamaIndex sends [] for "any"
        if query.filters is not None or node_ids is not None or doc_ids is not None:
            allowed = self._select(node_ids, query.filters, doc_ids)
            if not allowed:
                return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
            where = {"id": allowed}
        with self._encoder.supplied({VECTOR_QUERY: vector}):
            hits = self._store.recall(VECTOR_QUERY, k=query.similarity_top_k, namespace=self.namespace,
                                      where=where)
        nodes = [metadata_dict_to_node(h.memory.metadata[META_KEY], text=h.memory.text or "") for h in hits]
        return VectorStoreQueryResult(nodes=nodes, similarities=[h.score for h in hits], ids=[h.id for h in hits])


def _rounds(texts: list[str]) -> list[list[int]]:
    """Positions split so that no text repeats within a round (each round is one remember call)."""
    rounds: list[list[int]] = []
    seen: list[set[str]] = []
    for i, t in enumerate(texts):
        r = next((j for j, s in enumerate(seen) if t not in s), None)
        if r is None:
            rounds.append([])
            seen.append(set())
            r = len(rounds) - 1
        rounds[r].append(i)
        seen[r].add(t)
    return rounds

