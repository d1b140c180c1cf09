"""A store opened in the background: the MCP server lists its tools before the store (and the model)
is open, tool calls wait for it, and an error while opening reaches every caller."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from conftest import ColourEncoder

from aimemory import MemoryStore
from aimemory.errors import ModelNotAvailableError
from aimemory.pending import PendingStore, warm_up

WAIT_S = 60


class Recorder(ColourEncoder):
    """The fixture encoder, counting the text queries it plans."""

    planned = 0

    def query_plans(self, modality, payload):
        type(self).planned += 1
        return super().query_plans(modality, payload)


def test_pending_store_waits_then_acts_on_the_store(tmp_path):
    gate = threading.Event()

    def opener():
        gate.wait(WAIT_S)
        return MemoryStore(tmp_path / "m", model=ColourEncoder())

    pending = PendingStore(opener, warm=False)
    assert not pending.ready
    with pytest.raises(TimeoutError):
        pending.result(timeout=0.05)
    gate.set()
    memory = pending.remember("red door")  # waits for the open
    assert pending.ready and pending.get(memory.id).content == "red door"
    pending.close()


def test_an_opening_error_reaches_every_caller():
    def opener():
        raise ModelNotAvailableError("no model here; install one")

    pending = PendingStore(opener)
    for _ in range(2):
        with pytest.raises(ModelNotAvailableError, match="install one"):
            pending.recall("anything")
    pending.close()  # nothing to close


def test_warm_up_loads_the_catalog_plans_one_text_query_and_opens_lance(tmp_path):
    with MemoryStore(tmp_path / "m", model=Recorder()) as store:
        store.remember("red door")
    Recorder.planned = 0
    with MemoryStore(tmp_path / "m", model=Recorder()) as store:
        assert not store.table.opened and not store.state.loaded
        warm_up(store)
        assert store.table.opened and store.state.loaded
    assert Recorder.planned == 1


def test_no_warm_up_when_a_call_is_already_waiting(tmp_path):
    gate = threading.Event()
    Recorder.planned = 0

    def opener():
        gate.wait(WAIT_S)
        return MemoryStore(tmp_path / "m", model=Recorder())

    pending = PendingStore(opener)
    waiter = threading.Thread(target=pending.result)
    waiter.start()
    while not pending.asked:
        threading.Event().wait(0.01)
    gate.set()
    waiter.join()
    pending.close()  # waits for the opening thread, warm-up included
    assert Recorder.planned == 0


def test_mcp_lists_tools_before_the_store_is_open(tmp_path):
    pytest.importorskip("mcp")
    from mcp import Client

    from aimemory.mcp_server import build_server

    gate = threading.Event()
    opened = threading.Event()

    def opener():
        gate.wait(WAIT_S)
        store = MemoryStore(tmp_path / "m", model=ColourEncoder())
        opened.set()
        return store

    pending = PendingStore(opener)
    server = build_server(pending, "agent1")  # type: ignore[arg-type]

    async def go():
        async with Client(server) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert "recall" in tools and not opened.is_set()  # answered while the store was not open
            gate.set()
            note = json.loads((await client.call_tool("remember_text", {"text": "red door"})).content[0].text)
            hits = json.loads((await client.call_tool("recall", {"query": "red", "k": 1})).content[0].text)
            assert hits["hits"][0]["id"] == note["id"]
    try:
        asyncio.run(go())
    finally:
        gate.set()
        pending.close()


def test_mcp_reports_an_opening_error_as_a_tool_error(tmp_path):
    pytest.importorskip("mcp")
    from mcp import Client

    from aimemory.mcp_server import build_server

    def opener():
        raise ModelNotAvailableError("the model is not installed; run `aimemory models install aimemory-base`")

    server = build_server(PendingStore(opener), "agent1")  # type: ignore[arg-type]

    async def go():
        async with Client(server) as client:
            assert (await client.list_tools()).tools
            result = await client.call_tool("recall", {"query": "red"})
            assert result.is_error and "models install" in result.content[0].text
    asyncio.run(go())
