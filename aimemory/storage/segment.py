"""The write-ahead segment: an append-only file in the store folder that makes a small write durable
with one fsync, before the write is folded into the Lance table in a batch.

File layout (little endian)::

    header  b"AIMSEG01" | generation u64 | base table version u64 | crc32 of the previous 24 bytes
    record  b"SEGR" | payload length u32 | crc32(payload) u32 | payload (an Arrow IPC stream)
    zeros   to the end of the file

The file is written full of zeros ahead of the records (``CHUNK_BYTES`` at a time, fsynced): a record
then overwrites blocks the file already has, so its ``fdatasync`` flushes only those pages and never
waits for a journal commit (on ext4 that commit also flushes other files' data: tens of ms under
load, against a tenth of a millisecond). The records end where the zeros begin.

A record's payload is the rows of one write exactly as the Lance table stores them (ids, namespace,
content, metadata, tags, times, expiry, provenance and every view's vector, with the keys already
assigned), so replaying it is one ``table.add``. A torn record (length past the end, bad magic or CRC)
ends the readable part: readers stop there and retry, the next writer cuts it off.

Folding writes the records to Lance and then replaces the file by an empty one of the next generation
(temp file, fsync, rename): readers that see the generation change know the records are in the table.
Writers hold the store's folder lock to append, cut or fold; readers take no lock. Concurrent writer
threads share fsyncs (group commit: :meth:`Segment.sync`).
"""

from __future__ import annotations

import os
import struct
import tempfile
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from .manifest import fsync_dir

SEGMENT_NAME = "segment.wal"
HEADER_MAGIC = b"AIMSEG01"
RECORD_MAGIC = b"SEGR"
_HEADER = struct.Struct("<8sQQI")  # magic, generation, base version, crc32
_RECORD = struct.Struct("<4sII")  # magic, payload length, crc32(payload)
HEADER_SIZE = _HEADER.size
MAX_RECORD_BYTES = 1 << 30  # a length beyond this is garbage, not a record
CHUNK_BYTES = 1 << 20  # zeros written ahead of the records at a time


def encode_rows(rows: pa.Table) -> bytes:
    """One framed record holding ``rows`` (an Arrow IPC stream)."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    payload = sink.getvalue().to_pybytes()
    return _RECORD.pack(RECORD_MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_records(data: bytes, at: int = 0) -> tuple[list[pa.Table], int]:
    """The whole records in ``data`` from offset ``at`` -> (their rows, the offset after the last one).
    Parsing stops at the first torn or damaged record."""
    out = []
    view = memoryview(data)
    while at + _RECORD.size <= len(data):
        magic, length, crc = _RECORD.unpack_from(data, at)
        end = at + _RECORD.size + length
        if magic != RECORD_MAGIC or length > MAX_RECORD_BYTES or end > len(data):
            break
        payload = view[at + _RECORD.size:end]
        if zlib.crc32(payload) != crc:
            break
        try:
            out.append(ipc.open_stream(pa.py_buffer(bytes(payload))).read_all())
        except (pa.ArrowInvalid, OSError):  # framed and checksummed, yet unreadable: stop as if torn
            break
        at = end
    return out, at


def _header(generation: int, base_version: int) -> bytes:
    body = _HEADER.pack(HEADER_MAGIC, generation, base_version, 0)[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def _parse_header(data: bytes) -> tuple[int, int] | None:
    if len(data) < HEADER_SIZE:
        return None
    magic, generation, base, crc = _HEADER.unpack_from(data, 0)
    if magic != HEADER_MAGIC or zlib.crc32(data[:HEADER_SIZE - 4]) != crc:
        return None
    return generation, base


def datasync(fd: int) -> None:
    """Flush a file's data (fdatasync; fsync where there is none, as on macOS)."""
    (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(fd)


class Segment:
    """This process's handle on a store's segment file: what it has read of the current generation
    (``records``, their keys in ``pending``), its append descriptor, and the group-commit state.

    Callers hold the store's thread lock around every method but :meth:`sync`, and the folder lock
    around :meth:`append`, :meth:`cut_torn_tail` and :meth:`reset`."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / SEGMENT_NAME
        self.fd = -1
        self.ino = -1  # the file's inode: a reset replaces the file
        self.generation = -1
        self.base_version = -1  # the table version the generation started from
        self.offset = 0  # bytes of the file parsed so far (whole records): where the next one goes
        self.records: list[pa.Table] = []  # the current generation's records, in order
        self.pending: list[int] = []  # their view keys: held by the catalog, maybe not by the table
        self.first_at = 0.0  # when this process first saw a record of this generation
        self.appended = 0  # records this process has appended, over all generations
        self._cond = threading.Condition()
        self._written = (0, 0)  # (generation, offset) appended by this process
        self._synced = (0, 0)  # ... and known durable
        self._syncing = False
        self._local = threading.local()  # per thread: what its last append must wait for

    # -- opening and reading ---------------------------------------------------------------
    def _open(self) -> bool:
        """(Re)open the file; False when there is none yet or its header is unreadable."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False
        header = _parse_header(os.pread(fd, HEADER_SIZE, 0))
        if header is None:
            os.close(fd)
            return False
        with self._cond:  # a syncing thread dups the descriptor under this lock
            self._close_fd()
            self.fd, self.ino = fd, os.fstat(fd).st_ino
        generation, self.base_version = header
        if generation != self.generation:
            self.records, self.pending = [], []
            self.first_at = 0.0
        self.generation = generation
        self.offset = HEADER_SIZE
        return True

    def _capacity(self) -> int:
        return os.fstat(self.fd).st_size

    def changed(self) -> bool:
        """Whether the file may hold something this process has not read (a stat and a small read)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self.fd >= 0
        if st.st_ino != self.ino:
            return True
        return os.pread(self.fd, len(RECORD_MAGIC), self.offset) == RECORD_MAGIC

    def _read_records(self) -> list[pa.Table]:
        """Whole records from ``offset`` on (two small reads each); stops at zeros or a torn one."""
        out: list[pa.Table] = []
        while True:
            head = os.pread(self.fd, _RECORD.size, self.offset)
            if len(head) < _RECORD.size or head[:4] != RECORD_MAGIC:
                return out
            _, length, _ = _RECORD.unpack(head)
            if length > MAX_RECORD_BYTES:
                return out
            data = head + os.pread(self.fd, length, self.offset + _RECORD.size)
            got, used = decode_records(data)
            if not got:  # torn, or still being written by another process: look again later
                return out
            out.extend(got)
            self.offset += used

    def read_tail(self) -> tuple[bool, list[pa.Table]]:
        """Records appended since the last read -> (whether the generation changed since, the new
        records). A new generation means the previous one's records are in the table."""
        if not self.changed():
            return False, []
        old = self.generation
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            return False, []
        if ino != self.ino and not self._open():
            return False, []
        records = self._read_records()
        if records:
            if not self.records:
                self.first_at = time.monotonic()
            self.records.extend(records)
        return self.generation != old and old != -1, records

    def torn_bytes(self) -> int:
        """Bytes of a torn record after the last whole one (a crashed append), as of the last read."""
        if self.fd < 0:
            return 0
        head = os.pread(self.fd, _RECORD.size, self.offset)
        if not head.strip(b"\0"):
            return 0
        return max(len(head), self._capacity() - self.offset)

    # -- writing (under the folder lock) ---------------------------------------------------
    def create(self, base_version: int) -> None:
        """Make the file if there is none (or only an unreadable one)."""
        if not self._open():
            self.reset(base_version, generation=max(1, self.generation + 1))

    def cut_torn_tail(self) -> None:
        """Zero a torn record left by a crashed writer, so the next append follows a whole one."""
        if self.fd >= 0 and (n := self.torn_bytes()):
            os.pwrite(self.fd, bytes(n), self.offset)
            os.fsync(self.fd)

    def _make_room(self, n: int) -> None:
        """Zeros (written, fsynced) for ``n`` more bytes after ``offset``."""
        capacity = self._capacity()
        if self.offset + n <= capacity:
            return
        grow = max(CHUNK_BYTES, self.offset + n - capacity)
        os.pwrite(self.fd, bytes(grow), capacity)
        os.fsync(self.fd)

    def append(self, rows: pa.Table) -> None:
        """Write one record after the last (durable once :meth:`sync` returns in this thread)."""
        record = encode_rows(rows)
        self._make_room(len(record))
        written = os.pwrite(self.fd, record, self.offset)
        if written != len(record):  # a short write: zero what landed and fail
            os.pwrite(self.fd, bytes(written), self.offset)
            raise OSError(28, f"short write to {self.path} ({written} of {len(record)} bytes)")
        self.offset += len(record)
        if not self.records:
            self.first_at = time.monotonic()
        self.records.append(rows)
        self.appended += 1
        self.pending.extend(rows.column("vkey").to_pylist())
        with self._cond:
            self._written = (self.generation, self.offset)
        self._local.ticket = self._written

    def reset(self, base_version: int, generation: int | None = None) -> None:
        """Replace the file by an empty one of the next generation (its records are in the table)."""
        generation = self.generation + 1 if generation is None else generation
        fd, tmp = tempfile.mkstemp(prefix=f".{SEGMENT_NAME}.", suffix=".tmp", dir=self.path.parent)
        try:
            os.write(fd, _header(generation, base_version) + bytes(CHUNK_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        self.generation = -1  # _open starts the generation afresh
        self._open()
        with self._cond:  # waiters on the old generation: their records are in the table now
            self._written = self._synced = (generation, HEADER_SIZE)
            self._cond.notify_all()

    # -- group commit ----------------------------------------------------------------------
    def sync(self) -> None:
        """Return once this thread's last append is on disk. The first waiter fsyncs everything
        written so far while others wait for it, so concurrent writers share one fsync."""
        ticket = getattr(self._local, "ticket", None)
        deferring: int = getattr(self._local, "defer", 0)
        if ticket is None or deferring:
            return
        self._local.ticket = None
        with self._cond:
            while self._synced < ticket:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
                target, fd = self._written, os.dup(self.fd)  # a reset may close self.fd meanwhile
                self._cond.release()
                try:
                    datasync(fd)
                finally:
                    os.close(fd)
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                self._synced = max(self._synced, target)

    def unsynced(self) -> bool:
        """Whether this thread appended something not yet synced (and is not deferring the sync)."""
        return getattr(self._local, "ticket", None) is not None and not getattr(self._local, "defer", 0)

    @contextmanager
    def deferred_sync(self) -> Iterator[None]:
        """Within this, :meth:`sync` in this thread waits for nothing: the caller syncs after it
        releases the write lock, so other threads can append meanwhile and share the fsync."""
        self._local.defer = getattr(self._local, "defer", 0) + 1
        try:
            yield
        finally:
            self._local.defer -= 1

    # -- state -----------------------------------------------------------------------------
    @property
    def n_records(self) -> int:
        return len(self.records)

    def pending_keys(self) -> np.ndarray:
        return np.asarray(self.pending, dtype=np.int64)

    def rows(self) -> pa.Table | None:
        """Every record of the current generation as one table of one chunk (None when there are
        none). One chunk: Lance wrote a thousand one-row chunks 7x slower than their rows combined."""
        if not self.records:
            return None
        schema = self.records[0].schema
        if all(r.schema == schema for r in self.records):  # unifying schemas cost as much as the rest
            return pa.concat_tables(self.records).combine_chunks()
        return pa.concat_tables(self.records, promote_options="default").combine_chunks()

    def nbytes(self) -> int:
        return max(0, self.offset - HEADER_SIZE)

    def _close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        with self._cond:
            self._close_fd()
