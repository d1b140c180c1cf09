"""The MCP server, driven by the official SDK's client: in-process with the ColourEncoder fixture,
and over stdio against ``python -m aimemory mcp`` when the built-in mini model is installed."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from conftest import ColourEncoder, solid  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402

from aimemory import MemoryStore  # noqa: E402
from aimemory.mcp_server import UNTRUSTED_NOTE, build_server  # noqa: E402

TOOLS = {"remember_text", "remember_file", "remember_image", "recall", "forget", "list_recent", "update_memory",
         "export_memories", "import_memories"}
MINI_DIR = Path(__file__).resolve().parent.parent / "aimemory" / "models" / "aimemory-mini"


def png_b64(colour: str, size=(600, 300)) -> str:
    buf = io.BytesIO()
    solid(colour, size=size).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def payload(result) -> dict:
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)


@pytest.fixture
def mem(tmp_path):
    s = MemoryStore(tmp_path / "m", model=ColourEncoder(), speech_model=None)
    yield s
    s.close()


async def _session_round_trip(client, tmp_path):
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():  # no tool can name another namespace
        assert "namespace" not in json.dumps(tool.input_schema)

    note = payload(await client.call_tool("remember_text", {"text": "the red door", "tags": ["home"]}))
    assert note["status"] == "new" and note["tags"] == ["home"]
    again = payload(await client.call_tool("remember_text", {"text": "the red door"}))
    assert again["id"] == note["id"] and again["status"] == "already stored"

    img = payload(await client.call_tool("remember_image", {"data_base64": png_b64("blue"), "mime": "image/png"}))
    path = tmp_path / "green.png"
    solid("green").save(path)
    file_mem = payload(await client.call_tool("remember_file", {"path": str(path)}))
    assert file_mem["source"] == str(path)

    result = await client.call_tool("recall", {"query": "blue", "k": 2, "modality": "image"})
    data = payload(result)
    assert data["note"] == UNTRUSTED_NOTE and data["hits"][0]["id"] == img["id"]
    hit = data["hits"][0]
    assert {"id", "score", "modality", "source", "created_at", "tags", "snippet"} <= set(hit)
    images = [b for b in result.content if b.type == "image"]
    assert len(images) == 2 and images[0].mime_type == "image/png"
    from PIL import Image

    thumb = Image.open(io.BytesIO(base64.b64decode(images[hit["image_block"] - 1].data)))
    assert max(thumb.size) <= 256 and thumb.getpixel((5, 5))[2] > 200  # blue, downscaled from 600 px

    text_hits = payload(await client.call_tool("recall", {"query": "red", "k": 1, "modality": "text"}))["hits"]
    assert text_hits[0]["text"] == "the red door" and text_hits[0]["tags"] == ["home"]

    recent = payload(await client.call_tool("list_recent", {"n": 2}))["memories"]
    assert [m["id"] for m in recent] == [file_mem["id"], img["id"]]

    assert payload(await client.call_tool("forget", {"id": img["id"]}))["forgot"] == img["id"]
    after = payload(await client.call_tool("recall", {"query": "blue", "k": 5}))["hits"]
    assert img["id"] not in {h["id"] for h in after}
    return note


def test_tools_round_trip_in_process(mem, tmp_path):
    async def go():
        async with Client(build_server(mem, "agent1", files_roots=[tmp_path])) as client:
            await _session_round_trip(client, tmp_path)
    asyncio.run(go())


def test_errors_are_tool_errors(mem, tmp_path):
    async def go():
        async with Client(build_server(mem, "agent1")) as client:
            bad = await client.call_tool("forget", {"id": "nope"})
            assert bad.is_error and "no memory" in bad.content[0].text
            text_b64 = base64.b64encode(b"hello there").decode()
            bad = await client.call_tool("remember_image", {"data_base64": text_b64})
            assert bad.is_error and "not an image" in bad.content[0].text
            bad = await client.call_tool("remember_image", {"data_base64": "%%%"})
            assert bad.is_error and "base64" in bad.content[0].text
            (tmp_path / ".ssh").mkdir()
            (tmp_path / ".ssh" / "id_rsa").write_text("PRIVATE KEY")
            (tmp_path / "link.txt").symlink_to(tmp_path / ".ssh" / "id_rsa")
        async with Client(build_server(mem, "agent1", files_roots=[tmp_path])) as client:
            for name in (".ssh/id_rsa", "link.txt", "../outside.txt"):
                bad = await client.call_tool("remember_file", {"path": str(tmp_path / name)})
                assert bad.is_error and "outside the folders" in bad.content[0].text, name
            bad = await client.call_tool("remember_file", {"path": str(tmp_path / "absent.png")})
            assert bad.is_error and "no such file" in bad.content[0].text
            bad = await client.call_tool("remember_text", {"text": "   "})
            assert bad.is_error and "empty" in bad.content[0].text
    asyncio.run(go())


def test_remember_again_merges_tags_and_update_memory(mem):
    other = mem.remember("red of another agent", namespace="alice")

    async def go():
        async with Client(build_server(mem, "agent1")) as client:
            note = payload(await client.call_tool("remember_text", {"text": "the red door", "tags": ["home"]}))
            again = payload(await client.call_tool("remember_text", {"text": "the red door", "tags": ["paint"]}))
            assert again["id"] == note["id"] and again["status"] == "updated"
            assert again["tags"] == ["home", "paint"]
            same = payload(await client.call_tool("remember_text", {"text": "the red door", "tags": ["home"]}))
            assert same["status"] == "already stored"
            up = payload(await client.call_tool("update_memory", {
                "id": note["id"], "add_tags": ["door"], "remove_tags": ["home"], "metadata": {"floor": 2}}))
            assert up["status"] == "updated" and up["tags"] == ["paint", "door"] and up["metadata"]["floor"] == 2
            hits = payload(await client.call_tool("recall", {"query": "red", "k": 3}))["hits"]
            assert hits[0]["tags"] == ["paint", "door"]
            bad = await client.call_tool("update_memory", {"id": other.id, "add_tags": ["stolen"]})
            assert bad.is_error and "no memory" in bad.content[0].text  # another namespace
            bad = await client.call_tool("update_memory", {"id": note["id"]})
            assert bad.is_error and "nothing to change" in bad.content[0].text
            up = payload(await client.call_tool("update_memory", {"id": note["id"], "ttl_seconds": 3600}))
            assert up["status"] == "updated" and up["expires_at"]
            up = payload(await client.call_tool("update_memory", {"id": note["id"], "never_expire": True}))
            assert up["status"] == "updated" and not up.get("expires_at")
    asyncio.run(go())
    assert mem.get(other.id, namespace="alice").tags == []


def test_no_files_root_means_no_file_is_read(mem, tmp_path, monkeypatch):
    """Agent apps often start servers with cwd ``/``: without --files-root, remember_file reads
    nothing at all (not the working directory) and says how to grant a folder."""
    inside = tmp_path / "green.png"
    solid("green").save(inside)
    monkeypatch.chdir(tmp_path)

    async def go():
        for roots in (None, []):
            async with Client(build_server(mem, "agent1", files_roots=roots)) as client:
                for path in ("/etc/passwd", str(inside), "green.png"):
                    bad = await client.call_tool("remember_file", {"path": path})
                    assert bad.is_error, path
                    text = bad.content[0].text
                    assert "reads no files" in text and "--files-root DIR" in text, text
    asyncio.run(go())
    assert mem.count() == 0


def test_cli_refuses_a_files_root_that_is_not_a_folder(tmp_path, capsys):
    from aimemory.cli import main

    (tmp_path / "f.txt").write_text("x")
    for bad in (tmp_path / "absent", tmp_path / "f.txt"):
        assert main(["mcp", "--store", str(tmp_path / "s"), "--files-root", str(bad)]) == 1
        assert "--files-root" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_namespace_is_fixed_by_the_server(mem):
    secret = mem.remember("red secret of alice", namespace="alice")

    async def go():
        async with Client(build_server(mem, "bob")) as client:
            hits = payload(await client.call_tool("recall", {"query": "red", "k": 5}))["hits"]
            assert hits == []
            assert payload(await client.call_tool("list_recent", {}))["memories"] == []
            bad = await client.call_tool("forget", {"id": secret.id})
            assert bad.is_error
            # arguments the tool does not declare cannot widen its reach
            hits = payload(await client.call_tool("recall", {"query": "red", "namespace": "alice"}))["hits"]
            assert hits == []
    asyncio.run(go())
    assert mem.get(secret.id, namespace="alice").id == secret.id


@pytest.mark.skipif(not (MINI_DIR.is_dir() and any(MINI_DIR.iterdir())),
                    reason="aimemory-mini weights are not installed: the stdio server needs a real model")
def test_stdio_server_with_mini_model(tmp_path):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "aimemory", "mcp", "--store", str(tmp_path / "m"), "--model", "aimemory-mini",
              "--namespace", "agent1", "--files-root", str(tmp_path)],
        env={**os.environ, "AIMEMORY_OFFLINE": "1"})

    async def go():
        async with Client(params, read_timeout_seconds=300) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert tools == TOOLS
            note = payload(await client.call_tool("remember_text", {"text": "a photo of a red square"}))
            img = payload(await client.call_tool("remember_image", {"data_base64": png_b64("red")}))
            data = payload(await client.call_tool("recall", {"query": "a photo of a red square", "k": 2}))
            assert {h["id"] for h in data["hits"]} == {note["id"], img["id"]}
            assert data["note"] == UNTRUSTED_NOTE
            assert payload(await client.call_tool("forget", {"id": note["id"]}))["forgot"] == note["id"]
            recent = payload(await client.call_tool("list_recent", {}))["memories"]
            assert [m["id"] for m in recent] == [img["id"]]
    asyncio.run(go())


SERVE_WITH_FIXTURE = """
import sys
sys.path.insert(0, {tests!r})
from conftest import ColourEncoder
from aimemory import MemoryStore
from aimemory.mcp_server import serve
serve(MemoryStore({store!r}, model=ColourEncoder(), speech_model=None), "agent1", [{root!r}])
"""


def test_stdio_transport_with_fixture_encoder(tmp_path):
    """The real stdio transport (a subprocess speaking JSON-RPC on stdin/stdout); the model is the
    test fixture, injected by this test's own launcher script, never by the library."""
    code = SERVE_WITH_FIXTURE.format(tests=str(Path(__file__).parent), store=str(tmp_path / "m"),
                                     root=str(tmp_path))
    params = StdioServerParameters(command=sys.executable, args=["-c", code], env=dict(os.environ))

    async def go():
        async with Client(params, read_timeout_seconds=120) as client:
            await _session_round_trip(client, tmp_path)
    asyncio.run(go())
