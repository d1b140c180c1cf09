"""aimemory as a LlamaIndex vector store: add/query/delete with LlamaIndex's vectors and metadata
filters, nodes back whole, and a VectorStoreIndex retrieving through it, with network sockets off."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("llama_index.core")
pytest.importorskip("pytest_socket")

from llama_index.core import StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)

from aimemory.errors import ModelError, ModelMismatchError  # noqa: E402
from aimemory.integrations.llamaindex import AimemoryVectorStore  # noqa: E402

DIM = 8


pytestmark = pytest.mark.usefixtures("no_network")  # network sockets refused (conftest)


def vec(text: str) -> list[float]:
    """A deterministic pseudo-embedding: distinct texts, distinct directions."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM).tolist()


class HashEmbedding(BaseEmbedding):
    model_name: str = "hash-8"

    def _get_text_embedding(self, text: str) -> list[float]:
        return vec(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return vec(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return vec(query)


def node(text: str, node_id: str, doc: str = "doc-a", **meta) -> TextNode:
    n = TextNode(text=text, id_=node_id, metadata=meta, embedding=vec(text))
    n.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc)
    return n


def _ids(result) -> list[str]:
    return list(result.ids)


def test_add_query_get_and_nodes_come_back_whole(tmp_path):
    vs = AimemoryVectorStore(tmp_path / "mem", model_id="test:hash-8")
    assert vs.client is None  # the width is learnt from the first nodes
    vs.add([node("the cat sleeps", "n1", year=2020, kind="pet"), node("green tea", "n2", year=2023, kind="drink"),
            node("the cat sleeps", "n3", doc="doc-b", year=2024, kind="pet")])  # same text, two nodes
    assert vs.client.manifest.dim == DIM and vs.client.model_id == "test:hash-8"
    result = vs.query(VectorStoreQuery(query_embedding=vec("green tea"), similarity_top_k=1))
    assert _ids(result) == ["n2"] and result.similarities[0] == pytest.approx(1.0, abs=1e-5)
    got = result.nodes[0]
    assert got.text == "green tea" and got.metadata == {"year": 2023, "kind": "drink"}
    assert got.ref_doc_id == "doc-a"
    assert [n.node_id for n in vs.get_nodes(["n3", "missing", "n1"])] == ["n3", "n1"]
    vs.client.close()


def test_metadata_filters_node_ids_and_doc_ids(tmp_path):
    vs = AimemoryVectorStore(tmp_path / "mem", model_id="test:hash-8")
    vs.add([node(f"text {i}", f"n{i}", doc=f"d{i % 2}", year=2018 + i, tags=["a", "b"] if i % 2 else ["c"])
            for i in range(6)])
    q = vec("text 0")

    def ids(**kw):
        return sorted(_ids(vs.query(VectorStoreQuery(query_embedding=q, similarity_top_k=10, **kw))))

    gte = MetadataFilters(filters=[MetadataFilter(key="year", value=2021, operator=FilterOperator.GTE)])
    assert ids(filters=gte) == ["n3", "n4", "n5"]
    either = MetadataFilters(filters=[MetadataFilter(key="year", value=2018), MetadataFilter(key="year", value=2019)],
                             condition=FilterCondition.OR)
    assert ids(filters=either) == ["n0", "n1"]
    has_c = MetadataFilters(filters=[MetadataFilter(key="tags", value="c", operator=FilterOperator.CONTAINS)])
    assert ids(filters=has_c) == ["n0", "n2", "n4"]
    assert ids(node_ids=["n1", "n2", "nope"]) == ["n1", "n2"]
    assert ids(doc_ids=["d1"]) == ["n1", "n3", "n5"]
    nothing = MetadataFilters(filters=[MetadataFilter(key="year", value=1900)])
    assert ids(filters=nothing) == []
    vs.client.close()


def test_upsert_delete_by_document_delete_nodes_and_clear(tmp_path):
    vs = AimemoryVectorStore(tmp_path / "mem", model_id="test:hash-8")
    vs.add([node("one", "n1", doc="d1"), node("two", "n2", doc="d1"), node("three", "n3", doc="d2")])
    vs.add([node("uno", "n1", doc="d2")])  # replaces n1, now of d2
    assert [n.text for n in vs.get_nodes(["n1"])] == ["uno"]
    vs.delete("d1")
    assert sorted(n.node_id for n in vs.get_nodes()) == ["n1", "n3"]
    vs.delete_nodes(["n3", "missing"])
    assert [n.node_id for n in vs.get_nodes()] == ["n1"]
    vs.clear()
    assert vs.get_nodes() == [] and vs.client.count(vs.namespace) == 0
    vs.client.close()


def test_reopen_reads_the_width_and_refuses_another_model(tmp_path):
    vs = AimemoryVectorStore(tmp_path / "mem", model_id="test:hash-8")
    vs.add([node("kept", "k")])
    vs.client.close()
    again = AimemoryVectorStore(tmp_path / "mem", model_id="test:hash-8")
    assert again.client is not None and [n.text for n in again.get_nodes(["k"])] == ["kept"]
    with pytest.raises(ModelError):  # no embed_model: a node without an embedding cannot be added
        again.add([TextNode(text="no vector", id_="x")])
    again.client.close()
    with pytest.raises(ModelMismatchError):
        AimemoryVectorStore(tmp_path / "mem", model_id="test:another")


def test_a_vector_store_index_retrieves_through_it(tmp_path):
    """LlamaIndex's own index embeds the nodes and the query and retrieves through the store."""
    embed = HashEmbedding()
    vs = AimemoryVectorStore(tmp_path / "mem", embed_model=embed)
    nodes = [TextNode(text=t, id_=t.split()[0], metadata={"n": i}, excluded_embed_metadata_keys=["n"])
             for i, t in enumerate(["paris is in france", "tea is a drink", "cats purr"])]
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=vs), embed_model=embed)
    got = index.as_retriever(similarity_top_k=1).retrieve("tea is a drink")
    assert [(g.node.node_id, g.node.metadata) for g in got] == [("tea", {"n": 1})]
    assert vs.client.model_id == "llamaindex:hash-8"
    # a text-only query is embedded by embed_model
    result = vs.query(VectorStoreQuery(query_str="cats purr", similarity_top_k=1))
    assert _ids(result) == ["cats"]
    vs.client.close()


def test_aimemory_embedding_indexes_offline_with_the_stores_model(tmp_path):
    from conftest import ColourEncoder

    from aimemory.integrations.llamaindex import AimemoryEmbedding

    embed = AimemoryEmbedding(ColourEncoder())
    vs = AimemoryVectorStore(tmp_path / "mem", embed_model=embed)
    nodes = [TextNode(text=t, id_=t) for t in ("a red car", "a green tree", "the blue sea")]
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=vs), embed_model=embed)
    assert index.as_retriever(similarity_top_k=1).retrieve("something green")[0].node.node_id == "a green tree"
    assert vs.client.model_id == "llamaindex:test-colour-v1"
    vs.client.close()
