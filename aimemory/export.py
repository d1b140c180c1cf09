"""Whole-store tables for analysis and backup: one row per memory, as Arrow or pandas.

``MemoryStore.to_arrow()`` / ``to_pandas()`` delegate here; the CLI's ``aimemory export`` writes the
same table to Parquet, CSV or JSON Lines (by the file's extension, :func:`write_file`). Vectors (the
primary view's) and raw content are opt-in because they dominate the size.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # pragma: no cover
    from .store import MemoryStore

# file extension -> format written by ``write_file``
EXPORT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
                  ".ndjson": "jsonl"}

# Primary-row columns of the Lance table that make up a memory, in output order.
BASE_COLUMNS = ["id", "namespace", "modality", "created_at", "source", "mime", "tags", "metadata", "text",
                "created_by", "derived_from", "expires_at"]


def to_arrow(store: "MemoryStore", namespace: str | None = None, vectors: bool = False,
             content: bool = False) -> pa.Table:
    """One row per memory (all namespaces when ``namespace`` is None), oldest first.

    Columns: id, namespace, modality, created_at, source, mime, tags, metadata (JSON string), text,
    created_by, derived_from, expires_at, n_views (expired memories are left out); plus ``content``
    (bytes; text memories keep theirs in ``text``) and ``vector`` (the
    primary view's embedding) when asked."""
    from lancedb.expr import col, lit

    store.check_open()
    where = col("view") == lit(0)
    if namespace is not None:
        where = where & (col("namespace") == lit(namespace))
    columns = ["vkey", *BASE_COLUMNS] + (["content"] if content else []) + (["vector"] if vectors else [])
    with store.reading():
        table = store.table.scan(columns, where)
        views = _views_per_memory(store, namespace)
    table = table.sort_by([("created_at", "ascending"), ("vkey", "ascending")]).drop_columns(["vkey"])
    table = table.filter(unexpired(table.column("expires_at")))
    counts = [views.get(key, 1) for key in zip(table.column("namespace").to_pylist(), table.column("id").to_pylist())]
    return table.append_column("n_views", pa.array(counts, pa.int32()))


def unexpired(expires_at: pa.ChunkedArray) -> pa.ChunkedArray:
    """Boolean mask over an ``expires_at`` column: never expires, or not yet."""
    import time

    import pyarrow.compute as pc

    now = pa.scalar(int(time.time() * 1e6), pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pc.or_kleene(pc.is_null(expires_at), pc.greater(expires_at, now))


def _views_per_memory(store: "MemoryStore", namespace: str | None) -> dict[tuple[str, str], int]:
    """(namespace, id) -> views: ids are unique per namespace only."""
    catalog = store.catalog
    alive = catalog.alive
    if namespace is not None:
        alive = alive & catalog.namespace_is(namespace)
    counts: dict[tuple[str, str], int] = {}
    for key in zip(catalog.array("namespace")[alive].tolist(), catalog.array("id")[alive].tolist()):
        counts[key] = counts.get(key, 0) + 1
    return counts


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
    with store.reading():
        catalog = store.catalog
        primary = catalog.alive & (catalog.array("view") == 0) & catalog.namespace_is(namespace) & ~catalog.expired()
        positions = np.flatnonzero(primary)
        created = catalog.array("created")[positions]
        order = np.lexsort((-catalog.array("vkey")[positions], -created))[:n]
        return [str(catalog.get(int(positions[i]), "id")) for i in order]


def stats(store: "MemoryStore") -> dict[str, Any]:
    """:meth:`MemoryStore.stats`, read under the store's lock."""
    catalog = store.catalog
    kinds, counts = np.unique(catalog.array("kind")[catalog.alive].astype(str), return_counts=True)
    return {
        "path": getattr(store.root, "uri", None) or str(store.root), "model": store.model_id,
        "dim": store.manifest.dim, "precision": store.manifest.precision, "memories": len(store),
        "sound_model": getattr(getattr(store.encoder, "tower", None), "model_id", None),
        "vectors": int(catalog.alive.sum()), "namespaces": catalog.namespaces(),
        "views": dict(zip(kinds.tolist(), counts.tolist())),
        "index": {"kind": store.index.kind, "vectors": store.index.ntotal, "nprobe": store.index.nprobe,
                  "why": store.index_why, "search_device": store.index.search_device},
        "table_version": store.table.version,
        "device": store.placement.device, "compute": store.placement.compute,
        "ocr": {"enabled": store.ocr is not None, "status": store.ocr_status},
    }


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
        for key in ("created_at", "expires_at"):
            if key in row:
                row[key] = row[key].isoformat() if row[key] else None
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
