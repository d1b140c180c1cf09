"""Whole-store tables for analysis and backup: one row per memory, as Arrow or pandas.

``MemoryStore.to_arrow()`` / ``to_pandas()`` delegate here; the CLI's ``aimemory export`` writes the
same table to Parquet, CSV or JSON Lines (by the file's extension, :func:`write_file`). Vectors (the
primary view's) and raw content are opt-in because they dominate the size.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # pragma: no cover
    from .store import MemoryStore

# file extension -> format written by ``write_file``
EXPORT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
                  ".ndjson": "jsonl"}

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
    store._fresh()
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
        alive = alive & catalog.namespace_is(namespace)
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
    store._fresh()
    catalog = store.catalog
    with store._lock:
        primary = catalog.alive & (catalog.array("view") == 0) & catalog.namespace_is(namespace)
        positions = np.flatnonzero(primary)
        created = catalog.array("created")[positions]
        order = np.lexsort((-catalog.array("vkey")[positions], -created))[:n]
        return [str(catalog.get(int(positions[i]), "id")) for i in order]


def export_format(path) -> str:
    """The format a file name asks for; InputError for an extension we do not write."""
    from pathlib import Path

    from .errors import InputError

    fmt = EXPORT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"cannot tell the export format of {Path(path).name!r}: name the file .parquet "
                         "(or .pq), .csv, or .jsonl (or .ndjson)")
    return fmt


def write_file(table: pa.Table, path, fmt: str | None = None) -> None:
    """Write ``table`` (from :func:`to_arrow`) as Parquet, CSV or JSON Lines. CSV and JSON carry no
    binary or list types: content is base64, and in CSV tags, metadata and vectors are JSON text."""
    import base64

    fmt = fmt or export_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
        return
    rows = table.to_pylist()
    for row in rows:
        if row.get("content") is not None:
            row["content"] = base64.b64encode(row["content"]).decode("ascii")
        row["created_at"] = row["created_at"].isoformat() if row.get("created_at") else None
        row["metadata"] = json.loads(row["metadata"]) if row.get("metadata") else {}
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    import csv

    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=table.column_names)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                             for k, v in row.items()})
