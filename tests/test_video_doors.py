"""Video hits through the doors: the CLI prints the span, HTTP serves frames and byte ranges of the
video, MCP returns the matching frame as image content. In-process (no servers), with ColourEncoder."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import numpy as np
import pytest

pytest.importorskip("av")

from _video import THREE_SCENES, Scene, Spec, write_video  # noqa: E402
from conftest import ColourEncoder  # noqa: E402

from aimemory import MemoryStore  # noqa: E402

SIZE = (160, 120)
SCENES = [Scene(3, s.background, s.shape, s.colour) for s in THREE_SCENES]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("v") / "three.mp4", Spec(SCENES, size=SIZE, fps=10.0, audio=False))


@pytest.fixture
def mem(tmp_path, video):
    s = MemoryStore(tmp_path / "m", model=ColourEncoder(), speech_model=None)
    s.remember(video)
    yield s
    s.close()


def _corner(jpeg: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float32)[-4:, :4].reshape(-1, 3).mean(0)


def test_cli_prints_the_span(capsys, tmp_path, video, monkeypatch):
    import aimemory.cli.commands as commands
    from aimemory.cli import main

    monkeypatch.setattr(commands, "_TEST_STORE_KWARGS", {"model": ColourEncoder(), "speech_model": None})
    assert main(["remember", str(video), "--store", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    assert main(["recall", "blue", "--store", str(tmp_path / "s"), "-k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)[0]
    assert hit["modality"] == "video" and hit["start"] >= 5.5 and hit["end"] <= 9.5
    assert main(["recall", "blue", "--store", str(tmp_path / "s"), "-k", "1"]) == 0
    assert "0:06" in capsys.readouterr().out  # the table's time column: 0:06–0:09


def test_http_frames_and_ranges(mem, video):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")  # starlette's TestClient drives the app in-process through httpx
    from starlette.testclient import TestClient

    from aimemory.web import create_app

    data = video.read_bytes()
    with TestClient(create_app(mem), base_url="http://127.0.0.1") as client:
        hits = client.get("/api/recall", params={"q": "green", "k": 1}).json()["hits"]
        hit = hits[0]
        assert hit["modality"] == "video" and hit["kind"] == "video.frame"
        assert hit["frame_url"].endswith("&t=4.500") and hit["memory"]["frame_url"]
        frame = client.get(hit["frame_url"])
        assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
        assert float(np.abs(_corner(frame.content) - SCENES[1].background).max()) < 30
        content = hit["memory"]["content_url"]
        part = client.get(content, headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206 and part.content == data[100:1100]
        assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
        assert client.get(content).headers["content-type"] == "video/mp4"
        assert client.get(hit["frame_url"].split("&t=")[0] + "&t=-1").status_code == 400
        text_id = mem.remember("a green note").id
        assert client.get(f"/api/memories/{text_id}/frame").status_code == 404
        assert client.get("/api/recall", params={"q": "green", "modality": "video"}).status_code == 200


def test_mcp_recall_returns_the_frame(mem):
    pytest.importorskip("mcp")
    from mcp import Client

    from aimemory.mcp_server import build_server

    async def go():
        async with Client(build_server(mem)) as client:
            return await client.call_tool("recall", {"query": "blue", "k": 1, "modality": "video"})

    result = asyncio.run(go())
    assert not result.is_error, result.content
    hit = json.loads(result.content[0].text)["hits"][0]
    assert hit["start"] >= 5.5 and hit["image_block"] == 1
    image = result.content[1]
    assert image.type == "image" and image.mime_type == "image/jpeg"
    assert float(np.abs(_corner(base64.b64decode(image.data)) - SCENES[2].background).max()) < 30


def test_notebook_reprs_show_the_frame(mem):
    hits = mem.recall("green", k=1)
    html = hits._repr_html_() + hits[0]._repr_html_() + hits[0].memory._repr_html_()
    assert html.count("data:image/jpeg;base64,") == 3

