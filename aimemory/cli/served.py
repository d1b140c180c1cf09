"""The CLI reuses a running ``aimemory serve`` of the same store: a cold ``aimemory recall``,
``aimemory remember --text`` or ``aimemory forget ID`` then costs one loopback HTTP request instead
of loading the store and the model (seconds of imports) and, for a write, the fold into the table
on close.

``aimemory serve`` leaves ``.serve.json`` (mode 0600) in the store folder while it runs: its pid and
loopback URL. The CLI uses it only when that pid is alive and is an ``aimemory serve`` process, and
falls back to opening the store itself on any failure. ``AIMEMORY_USE_SERVER=0`` turns reuse off.
Only standard-library modules are imported here.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

RECORD = ".serve.json"
TIMEOUT_S = 30.0  # a recall on a loaded server; a first query also loads the server's text towers


def announce(store: Path, host: str, port: int, token_required: bool) -> Path | None:
    """Write the record for ``aimemory serve`` (None when it cannot be reached on loopback)."""
    if not port:
        return None
    loop = "[::1]" if host in ("::1", "::") else "127.0.0.1"
    path = Path(store) / RECORD
    data = json.dumps({"pid": os.getpid(), "url": f"http://{loop}:{port}", "token": token_required})
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
    except OSError:
        return None
    return path


def withdraw(record: Path | None) -> None:
    if record is not None:
        try:
            if json.loads(record.read_text()).get("pid") == os.getpid():
                record.unlink()
        except (OSError, ValueError):
            pass


def _alive_server(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # Linux: the pid must be a serve process, not a recycled pid
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            return False
        return b"serve" in args and any(b"aimemory" in a for a in args)
    return True


def find(store: Path) -> dict | None:
    """The running server of ``store``, or None."""
    if os.environ.get("AIMEMORY_USE_SERVER", "1") == "0":
        return None
    try:
        record = json.loads((Path(store) / RECORD).read_text())
        pid, url = int(record["pid"]), str(record["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not url.startswith(("http://127.0.0.1:", "http://[::1]:")) or not _alive_server(pid):
        return None
    if record.get("token") and not os.environ.get("AIMEMORY_TOKEN"):
        return None
    return record


def _when(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _send(store: Path, route: str, body: dict | None, method: str = "POST") -> dict | None:
    """Send ``body`` as JSON to the running server's ``route`` -> its JSON answer, or None when
    there is no usable server or it did not answer with success (the caller then does the work
    itself, and a bad request fails there with the local error)."""
    from urllib import error, request

    record = find(store)
    if record is None:
        return None
    headers = {"Content-Type": "application/json"}
    if record.get("token"):
        headers["Authorization"] = f"Bearer {os.environ['AIMEMORY_TOKEN']}"
    data = None if body is None else json.dumps(body).encode()
    req = request.Request(record["url"] + route, data=data, headers=headers, method=method)
    try:
        with request.urlopen(req, timeout=TIMEOUT_S) as resp:
            answer = json.loads(resp.read())
    except (error.URLError, OSError, ValueError):
        return None  # down, refused, an error status, or an answer we cannot read
    return answer if isinstance(answer, dict) else None


def recall(store: Path, query: str, **params: Any) -> list | None:
    """Hits from the running server (objects with the attributes the CLI prints), or None when
    there is no usable server (the caller then opens the store)."""
    answer = _send(store, "/api/recall", {"q": query, **{k: _when(v) for k, v in params.items() if v is not None}})
    try:
        return None if answer is None else [_hit(h) for h in answer["hits"]]
    except (KeyError, TypeError, ValueError):
        return None


def remember_texts(store: Path, texts: list[str], **fields: Any) -> tuple[list[dict], list[dict]] | None:
    """Remember ``texts`` through the running server -> (memories as the web API shows them, in the
    order of the texts that were stored; skipped items with their errors), or None when there is
    no usable server (the caller then opens the store). ``fields``: the API's remember fields
    (namespace, metadata, id, ttl, expires_at, created_by, derived_from, near_duplicate, ...)."""
    body = {"text": texts, "background": False, **{k: _when(v) for k, v in fields.items() if v is not None}}
    answer = _send(store, "/api/memories", body)
    if answer is None or not isinstance(answer.get("memories"), list) or not isinstance(answer.get("skipped"), list):
        return None
    return answer["memories"], answer["skipped"]


def forget(store: Path, memory_id: str, namespace: str) -> int | None:
    """Forget one memory through the running server -> how many memories went (0 or 1), or None
    when there is no usable server or it refused (the caller then opens the store)."""
    from urllib.parse import quote

    route = f"/api/memories/{quote(memory_id, safe='')}?namespace={quote(namespace, safe='')}"
    answer = _send(store, route, None, method="DELETE")
    deleted = None if answer is None else answer.get("deleted")
    return deleted if isinstance(deleted, int) and not isinstance(deleted, bool) else None


HIT_DEFAULTS: dict[str, Any] = {"start": None, "end": None, "snippet": None, "fusion": None, "recency": None,
                                "relevance": None, "boxes": None, "frame_url": None}
MEMORY_DEFAULTS: dict[str, Any] = {"source": None, "mime": None, "tags": [], "metadata": {}, "transcript": None,
                                   "created_by": None, "derived_from": None, "expires_at": None}


def _hit(h: dict) -> SimpleNamespace:
    """A hit of the web API's JSON as an object with the attributes of a :class:`Hit` (fields an
    older server leaves out read as None)."""
    m = {**MEMORY_DEFAULTS, **h["memory"]}
    m["created_at"] = datetime.fromisoformat(m["created_at"])
    if m["expires_at"]:
        m["expires_at"] = datetime.fromisoformat(m["expires_at"])
    if m.get("modality") != "text":
        m["text"] = m.get("transcript")
    memory = SimpleNamespace(**m)
    return SimpleNamespace(**{**HIT_DEFAULTS, **{k: v for k, v in h.items() if k != "memory"}}, memory=memory)
