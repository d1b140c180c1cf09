"""An IVF index built straight into its file, in memory bounded by one batch of vectors.

Filling FAISS's in-RAM lists (:func:`.ivf.fill_lists`) holds every vector once more before the file
is written: a 5M x 384 build peaked at 1.42x the raw vectors (10.1 GiB), and 10M would not fit a
24 GiB machine. Here the trained, empty index is serialised by FAISS itself (header, quantizer,
direct map), the lists' section is laid out from the list sizes that the assignment pass counts,
and the second pass writes each batch's vectors and ids at their places in the file (``pwrite``).
RAM holds the assignment (16 B per vector) and one batch; the page cache holds the rest. The file
is byte for byte what ``faiss.write_index`` writes for the same index, and it is then memory-mapped
like any saved index.

The lists' section, as FAISS writes an ``ArrayInvertedLists`` (faiss/impl/index_write.cpp):
``"ilar"``, nlist and code size (u64 each), then ``"full"`` and the n sizes (u64 count, u64 each)
when more than half the lists hold vectors, else ``"sprs"`` and (list, size) pairs of the non-empty
ones; then, list after list, its codes (size x code size bytes) and its ids (size x i64).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .ivf import Blocks, assign, by_list

EMPTY_LISTS_BYTES = 32  # "ilar", nlist, code size, "sprs", 0 pairs: what an empty index's file ends with
NTOTAL_AT = 8  # the header's ntotal (i64), after the fourcc and d (i32)
WRITE_ROWS = 65_536  # vectors gathered before they are written out list by list (96 MiB at 384-d)
ATTEMPTS = 3


def lists_section(nlist: int, code_size: int, sizes: np.ndarray) -> bytes:
    """The lists' section up to the first list's codes, for lists of ``sizes`` (nlist,)."""
    head = b"ilar" + np.asarray([nlist, code_size], np.uint64).tobytes()
    nonzero = np.flatnonzero(sizes)
    if len(nonzero) > nlist // 2:
        return head + b"full" + np.asarray([nlist], np.uint64).tobytes() + sizes.astype(np.uint64).tobytes()
    pairs = np.stack([nonzero, sizes[nonzero]], axis=1).astype(np.uint64).reshape(-1)  # (2m,)
    return head + b"sprs" + np.asarray([len(pairs)], np.uint64).tobytes() + pairs.tobytes()


def write_filled(ivf: Any, blocks: Blocks, folder: Path) -> tuple[Path, str] | None:
    """Write the trained, empty IndexIVFFlat ``ivf`` holding every vector of ``blocks`` to a new
    file in ``folder`` -> (its path, named ``vectors-<hash>.faiss`` like a save's; its sha256).
    Keys the second pass does not meet in the first (rows written meanwhile) are left to the
    index's catch-up, as :func:`.ivf.fill_lists` leaves them; rows gone between the passes make it
    lay the file out again, and None after ATTEMPTS (the caller fills the lists in RAM instead)."""
    for _ in range(ATTEMPTS):
        written = _write_once(ivf, blocks, Path(folder))
        if written is not None:
            return written
    return None


def _write_once(ivf: Any, blocks: Blocks, folder: Path) -> tuple[Path, str] | None:
    import faiss

    code_size = int(ivf.code_size)
    keys_sorted, lists_of = assign(ivf, blocks)
    sizes = np.bincount(lists_of, minlength=ivf.nlist).astype(np.int64)  # (nlist,)
    empty = faiss.serialize_index(ivf).tobytes()
    if ivf.ntotal != 0 or empty[-EMPTY_LISTS_BYTES:-8] != b"ilar" + np.asarray(
            [ivf.nlist, code_size], np.uint64).tobytes() + b"sprs" or empty[-8:] != bytes(8):
        raise ValueError("not an empty IndexIVFFlat with in-RAM lists")
    header = bytearray(empty[:-EMPTY_LISTS_BYTES])
    section = lists_section(ivf.nlist, code_size, sizes)
    starts = len(header) + len(section) + np.concatenate([[0], np.cumsum(sizes * (code_size + 8))[:-1]])  # (nlist,)
    end = len(header) + len(section) + int((sizes * (code_size + 8)).sum())
    filled = np.zeros(ivf.nlist, np.int64)  # (nlist,) vectors written per list
    fd, tmp = tempfile.mkstemp(prefix=".vectors.", suffix=".tmp", dir=folder)
    try:
        os.ftruncate(fd, end)

        def write(keys: np.ndarray, vectors: np.ndarray) -> None:
            for list_no, ids, rows in by_list(keys, vectors, keys_sorted, lists_of):
                done, size = int(filled[list_no]), int(sizes[list_no])
                _pwrite_all(fd, rows, int(starts[list_no]) + done * code_size)
                _pwrite_all(fd, ids, int(starts[list_no]) + size * code_size + done * 8)
                filled[list_no] += len(ids)

        pending_keys, pending_vectors, pending = [], [], 0
        for keys, vectors in blocks():
            pending_keys.append(np.asarray(keys, np.int64))
            pending_vectors.append(np.asarray(vectors, np.float32))
            pending += len(keys)
            if pending >= WRITE_ROWS:
                write(np.concatenate(pending_keys), np.concatenate(pending_vectors))
                pending_keys, pending_vectors, pending = [], [], 0
        if pending:
            write(np.concatenate(pending_keys), np.concatenate(pending_vectors))
        if (filled != sizes).any():  # rows gone between the passes: lay the lists out again
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            return None
        header[NTOTAL_AT:NTOTAL_AT + 8] = np.asarray([int(sizes.sum())], np.int64).tobytes()
        _pwrite_all(fd, np.frombuffer(bytes(header) + section, np.uint8), 0)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        with open(tmp, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        path = Path(folder) / f"vectors-{digest[:16]}.faiss"
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return path, digest


def _pwrite_all(fd: int, array: np.ndarray, offset: int) -> None:
    """Write the bytes of the contiguous ``array`` at ``offset``, however many calls it takes."""
    view = np.ascontiguousarray(array).data.cast("B")
    while len(view):
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done
