"""The saved FAISS index's files. The index file is written under a name made of its hash (temp
file, fsync, rename), recorded by a stamp once its hash checked out (so opening a large index does
not hash it again), and read ahead into the page cache when it is memory-mapped. Beside it, the
vectors added since it was written (see :mod:`.recent`) are saved in a small file of their own and a
record that ties them to that index file and to the table version they bring it up to; versions
that do not read the record catch those rows up from the table instead."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..storage.manifest import atomic_write_bytes

log = logging.getLogger("aimemory.index")

INDEX_STEM = "vectors"
SIDECAR_FILE = "vectors.json"
STAMP_FILE = "vectors.stamp.json"  # the saved file's (size, mtime, inode) once its hash checked out
RECENT_FILE = "vectors.recent.json"  # the record of the recent vectors' file (see write_recent)
RECENT_STEM = "vectors-recent"
READ_AHEAD_SHARE = 0.5  # an index file up to this share of the available memory is read ahead on open


def keys_checksum(vkeys: np.ndarray) -> str:
    """A digest of the set of ``vkeys`` (n,), whatever their order."""
    keys = np.asarray(vkeys, dtype=np.int64)
    if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):  # the catalog's are: 2 ms, not a 50 ms sort at 1M
        keys = np.sort(keys)
    return hashlib.blake2b(keys.tobytes(), digest_size=16).hexdigest()


@dataclass
class Sidecar:
    table_version: int
    count: int
    keys_checksum: str
    file_sha256: str
    kind: str
    dim: int
    nprobe: int = 0
    file: str = ""
    margin: float = 0.0  # IVF: also probe lists whose centroid scores within this of the best


def _faiss() -> Any:
    import faiss

    return faiss


def write_index_file(index: Any, folder: Path) -> tuple[str, str]:
    """Stream ``index`` to a temp file in ``folder``, hash it, fsync and rename it to a name made of
    its hash -> (file name, sha256). No in-memory copy of the vectors is made (serialising to a
    buffer made two)."""
    faiss = _faiss()
    fd, tmp = tempfile.mkstemp(prefix=f".{INDEX_STEM}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        with open(tmp, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
            os.fsync(fh.fileno())
        name = f"{INDEX_STEM}-{digest[:16]}.faiss"
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return name, digest


def read_ahead(path: Path) -> None:
    """Ask the kernel to read a mapped index file into the page cache in the background (returns at
    once): the first searches then map cached pages instead of waiting on the disk for each list.
    Not for a file larger than READ_AHEAD_SHARE of the memory available: the cache could not keep
    it, and the first searches would queue on the disk behind a read that evicts itself (a 15.5 GB
    index on a 23.5 GiB machine)."""
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        available = memory_available()
        if available is not None and Path(path).stat().st_size > READ_AHEAD_SHARE * available:
            log.info("not reading %s ahead: larger than %.0f%% of the available memory", path, 100 * READ_AHEAD_SHARE)
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)
    except OSError:
        pass


def memory_available() -> int | None:
    """Bytes of memory the kernel could give without swapping (``MemAvailable``); None off Linux."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _stamp(path: Path) -> list[int]:
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def stamp_matches(folder: Path, sidecar: Sidecar, path: Path) -> bool:
    """Whether ``path`` is the very file whose hash was checked (same name, hash, size, mtime and
    inode; files are written under a new name per save and renamed atomically), so opening a large
    index does not hash it again (sha256 of a 1.5 GB index costs seconds)."""
    try:
        record = json.loads((Path(folder) / STAMP_FILE).read_text())
        return bool(record["file"] == sidecar.file and record["sha256"] == sidecar.file_sha256
                    and record["stamp"] == _stamp(path))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_stamp(folder: Path, sidecar: Sidecar, path: Path) -> None:
    """Record the stamp of a file whose hash was just checked or written (a separate file, so
    sidecars stay readable by older versions)."""
    try:
        atomic_write_bytes(Path(folder) / STAMP_FILE, json.dumps(
            {"file": sidecar.file, "sha256": sidecar.file_sha256, "stamp": _stamp(path)}).encode())
    except OSError:
        pass


def write_recent(folder: Path, index_file: str, keys: np.ndarray, vectors: np.ndarray, record: dict[str, Any]) -> None:
    """Save the vectors added beside the saved index file ``index_file``: ``keys`` (n,) int64 and
    ``vectors`` (n, d) float32 in an .npz named by its hash, then the record naming it (with
    ``record``: the table version and the key count and checksum the index reaches with them).
    Each write is atomic, and the record is written last, so a crash leaves the old pair or the new."""
    buffer = io.BytesIO()
    np.savez(buffer, keys=np.asarray(keys, np.int64), vectors=np.asarray(vectors, np.float32))
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    name = f"{RECENT_STEM}-{digest[:16]}.npz"
    atomic_write_bytes(Path(folder) / name, data)
    atomic_write_bytes(Path(folder) / RECENT_FILE, json.dumps(
        {**record, "index_file": index_file, "file": name, "sha256": digest}).encode())
    for old in Path(folder).glob(f"{RECENT_STEM}-*.npz"):
        if old.name != name:
            old.unlink(missing_ok=True)


def read_recent(folder: Path, index_file: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray] | None:
    """(record, keys (n,), vectors (n, d)) saved beside ``index_file`` by :func:`write_recent`; None
    when there is none for that file, or it is torn (the table then catches the rows up)."""
    path = Path(folder) / RECENT_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if record.get("index_file") != index_file:  # written beside an index file since replaced
            return None
        data = (Path(folder) / record["file"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise ValueError("checksum does not match its record")
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            keys, vectors = saved["keys"].astype(np.int64), saved["vectors"].astype(np.float32)
        if keys.shape != (len(vectors),) or vectors.ndim != 2:
            raise ValueError("keys and vectors do not match")
        return record, keys, vectors
    except Exception as exc:  # torn or foreign: a catch-up from the table replaces it
        log.warning("recent vectors in %s are unusable (%s); catching them up from the table", folder, exc)
        return None


def drop_recent(folder: Path) -> None:
    """Remove the recent vectors' record and files (a full save holds them in the index file)."""
    for path in [Path(folder) / RECENT_FILE, *Path(folder).glob(f"{RECENT_STEM}-*.npz")]:
        path.unlink(missing_ok=True)


def remove_files(folder: Path) -> None:
    """Delete the saved index (it is rebuilt from the table on the next open)."""
    drop_recent(folder)
    for path in [Path(folder) / SIDECAR_FILE, Path(folder) / STAMP_FILE, *Path(folder).glob(f"{INDEX_STEM}-*.faiss")]:
        path.unlink(missing_ok=True)
