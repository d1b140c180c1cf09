"""LanceDB access: one table of views, written in batches, compacted past thresholds, and a
full-text index over the text column. Filters are built with ``lancedb.expr`` (bound literals),
never by pasting values into SQL."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa

from ..errors import StoreCorruptError
from ..records import CATALOG_COLUMNS, table_schema

log = logging.getLogger("aimemory.storage")

TABLE_NAME = "memories"
COMPACT_EVERY_COMMITS = 64  # small appends make many fragments; compact past this many commits
KEEP_VERSIONS_FOR = timedelta(hours=1)  # old versions kept for readers and crash recovery
FTS_REFRESH_ROWS = 2_000  # rebuild the text index when this many rows are not yet indexed

# Lance logs from Rust to stderr; keep its deprecation chatter out of users' terminals.
os.environ.setdefault("LANCE_LOG", "error")


class VectorTable:
    """The store's Lance table of views."""

    def __init__(self, folder: Path, dim: int):
        import lancedb

        self.folder = Path(folder)
        self.dim = dim
        self._db = lancedb.connect(str(self.folder / "tables"))
        self.commits_since_compaction = 0
        try:
            if (self.folder / "tables" / f"{TABLE_NAME}.lance").exists():
                self._table = self._db.open_table(TABLE_NAME)
            else:
                self._table = self._db.create_table(TABLE_NAME, schema=table_schema(dim))
        except Exception as exc:
            raise StoreCorruptError(
                f"the table in {self.folder} cannot be opened ({exc}); restore the folder from a "
                "backup, or export what is readable with an older aimemory version") from exc
        vector_field = self._table.schema.field("vector")
        if vector_field.type.list_size != dim:
            raise StoreCorruptError(f"table vectors have width {vector_field.type.list_size}, "
                                    f"manifest says {dim}")

    # -- reads ---------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self._table.version)

    def count_rows(self) -> int:
        return int(self._table.count_rows())

    def scan(self, columns: list[str], where=None) -> pa.Table:
        query = self._table.search().select(columns).limit(None)
        if where is not None:
            query = query.where(where)
        return query.to_arrow()

    def catalog_rows(self) -> pa.Table:
        return self.scan(CATALOG_COLUMNS)

    def max_vkey(self) -> int:
        keys = self.scan(["vkey"]).column("vkey")
        return int(pa.compute.max(keys).as_py() or 0) if len(keys) else 0

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

        self._ensure_fts()
        search = self._table.search(query, query_type="fts")
        if hasattr(search, "disable_scoring_autoprojection"):
            search = search.disable_scoring_autoprojection()
        return (search.where(col("namespace") == lit(namespace))
                .select(["vkey", "id"]).limit(limit).to_arrow())

    # -- writes --------------------------------------------------------------------------------
    def add(self, rows: pa.Table) -> int:
        """Append rows in one commit; returns the new table version."""
        self._table.add(rows.cast(self._table.schema) if rows.schema != self._table.schema else rows)
        self._after_commit()
        return self.version

    def delete_vkeys(self, vkeys: Iterable[int]) -> int:
        from lancedb.expr import col

        keys = [int(k) for k in vkeys]
        if keys:
            self._table.delete(col("vkey").isin(keys))
            self._after_commit()
        return self.version

    def _after_commit(self) -> None:
        self.commits_since_compaction += 1
        if self.commits_since_compaction >= COMPACT_EVERY_COMMITS:
            self.compact()

    def compact(self) -> None:
        """Merge small fragments, drop deleted rows and old versions (kept ``KEEP_VERSIONS_FOR``)."""
        self._table.optimize(cleanup_older_than=KEEP_VERSIONS_FOR)
        self.commits_since_compaction = 0

    def _ensure_fts(self) -> None:
        from lancedb.index import FTS

        indices = {ix.name: ix for ix in self._table.list_indices()}
        stale = "text_idx" not in indices
        if not stale:
            stats = self._table.index_stats("text_idx")
            stale = stats is not None and stats.num_unindexed_rows >= FTS_REFRESH_ROWS
        if stale:
            self._table.create_index("text", config=FTS(), replace=True)

    def close(self) -> None:
        self._table = None  # type: ignore[assignment]
        self._db = None
