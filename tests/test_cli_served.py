"""``aimemory recall`` and ``aimemory remember --text`` reusing a running ``aimemory serve``: found by
its record in the store folder, used only while its process is alive, and skipped (the CLI opens the
store itself) otherwise."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from aimemory.cli import served

HIT = {"id": "abc", "score": 0.9, "fusion": None, "modality": "text", "kind": "text", "start": None,
       "end": None, "snippet": None,
       "memory": {"id": "abc", "modality": "text", "namespace": "default", "created_at": "2024-05-01T12:00:00+00:00",
                  "source": None, "mime": "text/plain", "tags": ["pets"], "metadata": {"tags": ["pets"]},
                  "transcript": None, "text": "the cat sleeps"}}


def _stored(text: str, i: int) -> dict:
    status = "existing" if text.startswith("old") else "new"
    return {"id": f"m{i}", "modality": "text", "namespace": "default", "status": status, "text": text}


@pytest.fixture
def server():
    """A stand-in for the API: answers POST /api/recall with one hit, POST /api/memories as the API
    does (an item whose text is "bad" skipped, a request of only bad ones refused) and keeps the
    requests."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            status, answer = 200, {"hits": [HIT]}
            if self.path == "/api/memories":
                texts = seen[-1]["text"]
                skipped = [{"index": i, "source": None, "status": 422,
                            "error": {"type": "InputError", "message": "bad text"}} for i, t in enumerate(texts)
                           if t == "bad"]
                stored = [_stored(t, i) for i, t in enumerate(texts) if t != "bad"]
                status, answer = (201, {"memories": stored, "skipped": skipped}) if stored else \
                    (422, {"error": {"type": "InputError", "message": "bad text"}})
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_DELETE(self):  # noqa: N802: one known memory, "m0" in the default namespace
            seen.append({"DELETE": self.path})
            known = self.path == "/api/memories/m0?namespace=default"
            body = json.dumps({"deleted": 1} if known else {"error": {"type": "NotFoundError"}}).encode()
            self.send_response(200 if known else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], seen
    httpd.shutdown()


def test_recall_goes_to_the_running_server(tmp_path, server, monkeypatch):
    port, seen = server
    monkeypatch.setattr(served, "_alive_server", lambda pid: pid == os.getpid())
    record = served.announce(tmp_path, "127.0.0.1", port, token_required=False)
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    hits = served.recall(tmp_path, "a cat", k=3, where={"tags": "pets"}, namespace="default", since=None)
    assert [h.id for h in hits] == ["abc"] and hits[0].memory.text == "the cat sleeps"
    assert hits[0].memory.tags == ["pets"] and hits[0].memory.created_at.year == 2024
    assert seen == [{"q": "a cat", "k": 3, "where": {"tags": "pets"}, "namespace": "default"}]
    from aimemory.cli.output import hit_record

    assert hit_record(1, hits[0])["text"] == "the cat sleeps"  # what `recall --json` prints
    served.withdraw(record)
    assert not record.exists()


def test_no_server_means_none(tmp_path, server, monkeypatch):
    port, seen = server
    assert served.recall(tmp_path, "a cat") is None  # no record
    record = served.announce(tmp_path, "127.0.0.1", port, token_required=False)
    assert served.recall(tmp_path, "a cat") is None  # this pid is no `aimemory serve`
    monkeypatch.setattr(served, "_alive_server", lambda pid: True)
    monkeypatch.setenv("AIMEMORY_USE_SERVER", "0")
    assert served.recall(tmp_path, "a cat") is None  # turned off
    monkeypatch.delenv("AIMEMORY_USE_SERVER")
    record.write_text(json.dumps({"pid": os.getpid(), "url": "http://example.com:80", "token": False}))
    assert served.recall(tmp_path, "a cat") is None  # loopback only
    record.write_text(json.dumps({"pid": os.getpid(), "url": "http://127.0.0.1:1", "token": False}))
    assert served.recall(tmp_path, "a cat") is None  # refused: fall back
    record.write_text(json.dumps({"pid": os.getpid(), "url": f"http://127.0.0.1:{port}", "token": True}))
    monkeypatch.delenv("AIMEMORY_TOKEN", raising=False)
    assert served.recall(tmp_path, "a cat") is None  # needs a token we do not have
    assert seen == []


@pytest.fixture
def served_store(tmp_path, server, monkeypatch):
    """A store folder whose record names the stand-in server as its running ``aimemory serve``."""
    port, seen = server
    monkeypatch.setattr(served, "_alive_server", lambda pid: pid == os.getpid())
    store = tmp_path / "mem"
    store.mkdir()
    served.announce(store, "127.0.0.1", port, token_required=False)
    return store, seen


def test_remember_texts_go_to_the_running_server(served_store, capsys):
    from aimemory.cli import main

    store, seen = served_store
    code = main(["remember", "--store", str(store), "--text", "call the plumber", "--text", "old note", "--text", "bad",
                 "--tag", "home", "--ttl", "2h", "--created-by", "agent-a"])
    assert code == 1  # an item was skipped: exit 1, as a local run
    assert seen == [{"text": ["call the plumber", "old note", "bad"], "background": False, "namespace": "default",
                     "metadata": {"tags": ["home"]}, "ttl": 7200.0, "created_by": "agent-a"}]
    out, err = capsys.readouterr()
    assert "new             m0  call the plumber" in out and "already stored  m1  old note" in out
    assert "1 new, 1 already stored, 1 skipped" in out and "bad: bad text" in err
    assert sorted(p.name for p in store.iterdir()) == [served.RECORD]  # the CLI never opened the store


def test_remember_falls_back_to_the_store_when_the_server_refuses(tmp_path, server, monkeypatch):
    port, seen = server
    monkeypatch.setattr(served, "_alive_server", lambda pid: pid == os.getpid())
    served.announce(tmp_path, "127.0.0.1", port, token_required=False)
    assert served.remember_texts(tmp_path, ["bad"]) is None  # refused: the local run says why
    assert served.remember_texts(tmp_path, ["fine"])[0][0]["id"] == "m0"
    monkeypatch.setenv("AIMEMORY_USE_SERVER", "0")
    assert served.remember_texts(tmp_path, ["fine"]) is None  # turned off
    assert len(seen) == 2


def test_the_tally_of_served_memories_follows_their_status():
    from aimemory.cli.ingest import Entry, served_tally

    entries = [Entry(t, t) for t in ("a", "b", "c", "d", "e")]
    memories = [{"id": "1", "status": "new"}, {"id": "2", "status": "replaced"}, {"id": "3", "status": "updated"},
                {"id": "4", "status": "merged"}]
    tally = served_tally(entries, memories, [{"index": 2, "error": {"message": "too long"}}])
    assert tally.new == [("a", "1"), ("b", "2")] and tally.updated == [("d", "3")]
    assert tally.existing == [("e", "4")] and tally.skipped == [("c", "too long")]


def test_forget_of_one_id_goes_to_the_running_server(served_store, capsys):
    from aimemory.cli import main

    store, seen = served_store
    assert main(["forget", "--store", str(store), "m0", "m0"]) == 0  # one id, named twice
    assert "forgot 1 memory" in capsys.readouterr().out
    assert seen == [{"DELETE": "/api/memories/m0?namespace=default"}]
    assert sorted(p.name for p in store.iterdir()) == [served.RECORD]  # the CLI never opened the store
    assert served.forget(store, "nope", "default") is None  # refused (unknown): the local run says why
    assert served.forget(store, "m0", "tenant a") is None  # quoted: another namespace, unknown here
    assert seen[-1] == {"DELETE": "/api/memories/m0?namespace=tenant%20a"}
