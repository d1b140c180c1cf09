"""aimemory as a LangChain VectorStore: LangChain's own conformance suite (``langchain-tests``,
unmodified) with sockets disabled, plus what the suite does not cover (multimodal adds, exact
metadata, filters, the manifest's record of the embedding model)."""

from __future__ import annotations

import socket
from collections.abc import Generator

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")
pytest_socket = pytest.importorskip("pytest_socket")

from conftest import ColourEncoder, solid  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.vectorstores import VectorStore  # noqa: E402
from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from aimemory import MemoryStore  # noqa: E402
from aimemory.errors import ModelMismatchError  # noqa: E402
from aimemory.integrations.langchain import AimemoryVectorStore  # noqa: E402

# the suite's async tests are plain `async def`: run them on pytest-asyncio's loop
pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("no_network"),  # sockets refused (conftest)
              pytest.mark.filterwarnings("ignore:The test .* is marked with '@pytest.mark.asyncio'")]


class TestAimemoryVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture()
    def vectorstore(self, tmp_path) -> Generator[VectorStore, None, None]:  # type: ignore[override]
        vs = AimemoryVectorStore(tmp_path / "mem", embedding=self.get_embeddings())
        try:
            yield vs
        finally:
            vs.store.close()


@pytest.mark.filterwarnings("ignore:A test tried to use socket")
def test_sockets_really_are_disabled():
    with pytest.raises(pytest_socket.SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def _vs(tmp_path, **kw) -> AimemoryVectorStore:
    return AimemoryVectorStore(tmp_path / "mem", embedding=DeterministicFakeEmbedding(size=8), **kw)


def test_metadata_round_trips_exactly_even_keys_aimemory_uses(tmp_path):
    vs = _vs(tmp_path)
    meta = {"tags": "not-a-list", "source": {"nested": [1, 2.5, None, True]}, "id": 7, "ü": "ß"}
    vs.add_texts(["hello there"], [meta], ids=["a"])
    assert vs.get_by_ids(["a"]) == [Document(page_content="hello there", metadata=meta, id="a")]
    assert vs.similarity_search("hello there", k=1)[0].metadata == meta
    vs.store.close()


def test_upsert_delete_missing_and_order_of_get_by_ids(tmp_path):
    vs = _vs(tmp_path)
    vs.add_texts(["one", "two", "two"], ids=["1", "2", "3"])  # same text twice: two documents
    vs.add_texts(["uno"], ids=["1"])
    assert [d.page_content for d in vs.get_by_ids(["3", "1", "missing", "2"])] == ["two", "uno", "two"]
    assert vs.delete(["2", "nope"]) is True
    assert [d.id for d in vs.get_by_ids(["1", "2", "3"])] == ["1", "3"]
    assert vs.store.count(vs.namespace) == 2
    vs.store.remember("another namespace's note", namespace="other")
    assert vs.delete() is True  # ids=None: every document, as LangChain's contract says
    assert vs.store.count(vs.namespace) == 0 and vs.store.count("other") == 1
    vs.store.close()


def test_filters_dict_operators_and_callable(tmp_path):
    vs = _vs(tmp_path)
    vs.add_texts(["a", "b", "c"], [{"year": 2019, "kind": "note"}, {"year": 2021, "kind": "note"},
                                   {"year": 2023, "kind": "mail"}], ids=["a", "b", "c"])
    ids = lambda docs: sorted(d.id for d in docs)  # noqa: E731
    assert ids(vs.similarity_search("a", k=5, filter={"kind": "note"})) == ["a", "b"]
    assert ids(vs.similarity_search("a", k=5, filter={"year": {"$gte": 2021}})) == ["b", "c"]
    assert ids(vs.similarity_search("a", k=5, filter={"kind": {"$in": ["mail"]}})) == ["c"]
    assert ids(vs.similarity_search("a", k=5, filter=lambda d: d.metadata["year"] < 2020)) == ["a"]
    assert vs.similarity_search("a", k=5, filter={"kind": "nothing"}) == []
    vs.store.close()


def test_search_by_vector_and_relevance_scores(tmp_path):
    emb = DeterministicFakeEmbedding(size=8)
    vs = _vs(tmp_path)
    vs.add_texts(["foo", "bar"], ids=["f", "b"])
    assert vs.similarity_search_by_vector(emb.embed_query("bar"), k=1)[0].id == "b"
    (doc, rel), _ = vs.similarity_search_with_relevance_scores("foo", k=2)
    assert doc.id == "f" and rel == pytest.approx(1.0, abs=1e-5)
    vs.store.close()


def test_the_manifest_records_the_embedding_model_and_refuses_another(tmp_path):
    vs = _vs(tmp_path)
    vs.add_texts(["kept"], ids=["k"])
    vs.store.close()
    again = _vs(tmp_path)  # reopened by path: no probe call, same model
    assert again.store.model_id == "langchain:DeterministicFakeEmbedding"
    assert again.store.manifest.dim == 8
    assert [d.page_content for d in again.get_by_ids(["k"])] == ["kept"]
    with pytest.raises(ModelMismatchError):
        AimemoryVectorStore(again.store, embedding=DeterministicFakeEmbedding(size=8),
                            model_id="langchain:OtherModel")
    again.store.close()


def test_from_texts_and_async_paths(tmp_path):
    import asyncio

    vs = AimemoryVectorStore.from_texts(["x", "y"], DeterministicFakeEmbedding(size=8), ids=["x", "y"],
                                        store=tmp_path / "mem")

    async def go():
        await vs.aadd_texts(["z"], ids=["z"])
        await vs.adelete(["x", "missing"])
        return await vs.aget_by_ids(["x", "y", "z"]), await vs.asimilarity_search("z", k=1)

    got, hits = asyncio.run(go())
    assert [d.id for d in got] == ["y", "z"] and hits[0].id == "z"
    vs.store.close()


def test_images_and_audio_with_the_stores_own_model(tmp_path):
    """Without `embedding=` the store's model embeds, so images and audio files join the documents
    and a text query finds them (ColourEncoder: colour words match colours and pitches)."""
    import soundfile as sf
    from conftest import tone

    img = tmp_path / "red.png"
    solid("red").save(img)
    wav = tmp_path / "blue.wav"
    clip = tone("blue")
    sf.write(wav, clip.samples, clip.sample_rate)
    store = MemoryStore(tmp_path / "mem", model=ColourEncoder())
    vs = AimemoryVectorStore(store)
    vs.add_texts(["a green leaf"], [{"n": 1}], ids=["leaf"])
    assert vs.add_images([img], [{"n": 2}], ids=["photo"]) == ["photo"]
    vs.add_audio([wav], ids=["beep"])
    assert vs.similarity_search("something red", k=1)[0].id == "photo"
    top = vs.similarity_search("blue", k=1)[0]
    assert top.id == "beep" and top.page_content == str(wav)
    assert vs.get_by_ids(["photo"])[0].metadata == {"n": 2}
    store.close()


def test_aimemory_embeddings_give_langchain_the_stores_model(tmp_path):
    from aimemory.integrations.langchain import AimemoryEmbeddings

    emb = AimemoryEmbeddings(ColourEncoder())
    assert emb.model == "test-colour-v1" and len(emb.embed_query("red")) == 16
    vs = AimemoryVectorStore(tmp_path / "mem", embedding=emb)
    vs.add_texts(["a red car", "a green tree"], ids=["car", "tree"])
    assert vs.similarity_search("green", k=1)[0].id == "tree"
    assert vs.store.model_id == "langchain:AimemoryEmbeddings:test-colour-v1"
    vs.store.close()
