"""Whole-store tables for analysis and backup: one row per memory, as Arrow or pandas.

``MemoryStore.to_arrow()`` / ``to_pandas()`` delegate here; the CLI's ``aimemory export`` writes the
same table to Parquet. Vectors (the primary view's) and raw content are opt-in because they dominate
the size.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # pragma: no cover
    from .store import MemoryStore

# Primary-row columns of the Lance table that make up a memory, in output order.
BASE_COLUMNS = ["id", "namespace", "modality", "created_at", "source", "mime", "tags", "metadata", "text"]


def to_arrow(store: "MemoryStore", namespace: str | None = None, vectors: bool = False,
             content: bool = False) -> pa.Table:
    """One row per memory (all namespaces when ``namespace`` is None), oldest first.

    Columns: id, namespace, modality, created_at, source, mime, tags, metadata (JSON string), text,
    n_views; plus ``content`` (bytes; text memories keep theirs in ``text``) and ``vector`` (the
    primary view's embedding) when asked."""
    from lancedb.expr import col, lit

    store._check_open()
    where = col("view") == lit(0)
    if namespace is not None:
        where = where & (col("namespace") == lit(namespace))
    columns = ["vkey", *BASE_COLUMNS] + (["content"] if content else []) + (["vector"] if vectors else [])
    with store._lock:
        table = store.table.scan(columns, where)
        views = _views_per_memory(store, namespace)
    table = table.sort_by([("created_at", "ascending"), ("vkey", "ascending")]).drop_columns(["vkey"])
    counts = [views.get(mid, 1) for mid in table.column("id").to_pylist()]
    return table.append_column("n_views", pa.array(counts, pa.int32()))


def _views_per_memory(store: "MemoryStore", namespace: str | None) -> dict[str, int]:
    catalog = store.catalog
    alive = catalog.alive
    if namespace is not None:
        alive = alive & (catalog.array("namespace") == namespace)
    ids, counts = np.unique(catalog.array("id")[alive].astype(str), return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist()))


def to_pandas(store: "MemoryStore", namespace: str | None = None, vectors: bool = False,
              content: bool = False):
    """:func:`to_arrow` as a DataFrame, with ``metadata`` parsed into dicts."""
    df = to_arrow(store, namespace, vectors, content).to_pandas()
    df["metadata"] = [json.loads(m) if m else {} for m in df["metadata"]]
    if vectors:
        df["vector"] = [np.asarray(v, dtype=np.float32) for v in df["vector"]]
    return df


def recent(store: "MemoryStore", namespace: str, n: int = 10) -> list[str]:
    """Ids of the ``n`` newest memories in ``namespace``, newest first (catalog only, no disk read)."""
    catalog = store.catalog
    with store._lock:
        primary = catalog.alive & (catalog.array("view") == 0) & (catalog.array("namespace") == namespace)
        positions = np.flatnonzero(primary)
        created = catalog.array("created")[positions]
        order = np.lexsort((-catalog.array("vkey")[positions], -created))[:n]
        return [str(catalog.array("id")[positions[i]]) for i in order]
