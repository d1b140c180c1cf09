"""LanceDB access: one table of views, written in batches, compacted past thresholds, and a
full-text index over the text column. Filters are built with ``lancedb.expr`` (bound literals),
never by pasting values into SQL."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa

from ..errors import StoreCorruptError, StoreError
from ..records import ADDED_COLUMNS, CATALOG_COLUMNS, table_schema
from .manifest import fsync_dir

log = logging.getLogger("aimemory.storage")

TABLE_NAME = "memories"
COMPACT_EVERY_COMMITS = 64  # small appends make many fragments; compact past this many commits
# ... and only once the rows written since the last compaction reach this fraction of the table:
# compaction rewrites the small fragments, so compacting a growing table at a fixed commit count
# rewrites the same rows again and again (measured: a 17.5 GB table for 2 GB of vectors at 1M).
# Growing the interval geometrically keeps the total bytes rewritten linear in the table size.
COMPACT_GROWTH = 0.25
KEEP_VERSIONS_FOR = timedelta(hours=1)  # old versions kept for readers and crash recovery
# rows per batch of a scan: Lance's default (1,024) crosses lancedb's async bridge once per batch, so
# a filtered scan of 1M rows took 0.2-0.3 s (a key's vectors, a catch-up, the open check) against
# ~0.01 s in 64k-row batches
SCAN_BATCH_ROWS = 65_536
FTS_REFRESH_ROWS = 2_000  # rebuild the text index when this many rows are not yet indexed
# a folder's mtime ticks coarsely (a kernel tick): an unchanged mtime proves "no commit since" only
# when it was already this old when looked at (as git's racy-index rule)
VERSIONS_STAMP_MARGIN_S = 0.05

_U64_MAX = 2**64 - 1  # Lance v2 manifest names count down from here
# errors that mean "the machine is short of something", not "the files are damaged"
_TRANSIENT = ("too many open files", "os error 24", "no space left", "os error 28", "disk quota",
              "os error 122", "permission denied", "os error 13", "cannot allocate memory")


class _WrongWidth(StoreCorruptError):
    """The table is fine but was made for another vector width: not something to walk back from."""


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (24, 28, 122, 13, 12):
        return True
    return any(t in str(exc).lower() for t in _TRANSIENT)


def is_lance_failure(exc: BaseException) -> bool:
    """An error from Lance/IO, including Rust panics (pyo3's PanicException is a BaseException)."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return False
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def storage_error(exc: BaseException, what: str, hint: str = "") -> StoreError:
    """A typed error for a failed Lance call: resource shortage (StoreError) or damage."""
    text = str(exc).lower()
    if _is_transient(exc):
        short = ("the disk is full" if "space" in text or "28" in text or "quota" in text
                 else "too many open files (raise `ulimit -n`)" if "open files" in text or "24" in text
                 else "the system is out of a resource")
        return StoreError(f"{what}: {short} ({exc}); nothing was changed, retry when it is fixed")
    return StoreCorruptError(f"{what} ({exc})" + (f"; {hint}" if hint else ""))


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """The store's cross-process write lock: flock on the folder's lock file (writers and a
    recovering reader take the same one)."""
    fd = os.open(os.path.join(folder, ".write.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _connect_args(folder: Path, remote) -> dict:
    if remote is None:
        return {"uri": str(folder / "tables")}
    return {"uri": remote.tables_uri, "storage_options": remote.storage_options}


# Lance logs from Rust to stderr; keep its deprecation chatter out of users' terminals.
os.environ.setdefault("LANCE_LOG", "error")


class VectorTable:
    """The store's Lance table of views."""

    def __init__(self, folder: Path, dim: int):
        import lancedb

        self.folder = Path(folder)
        self.remote = getattr(folder, "remote", None)  # an object store (see storage/remote.py)
        self.dim = dim
        try:
            self._db = lancedb.connect(**_connect_args(self.folder, self.remote))
        except BaseException as exc:  # out of file handles, Lance panics rather than raising
            if not is_lance_failure(exc):
                raise
            raise storage_error(exc, f"the table in {self.folder} cannot be opened") from exc
        self.commits_since_compaction = 0
        self.rows_changed_since_compaction = 0
        self.rows_at_compaction = 0  # unknown at open: the first compaction is due by commit count
        self.recovered_from: int | None = None  # the torn version walked back from, if any
        self._seen_stamp: tuple[int, int] | None = None  # the versions folder at the last checkout
        self._versions_folder = os.fspath(self._dataset / "_versions")  # stat on every write: joined once
        self._table = self._open()

    # -- opening and recovery ------------------------------------------------------------------
    @property
    def _dataset(self) -> Path:
        return self.folder / "tables" / f"{TABLE_NAME}.lance"

    def _open(self):
        if self.remote is not None:  # object store: Lance's commits guard it, no local files to walk
            return self.remote.open_table(self._db, TABLE_NAME, table_schema(self.dim))
        if not self._dataset.exists():
            try:
                return self._db.create_table(TABLE_NAME, schema=table_schema(self.dim))
            except Exception as exc:
                raise storage_error(exc, f"the table in {self.folder} cannot be created") from exc
        try:
            table = self._db.open_table(TABLE_NAME)
            self._check(table)
            return table
        except _WrongWidth:
            raise
        except Exception as exc:
            if _is_transient(exc):  # out of files/space is not damage: never walk back for it
                raise storage_error(exc, f"the table in {self.folder} cannot be opened") from exc
            first_error = exc
        with folder_lock(self.folder):  # one process walks back; writers wait
            return self._recover(first_error)

    def _check(self, table) -> None:
        """A version is good when its manifest has our schema and every data file reads."""
        names = set(table.schema.names)
        missing = [f.name for f in table_schema(self.dim) if f.name not in names and f.name not in ADDED_COLUMNS]
        if missing:
            raise ValueError(f"manifest lacks columns {missing}")
        width = table.schema.field("vector").type.list_size
        if width != self.dim:
            raise _WrongWidth(f"table vectors have width {width}, manifest says {self.dim}")
        # reading one small column opens every fragment's data file (footer + magic)
        for _ in table.search().select(["vkey"]).limit(None).to_batches(SCAN_BATCH_ROWS):
            pass

    def _versions(self) -> dict[int, Path]:
        """version -> manifest file, from the file names (Lance v1 and v2 naming)."""
        out = {}
        for path in (self._dataset / "_versions").glob("*.manifest"):
            try:
                n = int(path.stem)
            except ValueError:
                continue
            out[_U64_MAX - n if n > 2**63 else n] = path
        return out

    def _recover(self, first_error: Exception):
        """Open the newest readable version: move torn manifests aside, newest first, until the
        latest one left opens and reads (Lance reads the latest manifest even to open an older
        version, so a torn one must go). If none does, put every file back and raise."""
        versions = self._versions()
        quarantine = self.folder / "quarantine" / f"{TABLE_NAME}-{time.time_ns()}"
        moved: list[tuple[Path, Path]] = []
        error: Exception = first_error
        for v in [None, *sorted(versions, reverse=True)]:
            if v is not None:  # the latest still fails: set it aside and try the one before
                quarantine.mkdir(parents=True, exist_ok=True)
                moved.append((versions[v], quarantine / versions[v].name))
                os.replace(*moved[-1])
            try:  # v None: another process may have recovered while we waited for the lock
                table = self._db.open_table(TABLE_NAME)
                self._check(table)
            except _WrongWidth:
                raise
            except Exception as exc:
                if _is_transient(exc):
                    self._put_back(moved)
                    raise storage_error(exc, f"the table in {self.folder} cannot be opened") from exc
                error = exc
                continue
            if moved and table.count_rows() == 0:
                # only the empty table that creation made is readable: an empty store is not a
                # recovery, it would just look like every memory was forgotten
                error = StoreCorruptError("only the empty initial version is readable")
                break
            if moved:
                fsync_dir(self._dataset / "_versions")
                self.recovered_from = max(versions)
                log.warning("table in %s: version(s) %s are unreadable (%s); opened version %d, the "
                            "newest readable one. Writes made after it are lost; the torn manifests "
                            "were moved to %s", self.folder, sorted(versions)[-len(moved):],
                            first_error, table.version, quarantine)
            return table
        self._put_back(moved)
        raise StoreCorruptError(
            f"the table in {self.folder} cannot be opened ({first_error}) and no earlier version of "
            f"it is readable either ({len(versions)} tried, last error: {error}); restore the folder "
            "from a backup") from first_error

    @staticmethod
    def _put_back(moved: list[tuple[Path, Path]]) -> None:
        for src, dst in reversed(moved):
            os.replace(dst, src)

    # -- reads ---------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self._table.version)

    def count_rows(self) -> int:
        return int(self._table.count_rows())

    def missing_columns(self) -> list[str]:
        """Columns of a newer schema that this (older) table does not have yet."""
        names = set(self._table.schema.names)
        return [name for name in ADDED_COLUMNS if name not in names]

    def scan(self, columns: list[str], where=None) -> pa.Table:
        """``columns`` of the rows matching ``where``; columns of a newer schema that this table
        lacks read as null."""
        missing = [c for c in self.missing_columns() if c in columns]
        query = self._table.search().select([c for c in columns if c not in missing]).limit(None)
        if where is not None:
            query = query.where(where)
        try:
            table = query.to_batches(SCAN_BATCH_ROWS).read_all()
        except BaseException as exc:  # a file torn under an open store: say so, never guess
            if not is_lance_failure(exc):
                raise
            raise storage_error(exc, f"reading the table in {self.folder} failed",
                                 "reopen the store to fall back to its newest readable version") from exc
        if missing:
            schema = table_schema(self.dim)
            for name in missing:
                field = schema.field(name)
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
            table = table.select(columns)
        return table

    def checkout_latest(self) -> bool:
        """Move to the newest committed version (another process may have written). False when
        the versions folder shows no commit since the last call: one stat, no Lance call."""
        stamp = self._versions_stamp()
        if stamp is not None and stamp == self._seen_stamp:
            return False
        self._table.checkout_latest()
        old_enough = stamp is not None and time.time() - stamp[0] / 1e9 > VERSIONS_STAMP_MARGIN_S
        self._seen_stamp = stamp if old_enough else None
        return True

    def _versions_stamp(self) -> tuple[int, int] | None:
        """(mtime, inode) of the local versions folder: a commit adds a manifest file to it."""
        if self.remote is not None:
            return None
        try:
            st = os.stat(self._versions_folder)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino

    def batches(self, columns: list[str], rows_per_batch: int) -> Iterator[pa.RecordBatch]:
        """Every row's ``columns``, streamed in batches (memory bounded by a batch, not the table)."""
        return self._table.search().select(columns).limit(None).to_batches(rows_per_batch)

    def vector_query(self, vector: np.ndarray) -> Any:
        """A Lance nearest-neighbour query builder for ``vector`` over the ``vector`` column."""
        return self._table.search(vector, vector_column_name="vector")

    def index_stats(self, name: str) -> Any:
        """Lance's statistics of the index ``name`` (None or an error when there is none)."""
        return self._table.index_stats(name)

    def create_index(self, **kwargs: Any) -> None:
        """Build a Lance index on the table (``lancedb``'s ``create_index`` arguments)."""
        self._table.create_index(**kwargs)

    def optimize(self) -> None:
        """Fold new rows into the table's indexes (Lance ``optimize``, no version cleanup)."""
        self._table.optimize()

    def catalog_rows(self, with_row_address: bool = False) -> pa.Table:
        """The catalog's columns of every row (plus Lance's ``_rowaddr`` when asked)."""
        return self.rows_since(None, CATALOG_COLUMNS) if with_row_address else self.scan(CATALOG_COLUMNS)

    def rows_since(self, row_address: int | None, columns: list[str]) -> pa.Table:
        """Rows whose Lance row address (``_rowaddr``: fragment id << 32 | offset, returned too) is
        above ``row_address`` (all rows when None). Appends, rewrites (updates) and compaction put
        rows in new fragments, whose ids are larger than any before, so this reads only what changed
        since a high-water mark."""
        where = f"_rowaddr > {int(row_address)}" if row_address is not None and row_address >= 0 else None
        return self.scan([*columns, "_rowaddr"], where)

    @property
    def dataset_path(self) -> Path:
        """The local Lance dataset folder (meaningless for object stores)."""
        return self._dataset

    def vectors_for(self, vkeys: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """-> (vkeys (n,), vectors (n, dim) float32) for the given keys (all rows when None)."""
        from lancedb.expr import col

        where = None
        if vkeys is not None:
            keys = [int(k) for k in vkeys]
            if not keys:
                return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
            where = col("vkey").isin(keys)
        table = self.scan(["vkey", "vector"], where)
        keys_out = table.column("vkey").to_numpy()
        flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return keys_out.astype(np.int64), flat.astype(np.float32, copy=False).reshape(-1, self.dim)

    def primary_rows(self, vkeys: Iterable[int], columns: list[str]) -> pa.Table:
        from lancedb.expr import col

        keys = [int(k) for k in vkeys]
        return self.scan(["vkey", *columns], col("vkey").isin(keys))

    def full_text(self, query: str, namespace: str, limit: int) -> pa.Table:
        """BM25 search over text content and transcripts, restricted to one namespace."""
        from lancedb.expr import col, lit

        # a quoted phrase needs word positions the index does not keep (Lance raised on '"coffee"'):
        # the words are searched instead
        query = query.replace('"', " ")
        if not query.strip():
            return pa.table({"vkey": pa.array([], pa.int64()), "id": pa.array([], pa.string()),
                             "_score": pa.array([], pa.float32())})
        self._ensure_fts()
        # ``_score`` is selected explicitly: Lance's automatic projection of it is deprecated and
        # warns on stderr at every query (lancedb's Python API has no opt-out switch)
        search = self._table.search(query, query_type="fts")
        return (search.where(col("namespace") == lit(namespace))
                .select(["vkey", "id", "_score"]).limit(limit).to_arrow())

    # -- writes --------------------------------------------------------------------------------
    def add_missing_columns(self) -> bool:
        """Give a table of an older schema the newer columns (all null: a metadata-only commit);
        True when it did. Writes call it first, so rows of the current schema always fit."""
        missing = self.missing_columns()
        if not missing:
            return False
        if self.remote is not None:
            self.remote.check_lease()
        schema = table_schema(self.dim)
        self._table.add_columns([schema.field(name) for name in missing])
        log.info("table in %s: added the columns %s of a newer schema", self.folder, missing)
        return True

    def add(self, rows: pa.Table) -> int:
        """Append rows in one commit; returns the new table version."""
        if self.remote is not None:
            self.remote.check_lease()
        self.add_missing_columns()
        self._table.add(rows.cast(self._table.schema) if rows.schema != self._table.schema else rows)
        self._after_commit(rows.num_rows)
        return self.version

    def rewrite_rows(self, rows: pa.Table) -> int:
        """Replace the rows with these ``vkey`` values by ``rows`` (whole rows, read from the table and
        edited) in one commit; returns the new version. A merge on ``vkey`` carries the values as
        Arrow data: nothing is pasted into SQL."""
        if self.remote is not None:
            self.remote.check_lease()
        schema = self._table.schema
        rows = rows.select(schema.names)
        self._table.merge_insert("vkey").when_matched_update_all().execute(
            rows.cast(schema) if rows.schema != schema else rows)
        self._after_commit(rows.num_rows)
        return self.version

    def replace(self, rows: pa.Table, old_vkeys: Iterable[int]) -> int:
        """Add ``rows`` and delete the rows keyed ``old_vkeys`` in ONE commit; returns the new version.
        A merge on ``vkey`` whose new keys (never reused) all go unmatched: they are inserted, and
        the old rows, unmatched by the source, are deleted, so a reader (or a crash) sees the old
        rows or the new ones, never neither or both. The merge joins on the key column, so it
        reads that column whole: plain appends use :meth:`add`."""
        from lancedb.expr import col

        keys = [int(k) for k in old_vkeys]
        if not keys:
            return self.add(rows)
        if self.remote is not None:
            self.remote.check_lease()
        self.add_missing_columns()
        schema = self._table.schema
        rows = rows.select(schema.names)
        (self._table.merge_insert("vkey").when_not_matched_insert_all()
         .when_not_matched_by_source_delete(col("vkey").isin(keys))
         .execute(rows.cast(schema) if rows.schema != schema else rows))
        self._after_commit(rows.num_rows + len(keys))
        return self.version

    def delete_vkeys(self, vkeys: Iterable[int]) -> int:
        from lancedb.expr import col

        keys = [int(k) for k in vkeys]
        if keys:
            if self.remote is not None:
                self.remote.check_lease()
            self._table.delete(col("vkey").isin(keys))
            self._after_commit(len(keys))
        return self.version

    def _after_commit(self, rows_changed: int) -> None:
        self.commits_since_compaction += 1
        self.rows_changed_since_compaction += rows_changed
        if (self.commits_since_compaction >= COMPACT_EVERY_COMMITS
                and self.rows_changed_since_compaction >= COMPACT_GROWTH * self.rows_at_compaction):
            try:
                self.compact()
            except Exception as exc:  # the commit stands; compaction is only an optimisation
                self.commits_since_compaction = 0
                log.warning("compacting the table in %s failed (%s); will retry later", self.folder, exc)

    def compact(self) -> None:
        """Merge small fragments, drop deleted rows and old versions (kept ``KEEP_VERSIONS_FOR``)."""
        self._table.optimize(cleanup_older_than=KEEP_VERSIONS_FOR)
        self.commits_since_compaction = 0
        self.rows_changed_since_compaction = 0
        self.rows_at_compaction = self.count_rows()

    def _ensure_fts(self) -> None:
        from lancedb.index import FTS

        indices = {ix.name: ix for ix in self._table.list_indices()}
        stale = "text_idx" not in indices
        if not stale:
            stats = self._table.index_stats("text_idx")
            stale = stats is not None and stats.num_unindexed_rows >= FTS_REFRESH_ROWS
        if stale:
            try:
                self._table.create_index("text", config=FTS(), replace=True)
            except Exception as exc:
                if "conflict" not in str(exc).lower():
                    raise
                # another handle on this table built it first (two stores on one folder in one
                # process): read its commit
                self._table.checkout_latest()

    def close(self) -> None:
        self._table = None  # type: ignore[assignment]
        self._db = None  # type: ignore[assignment]
