"""Getting checkpoint folders: a local path as-is, or a hub repo id from the cache or the network.

The cache is the Hugging Face hub cache, so folders that ``transformers`` / ``huggingface_hub``
already downloaded are found and ours are usable by them::

    $HF_HUB_CACHE (default $HF_HOME/hub, HF_HOME default ~/.cache/huggingface)
      models--org--name/
        blobs/<etag>                      file contents, named by their sha256 (LFS) or git sha1
        refs/main                         the commit "main" pointed at when we downloaded
        snapshots/<commit>/<file>         symlinks into blobs/ (copies where symlinks fail)
        .no_exist/<commit>/<file>         files the hub said do not exist (so we do not ask again)

Only the files a CLIP checkpoint needs are fetched (``WANTED_FILES`` plus one weights file), with
stdlib ``urllib``. A cached model is never re-checked online: embeddings must not change under a
store because "main" moved; ``download(..., force=True)`` refreshes. Downloads go to
``blobs/<etag>.incomplete``, are resumed with an HTTP Range request after an interruption, are
checked against the sha256 / git-sha1 the hub announces, fsynced and renamed into place atomically.

Environment: ``HF_HUB_OFFLINE=1`` or ``AIMEMORY_OFFLINE=1`` forbid the network; ``HF_ENDPOINT`` sets
the server; ``HF_TOKEN`` (if set) is sent to that server only, for gated or private repos.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import CheckpointError, InputError, ModelNotAvailableError

__all__ = ["download", "fetch_url", "hub_cache_dir", "is_cached", "is_offline", "list_cached", "resolve_checkpoint"]

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
# small files a CLIP checkpoint folder may carry; missing ones are fine
WANTED_FILES = ("config.json", "preprocessor_config.json", "tokenizer_config.json", "vocab.json", "merges.txt")
REQUIRED_FILE = "config.json"
# preference order; .bin is read weights-only by the loader and fetched only without safetensors
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0
MAX_HUB_REDIRECTS = 5
TRUE_VALUES = {"1", "true", "yes", "on"}
PROGRESS_INTERVAL_TTY_S = 0.1
PROGRESS_INTERVAL_LOG_S = 5.0  # when stderr is a file, a line every few seconds, not a flood
PROGRESS_MIN_BYTES = 100_000  # no bar for the small json/txt files
USER_AGENT = "aimemory (python urllib)"
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")


# -- environment -----------------------------------------------------------------------------------
def hub_cache_dir() -> Path:
    """Where hub downloads live (same rules as huggingface_hub)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(home).expanduser() / "hub"


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``AIMEMORY_OFFLINE`` is set to a true value."""
    return any(os.environ.get(v, "").strip().lower() in TRUE_VALUES for v in ("HF_HUB_OFFLINE", "AIMEMORY_OFFLINE"))


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def _repo_dir(model_id: str) -> Path:
    return hub_cache_dir() / ("models--" + model_id.replace("/", "--"))


# -- reading the cache -----------------------------------------------------------------------------
def _snapshot(repo_dir: Path, revision: str) -> Path | None:
    """The snapshot folder a revision points at (a branch via refs/, or a commit hash directly)."""
    ref = repo_dir / "refs" / revision
    if ref.is_file():
        snap = repo_dir / "snapshots" / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snap = repo_dir / "snapshots" / revision
    return snap if snap.is_dir() else None


def _usable(snap: Path) -> bool:
    """Enough to load: a config and one weights file (``is_file`` follows symlinks: broken = absent)."""
    return (snap / REQUIRED_FILE).is_file() and any((snap / w).is_file() for w in WEIGHT_FILES)


def _known_missing(snap: Path, name: str) -> bool:
    return (snap.parent.parent / ".no_exist" / snap.name / name).exists()


def _complete(snap: Path) -> bool:
    """Everything we would download is there or known not to exist upstream."""
    if not _usable(snap):
        return False
    if not all((snap / f).is_file() or _known_missing(snap, f) for f in WANTED_FILES):
        return False
    return (snap / WEIGHT_FILES[0]).is_file() or _known_missing(snap, WEIGHT_FILES[0])


def is_cached(model_id: str, revision: str = DEFAULT_REVISION) -> bool:
    """Whether ``model_id`` can be loaded from the cache alone (no network is used)."""
    snap = _snapshot(_repo_dir(model_id), revision)
    return snap is not None and _usable(snap)


def list_cached() -> list[tuple[str, Path, int]]:
    """``(model_id, snapshot folder, bytes on disk)`` for every model repo in the hub cache."""
    root = hub_cache_dir()
    out = []
    for repo_dir in sorted(root.glob("models--*")) if root.is_dir() else []:
        snaps = [s for s in (repo_dir / "snapshots").glob("*") if s.is_dir()]
        snap = _snapshot(repo_dir, DEFAULT_REVISION) or max(snaps, key=lambda s: s.stat().st_mtime, default=None)
        if snap is None:
            continue
        size = sum(f.stat().st_size for f in repo_dir.rglob("*")
                   if f.is_file() and not f.is_symlink() and not f.name.endswith(".incomplete"))
        out.append((repo_dir.name[len("models--"):].replace("--", "/"), snap, size))
    return out


# -- public entry points ---------------------------------------------------------------------------
def resolve_checkpoint(model_id_or_path: str | os.PathLike, *, revision: str = DEFAULT_REVISION,
                       allow_download: bool = True, progress: bool = True) -> Path:
    """A local checkpoint folder for a folder path or a hub repo id (downloading if allowed)."""
    local = _local_folder(model_id_or_path)
    if local is not None:
        return local
    model_id = str(model_id_or_path)
    snap = _snapshot(_repo_dir(model_id), revision)
    if snap is not None and _complete(snap):
        return snap
    if is_offline() or not allow_download:
        if snap is not None and _usable(snap):
            return snap  # partial (e.g. no tokenizer files) but loadable; the caller may still fail later
        why = "offline mode is on (HF_HUB_OFFLINE / AIMEMORY_OFFLINE)" if is_offline() else "downloads are disabled"
        raise _not_available(model_id, why)
    return download(model_id, revision=revision, progress=progress)


def download(model_id: str, *, revision: str = DEFAULT_REVISION, progress: bool = True,
             force: bool = False) -> Path:
    """Fetch the checkpoint files of ``model_id`` into the hub cache; returns the snapshot folder."""
    if _local_folder(model_id) is not None or not _REPO_ID.fullmatch(model_id):
        raise InputError(f"{model_id!r} is not a hub repo id like 'openai/clip-vit-base-patch32'")
    if is_offline():
        raise _not_available(model_id, "offline mode is on (HF_HUB_OFFLINE / AIMEMORY_OFFLINE)")
    repo_dir = _repo_dir(model_id)
    snap = _snapshot(repo_dir, revision)
    if snap is not None and _complete(snap) and not force:
        return snap
    try:
        return _download(model_id, revision, repo_dir, progress, force)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            raise ModelNotAvailableError(
                f"the hub ({hub_endpoint()}) answered HTTP {exc.code} for {model_id!r}: {exc.reason}") from exc
        raise _not_available(model_id, f"the hub ({hub_endpoint()}) cannot be reached: {exc}") from exc


# -- downloading -----------------------------------------------------------------------------------
@dataclass
class _Meta:
    """What the hub says about one file before we fetch it."""

    commit: str | None
    etag: str | None
    size: int | None


def _download(model_id: str, revision: str, repo_dir: Path, progress: bool, force: bool) -> Path:
    first = _head_or_missing(model_id, revision, REQUIRED_FILE)
    if first is None:
        raise ModelNotAvailableError(
            f"{model_id!r} at revision {revision!r} has no {REQUIRED_FILE} on {hub_endpoint()}: "
            "check the model id (it must be a transformers-format CLIP checkpoint)"
        )
    commit = first.commit or revision
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    if commit != revision:
        _atomic_write(repo_dir / "refs" / revision, commit.encode())
    for name in WANTED_FILES:
        meta = first if name == REQUIRED_FILE else None
        _fetch_into(model_id, commit, repo_dir, snap, name, meta, progress, force)
    got_weights = False
    for name in WEIGHT_FILES:
        if _fetch_into(model_id, commit, repo_dir, snap, name, None, progress, force):
            got_weights = True
            break  # the first format found wins; other formats are never fetched
    if not got_weights:
        raise ModelNotAvailableError(
            f"{model_id!r} has neither {' nor '.join(WEIGHT_FILES)}; other weight formats are not supported"
        )
    return snap


def _fetch_into(model_id: str, commit: str, repo_dir: Path, snap: Path, name: str,
                meta: _Meta | None, progress: bool, force: bool) -> bool:
    """Make ``snap/name`` present; False when the hub does not have it (remembered in .no_exist)."""
    target = snap / name
    if target.is_file() and not force:
        return True
    if _known_missing(snap, name) and not force:
        return False
    meta = meta or _head_or_missing(model_id, commit, name)
    if meta is None:
        _atomic_write(repo_dir / ".no_exist" / commit / name, b"")
        return False
    blob = _fetch_blob(_resolve_url(model_id, commit, name), name, meta, repo_dir / "blobs", progress)
    _link(blob, target)
    return True


def _resolve_url(model_id: str, revision: str, name: str) -> str:
    return f"{hub_endpoint()}/{model_id}/resolve/{urllib.parse.quote(revision, safe='')}/{name}"


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> urllib.request.Request:
    req = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT, **(headers or {})})
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token and url.startswith(hub_endpoint()):
        # unredirected: urllib would otherwise forward the token to the CDN a file redirects to
        req.add_unredirected_header("Authorization", f"Bearer {token}")
    return req


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: D102 - keep 3xx answers for their headers
        return None


def _head_or_missing(model_id: str, revision: str, name: str) -> _Meta | None:
    """HEAD the resolve URL without following the CDN redirect (its headers carry the hashes)."""
    url = _resolve_url(model_id, revision, name)
    opener = urllib.request.build_opener(_NoRedirect)
    for _ in range(MAX_HUB_REDIRECTS):
        try:
            with opener.open(_request(url, "HEAD", {"Accept-Encoding": "identity"}), timeout=TIMEOUT_S) as resp:
                headers, status = resp.headers, resp.status
        except urllib.error.HTTPError as exc:
            headers, status = exc.headers, exc.code
            if status == 404:
                if headers.get("X-Error-Code") in ("RepoNotFound", "RevisionNotFound"):
                    raise ModelNotAvailableError(
                        f"no repo {model_id!r} (revision {revision!r}) on {hub_endpoint()}") from None
                return None
            if status in (401, 403):
                raise ModelNotAvailableError(
                    f"{hub_endpoint()} refused {model_id!r} (HTTP {status}): the repo does not exist, or it is "
                    "private or gated: accept its terms on the hub and set HF_TOKEN") from exc
            if not 300 <= status < 400:
                raise
        location = headers.get("Location")
        if 300 <= status < 400 and location and not urllib.parse.urlparse(location).netloc:
            url = urllib.parse.urljoin(url, location)  # same-host redirect: renamed repo, follow it
            continue
        size = headers.get("X-Linked-Size") or (headers.get("Content-Length") if status < 300 else None)
        etag = headers.get("X-Linked-Etag") or (headers.get("ETag") if status < 300 else None)
        return _Meta(headers.get("X-Repo-Commit"), _clean_etag(etag), int(size) if size else None)
    raise ModelNotAvailableError(f"too many redirects for {url}")


def _clean_etag(etag: str | None) -> str | None:
    if not etag:
        return None
    etag = etag.strip()
    etag = etag[2:] if etag.startswith("W/") else etag
    return etag.strip('"') or None


def _fetch_blob(url: str, name: str, meta: _Meta, blobs: Path, progress: bool) -> Path:
    """Download ``url`` into ``blobs/<etag>`` (resuming a previous ``.incomplete``); returns the blob."""
    blobs.mkdir(parents=True, exist_ok=True)
    key = meta.etag or "url-" + hashlib.sha256(url.encode()).hexdigest()
    blob = blobs / key
    if blob.is_file() and (meta.size is None or blob.stat().st_size == meta.size):
        return blob  # same content already cached under another name/revision
    partial = blobs / (key + ".incomplete")
    with _lock(blobs / (key + ".lock")):
        have = partial.stat().st_size if partial.exists() else 0
        if meta.size is not None and have > meta.size:
            have = 0  # a stale partial from other content: start over
        total = meta.size
        if not (have and have == total):  # else: fully written before a crash; a Range would get 416
            total = _stream_to(url, partial, have, total, name, progress)
        if total is not None and partial.stat().st_size != total:
            raise _interrupted(name, partial, total, None)
        _verify(partial, meta.etag, name)
        os.replace(partial, blob)
        _fsync_dir(blobs)
    return blob


def fetch_url(url: str, dest: str | os.PathLike, *, sha256: str | None = None, progress: bool = True,
              force: bool = False) -> Path:
    """Download one file from a plain URL (not a hub repo) to ``dest``: resumable through a
    ``.incomplete`` file beside it, checked against ``sha256`` when given, published by an atomic
    rename. An existing ``dest`` is returned as is unless ``force`` (then it is replaced only once
    the new copy is complete). Refused when offline mode is on."""
    dest = Path(dest).expanduser()
    if dest.is_file() and not force:
        return dest
    if is_offline():
        raise ModelNotAvailableError(f"{dest.name} is not at {dest} and downloads are off (HF_HUB_OFFLINE / "
                                     f"AIMEMORY_OFFLINE); fetch {url} on a connected machine and copy it there")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".incomplete")
    with _lock(dest.with_name(dest.name + ".lock")):
        if dest.is_file() and not force:  # another process finished it while we waited
            return dest
        have = partial.stat().st_size if partial.exists() else 0
        total = _stream_to(url, partial, have, None, dest.name, progress)
        if total is not None and partial.stat().st_size != total:
            raise _interrupted(dest.name, partial, total, None)
        if sha256:
            _verify(partial, sha256, dest.name)
        os.replace(partial, dest)
        _fsync_dir(dest.parent)
    return dest


def _stream_to(url: str, partial: Path, have: int, total: int | None, name: str, progress: bool) -> int | None:
    """GET ``url`` into ``partial``: appended after ``have`` bytes if the server honours the Range,
    else rewritten whole; fsynced. Returns the expected full size where known."""
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        with urllib.request.urlopen(_request(url, "GET", headers), timeout=TIMEOUT_S) as resp:
            if resp.status != 206:
                have = 0  # the server ignored the Range: take the whole body
            length = resp.headers.get("Content-Length")
            total = total or (have + int(length) if length else None)
            show = progress and (total is None or total >= PROGRESS_MIN_BYTES)
            bar = progress_bar(name, total, have) if show else None
            with open(partial, "ab" if have else "wb") as out:
                while chunk := resp.read(CHUNK_BYTES):
                    out.write(chunk)
                    if bar:
                        bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())  # the rename that follows must never publish unwritten data
            if bar:
                bar.close(complete=total is None or bar.done == total)
    except (OSError, http.client.HTTPException) as exc:  # resets, timeouts, IncompleteRead, URLError
        raise _interrupted(name, partial, total, exc) from exc
    return total


def _interrupted(name: str, partial: Path, total: int | None, exc: Exception | None) -> ModelNotAvailableError:
    got = partial.stat().st_size if partial.exists() else 0
    of = f" of {total}" if total is not None else ""
    cause = f": {exc}" if exc else ""
    return ModelNotAvailableError(
        f"download of {name} stopped after {got}{of} bytes{cause}. Nothing incomplete was put in the "
        "cache; run the same command again to resume"
    )


def _verify(path: Path, etag: str | None, name: str) -> None:
    """Check content against an etag that is a sha256 (LFS) or a git blob sha1 (small files)."""
    if not etag or not (_SHA256.fullmatch(etag) or _SHA1.fullmatch(etag)):
        return  # an opaque etag (a CDN's, say) proves nothing about the content
    size = path.stat().st_size
    digest = hashlib.sha256() if len(etag) == 64 else hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK_BYTES):
            digest.update(block)
    if digest.hexdigest() != etag:
        path.unlink(missing_ok=True)  # resuming a corrupt partial would only repeat the failure
        raise CheckpointError(f"{name} is corrupt: its hash is {digest.hexdigest()}, the hub announced {etag}; "
                              "run the download again")


def _link(blob: Path, target: Path) -> None:
    """Point ``target`` at ``blob`` atomically: a relative symlink, else a copy (Windows)."""
    tmp = target.with_name(f".{target.name}.{os.urandom(6).hex()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(os.path.relpath(blob, target.parent), tmp)
    except (OSError, NotImplementedError):
        shutil.copyfile(blob, tmp)
    os.replace(tmp, target)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not possible on Windows; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock so two processes never write the same ``.incomplete`` file."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks in the stdlib; accept the small race
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# -- helpers ---------------------------------------------------------------------------------------
def _local_folder(value: str | os.PathLike) -> Path | None:
    """The folder ``value`` names, None for a hub id; a path that is not a folder is an error."""
    path = Path(value).expanduser()
    if path.is_dir():
        return path.resolve()
    text = os.fspath(value)
    if path.exists():
        raise ModelNotAvailableError(f"{text} is a file; pass the checkpoint folder that contains it")
    hub_id = (not isinstance(value, os.PathLike) and _REPO_ID.fullmatch(text) is not None
              and "--" not in text and ".." not in text)
    if not hub_id:
        raise ModelNotAvailableError(f"no checkpoint folder at {path} (and it is not a hub id like 'org/name')")
    return None


def _not_available(model_id: str, why: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"model {model_id!r} is not in the local cache ({hub_cache_dir()}) and {why}. Fixes: on a connected "
        f"machine run `aimemory models download {model_id}`, copy the folder it prints here and pass its "
        "path as model=...; or allow downloads (unset HF_HUB_OFFLINE / AIMEMORY_OFFLINE, check the network "
        "or HF_ENDPOINT)."
    )


def progress_bar(name: str, total: int | None, start: int = 0, stream=None):
    """A download's progress: a widget in a notebook (nothing there without ipywidgets), else a
    line on ``stream`` (stderr). Each has ``update(n)``, ``close(complete)`` and ``done``."""
    from .. import notebook

    if notebook.in_notebook():
        return notebook.notebook_progress(name, total, start)
    return _Progress(name, total, start, stream)


class _Progress:
    """A one-line progress bar on stderr: done/total, percent, rate, ETA."""

    def __init__(self, name: str, total: int | None, start: int = 0, stream=None):
        self.name, self.total, self.done, self.start = name, total, start, start
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= (PROGRESS_INTERVAL_TTY_S if self.tty else PROGRESS_INTERVAL_LOG_S):
            self.last = now
            self._render(final=False)

    def close(self, complete: bool = True) -> None:
        self._render(final=True, note="" if complete else "  interrupted")

    def _render(self, final: bool, note: str = "") -> None:
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        rate = (self.done - self.start) / elapsed
        parts = [f"{self.name}: {_size(self.done)}"]
        if self.total:
            parts[0] += f"/{_size(self.total)} {100 * self.done / self.total:5.1f}%"
        parts.append(f"{_size(rate)}/s")
        if self.total and not final and rate > 0:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        elif final:
            parts.append(f"in {_duration(elapsed)}")
        line = "  ".join(parts) + note
        end = "\n" if final or not self.tty else ""
        self.stream.write(("\r\x1b[K" if self.tty else "") + line + end)
        self.stream.flush()


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}GB"  # pragma: no cover


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"
