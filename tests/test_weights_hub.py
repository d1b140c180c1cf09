"""aimemory.weights.hub against a real HTTP server on 127.0.0.1 shaped like the Hugging Face hub.

Small files answer 200 with a git-sha1 ETag; weights answer 302 to a "CDN" path with X-Linked-Etag
(sha256) and X-Linked-Size, as LFS files do on the hub. Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aimemory.errors import CheckpointError, ModelNotAvailableError
from aimemory.weights import hub

REPO = "org/clip-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_FILES = {"model.safetensors", "pytorch_model.bin"}
WEIGHTS = os.urandom(300_000)


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Serves ``repos[repo_id][filename] -> bytes``; ``truncate`` names files to cut once."""

    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.truncate: set[str] = set()
        self.bad_hash: set[str] = set()
        hub_ = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_HEAD(self):
                hub_.serve(self, body=False)

            def do_GET(self):
                hub_.serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def serve(self, h: BaseHTTPRequestHandler, body: bool):
        self.requests.append((h.command, h.path, h.headers.get("Range")))
        cdn = re.fullmatch(r"/cdn/([^/]+)/(.+)", h.path)
        if cdn:
            return self._send_content(h, self.repos[cdn.group(1).replace("--", "/")][cdn.group(2)],
                                      cdn.group(2), body)
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", h.path)
        if not m or m.group(1) not in self.repos:
            return self._error(h, 404, "RepoNotFound")
        repo, rev, name = m.groups()
        if rev not in ("main", COMMIT):
            return self._error(h, 404, "RevisionNotFound")
        files = self.repos[repo]
        if name not in files:
            return self._error(h, 404, "EntryNotFound")
        data = files[name]
        if name in LFS_FILES:
            sha = hashlib.sha256(b"tampered" if name in self.bad_hash else data).hexdigest()
            h.send_response(302)
            h.send_header("Location", f"{self.url}/cdn/{repo.replace('/', '--')}/{name}")
            h.send_header("X-Linked-Etag", f'"{sha}"')
            h.send_header("X-Linked-Size", str(len(data)))
            h.send_header("X-Repo-Commit", COMMIT)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        h.send_response(200)
        h.send_header("ETag", f'"{_git_sha1(data)}"')
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)
        return None

    def _send_content(self, h, data: bytes, name: str, body: bool):
        start = 0
        rng = h.headers.get("Range")
        if rng:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        h.send_header("Content-Length", str(len(data) - start))
        h.end_headers()
        if not body:
            return
        if name in self.truncate:
            self.truncate.discard(name)
            h.wfile.write(data[start : start + (len(data) - start) // 2])
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)  # the server dies mid-body
            return
        h.wfile.write(data[start:])

    @staticmethod
    def _error(h, code: int, error_code: str):
        h.send_response(code)
        h.send_header("X-Error-Code", error_code)
        h.send_header("Content-Length", "0")
        h.end_headers()


def _clip_files(weights: str = "model.safetensors") -> dict[str, bytes]:
    return {
        "config.json": json.dumps({"model_type": "clip"}).encode(),
        "tokenizer_config.json": b'{"pad_token": "<|endoftext|>"}',
        "vocab.json": b'{"a": 0}',
        "merges.txt": b"#version: 0.2\n",
        weights: WEIGHTS,
        "flax_model.msgpack": b"never fetched",
    }


@pytest.fixture()
def fake_hub(monkeypatch, tmp_path):
    server = FakeHub()
    server.repos[REPO] = _clip_files()
    server.repos[REPO]["pytorch_model.bin"] = b"also never fetched"
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "AIMEMORY_OFFLINE",
                "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield server
    server.close()


def _fetched(server: FakeHub) -> set[str]:
    return {p.rsplit("/", 1)[-1] for m, p, _ in server.requests if m == "GET"}


def test_download_then_cache_hit(fake_hub, tmp_path, capsys):
    path = hub.resolve_checkpoint(REPO)
    assert path == tmp_path / "hf" / "hub" / "models--org--clip-tiny" / "snapshots" / COMMIT
    assert (path / "model.safetensors").read_bytes() == WEIGHTS
    assert json.loads((path / "config.json").read_text()) == {"model_type": "clip"}
    assert not (path / "preprocessor_config.json").exists()  # 404 upstream: fine
    assert (path / "model.safetensors").is_symlink()
    assert (path.parent.parent / "refs" / "main").read_text() == COMMIT
    # only what a CLIP checkpoint needs: no .bin when safetensors exists, no other formats
    assert _fetched(fake_hub) == {"config.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                                  "model.safetensors"}
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "/s" in err and "100.0%" in err
    assert "vocab.json" not in err  # no bar for tiny files

    seen = len(fake_hub.requests)
    assert hub.resolve_checkpoint(REPO) == path
    assert hub.download(REPO) == path
    assert len(fake_hub.requests) == seen, "a cached model must not touch the network"
    assert hub.is_cached(REPO) and not hub.is_cached("org/other")
    [(model_id, snap, size)] = hub.list_cached()
    assert model_id == REPO and snap == path and size >= len(WEIGHTS)


def test_pytorch_bin_fallback(fake_hub):
    fake_hub.repos["org/old"] = _clip_files("pytorch_model.bin")
    path = hub.download("org/old", progress=False)
    assert (path / "pytorch_model.bin").read_bytes() == WEIGHTS
    assert not (path / "model.safetensors").exists()
    seen = len(fake_hub.requests)
    assert hub.resolve_checkpoint("org/old") == path  # the 404 was remembered in .no_exist
    assert len(fake_hub.requests) == seen


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "AIMEMORY_OFFLINE"])
def test_offline_not_cached_is_a_clear_error(fake_hub, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    with pytest.raises(ModelNotAvailableError) as info:
        hub.resolve_checkpoint(REPO)
    message = str(info.value)
    assert f"aimemory models download {REPO}" in message
    assert "model=" in message and "HF_HUB_OFFLINE" in message
    assert fake_hub.requests == []
    assert not hub.is_cached(REPO)


def test_offline_uses_the_cache(fake_hub, monkeypatch):
    path = hub.download(REPO, progress=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen = len(fake_hub.requests)
    assert hub.resolve_checkpoint(REPO) == path
    assert len(fake_hub.requests) == seen


def test_local_folder_passes_through(fake_hub, tmp_path):
    folder = tmp_path / "my-clip"
    folder.mkdir()
    assert hub.resolve_checkpoint(folder) == folder.resolve()
    assert hub.resolve_checkpoint(str(folder)) == folder.resolve()
    with pytest.raises(ModelNotAvailableError, match="no checkpoint folder"):
        hub.resolve_checkpoint(tmp_path / "missing")
    with pytest.raises(ModelNotAvailableError, match="no checkpoint folder"):
        hub.resolve_checkpoint("./relative/missing/folder")
    assert fake_hub.requests == []


def test_truncated_download_leaves_no_half_file_and_resumes(fake_hub, capsys):
    fake_hub.truncate.add("model.safetensors")
    with pytest.raises(ModelNotAvailableError, match="again to resume"):
        hub.download(REPO)
    repo_dir = hub.hub_cache_dir() / "models--org--clip-tiny"
    assert not (repo_dir / "snapshots" / COMMIT / "model.safetensors").exists()
    assert not hub.is_cached(REPO)
    blobs = [p.name for p in (repo_dir / "blobs").iterdir()]
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    assert sha not in blobs and sha + ".incomplete" in blobs

    path = hub.download(REPO)  # the server is healthy again
    assert (path / "model.safetensors").read_bytes() == WEIGHTS
    ranges = [r for m, p, r in fake_hub.requests if m == "GET" and r and p.startswith("/cdn/")]
    assert ranges == [f"bytes={len(WEIGHTS) // 2}-"]
    assert not any(p.name.endswith(".incomplete") for p in (repo_dir / "blobs").iterdir())


def test_partial_written_in_full_before_a_crash_is_verified_not_refetched(fake_hub):
    blobs = hub.hub_cache_dir() / "models--org--clip-tiny" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / (hashlib.sha256(WEIGHTS).hexdigest() + ".incomplete")).write_bytes(WEIGHTS)
    path = hub.download(REPO, progress=False)
    assert (path / "model.safetensors").read_bytes() == WEIGHTS
    assert not any(p.startswith("/cdn/") for _, p, _ in fake_hub.requests)


def test_hash_mismatch_is_refused(fake_hub):
    fake_hub.bad_hash.add("model.safetensors")
    with pytest.raises(CheckpointError, match="corrupt"):
        hub.download(REPO, progress=False)
    assert not hub.is_cached(REPO)
    blobs = hub.hub_cache_dir() / "models--org--clip-tiny" / "blobs"
    assert not any(p.stat().st_size == len(WEIGHTS) for p in blobs.iterdir())


def test_unknown_repo_and_unreachable_hub(fake_hub, monkeypatch):
    with pytest.raises(ModelNotAvailableError, match="no repo 'org/nope'"):
        hub.resolve_checkpoint("org/nope")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelNotAvailableError, match="cannot be reached") as info:
        hub.resolve_checkpoint(REPO)
    assert "aimemory models download" in str(info.value)


def test_cache_layout_is_huggingface_hub_compatible(fake_hub):
    hf = pytest.importorskip("huggingface_hub")
    path = hub.download(REPO, progress=False)
    found = hf.try_to_load_from_cache(REPO, "model.safetensors", cache_dir=str(hub.hub_cache_dir()))
    assert found is not None and Path(found).resolve() == (path / "model.safetensors").resolve()


def test_hf_hub_cache_variable_is_respected(fake_hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    path = hub.download(REPO, progress=False)
    assert str(path).startswith(str(tmp_path / "elsewhere"))


def test_fetch_url_resumes_verifies_and_caches(fake_hub, tmp_path, monkeypatch):
    """The plain-URL path (wav2clip's release asset): cut mid-body, resumed by Range, hash checked."""
    url = f"{fake_hub.url}/cdn/{REPO.replace('/', '--')}/model.safetensors"
    dest = tmp_path / "cache" / "Wav2CLIP.pt"
    fake_hub.truncate.add("model.safetensors")
    with pytest.raises(ModelNotAvailableError, match="again to resume"):
        hub.fetch_url(url, dest, progress=False)
    assert not dest.exists() and dest.with_name("Wav2CLIP.pt.incomplete").exists()
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    assert hub.fetch_url(url, dest, sha256=sha, progress=False).read_bytes() == WEIGHTS
    assert [r for m, _, r in fake_hub.requests if m == "GET"][-1] == f"bytes={len(WEIGHTS) // 2}-"
    n = len(fake_hub.requests)
    assert hub.fetch_url(url, dest, progress=False) == dest and len(fake_hub.requests) == n  # cached
    dest.write_bytes(b"stale")
    assert hub.fetch_url(url, dest, progress=False, force=True).read_bytes() == WEIGHTS  # replaced
    other = tmp_path / "cache" / "other.pt"
    with pytest.raises(CheckpointError, match="corrupt"):
        hub.fetch_url(url, other, sha256="0" * 64, progress=False)
    assert not other.exists()
    monkeypatch.setenv("AIMEMORY_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="downloads are off"):
        hub.fetch_url(url, other, progress=False)
