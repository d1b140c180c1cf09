"""Stores on object storage: ``MemoryStore("s3://bucket/prefix", storage_options={...})``.

What lives where for a remote store:

* the Lance table at ``<uri>/tables/memories.lance``: Lance's own commit protocol makes each
  commit atomic and lets concurrent writers (other machines) rebase appends and deletes;
* the manifest as the object ``<uri>/aimemory.json`` (an S3 PUT replaces an object atomically);
* a write lease, the object ``<uri>/_aimemory/write.lock``, created with a conditional put
  (``If-None-Match: *``), which serialises key allocation (``next_vkey``) and dedup checks
  across machines exactly as ``flock`` does on one machine; it expires after ``lease_ttl_s`` so a
  crashed writer cannot wedge the store, is renewed (``If-Match``) every third of that while a
  write runs, and is checked before each commit, so a writer whose lease was taken over commits
  nothing;
* a local cache folder (``$AIMEMORY_CACHE_DIR`` or ``~/.cache/aimemory/remote/<hash>``) for
  what is derived and per-machine: a FAISS index when one is asked for, and the local lock file.

What each backend needs (see docs/capacity.md for costs):

* AWS S3: conditional writes (``If-None-Match``, GA since August 2024) serve both Lance's
  commits and the lease; nothing else to set up. For S3-compatible servers without them, use
  ``s3+ddb://bucket/prefix?ddbTableName=T`` (Lance commits through a DynamoDB table) -- the lease
  still needs ``If-None-Match``, so those stores must have one writer at a time.
* MinIO, Cloudflare R2, moto: conditional puts work; set ``aws_endpoint`` and, for plain
  HTTP, ``allow_http: "true"``.
* Azure Blob Storage (``az://container/prefix``): Lance commits with ETag preconditions; the
  manifest and lease use azure-storage-blob (the ``azure`` extra) with the same
  create-only / if-match writes; credentials as Lance takes them (account name + key or SAS, a
  connection string, or ``azure_storage_use_emulator`` for Azurite).
* GCS: Lance itself commits ``gs://`` tables with generation preconditions, but the manifest and
  lease have no GCS client here yet, so opening a ``gs://`` store raises a clear ``StoreError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit

from ..errors import StoreCorruptError, StoreError

REMOTE_SCHEMES = ("s3", "s3+ddb", "gs", "az", "abfs")
MANIFEST_OBJECT = "aimemory.json"
LOCK_OBJECT = "_aimemory/write.lock"
LEASE_TTL_S = 120.0  # longer than any one commit (encode + write of a batch) should take
LOCK_TIMEOUT_S = 300.0


def is_remote(path: object) -> bool:
    """True for object-store URIs (``s3://``, ``s3+ddb://``, ``gs://``, ``az://``)."""
    return isinstance(path, str) and "://" in path and path.split("://", 1)[0].lower() in REMOTE_SCHEMES


class RemoteRoot(type(Path())):  # type: ignore[misc]
    """The local cache folder of a remote store; ``.remote`` is its :class:`RemoteLocation`.

    The store keeps treating ``self.path`` as a folder (lock file, FAISS cache) while the manifest
    and the table see ``.remote`` and go to the object store. Paths derived from it
    (``root / "index"``) are plain paths, as they should be."""

    remote: "RemoteLocation | None" = None
    uri: str | None = None


def store_root(path: "str | os.PathLike", storage_options: Mapping[str, str] | None = None) -> Path:
    """``MemoryStore``'s ``path`` -> the folder it works in (a :class:`RemoteRoot` for URIs)."""
    if not is_remote(path):
        if storage_options:
            raise ValueError("storage_options= applies to object-store URIs (s3://...), not to "
                             f"the local folder {path!r}")
        return Path(path).expanduser()
    location = RemoteLocation(str(path), storage_options or {})
    base = Path(os.environ.get("AIMEMORY_CACHE_DIR", "~/.cache/aimemory/remote")).expanduser()
    root = RemoteRoot(base / hashlib.sha256(location.uri.encode()).hexdigest()[:16])
    root.remote = location
    root.uri = location.uri
    return root


def remote_lease(root: Path):
    """The cross-machine write lease of a remote store; a no-op for local folders."""
    remote = getattr(root, "remote", None)
    return remote.lease() if remote is not None else nullcontext()


class RemoteLocation:
    """One store's place on an object store: table URI, manifest object, write lease."""

    def __init__(self, uri: str, storage_options: Mapping[str, str]):
        parts = urlsplit(uri)
        self.scheme = parts.scheme.lower()
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.query = parts.query
        if not self.bucket:
            raise ValueError(f"{uri!r} names no bucket")
        self.uri = f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")
        self.storage_options = {str(k): str(v) for k, v in storage_options.items()}
        self.lease_ttl_s = float(self.storage_options.pop("aimemory_lease_ttl_s", LEASE_TTL_S))
        self._client = None
        self._held = 0
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._tlock = threading.RLock()
        self._lease_etag = ""
        self._lease_renewed = 0.0
        self._lease_lost: str | None = None

    # -- names ---------------------------------------------------------------------------------
    @property
    def tables_uri(self) -> str:
        """Where lancedb connects (``s3+ddb`` keeps its ``?ddbTableName=`` query)."""
        return f"{self.uri}/tables" + (f"?{self.query}" if self.query else "")

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    # -- objects beside the table (see storage/objects.py) ----------------------------------
    @property
    def objects(self):
        if self._client is None:
            from .objects import object_client

            self._client = object_client(self.scheme, self.bucket, self.storage_options)
        return self._client

    def get(self, name: str) -> tuple[bytes, str] | None:
        """(body, etag) of an object, or None when it does not exist."""
        try:
            return self.objects.get(self.key(name))
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"reading {self.uri}/{name} failed ({exc})") from exc

    def put(self, name: str, data: bytes, *, create_only: bool = False, if_match: str | None = None) -> bool:
        """Write an object; with ``create_only`` / ``if_match``, False when the condition fails."""
        try:
            return self.objects.put(self.key(name), data, create_only=create_only, if_match=if_match)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"writing {self.uri}/{name} failed ({exc})") from exc

    # -- manifest ------------------------------------------------------------------------------
    def read_manifest(self, cls):
        got = self.get(MANIFEST_OBJECT)
        if got is None:
            return None
        try:
            return cls(**json.loads(got[0]))
        except (ValueError, TypeError) as exc:
            raise StoreCorruptError(f"store manifest {self.uri}/{MANIFEST_OBJECT} is unreadable "
                                    f"({exc}); restore it from a backup or a bucket version") from exc

    def write_manifest(self, manifest) -> None:
        self.put(MANIFEST_OBJECT, json.dumps(asdict(manifest), indent=2, sort_keys=True).encode())

    # -- table ---------------------------------------------------------------------------------
    def open_table(self, db, name: str, schema):
        """Open the table, creating it when missing; two creators race safely (Lance's first
        commit is a create-if-absent, the loser opens what the winner made)."""
        for attempt in range(3):
            try:
                return db.open_table(name)
            except Exception as exc:  # lancedb says "not found" with ValueError or its own type
                if "not found" not in str(exc).lower() and "does not exist" not in str(exc).lower():
                    raise
            try:
                return db.create_table(name, schema=schema, exist_ok=True)
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    # -- write lease ---------------------------------------------------------------------------
    @contextmanager
    def lease(self, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the store's write lease (re-entrant within this process)."""
        with self._tlock:
            if self._held:
                self._held += 1
                try:
                    yield
                finally:
                    self._held -= 1
                return
            self._lease_etag = self._acquire(timeout_s)
            self._lease_renewed = time.time()
            self._lease_lost = None
            stop = threading.Event()
            renewer = threading.Thread(target=self._renew_until, args=(stop,), daemon=True,
                                       name="aimemory-lease-renewal")
            self._held = 1
            renewer.start()
            try:
                yield
            finally:
                stop.set()
                renewer.join()
                self._held = 0
                self._release(self._lease_etag)

    def check_lease(self) -> None:
        """Raise before a commit when this writer's lease was lost (it expired unrenewed, e.g. the
        process was suspended, and another writer took it over): committing then could reuse keys."""
        if not self._held:
            return
        if self._lease_lost is None and time.time() > self._lease_renewed + self.lease_ttl_s:
            self._lease_lost = "it expired before it could be renewed"
        if self._lease_lost is not None:
            raise StoreError(f"the write lease {self.uri}/{LOCK_OBJECT} was lost ({self._lease_lost}); "
                             "nothing was committed. Retry the write")

    def _renew_until(self, stop: threading.Event) -> None:
        """Extend the lease every third of its lifetime while the write runs: a batch that takes
        longer than ``lease_ttl_s`` (a big encode) keeps it instead of being taken over."""
        while not stop.wait(self.lease_ttl_s / 3):
            try:
                renewed = self.put(LOCK_OBJECT, self._body(), if_match=self._lease_etag)
            except StoreError:  # a network blip: try again at the next tick, within the lifetime
                continue
            if not renewed:
                self._lease_lost = f"taken over by {_owner(self.get(LOCK_OBJECT))}"
                return
            self._lease_etag = self._etag()
            self._lease_renewed = time.time()

    def _body(self) -> bytes:
        return json.dumps({"owner": self._owner, "expires": time.time() + self.lease_ttl_s}).encode()

    def _acquire(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        delay = 0.02
        while True:
            if self.put(LOCK_OBJECT, self._body(), create_only=True):
                return self._etag()
            held = self.get(LOCK_OBJECT)
            if held is not None and _expired(held[0]):
                # take over a dead writer's lease, only if nobody else did since we looked
                if self.put(LOCK_OBJECT, self._body(), if_match=held[1]):
                    return self._etag()
            if time.monotonic() > deadline:
                raise StoreError(f"timed out after {timeout_s:.0f} s waiting for the write lease "
                                 f"{self.uri}/{LOCK_OBJECT} (held by {_owner(held)})")
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _etag(self) -> str:
        got = self.get(LOCK_OBJECT)
        return got[1] if got else ""

    def _release(self, etag: str) -> None:
        held = self.get(LOCK_OBJECT)
        if held is None or _owner(held) != self._owner:
            return  # expired and taken over: never delete another writer's lease
        try:
            self.objects.delete(self.key(LOCK_OBJECT), if_match=held[1])
        except Exception as exc:
            raise StoreError(f"releasing the write lease {self.uri}/{LOCK_OBJECT} failed ({exc}); it "
                             f"expires by itself within {self.lease_ttl_s:.0f} s") from exc


def _expired(body: bytes) -> bool:
    try:
        return float(json.loads(body)["expires"]) < time.time()
    except (ValueError, KeyError, TypeError):
        return True  # a torn lease object protects nothing


def _owner(held: tuple[bytes, str] | None) -> Any:
    try:
        return json.loads(held[0]).get("owner") if held else None
    except ValueError:
        return None
