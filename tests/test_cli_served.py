"""``aimemory recall`` reusing a running ``aimemory serve``: found by its record in the store folder,
used only while its process is alive, and skipped (the CLI opens the store itself) otherwise."""

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


@pytest.fixture
def server():
    """A stand-in for the API: answers POST /api/recall with one hit and keeps the request."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"hits": [HIT]}).encode()
            self.send_response(200)
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
