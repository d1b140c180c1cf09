"""mem0 on aimemory through mem0's ``langchain`` vector-store provider: add (without an LLM,
``infer=False``), search per user, get, update, delete, with network sockets off and mem0's
telemetry off."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("MEM0_TELEMETRY", "False")
os.environ.setdefault("MEM0_DIR", tempfile.mkdtemp(prefix="mem0-"))  # mem0 keeps files in ~/.mem0 by default

pytest.importorskip("langchain")  # mem0's langchain embedder and LLM import it
pytest.importorskip("langchain_community")  # mem0's langchain vector-store provider imports it
pytest.importorskip("mem0")
pytest.importorskip("pytest_socket")

from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.language_models.fake_chat_models import FakeListChatModel  # noqa: E402
from mem0 import Memory  # noqa: E402

from aimemory.integrations.langchain import AimemoryVectorStore  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_network")  # network sockets refused (conftest)


@pytest.fixture
def memory(tmp_path):
    embeddings = DeterministicFakeEmbedding(size=16)
    vs = AimemoryVectorStore(tmp_path / "mem", embedding=embeddings)
    m = Memory.from_config({
        "vector_store": {"provider": "langchain", "config": {"client": vs}},
        "embedder": {"provider": "langchain", "config": {"model": embeddings}},
        "llm": {"provider": "langchain", "config": {"model": FakeListChatModel(responses=["{}"])}},
        "history_db_path": str(tmp_path / "history.db"),
    })
    yield m, vs
    vs.store.close()


def test_mem0_adds_searches_updates_and_deletes_through_aimemory(memory):
    m, vs = memory
    ada = m.add("I like green tea", user_id="ada", infer=False)["results"][0]["id"]
    m.add("Bob likes coffee", user_id="bob", infer=False)
    assert vs.store.count(vs.namespace) == 2
    found = m.search("I like green tea", filters={"user_id": "ada"})["results"]
    assert [r["id"] for r in found] == [ada] and found[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert found[0]["memory"] == "I like green tea" and found[0]["user_id"] == "ada"
    bob = m.search("Bob likes coffee", filters={"user_id": "bob"})["results"]  # (fake vectors: exact text)
    assert [r["memory"] for r in bob] == ["Bob likes coffee"]
    m.update(ada, "I like black tea")
    assert m.get(ada)["memory"] == "I like black tea"
    assert vs.get_by_ids([ada])[0].page_content == "I like black tea"  # the vector store holds the new text
    m.delete(ada)
    assert m.get(ada) is None and vs.store.count(vs.namespace) == 1


def test_mem0_lists_deletes_a_users_memories_and_resets(memory):
    """get_all and delete_all go through the provider's Chroma-only listing (they raised TypeError);
    reset deletes through ``delete(ids=None)``, which deleted nothing."""
    m, vs = memory
    for text in ("I like green tea", "I walk at dawn"):
        m.add(text, user_id="ada", infer=False)
    m.add("Bob likes coffee", user_id="bob", infer=False)
    listed = m.get_all(filters={"user_id": "ada"})["results"]
    assert sorted(r["memory"] for r in listed) == ["I like green tea", "I walk at dawn"]
    m.delete_all(user_id="bob")
    assert vs.store.count(vs.namespace) == 2 and not m.get_all(filters={"user_id": "bob"})["results"]
    m.reset()
    assert vs.store.count(vs.namespace) == 0
