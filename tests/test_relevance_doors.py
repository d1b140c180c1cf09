"""``min_relevance`` through the HTTP API and the MCP server: every hit carries its calibrated relevance,
the filter keeps exactly the hits at or above it (across modalities), and a value outside 0-1 is a
client error, not a crash."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import ColourEncoder, solid, tone  # noqa: E402

from aimemory import MemoryStore  # noqa: E402

COLOURS = ("red", "green", "blue")


def _fill(store: MemoryStore, namespace: str = "default") -> None:
    items = [x for colour in COLOURS for x in (f"a {colour} note", solid(colour, noise_seed=3), tone(colour))]
    store.remember_many(items + ["an unrelated note about taxes"], namespace=namespace)


def _cut(relevances: list[float]) -> float:
    """A threshold strictly between the 3rd and 4th distinct relevance: some hits pass, some not."""
    distinct = sorted(set(relevances), reverse=True)
    assert len(distinct) >= 4, relevances
    return (distinct[2] + distinct[3]) / 2


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = MemoryStore(tmp_path_factory.mktemp("rel") / "m", model=ColourEncoder(), speech_model=None)
    _fill(s)
    yield s
    s.close()


# -- HTTP ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def http(store):
    httpx = pytest.importorskip("httpx")
    try:
        from aimemory.web import create_app, require_web

        require_web()
    except ImportError as exc:  # pragma: no cover
        pytest.skip(str(exc))
    from test_web_api import live_server

    with live_server(create_app(store)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def test_http_recall_filters_by_min_relevance(http, store):
    every = http.get("/api/recall", params={"q": "red", "k": 10}).json()["hits"]
    assert len(every) == 10 and all(0.0 <= h["relevance"] <= 1.0 for h in every)
    assert {h["modality"] for h in every} == {"text", "image", "audio"}
    cut = _cut([h["relevance"] for h in every])
    kept = http.get("/api/recall", params={"q": "red", "k": 10, "min_relevance": cut}).json()["hits"]
    assert [h["id"] for h in kept] == [h["id"] for h in every if h["relevance"] >= cut]
    assert 0 < len(kept) < len(every)
    # the JSON body takes it too, and agrees with the library
    posted = http.post("/api/recall", json={"q": "red", "k": 10, "min_relevance": cut}).json()["hits"]
    assert [h["id"] for h in posted] == [h["id"] for h in kept]
    assert [h.id for h in store.recall("red", k=10, min_relevance=cut)] == [h["id"] for h in kept]
    assert http.get("/api/recall", params={"q": "red", "min_relevance": 1}).status_code == 200


@pytest.mark.parametrize("value", ["1.5", "-0.1", "high", "nan"])
def test_http_rejects_a_min_relevance_outside_0_to_1(http, value):
    r = http.get("/api/recall", params={"q": "red", "min_relevance": value})
    assert r.status_code == 400, r.text
    assert "min_relevance" in r.json()["error"]["message"]


def test_http_upload_query_filters_by_min_relevance(http):
    buf = io.BytesIO()
    solid("blue", noise_seed=9).save(buf, format="PNG")
    files = {"file": ("q.png", buf.getvalue(), "image/png")}
    every = http.post("/api/recall", files=files, data={"k": "10"}).json()["hits"]
    cut = _cut([h["relevance"] for h in every])
    kept = http.post("/api/recall", files=files, data={"k": "10", "min_relevance": str(cut)}).json()["hits"]
    assert [h["id"] for h in kept] == [h["id"] for h in every if h["relevance"] >= cut]


# -- MCP ----------------------------------------------------------------------------------------
def _mcp(store: MemoryStore, calls: list[dict]) -> list:
    pytest.importorskip("mcp")
    from mcp import Client

    from aimemory.mcp_server import build_server

    async def go():
        out = []
        async with Client(build_server(store, "default")) as client:
            for args in calls:
                out.append(await client.call_tool("recall", args))
        return out

    return asyncio.run(go())


def _hits(result) -> list[dict]:
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)["hits"]


def test_mcp_recall_filters_by_min_relevance(store):
    (every,) = _mcp(store, [{"query": "green", "k": 10}])
    every = _hits(every)
    assert len(every) == 10 and all(0.0 <= h["relevance"] <= 1.0 for h in every)
    cut = _cut([h["relevance"] for h in every])
    kept, none, bad, worse = _mcp(store, [{"query": "green", "k": 10, "min_relevance": cut},
                                          {"query": "green", "k": 10, "min_relevance": 1.0},
                                          {"query": "green", "min_relevance": 1.5},
                                          {"query": "green", "min_relevance": -1}])
    kept = _hits(kept)
    # relevance is rounded to 4 places on the way out: compare ids against the library's own filter
    assert [h["id"] for h in kept] == [h.id for h in store.recall("green", k=10, min_relevance=cut)]
    assert 0 < len(kept) < len(every) and all(h["relevance"] >= round(cut, 4) - 1e-4 for h in kept)
    assert len(_hits(none)) <= 1
    for result in (bad, worse):
        assert result.is_error and "min_relevance" in result.content[0].text
