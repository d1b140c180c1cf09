"""The catalog saved beside the table: Arrow IPC files, memory-mapped on open, tied to one Lance version.

``catalog/catalog.json`` (written last, atomically) names the files, their CRC32s, the Lance version
the catalog mirrors and a digest of that version's Lance manifest file, the row address high-water mark,
and the store's model and width. A saved catalog is used only when all of that checks out; otherwise
(missing, torn, garbled, another store's, a version the table no longer has) it is rebuilt from the
table. A catalog older than the table is caught up by reading only rows whose Lance row address is above
the mark (appends, updates and compactions land in new fragments) and, when rows were deleted, the
``vkey`` column; never the whole table. Rows appended since the last full save may be saved on their
own as a tail (:mod:`.catalog_tail`), which an open applies without reading the table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from ..errors import StoreError
from ..records import CATALOG_COLUMNS
from .arrow_numpy import to_numpy
from .catalog import CODED, NUMERIC, STRINGS, Catalog, expiry_seconds
from .catalog_tail import TAIL, Base, drop_tail, load_tail, save_tail, write_ipc
from .catalog_where import ENTRY_SCHEMA, MetaEntries
from .columns import Column, Grow, KeyIndex
from .manifest import atomic_write_bytes

log = logging.getLogger("aimemory.storage")

FOLDER = "catalog"
SIDECAR = "catalog.json"
STAMPS = "catalog.stamps.json"  # file name -> (size, mtime, inode, crc32) once its checksum held
FORMAT = 2  # 2: expires, created_by, derived_from
U64_MAX = 2**64 - 1  # Lance v2 manifest names count down from here
SAVE_AFTER_CATCH_UP = 10_000  # rows read by a catch-up on open past which the result is saved
SAVE_SHARE = 20  # ... or past this share of the rows (1/20); fewer changes are saved as a tail


class StaleCatalog(Exception):
    """The saved catalog cannot be used (the message says why); it is rebuilt from the table."""


# -- Lance versions without lancedb -----------------------------------------------------------------
def manifest_file(dataset: Path, version: int) -> Path | None:
    """The Lance manifest file of ``version`` (v1 or v2 naming), or None when it is gone."""
    for name in (f"{U64_MAX - version:020d}.manifest", f"{version}.manifest", f"{U64_MAX - version}.manifest"):
        path = Path(dataset) / "_versions" / name
        if path.is_file():
            return path
    return None


def manifest_digest(dataset: Path, version: int) -> str | None:
    path = manifest_file(dataset, version)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None


# -- building from the table ------------------------------------------------------------------------
def build(table) -> Catalog:
    """The catalog of every row of ``table`` (a VectorTable), vectorised but for metadata parsing."""
    rows = table.catalog_rows(with_row_address=True).sort_by("vkey")
    catalog = _from_rows(rows)
    if rows.num_rows:
        catalog.rowaddr_watermark = int(pc.max(rows.column("_rowaddr")).as_py())
    return catalog


def _from_rows(rows: pa.Table) -> Catalog:
    """Rows in the table's schema, sorted by vkey -> a catalog (all rows alive)."""
    n = rows.num_rows
    c = Catalog()
    vkeys = rows.column("vkey").to_numpy().astype(np.int64)
    views = rows.column("view").to_numpy().astype(np.int32)
    c.num["vkey"], c.num["view"] = Grow(np.int64, vkeys), Grow(np.int32, views)
    c.num["created"] = Grow(np.float64, rows.column("created_at").cast(pa.timestamp("us", tz="UTC"))
                            .cast(pa.int64()).to_numpy(zero_copy_only=False) / 1e6)
    for name in ("start", "end"):
        c.num[name] = Grow(np.float64, pc.fill_null(rows.column(name).cast(pa.float64()), np.nan)
                           .to_numpy(zero_copy_only=False))
    c.num["expires"] = Grow(np.float64, expiry_seconds(rows))
    c.num["alive"] = Grow(np.bool_, np.ones(n, np.bool_))
    for name in CODED:
        enc = pc.dictionary_encode(rows.column(name)).combine_chunks()
        c.vocab[name] = enc.dictionary.to_pylist()
        c.codes[name] = Grow(np.int32, enc.indices.to_numpy(zero_copy_only=False))
    for name, t in STRINGS.items():
        c.strings[name] = Column(rows.column(name), t)
    ids = c.strings["id"].base
    c.id_keys = KeyIndex.build(ids, np.arange(n))
    c.num["primary"] = Grow(np.int64, _primaries(c.id_keys, views))
    c.count_expiring()
    hashes = c.strings["content_hash"].base
    has = np.flatnonzero((views == 0) & ~pc.is_null(hashes).to_numpy(zero_copy_only=False))
    c.hash_keys = KeyIndex.build(hashes.take(pa.array(has)), has)
    c.meta = MetaEntries()
    c.meta.add_rows(n, range(n), c.strings["metadata"].base.to_pylist())
    return c


def _primaries(ids: KeyIndex, views: np.ndarray) -> np.ndarray:
    """Per row, the position of its memory's primary view (views of a memory share an id)."""
    n = len(views)
    out = np.arange(n, dtype=np.int64)
    if n == 0:
        return out
    keys, order = ids.sorted, ids.order
    group = np.concatenate([[0], np.cumsum(keys[1:] != keys[:-1])])
    first = np.full(group[-1] + 1, -1, np.int64)
    first[group[::-1]] = order[::-1]  # any row of the group, for groups without a view 0
    prim = views[order] == 0
    first[group[prim]] = order[prim]
    out[order] = first[group]
    return out


# -- catching up with the table ---------------------------------------------------------------------
def catch_up(catalog: Catalog, table, pending: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bring ``catalog`` to the table's current version in place; -> (vkeys added, vkeys removed).
    ``pending``: keys the catalog holds from the write-ahead segment, which the table may not hold
    yet (they are not deletions). Raises StaleCatalog when the change cannot be explained (the
    caller rebuilds)."""
    rows = table.rows_since(catalog.rowaddr_watermark, [*CATALOG_COLUMNS]).sort_by("vkey")
    added = np.zeros(0, np.int64)
    if rows.num_rows:
        vkeys = rows.column("vkey").to_numpy().astype(np.int64)
        top = int(catalog.num["vkey"].view[-1]) if catalog.n_rows else -1
        new = vkeys > top
        old_pos = catalog.position_of_vkeys(vkeys[~new])
        if len(old_pos) and (old_pos.max() >= catalog.n_rows or
                             (catalog.num["vkey"].view[old_pos] != vkeys[~new]).any()):
            raise StaleCatalog("rows with unknown keys below the catalog's newest one")
        if len(old_pos):  # rewritten rows (updates, compaction): mirror changed metadata
            old = rows.filter(pa.array(~new))
            before = catalog.strings["metadata"].arrow().take(pa.array(old_pos))
            after = old.column("metadata").combine_chunks().cast(pa.large_string())
            same = pc.fill_null(pc.equal(before, after), False).to_numpy(zero_copy_only=False)
            same |= (pc.is_null(before).to_numpy(zero_copy_only=False)
                     & pc.is_null(after).to_numpy(zero_copy_only=False))
            changed = np.flatnonzero(~same)
            tags = old.column("tags").take(pa.array(changed)).to_pylist()
            for i, tag_list in zip(changed.tolist(), tags):
                catalog.set_metadata(int(old_pos[i]), tag_list or [], after[i].as_py())
            # and changed expiry (an update's ttl / "never"), on every view row it rewrote
            was, now = catalog.num["expires"].view[old_pos], expiry_seconds(old)
            moved = ~((was == now) | (np.isnan(was) & np.isnan(now)))
            if moved.any():
                catalog.set_expiry(old_pos[moved], now[moved])
        if new.any():
            catalog.append_arrow(rows.filter(pa.array(new)).drop_columns(["_rowaddr"]))
            added = vkeys[new]
        catalog.rowaddr_watermark = max(catalog.rowaddr_watermark, int(pc.max(rows.column("_rowaddr")).as_py()))
    removed = np.zeros(0, np.int64)
    held = np.zeros(0, np.int64)
    if pending is not None and len(pending):
        held = np.intersect1d(np.asarray(pending, np.int64), catalog.alive_vkeys())
    expected = table.count_rows()
    if int(np.count_nonzero(catalog.alive)) != expected + len(held):  # deletes: only keys are read
        present = table.scan(["vkey"]).column("vkey").to_numpy().astype(np.int64)
        keep = np.union1d(present, held)  # a fold that crashed may have committed some held ones
        removed = np.setdiff1d(catalog.alive_vkeys(), keep)
        catalog.remove_vkeys(removed)
        if int(np.count_nonzero(catalog.alive)) != len(keep):
            raise StaleCatalog("the table holds rows the catalog does not")
    return added, removed


# -- saving and loading -----------------------------------------------------------------------------
def _fixed_array(keys: np.ndarray) -> pa.Array:
    """numpy 'S<w>' -> Arrow fixed_size_binary(w), one buffer copy."""
    width = max(1, keys.dtype.itemsize)
    data = np.ascontiguousarray(keys.astype(f"S{width}"))
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(data), [None, pa.py_buffer(data.tobytes())])


def _rows_table(c: Catalog) -> pa.Table:
    cols = {name: c.num[name].view for name in NUMERIC}
    cols.update({f"{name}_code": c.codes[name].view for name in CODED})
    cols.update({name: c.strings[name].arrow() for name in STRINGS})
    keys, order = c.id_keys.merged()
    cols["id_sorted"], cols["id_order"] = _fixed_array(keys), order
    cols["meta_start"], cols["meta_end"] = c.meta.start.view, c.meta.end.view
    return pa.table(cols)


def save(catalog: Catalog, folder: Path, table, model_id: str, dim: int) -> None:
    """Write the catalog (mirroring ``table`` at its current version) and then its sidecar."""
    if getattr(table, "remote", None) is not None:
        return  # object stores: no local Lance manifests to tie the files to
    digest = manifest_digest(table.dataset_path, table.version)
    if digest is None:
        return
    since = table.rows_since(catalog.rowaddr_watermark, ["vkey"])  # advance the row address mark first
    if since.num_rows:
        pos = catalog.position_of_vkeys(since.column("vkey").to_numpy())
        if pos.max() >= catalog.n_rows:
            raise StaleCatalog("the catalog is behind the table; not saved")
        catalog.rowaddr_watermark = max(catalog.rowaddr_watermark, int(pc.max(since.column("_rowaddr")).as_py()))
    folder = Path(folder) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    hkeys, horder = catalog.hash_keys.merged()
    hashes = pa.table({"key": _fixed_array(hkeys), "pos": horder})
    files = {}
    for stem, tab in (("rows", _rows_table(catalog)), ("entries", catalog.meta.table()), ("hashes", hashes)):
        files[stem] = write_ipc(folder, stem, tab)
    side = {"format": FORMAT, "table_version": table.version, "manifest_sha256": digest,
            "rows": catalog.n_rows, "alive": int(np.count_nonzero(catalog.alive)),
            "rowaddr_watermark": catalog.rowaddr_watermark, "model_id": model_id, "dim": dim,
            "vocab": catalog.vocab, "meta_keys": catalog.meta.key_names,
            "files": {stem: {"name": name, "crc32": crc} for stem, (name, crc) in files.items()}}
    atomic_write_bytes(folder / SIDECAR, json.dumps(side).encode())
    drop_tail(folder)
    catalog.removed.clear()  # what a tail would carry starts again from this save
    catalog.saved_base, catalog.tail_state = Base.of(catalog, files["rows"][0]), None
    keep = {name for name, _ in files.values()}
    _write_stamps(folder, {name: _stamp(folder / name, crc) for name, crc in files.values()})
    for old in folder.glob("*.arrow"):
        if old.name not in keep:
            old.unlink(missing_ok=True)
    catalog.changes = 0


def _stamp(path: Path, crc: int) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino, crc]


def _stamps(folder: Path) -> dict:
    try:
        return dict(json.loads((folder / STAMPS).read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def _write_stamps(folder: Path, stamps: dict) -> None:
    try:  # best effort: without it the next open checks the files' CRCs again
        atomic_write_bytes(folder / STAMPS, json.dumps(stamps).encode())
    except OSError:
        pass


def _read(folder: Path, entry: dict, verify: bool, stamps: dict | None = None) -> pa.Table:
    """One saved file, memory-mapped. ``verify``: check its CRC, unless ``stamps`` holds this very
    file (name, size, mtime, inode: files are written under new names and renamed into place) as
    already checked, so a 1M catalog's open does not read 445 MB to checksum them."""
    path = folder / entry["name"]
    source = pa.memory_map(str(path), "r")
    if verify and (stamps is None or stamps.get(entry["name"]) != _stamp(path, entry["crc32"])):
        data = source.read_buffer()
        if zlib.crc32(memoryview(data)) != entry["crc32"]:
            raise StaleCatalog(f"{path.name} does not match its checksum")
        source.seek(0)
        if stamps is not None:
            stamps[entry["name"]] = _stamp(path, entry["crc32"])
    return ipc.open_file(source).read_all()


def load(folder: Path, table, model_id: str, dim: int, verify: bool = True) -> Catalog:
    """The saved catalog, checked against the table (not caught up yet); raises StaleCatalog."""
    return _load(folder, table, model_id, dim, verify)[0]


def _load(folder: Path, table, model_id: str, dim: int, verify: bool = True) -> tuple[Catalog, int]:
    """:func:`load`, and the table version the saved catalog mirrors."""
    folder = Path(folder) / FOLDER
    try:
        side = json.loads((folder / SIDECAR).read_text())
        if side.get("format") != FORMAT or side.get("model_id") != model_id or side.get("dim") != dim:
            raise StaleCatalog("made by another version, model or width")
        version = int(side["table_version"])
        if version > table.version:
            raise StaleCatalog(f"mirrors version {version}, newer than the table's {table.version}")
        digest = manifest_digest(table.dataset_path, version)
        if digest != side["manifest_sha256"]:
            raise StaleCatalog("its Lance version is gone or is another table's")
        stamps = _stamps(folder)
        before = dict(stamps)
        rows = _read(folder, side["files"]["rows"], verify, stamps)
        entries = _read(folder, side["files"]["entries"], verify, stamps)
        hashes = _read(folder, side["files"]["hashes"], verify, stamps)
        if stamps != before:
            _write_stamps(folder, {e["name"]: stamps[e["name"]] for e in side["files"].values()
                                   if e["name"] in stamps})
        if rows.num_rows != side["rows"] or entries.schema != ENTRY_SCHEMA:
            raise StaleCatalog("row count or schema does not match its sidecar")
        c = _from_saved(rows, entries, hashes, side)
    except StaleCatalog:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, pa.ArrowException) as exc:
        raise StaleCatalog(f"unreadable ({type(exc).__name__}: {exc})") from exc
    if int(np.count_nonzero(c.alive)) != side["alive"]:
        raise StaleCatalog("live row count does not match its sidecar")
    c.saved_base = Base.of(c, side["files"]["rows"]["name"])
    alive = side["alive"]
    try:
        tail = load_tail(c, folder, table.version, lambda v: manifest_digest(table.dataset_path, v))
    except (ValueError, KeyError, TypeError, IndexError, AssertionError, pa.ArrowException) as exc:
        raise StaleCatalog(f"its tail could not be applied ({type(exc).__name__}: {exc})") from exc
    if tail is not None:
        if int(np.count_nonzero(c.alive)) != tail["alive"]:
            raise StaleCatalog("live row count does not match the catalog tail's record")
        version, alive = int(tail["table_version"]), tail["alive"]
    if version == table.version and alive != table.count_rows():
        raise StaleCatalog("row count does not match the table")
    return c, version


def _fixed(column: pa.ChunkedArray) -> np.ndarray:
    arr = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()  # one chunk: no copy
    width = arr.type.byte_width
    data = np.frombuffer(arr.buffers()[1], dtype=f"S{width}", count=len(arr) + arr.offset)
    return data[arr.offset:]


def _from_saved(rows: pa.Table, entries: pa.Table, hashes: pa.Table, side: dict) -> Catalog:
    c = Catalog()
    for name, dtype in NUMERIC.items():
        c.num[name] = Grow(dtype, to_numpy(rows.column(name)))
    for name in CODED:
        c.vocab[name] = list(side["vocab"][name])
        codes = to_numpy(rows.column(f"{name}_code"))
        if len(codes) and (codes.min() < 0 or codes.max() >= len(c.vocab[name])):
            raise StaleCatalog(f"{name} codes out of range")
        c.codes[name] = Grow(np.int32, codes)
    for name, t in STRINGS.items():
        c.strings[name] = Column(rows.column(name), t)
    n = rows.num_rows
    c.id_keys = KeyIndex(_fixed(rows.column("id_sorted")), to_numpy(rows.column("id_order")))
    c.hash_keys = KeyIndex(_fixed(hashes.column("key")), to_numpy(hashes.column("pos")))
    for order in (c.id_keys.order, c.hash_keys.order, c.num["primary"].view):
        if len(order) and (order.min() < 0 or order.max() >= n):
            raise StaleCatalog("positions out of range")
    c.meta = MetaEntries(n, entries, side["meta_keys"], to_numpy(rows.column("meta_start")),
                         to_numpy(rows.column("meta_end")))
    if len(c.meta) and (c.meta.row.view.max() >= n or c.meta.end.view.max() > len(c.meta)):
        raise StaleCatalog("metadata entries out of range")
    c.rowaddr_watermark = int(side["rowaddr_watermark"])
    c.count_expiring()
    return c


def open_catalog(folder: Path, table, model_id: str, dim: int) -> tuple[Catalog, np.ndarray, np.ndarray]:
    """The saved catalog caught up with the table, else one rebuilt from it (and saved, best effort).
    -> (catalog, vkeys added since the saved version, vkeys removed since)."""
    none = np.zeros(0, np.int64)
    if getattr(table, "remote", None) is not None:
        return build(table), none, none
    try:
        catalog, version = _load(folder, table, model_id, dim)
        if version == table.version:  # saved at this very version (digest and rows checked): current
            return catalog, none, none
        from_tail = catalog.changes  # rows the saved tail added: a full save counts them too
        added, removed = catch_up(catalog, table)
        if catalog.changes >= SAVE_AFTER_CATCH_UP:
            _save_quietly(catalog, folder, table, model_id, dim)
        elif catalog.changes == from_tail:  # the versions since changed nothing it holds (rows added, then forgotten)
            _repoint_quietly(catalog, folder, table, version, TAIL if catalog.tail_state else SIDECAR)
        return catalog, added, removed
    except StaleCatalog as exc:
        if (Path(folder) / FOLDER / SIDECAR).exists():
            log.warning("the saved catalog of %s is not usable (%s); rebuilding it from the table", folder, exc)
    catalog = build(table)
    _save_quietly(catalog, folder, table, model_id, dim)
    return catalog, none, none


def _repoint_quietly(catalog: Catalog, folder: Path, table, was: int, record: str = SIDECAR) -> None:
    """Tie the saved files, unchanged, to the table's current version: a catch-up that found
    nothing new is not repeated by every later open (each one opens the Lance table, whose check
    reads every row's key). ``record``: the sidecar, or the tail's record when the catalog ends with one."""
    path = Path(folder) / FOLDER / record
    try:
        digest = manifest_digest(table.dataset_path, table.version)
        side = json.loads(path.read_text())
        if digest is None or int(side["table_version"]) != was or side["alive"] != table.count_rows():
            return  # another process saved meanwhile, or the counts disagree: leave it
        side.update(table_version=table.version, manifest_sha256=digest,
                    rowaddr_watermark=catalog.rowaddr_watermark)
        atomic_write_bytes(path, json.dumps(side).encode())
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a cache: failing only costs speed
        log.info("the catalog of %s was not tied to the table's version (%s)", folder, exc)


def _save_quietly(catalog: Catalog, folder: Path, table, model_id: str, dim: int) -> None:
    try:
        save(catalog, folder, table, model_id, dim)
    except (OSError, StaleCatalog, StoreError) as exc:  # a cache: failing to save only costs speed
        log.info("the catalog of %s was not saved (%s)", folder, exc)


def refresh_catalog(catalog: Catalog, table, pending: np.ndarray | None = None
                    ) -> tuple[Catalog, np.ndarray | None, np.ndarray | None]:
    """Another process committed: catch ``catalog`` up in place (cost of the change), or rebuild it
    (``pending``: see :func:`catch_up`). -> (catalog, vkeys added, vkeys removed); both None after
    a rebuild."""
    try:
        added, removed = catch_up(catalog, table, pending)
        return catalog, added, removed
    except StaleCatalog as exc:
        log.warning("catalog of %s rebuilt from the table (%s)", table.folder, exc)
        return build(table), None, None


def save_if_due(catalog: Catalog, folder: Path, table, model_id: str, dim: int, force: bool = False,
                settled: bool = True) -> None:
    """Save when anything changed (``force``) or when the next open would otherwise read more than
    SAVE_AFTER_CATCH_UP rows or a twentieth of the table to catch up; else save the rows appended
    and removed since as a tail, when the catalog is ``settled`` (holds no write the table has not
    committed yet)."""
    due = catalog.changes >= min(SAVE_AFTER_CATCH_UP, max(1, catalog.n_rows // SAVE_SHARE))
    if catalog.changes and (force or due):
        _save_quietly(catalog, folder, table, model_id, dim)
    elif catalog.changes and settled:
        _save_tail_quietly(catalog, folder, table)


def _save_tail_quietly(catalog: Catalog, folder: Path, table) -> None:
    """Save the rows appended since the last full save on their own, when that is all that changed
    and the catalog matches the table (see :mod:`.catalog_tail`), so the next open need not read
    the table; otherwise leave the next open to catch up."""
    if getattr(table, "remote", None) is not None:
        return
    try:
        digest = manifest_digest(table.dataset_path, table.version)
        if digest is None or int(np.count_nonzero(catalog.alive)) != table.count_rows():
            return
        save_tail(catalog, Path(folder) / FOLDER, table.version, digest)
    except (OSError, StoreError, pa.ArrowException) as exc:  # a cache: failing to save only costs speed
        log.info("the catalog tail of %s was not saved (%s)", folder, exc)
