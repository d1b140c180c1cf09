"""Small writes through the write-ahead segment (:mod:`aimemory.storage.segment`), folded into Lance
in batches.

A ``remember`` of a few texts appends its rows (keys assigned, vectors included) to the segment, adds
them to the catalog and the vector index at once (so every read sees them), and returns once the
record is fsynced; concurrent writer threads share that fsync. The records are folded into the Lance
table in one commit when the segment reaches ``FOLD_AFTER_RECORDS`` records, ``FOLD_AFTER_BYTES`` or
``FOLD_AFTER_S`` seconds, and before anything else writes to the table: every write lock taken for
another purpose (forget, update, compact, a batch, an import, a migration) folds first. So the table
only gains keys from a fold or with the segment empty, which keeps keys in commit order for readers.

A close folds too, unless the process never loaded LanceDB and the fold is not due (see
:func:`fold_on_close`): a CLI ``remember`` or a hook then leaves its record where it already is,
durable and read by every open, instead of importing LanceDB (~1.2 s) to move it. An open folds what
it finds only when that is due, so the next short process does not pay the import either.

Other processes read the segment's new tail when they refresh, before they look at the table: a new
generation of the file means the previous one's records were folded, and the table they then open
holds them. Folding is idempotent: records a crashed fold already committed are not added twice.

Batches above ``WRITE_AHEAD_MAX_ITEMS`` new items, images and audio (their bytes are read back from
the table), upserts that replace a stored memory, object stores and the Lance index keep the direct
path.
"""

from __future__ import annotations

import fcntl
import logging
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import background
from .records import CATALOG_COLUMNS, SCHEMA_VERSION
from .storage.arrow_numpy import int64_array, to_numpy
from .storage.manifest import Manifest
from .storage.segment import Segment

if TYPE_CHECKING:  # pragma: no cover
    from .storage.table import VectorTable
    from .store import MemoryStore
    from .store_state import StoreState

log = logging.getLogger("aimemory")

WRITE_AHEAD_MAX_ITEMS = 8  # batches with at most this many new items go through the segment
FOLD_AFTER_RECORDS = 1_000  # fold when the segment holds this many records...
FOLD_AFTER_BYTES = 32 << 20  # ...or this many bytes...
FOLD_AFTER_S = 60.0  # ...or its oldest record is this old (checked on each append)
#: share of FOLD_AFTER_RECORDS (or of FOLD_AFTER_S) from which LanceDB, which a fold needs, is imported
#: in the background if the process has not loaded it: a first fold then commits in tens of ms
#: instead of stalling its writer for the ~1.2 s import
PRELOAD_AT = 0.5


# -- opening -----------------------------------------------------------------------------------
def open_segment(folder: Path, table: "VectorTable", manifest: "Manifest", enabled: bool) -> Segment | None:
    """The store's segment (None for object stores and the Lance index, where reads go to the table).
    Records left by a closed, crashed or still open process are read; they are folded now only when
    the fold is due (see :func:`fold_due`) and no writer holds the folder lock, else by a later
    write lock, fold or close."""
    if not enabled:
        return None
    segment = Segment(folder)
    segment.read_tail()
    if segment.fd < 0 or (segment.records and fold_due(segment)) or segment.torn_bytes():
        with _lock_if_free(folder) as locked:
            if locked:
                segment.read_tail()
                table.checkout_latest()  # another writer may have committed since the table opened
                if segment.fd < 0:
                    segment.create(table.version)
                elif segment.records and fold_due(segment):
                    fold_records(table, Manifest.read(folder) or manifest, folder, segment)
                else:
                    segment.cut_torn_tail()
    return segment


class _lock_if_free:
    """The folder's write lock if no one holds it (non-blocking), else nothing."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".write.lock"
        self.fh: BinaryIO | None = None

    def __enter__(self) -> bool:
        self.fh = open(self.path, "a+b")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            self.fh.close()
            self.fh = None
            return False

    def __exit__(self, *exc) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()


# -- folding -----------------------------------------------------------------------------------
def fold_records(table: "VectorTable", manifest: "Manifest", folder: Path, segment: Segment) -> int:
    """Write the segment's records to the table in one commit and start its next generation; under
    the folder lock. Rows a crashed fold already committed are skipped (their keys are in the table),
    so folding twice never duplicates a memory. Returns the rows added."""
    rows = segment.rows()
    if rows is None:
        segment.cut_torn_tail()
        return 0
    keys = rows.column("vkey")
    if table.version != segment.base_version:  # something committed since the segment started
        from lancedb.expr import col

        held = table.scan(["vkey"], col("vkey").isin(keys.to_pylist())).column("vkey")
        if len(held):
            rows = rows.filter(pc.invert(pc.is_in(keys, value_set=held.combine_chunks())))
    top = int(pc.max(keys).as_py()) + 1
    if manifest.next_vkey < top or manifest.schema_version != SCHEMA_VERSION:
        manifest.next_vkey = max(manifest.next_vkey, top)  # keys stay reserved after deletes
        manifest.schema_version = SCHEMA_VERSION
        manifest.write(folder)
    if rows.num_rows:
        table.add(rows)
    segment.reset(table.version)
    return rows.num_rows


def fold(store: "MemoryStore") -> int:
    """Fold the segment into the table now (the caller holds the write lock); returns rows added."""
    from .write import note_changes, storage_errors

    segment = store.segment
    if segment is None or not (segment.records or segment.torn_bytes()):
        return 0
    with storage_errors("folding the write-ahead segment"):
        n = fold_records(store.table, store.manifest, store.path, segment)
    store.table_version = store.table.version
    if n:
        note_changes(store, n)
    return n


def fold_due(segment: Segment, share: float = 1.0) -> bool:
    """Whether the segment is past ``share`` of a fold's thresholds: records, bytes, or the age of
    the oldest record this process has seen (0 when it has seen none)."""
    age = time.monotonic() - segment.first_at if segment.first_at else 0.0
    return (segment.n_records >= share * FOLD_AFTER_RECORDS or segment.nbytes() >= share * FOLD_AFTER_BYTES
            or age >= share * FOLD_AFTER_S)


def fold_if_due(store: "MemoryStore") -> None:
    """After an append: fold when due; half way there, a process that has appended that much itself
    (a long-lived one, not a CLI call finding others' records) imports LanceDB in the background."""
    segment = store.segment
    if segment is None or not segment.records:
        return
    if fold_due(segment):
        fold(store)
    elif segment.appended >= PRELOAD_AT * FOLD_AFTER_RECORDS or (
            segment.appended > 1 and fold_due(segment, PRELOAD_AT)):
        background.preload("lancedb")


def fold_on_close(store: "MemoryStore | StoreState") -> bool:
    """Whether closing folds the segment: when it holds records and the process has LanceDB loaded
    (a fold is then one commit) or the fold is due. A short process that never loaded LanceDB leaves
    its records in the segment, as a crash after its last write would: they are durable and every
    open reads them."""
    segment = store.segment
    if segment is None or not segment.records:
        return False
    return "lancedb" in sys.modules or fold_due(segment)


# -- appending ---------------------------------------------------------------------------------
def takes(store: "MemoryStore", todo: Sequence, replacing: bool) -> bool:
    """Whether a commit of ``todo`` (new items) goes through the segment."""
    return (store.segment is not None and store.write_ahead and not replacing
            and store.manifest.schema_version == SCHEMA_VERSION  # an older table is upgraded directly
            and 0 < len(todo) <= WRITE_AHEAD_MAX_ITEMS
            and all(item.modality == "text" for _, item, *_ in todo))


def append(store: "MemoryStore", rows: pa.Table) -> None:
    """Append ``rows`` (keys from the manifest's next key) to the segment; the caller then adds
    them to the catalog and index, and :func:`sync` makes them durable after the lock is released."""
    segment = store.segment
    assert segment is not None  # takes() said so
    if segment.fd < 0:  # no file yet (the lock was busy when the store opened)
        segment.create(store.table.version)
    segment.cut_torn_tail()
    segment.append(rows)
    store.manifest.next_vkey = int(rows.column("vkey")[-1].as_py()) + 1  # reserved by the record


def deferred_sync(store: "MemoryStore") -> AbstractContextManager[None]:
    """Appends inside this are synced by the caller after it releases the lock (group commit)."""
    segment = getattr(store, "segment", None)
    return segment.deferred_sync() if segment is not None else nullcontext()


def sync(store: "MemoryStore") -> None:
    """Wait until this thread's appends are on disk (shared with other threads' appends)."""
    from .write import storage_errors

    segment = getattr(store, "segment", None)
    if segment is not None and segment.unsynced():
        with storage_errors("making the write durable"):
            segment.sync()


def vectors_for(store: "MemoryStore", vkeys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (keys (n,), vectors (n, dim)) of these views, from the table and the segment's records."""
    keys, vectors = store.table.vectors_for(vkeys)
    segment = store.segment
    wanted = np.setdiff1d(np.asarray(vkeys, np.int64), keys)
    if segment is None or not segment.records or not len(wanted):
        return keys, vectors
    rows = segment.rows()
    assert rows is not None  # there are records
    mine = rows.filter(pc.is_in(rows.column("vkey"), value_set=int64_array(wanted)))
    more = to_numpy(mine.column("vector").combine_chunks().flatten()).reshape(-1, store.manifest.dim)
    return (np.concatenate([keys, to_numpy(mine.column("vkey")).astype(np.int64)]),
            np.concatenate([vectors, more.astype(np.float32, copy=False)]))


# -- reading other processes' appends -----------------------------------------------------------
def read_tail(store: "MemoryStore | StoreState") -> list[pa.Table]:
    """New records of the segment (read BEFORE the table is checked out: a fold commits to the
    table before it starts a new generation, so the table then seen holds the older records)."""
    segment = store.segment
    if segment is None:
        return []
    return segment.read_tail()[1]


def pending_keys(store: "MemoryStore | StoreState") -> np.ndarray | None:
    """Keys the catalog may hold from the segment that the table does not."""
    segment = store.segment
    return segment.pending_keys() if segment is not None and segment.pending else None


def absorb(store: "MemoryStore | StoreState", records: Sequence[pa.Table]) -> None:
    """Add records read from the segment to the catalog and the index (rows already held skipped),
    all in one append: an open may find a thousand records left by short processes."""
    if not records:
        return
    catalog = store.catalog
    rows = records[0] if len(records) == 1 else pa.concat_tables(records, promote_options="default")
    keys = to_numpy(rows.column("vkey")).astype(np.int64)  # ascending: appends take keys in file order
    if catalog.n_rows:
        pos = catalog.position_of_vkeys(keys)
        ok = pos < catalog.n_rows
        held = np.zeros(len(keys), bool)
        held[ok] = catalog.array("vkey")[pos[ok]] == keys[ok]
        late = ~held & (keys <= catalog.array("vkey")[-1])
        if late.any():
            log.warning("write-ahead records of %s arrived out of key order; they show after the "
                        "next fold", store.path)
        if (held | late).all():
            return
        if (held | late).any():
            keep = np.flatnonzero(~(held | late))
            rows, keys = rows.take(int64_array(keep)), keys[keep]
    catalog.append_arrow(rows.select(CATALOG_COLUMNS))
    vectors = to_numpy(rows.column("vector").combine_chunks().flatten())
    store.index.add(vectors.reshape(-1, store.manifest.dim), keys)
    store.manifest.next_vkey = max(store.manifest.next_vkey, int(keys.max()) + 1)
