"""The HTTP API through a real server: uvicorn in a thread on a free loopback port, httpx as the
client, a store on the deterministic ColourEncoder. Ends with schemathesis over the OpenAPI spec."""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
try:
    from aimemory.web import require_web

    require_web()
except ImportError as exc:  # pragma: no cover
    pytest.skip(str(exc), allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parent))
from conftest import ColourEncoder, solid, tone  # noqa: E402

TOKEN = "t" * 24


@contextmanager
def live_server(app):
    """Serve ``app`` on 127.0.0.1:<free port> in a daemon thread; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as uvicorn's own bind: no 40 ms per request
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def png(colour: str, seed: int | None = None, size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    solid(colour, size=size, noise_seed=seed).save(buf, format="PNG")
    return buf.getvalue()


def wav(colour: str, seconds: float = 1.0) -> bytes:
    import soundfile as sf

    clip = tone(colour, seconds=seconds)
    buf = io.BytesIO()
    sf.write(buf, clip.samples, clip.sample_rate, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="module")
def mem(tmp_path_factory):
    from aimemory import MemoryStore

    store = MemoryStore(tmp_path_factory.mktemp("web") / "mem", model=ColourEncoder(), speech_model=None)
    yield store
    store.close()


@pytest.fixture(scope="module")
def base(mem):
    from aimemory.web import create_app

    with live_server(create_app(mem, max_upload=2 * 1024 * 1024)) as url:
        yield url


@pytest.fixture
def client(base):
    with httpx.Client(base_url=base, timeout=30) as c:
        yield c


def assert_error(r, status: int, type_: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    if type_:
        assert body["error"]["type"] == type_, body
    return body["error"]


# -- remember / recall / get / forget ---------------------------------------------------------------
def test_text_roundtrip(client):
    r = client.post("/api/memories", json={"text": ["a red apple", "the green grass"], "namespace": "t1",
                                          "metadata": {"tags": ["fruit"], "n": 1}})
    assert r.status_code == 201, r.text
    apple, grass = r.json()["memories"]
    assert apple["modality"] == "text" and apple["tags"] == ["fruit"] and apple["metadata"]["n"] == 1
    assert apple["text"] == "a red apple" and grass["text"] == "the green grass"  # as GET gives it
    again = client.post("/api/memories", json={"text": "a red apple", "namespace": "t1"}).json()
    assert again["memories"][0]["id"] == apple["id"] and again["memories"][0]["text"] == "a red apple"
    hits = client.get("/api/recall", params={"q": "red", "namespace": "t1"}).json()["hits"]
    assert hits[0]["id"] == apple["id"] and hits[0]["memory"]["text"] == "a red apple"
    got = client.get(f"/api/memories/{grass['id']}", params={"namespace": "t1"}).json()
    assert got["text"] == "the green grass"
    r = client.get(f"/api/memories/{grass['id']}/content", params={"namespace": "t1"})
    assert r.text == "the green grass" and r.headers["content-type"].startswith("text/plain")
    assert client.get(f"/api/memories/{grass['id']}").status_code == 404  # other namespace
    recent = client.get("/api/memories", params={"namespace": "t1"}).json()["memories"]
    assert {m["id"] for m in recent} == {apple["id"], grass["id"]}


def test_no_request_makes_the_server_read_a_path(client, tmp_path):
    """No route reads a file the request names: text that is a path stays text, an upload's
    filename is only a label, and a recall query naming a file searches for the words."""
    secret = tmp_path / "secret.txt"
    secret.write_text("red secret on the server's disk")
    r = client.post("/api/memories", json={"text": str(secret), "namespace": "paths"})
    assert r.status_code == 201, r.text
    got = client.get(f"/api/memories/{r.json()['memories'][0]['id']}/content", params={"namespace": "paths"})
    assert got.text == str(secret)
    r = client.post("/api/memories", files={"file": (str(secret), b"the uploaded bytes")},
                    data={"namespace": "paths"})
    assert r.status_code == 201, r.text
    mem = r.json()["memories"][0]
    assert mem["source"] == "secret.txt"
    got = client.get(f"/api/memories/{mem['id']}/content", params={"namespace": "paths"})
    assert got.text == "the uploaded bytes"
    hits = client.get("/api/recall", params={"q": str(secret), "namespace": "paths", "k": 5}).json()["hits"]
    assert all("red secret" not in (h["memory"].get("text") or "") for h in hits)
    for path in ("/static/../app.py", "/static/%2e%2e%2fapp.py", "/static/index.html/../../http.py"):
        assert client.get(path).status_code == 404


def test_remembering_again_merges_tags_and_patch_updates(client):
    body = {"files": {"file": ("cat.png", png("red", seed=7))}, "data": {"tags": "pets", "namespace": "upd"}}
    first = client.post("/api/memories", **body).json()["memories"][0]
    assert first["status"] == "new" and first["tags"] == ["pets"]
    body["data"] = {"tags": "holiday", "namespace": "upd", "metadata": '{"place": "Oslo"}'}
    again = client.post("/api/memories", **body).json()["memories"][0]
    assert again["id"] == first["id"] and again["status"] == "updated"
    assert again["tags"] == ["pets", "holiday"] and again["metadata"]["place"] == "Oslo"
    hits = client.get("/api/recall", params={"q": "red", "tags": "holiday", "namespace": "upd"}).json()["hits"]
    assert [h["id"] for h in hits] == [first["id"]]

    url = f"/api/memories/{first['id']}"
    r = client.patch(url, params={"namespace": "upd"},
                     json={"tags": ["cat"], "remove_tags": ["pets"], "metadata": {"year": 2024}})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["status"] == "updated" and got["tags"] == ["holiday", "cat"]
    assert got["metadata"] == {"tags": ["holiday", "cat"], "place": "Oslo", "year": 2024}
    assert client.get(url, params={"namespace": "upd"}).json()["tags"] == ["holiday", "cat"]
    r = client.patch(url, params={"namespace": "upd"}, json={"tags": "cat"})
    assert r.status_code == 200 and r.json()["status"] == "existing"
    r = client.patch(url, params={"namespace": "upd"}, json={"metadata": {"only": 1}, "replace": True})
    assert r.json()["metadata"] == {"only": 1, "tags": []}
    assert client.get(f"{url}/content", params={"namespace": "upd"}).content == png("red", seed=7)
    assert_error(client.patch(url, json={"tags": ["x"]}), 404, "NotFoundError")  # another namespace
    r = client.patch(url, params={"namespace": "upd"}, json={"ttl": 3600})
    assert r.status_code == 200 and r.json()["status"] == "updated" and r.json()["expires_at"], r.text
    r = client.patch(url, params={"namespace": "upd"}, json={"expires_at": "never"})
    assert r.status_code == 200 and r.json()["expires_at"] is None, r.text
    for bad in ({"tags": [1]}, {"metadata": [1]}, {"replace": "maybe"}, {"nonsense": 1}, {},
                {"ttl": -5}, {"expires_at": "2001-01-01"}, {"expires_at": "soon"}):
        assert_error(client.patch(url, params={"namespace": "upd"}, json=bad), 400)
    assert_error(client.patch(url, params={"namespace": "upd"}, content=b"tags=x",
                              headers={"content-type": "application/x-www-form-urlencoded"}), 415)
    r = client.patch(url, params={"namespace": "upd"}, json={"tags": ["x"]}, headers={"Origin": "http://evil.example"})
    assert_error(r, 403)
    assert "patch" in client.get("/api/openapi.json").json()["paths"]["/api/memories/{memory_id}"]


def test_stats_see_another_process_write(mem, client, tmp_path):
    from aimemory import MemoryStore

    before = client.get("/api/stats").json()["memories"]
    with MemoryStore(mem.path, model=ColourEncoder(), speech_model=None) as other:  # another writer
        other.remember("blue written by another process", namespace="elsewhere")
    time.sleep(0.6)  # readers look for other writers' commits at most every 0.5 s
    stats = client.get("/api/stats").json()
    assert stats["memories"] == before + 1 and stats["namespaces"]["elsewhere"] == 1


def test_image_upload_recall_by_file_and_filters(client):
    files = [("file", ("red.png", png("red", 1), "image/png")), ("file", ("blue.png", png("blue", 2), "image/png"))]
    r = client.post("/api/memories", files=files,
                    data={"namespace": "t2", "tags": "pets, home", "metadata": json.dumps({"album": "x"})})
    assert r.status_code == 201, r.text
    red, blue = r.json()["memories"]
    assert red["source"] == "red.png" and red["tags"] == ["pets", "home"] and red["metadata"]["album"] == "x"
    # an uploaded image as the query
    r = client.post("/api/recall", files={"file": ("q.png", png("blue", 9), "image/png")},
                    data={"namespace": "t2", "k": "2"})
    assert r.status_code == 200, r.text
    assert [h["id"] for h in r.json()["hits"]] == [blue["id"], red["id"]]
    # filters: modality, where, tags, time
    q = {"q": "red", "namespace": "t2"}
    assert client.get("/api/recall", params={**q, "modality": "text"}).json()["hits"] == []
    assert client.get("/api/recall", params={**q, "where": '{"album": "y"}'}).json()["hits"] == []
    assert len(client.get("/api/recall", params={**q, "tags": "pets"}).json()["hits"]) == 2
    assert client.get("/api/recall", params={**q, "since": "2999-01-01"}).json()["hits"] == []
    hits = client.get("/api/recall", params={**q, "until": "2999-01-01T00:00:00Z"}).json()["hits"]
    assert hits[0]["id"] == red["id"]
    json_query = client.post("/api/recall", json={"q": "red", "namespace": "t2", "modality": ["image"],
                                                  "where": {"tags": "home"}, "k": 1})
    assert [h["id"] for h in json_query.json()["hits"]] == [red["id"]]
    # content is the original bytes; the thumbnail is a PNG
    r = client.get(f"/api/memories/{red['id']}/content", params={"namespace": "t2"})
    assert r.content == png("red", 1) and r.headers["content-type"] == "image/png"
    assert "sandbox" in r.headers["content-security-policy"]
    r = client.get(f"/api/memories/{red['id']}/thumbnail", params={"namespace": "t2", "size": 16})
    assert r.content.startswith(b"\x89PNG") and r.headers["content-type"] == "image/png"
    # forget
    r = client.delete(f"/api/memories/{red['id']}", params={"namespace": "t2"})
    assert r.json() == {"deleted": 1}
    assert_error(client.get(f"/api/memories/{red['id']}", params={"namespace": "t2"}), 404, "NotFoundError")
    assert_error(client.delete(f"/api/memories/{red['id']}", params={"namespace": "t2"}), 404)


def test_audio_content_ranges(client):
    data = wav("green")
    r = client.post("/api/memories", files={"file": ("tone.wav", data, "audio/wav")}, data={"namespace": "t3"})
    mid = r.json()["memories"][0]["id"]
    url = f"/api/memories/{mid}/content?namespace=t3"
    full = client.get(url)
    assert full.content == data and full.headers["content-type"] == "audio/wav"
    assert full.headers["accept-ranges"] == "bytes"
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    assert_error(client.get(url, headers={"Range": f"bytes={len(data)}-"}), 416)
    hits = client.get("/api/recall", params={"q": "green", "namespace": "t3"}).json()["hits"]
    assert hits[0]["id"] == mid and hits[0]["kind"] == "audio.sound" and hits[0]["end"] == pytest.approx(1.0)
    assert_error(client.get(f"/api/memories/{mid}/thumbnail?namespace=t3"), 404)


def test_many_files_become_a_job_with_progress(client):
    files = [("file", (f"{i}.png", png("blue", 100 + i), "image/png")) for i in range(6)]
    files.append(("file", ("junk.bin", b"\x00\x01\x02 not a file", "application/octet-stream")))
    r = client.post("/api/memories", files=files, data={"namespace": "t4"})
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert r.headers["location"] == f"/api/jobs/{job['id']}" and job["total"] == 7
    deadline = time.monotonic() + 30
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
        job = client.get(f"/api/jobs/{job['id']}").json()["job"]
    assert job["status"] == "done" and job["stored"] == 6 and job["done"] == 7 and job["progress"] == 1.0
    assert job["skipped"][0]["index"] == 6 and job["skipped"][0]["status"] == 415
    assert client.get("/api/stats").json()["namespaces"]["t4"] == 6
    assert_error(client.get("/api/jobs/nope"), 404)


# -- errors: always 4xx with a JSON body ----------------------------------------------------------
@pytest.mark.parametrize("method, path, kwargs, status", [
    ("POST", "/api/memories", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
    ("POST", "/api/memories", {"json": {"text": 5}}, 400),
    ("POST", "/api/memories", {"json": {"text": "   "}}, 400),
    ("POST", "/api/memories", {"json": {"text": "x", "namespace": "../etc"}}, 400),
    ("POST", "/api/memories", {"json": {"text": "x", "metadata": {"tags": 5}}}, 400),
    ("POST", "/api/memories", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415),
    ("POST", "/api/memories", {"files": {"file": ("x.bin", b"\x00\xff\x00junk", "application/octet-stream")}}, 415),
    ("POST", "/api/memories", {"files": {"file": ("x.png", b"\x89PNG\r\n\x1a\n broken", "image/png")}}, 400),
    ("POST", "/api/memories", {"files": {"file": ("big.txt", b"a" * (3 * 1024 * 1024), "text/plain")}}, 413),
    ("POST", "/api/memories", {"files": {"metadata": (None, "[1]"), "text": (None, "x")}}, 400),
    ("POST", "/api/memories",
     {"files": {"metadata": (None, '{"tags": 5}'), "tags": (None, "a"), "text": (None, "x")}}, 400),
    ("POST", "/api/memories", {"content": b'{"text": "x", "metadata": {"n": NaN}}',
                               "headers": {"content-type": "application/json"}}, 400),
    ("POST", "/api/memories", {"content": b'{"text": "x", "metadata": {"n": 1e999}}',
                               "headers": {"content-type": "application/json"}}, 400),
    ("POST", "/api/memories", {"content": b"[" * 100_000, "headers": {"content-type": "application/json"}}, 400),
    ("GET", "/api/recall", {"params": {}}, 400),
    ("GET", "/api/recall", {"params": {"q": "red", "k": "0"}}, 400),
    ("GET", "/api/recall", {"params": {"q": "red", "k": "abc"}}, 400),
    ("GET", "/api/recall", {"params": {"q": "red", "modality": "smell"}}, 400),
    ("GET", "/api/recall", {"params": {"q": "red", "where": "{bad"}}, 400),
    ("GET", "/api/recall", {"params": {"q": "red", "where": '{"a": {"b": 1}}'}}, 400),
    ("GET", "/api/recall", {"params": {"q": "red", "since": "yesterday"}}, 400),
    ("GET", "/api/recall", {"params": {"q": "red", "hybrid": "maybe"}}, 400),
    ("GET", "/api/recall", {"params": {"q": "red", "namespace": "a/b"}}, 400),
    ("POST", "/api/recall", {"json": {"q": 3}}, 400),
    ("POST", "/api/recall", {"files": {"file": ("q.bin", b"\x00\x00\x00", "application/octet-stream")}}, 415),
    ("GET", "/api/memories/nope", {}, 404),
    ("GET", "/api/memories/nope/content", {}, 404),
    ("GET", "/api/memories", {"params": {"limit": "1000"}}, 400),
    ("GET", "/api/nowhere", {}, 404),
    ("PUT", "/api/stats", {}, 405),
    ("GET", "/static/../store.py", {}, 404),
])
def test_bad_requests_get_json_4xx(client, method, path, kwargs, status):
    assert_error(client.request(method, path, **kwargs), status)


def test_declared_content_length_over_the_limit_is_refused_up_front(base):
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=10) as s:
        s.sendall(b"POST /api/memories HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 999999999\r\n\r\n{")
        answer = b""
        while b"RequestTooLarge" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b'"RequestTooLarge"' in answer


def test_non_finite_metadata_from_python_is_served_as_null(mem, client):
    m = mem.remember("a red kite", metadata={"ratio": float("nan")}, namespace="t5")
    r = client.get(f"/api/memories/{m.id}", params={"namespace": "t5"})
    assert r.status_code == 200 and r.json()["metadata"]["ratio"] is None
    assert client.get("/api/recall", params={"q": "red", "namespace": "t5"}).json()["hits"][0]["id"] == m.id


def test_streamed_body_over_the_limit_gets_413(client):
    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(40):
            yield b"x" * 65536

    r = client.post("/api/memories", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "RequestTooLarge")


# -- guard: token, host, origin -----------------------------------------------------------------------
def test_token_host_and_origin_checks(mem, client):
    from aimemory.web import create_app

    with live_server(create_app(mem, token=TOKEN)) as url, httpx.Client(base_url=url, timeout=30) as c:
        r = c.get("/api/stats")
        assert_error(r, 401, "Unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert_error(c.get("/api/stats", headers={"Authorization": "Bearer wrong"}), 401)
        assert c.get("/api/stats", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/").status_code == 200  # the page holds no data; its API calls carry the token
    # without a token: only loopback Host names (DNS rebinding), and no cross-site writes
    assert_error(client.get("/api/stats", headers={"Host": "evil.example:8765"}), 403, "Forbidden")
    r = client.post("/api/memories", json={"text": "x"}, headers={"Origin": "http://evil.example"})
    assert_error(r, 403)
    r = client.post("/api/memories", data={"text": "pwned"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert_error(r, 403)


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "explorer.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    js = client.get("/static/explorer.js")
    assert js.status_code == 200 and "innerHTML" not in js.text.replace("innerHTML is never used", "")
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/api/recall" in spec["paths"]


def test_event_loop_stays_responsive_during_a_slow_encode(tmp_path):
    from aimemory import MemoryStore
    from aimemory.web import create_app

    release = threading.Event()

    class Slow(ColourEncoder):
        def embed_texts(self, texts):
            if any("slow" in t for t in texts):
                release.wait(20)
            return super().embed_texts(texts)

    store = MemoryStore(tmp_path / "m", model=Slow(), speech_model=None)
    try:
        with live_server(create_app(store)) as url, httpx.Client(base_url=url, timeout=30) as c:
            pending = threading.Thread(target=c.post, args=("/api/memories",), kwargs={"json": {"text": "slow red"}})
            pending.start()
            time.sleep(0.3)
            t0 = time.monotonic()
            assert c.get("/api/health").json()["status"] == "ok"
            assert time.monotonic() - t0 < 2.0
            release.set()
            pending.join(20)
            assert store.count() == 1
    finally:
        release.set()
        store.close()


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_refuses_public_bind_without_token_and_short_tokens(tmp_path, capsys, monkeypatch):
    from aimemory.cli import main

    monkeypatch.delenv("AIMEMORY_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--store", str(tmp_path / "s")]) == 1
    assert "--token" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # refused before opening (or creating) anything
    assert main(["serve", "--host", "0.0.0.0", "--token", "short", "--store", str(tmp_path / "s")]) == 1
    assert "at least 16" in capsys.readouterr().err


def test_cli_says_which_extra_is_missing(tmp_path, capsys, monkeypatch):
    import aimemory.web as web
    from aimemory.cli import main

    def missing():
        raise ImportError(f"{web.MISSING_EXTRA} (missing: uvicorn)")

    monkeypatch.setattr(web, "require_web", missing)
    assert main(["serve", "--store", str(tmp_path / "s")]) == 1
    from aimemory.errors import install_hint

    assert install_hint("web") in capsys.readouterr().err


# -- schemathesis ---------------------------------------------------------------------------------
FUZZ_EXAMPLES = 8  # per operation and generation mode: ~160 requests, ~20 s on an idle 2-core machine


def test_openapi_fuzz_never_5xx(tmp_path):
    """Valid and invalid requests generated from the served OpenAPI document: never a 5xx, and every
    4xx carries the JSON error body."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    from aimemory import MemoryStore
    from aimemory.web import create_app

    store = MemoryStore(tmp_path / "fuzz", model=ColourEncoder(), speech_model=None)
    store.remember("a red seed memory")
    failures: list[str] = []
    calls = 0
    try:
        with live_server(create_app(store, max_upload=256 * 1024)) as url:
            schema = schemathesis.openapi.from_url(f"{url}/api/openapi.json")
            fuzz = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                            phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def fuzz_one(operation, mode):
                @fuzz
                @given(case=operation.as_strategy(generation_mode=mode))
                def run(case):
                    nonlocal calls
                    calls += 1
                    response = case.call(base_url=url, timeout=20)
                    where = f"{case.method} {case.formatted_path} ({mode.value})"
                    if response.status_code >= 500:
                        failures.append(f"{where}: {response.status_code} {response.text[:300]}")
                    elif response.status_code >= 400 and "error" not in response.json():
                        failures.append(f"{where}: {response.status_code} without an error body")

                try:
                    run()
                except Unsatisfiable:  # nothing invalid to send to an operation without inputs
                    assert mode == GenerationMode.NEGATIVE, operation.label

            for result in schema.get_all_operations():
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    fuzz_one(result.ok(), mode)
    finally:
        store.close()
    assert calls >= 40
    assert not failures, failures


# -- the load benchmark, tiny ---------------------------------------------------------------------
def test_bench_web_smoke(tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_web.py"
    spec = importlib.util.spec_from_file_location("bench_web", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    lines: list[str] = []
    out = bench.main(["--memories", "300", "--requests", "30", "--duration", "20", "--rounds", "1",
                      "--reference", "3", "--clients", "4", "--workdir", str(tmp_path)], log=lines.append)
    assert "CPU:" in out["table"] and "recall k=10, round 1" in out["table"]
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in out["results"].values())


def test_a_running_server_follows_a_migration_and_a_rollback(tmp_path):
    """The server holds one store; `aimemory migrate` in another process switches the folder. The
    next request reopens the active generation: writes are not refused with a 500, and what the
    other process wrote is found."""
    from _encoder_v2 import ColourEncoderV2

    from aimemory import MemoryStore
    from aimemory.migrate import rollback
    from aimemory.web import create_app

    path = tmp_path / "mem"
    served = MemoryStore(path, model=ColourEncoder(), speech_model=None)
    served.remember("a red kite")
    app = create_app(served)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        with MemoryStore(path, model=ColourEncoder(), speech_model=None) as other:
            assert other.migrate(ColourEncoderV2()).switched
            other.remember("a blue boat after the switch")
        rollback(path, ColourEncoder())  # back to the model the server was opened with
        r = c.post("/api/memories", json={"text": "a green leaf"})
        assert r.status_code == 201, r.text
        found = c.get("/api/recall", params={"q": "blue boat", "k": 1}).json()
        assert found["hits"][0]["memory"]["text"] == "a blue boat after the switch"
    app.state.api.handle.close()
