"""Rows appended (and keys removed) since the catalog's last full save, saved on their own.

A full save rewrites every catalog file, so it waits until enough changed (see
``catalog_file.save_if_due``). Until then a store that took a few writes would catch its saved
catalog up from the table on every open, which loads LanceDB (about 1 s of imports for a cold CLI
recall) and scans the new rows. Instead, a save that finds only rows appended and memories
forgotten writes just those: ``catalog/tail-<crc>-<pid>.arrow`` holds the new rows in the table's
column layout, then ``catalog/catalog.tail.json`` names it, the saved rows file it extends
(``base``), the keys removed since, and the Lance version and manifest digest they mirror. Each is
written atomically. An open applies the tail only when its base is the saved catalog just loaded
and every check holds; otherwise it is ignored and the open catches up from the table as before.
Versions without tails ignore the record.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from .arrow_numpy import int64_array, to_numpy
from .manifest import atomic_write_bytes

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger("aimemory.storage")

TAIL = "catalog.tail.json"
TAIL_STEM = "tail"
TAIL_FORMAT = 1
_MICROS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Base:
    """The saved catalog a tail extends: its rows file and row count, and the catalog's rewrite and
    removal counts when it was loaded or saved (a rewrite since that was not a removal, such as a
    metadata update, can only be saved in full)."""

    name: str
    rows: int
    rewrites: int
    removals: int
    removed: int  # len(catalog.removed) then

    @classmethod
    def of(cls, catalog: "Catalog", name: str) -> "Base":
        return cls(name, catalog.n_rows, catalog.rewrites, catalog.removals, len(catalog.removed))


def write_ipc(folder: Path, stem: str, table: pa.Table) -> tuple[str, int]:
    """``table`` as one Arrow IPC file ``<stem>-<crc32>-<pid>.arrow`` in ``folder``, written
    atomically -> (file name, CRC32 of its bytes)."""
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max(1, table.num_rows))
    data = sink.getvalue()
    crc = zlib.crc32(memoryview(data))
    name = f"{stem}-{crc:08x}-{os.getpid()}.arrow"
    atomic_write_bytes(folder / name, data.to_pybytes())
    return name, crc


def _timestamps(seconds: np.ndarray) -> pa.Array:
    """Seconds since the epoch (NaN for none) -> a UTC microsecond timestamp column."""
    micros = [None if v != v else round(v * 1e6) for v in seconds.tolist()]
    return pa.array(micros, pa.int64()).cast(_MICROS)


def _floats(values: np.ndarray, nan_is_null: bool) -> pa.Array:
    # from a list: pyarrow's conversion of a numpy array imports pandas (0.3-0.5 s) to sniff it
    return pa.array([None if nan_is_null and v != v else v for v in values.tolist()], pa.float64())


def appended_rows(catalog: "Catalog", start: int) -> pa.Table:
    """The catalog's rows from position ``start`` on, in the table's column layout (what
    ``Catalog.append_arrow`` takes), plus the exact float seconds of their times."""
    at = np.arange(start, catalog.n_rows, dtype=np.int64)
    num = {name: catalog.num[name].view[start:] for name in ("vkey", "view", "created", "start", "end", "expires")}
    strings = {name: catalog.values(name, at) for name in catalog.strings}
    columns = {
        "vkey": int64_array(num["vkey"]), "id": pa.array(strings.pop("id"), pa.large_string()),
        "view": pa.array(num["view"].tolist(), pa.int32()),
        **{name: pa.array(catalog.values(name, at), pa.string()) for name in ("namespace", "modality", "kind")},
        "created_at": _timestamps(num["created"]),
        "start": _floats(num["start"], True), "end": _floats(num["end"], True),
        "expires_at": _timestamps(num["expires"]),
        **{name: pa.array(values, catalog.strings[name].type) for name, values in strings.items()},
        "created_s": _floats(num["created"], False), "expires_s": _floats(num["expires"], False),  # exact
    }
    return pa.table(columns)


def save_tail(catalog: "Catalog", folder: Path, table_version: int, digest: str) -> None:
    """Write what changed since ``catalog.saved_base`` (rows appended, keys removed) as the tail
    mirroring ``table_version`` (whose manifest has ``digest``). Nothing is written when anything
    else changed (only a full save records that), when nothing did, or when this very tail is saved
    already. The caller checked that the catalog matches the table."""
    base = catalog.saved_base
    if base is None or catalog.rewrites - base.rewrites != catalog.removals - base.removals:
        return
    state = (catalog.n_rows, len(catalog.removed))
    if state in ((base.rows, base.removed), catalog.tail_state):
        return
    name, crc = write_ipc(folder, TAIL_STEM, appended_rows(catalog, base.rows))
    record = {"format": TAIL_FORMAT, "base": base.name, "base_rows": base.rows, "table_version": table_version,
              "manifest_sha256": digest, "rows": catalog.n_rows, "alive": int(np.count_nonzero(catalog.alive)),
              "removed": catalog.removed[base.removed:], "rowaddr_watermark": catalog.rowaddr_watermark,
              "file": {"name": name, "crc32": crc}}
    atomic_write_bytes(folder / TAIL, json.dumps(record).encode())
    catalog.tail_state = state
    for old in folder.glob(f"{TAIL_STEM}-*.arrow"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_tail(catalog: "Catalog", folder: Path, newest_version: int,
              digest_of: Callable[[int], str | None]) -> dict | None:
    """Append the saved tail to ``catalog`` (just loaded from its base files) when the tail extends
    that very base and mirrors a version of the table up to ``newest_version`` whose manifest still
    has the recorded digest -> the tail's record; None (the catalog untouched) otherwise. A tail
    that passes its checksum but cannot be applied raises (the caller rebuilds the catalog)."""
    base = catalog.saved_base
    if base is None:
        return None
    try:
        record = json.loads((folder / TAIL).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.info("the catalog tail of %s is unreadable (%s); catching up from the table", folder, exc)
        return None
    try:
        version = int(record["table_version"])
        usable = (record.get("format") == TAIL_FORMAT and record["base"] == base.name
                  and record["base_rows"] == base.rows == catalog.n_rows and version <= newest_version
                  and digest_of(version) == record["manifest_sha256"])
        if not usable:
            return None
        removed = np.asarray([int(k) for k in record["removed"]], np.int64)
        data = pa.memory_map(str(folder / record["file"]["name"]), "r").read_buffer()
        if zlib.crc32(memoryview(data)) != record["file"]["crc32"]:
            raise ValueError("the tail file does not match its checksum")
        rows = ipc.open_file(data).read_all()
        if rows.num_rows != record["rows"] - base.rows:
            raise ValueError("the tail's row count does not match its record")
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        log.info("the catalog tail of %s was not used (%s); catching up from the table", folder, exc)
        return None
    changes = catalog.changes
    catalog.append_arrow(rows.drop_columns(["created_s", "expires_s"]))
    # the float seconds exactly as the writer held them (a far-future expiry is not exact in micros)
    catalog.num["created"].writable()[base.rows:catalog.n_rows] = to_numpy(rows.column("created_s"))
    catalog.num["expires"].writable()[base.rows:catalog.n_rows] = to_numpy(rows.column("expires_s"))
    if len(removed):
        catalog.remove_vkeys(removed)
    # rows changed since the base: a full save comes when enough are
    catalog.changes = changes + rows.num_rows + len(removed)
    catalog.tail_state = (catalog.n_rows, len(catalog.removed))
    catalog.rowaddr_watermark = max(catalog.rowaddr_watermark, int(record["rowaddr_watermark"]))
    return dict(record)


def drop_tail(folder: Path) -> None:
    """Remove the tail's record (a full save has just superseded it; its file goes with the old
    catalog files)."""
    (folder / TAIL).unlink(missing_ok=True)
