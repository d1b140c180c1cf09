"""A columnar mirror of the table's small columns (no vectors, no content bytes; texts included).

It answers "which views may this query see" (namespace, modality, time, ``where=``) as a boolean mask
without touching disk, maps index keys back to memories, and serves hits' texts and snippets. Numeric
columns are numpy arrays, strings stay Arrow arrays (memory-mapped when loaded from the saved copy,
see :mod:`.catalog_file`), and lookups by id or content hash bisect sorted key arrays, so opening a
store does no per-row Python work. The Lance table stays the source of truth.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrow_numpy import filled, nulls, to_numpy
from .catalog_tail import Base
from .catalog_where import MetaEntries, check_where
from .columns import Column, Grow, KeyIndex
from .derived import DerivedCache

# Fields of ``where=`` that are memory columns rather than metadata keys.
COLUMN_FILTERS = ("source", "modality", "mime", "id")
# "expires": seconds since the epoch when the memory stops being returned, NaN for never
NUMERIC = {"vkey": np.int64, "view": np.int32, "created": np.float64, "start": np.float64,
           "end": np.float64, "expires": np.float64, "alive": np.bool_, "primary": np.int64}
OPTIONAL_FLOATS = ("start", "end", "expires")  # NaN reads as None
ROW_COLUMNS = ("vkey", "id", "view", "namespace", "modality", "kind", "created", "start", "end", "snippet")  # Row's
CODED = ("namespace", "modality", "kind")  # few distinct values: held as int32 codes
_MICROS_UTC = pa.timestamp("us", tz="UTC")  # how the table stores times
STRINGS = {"id": pa.large_string(), "snippet": pa.large_string(), "source": pa.large_string(),
           "content_hash": pa.large_string(), "metadata": pa.large_string(), "mime": pa.large_string(),
           "text": pa.large_string(), "tags": pa.list_(pa.string()), "created_by": pa.large_string(),
           "derived_from": pa.list_(pa.string())}


@dataclass
class Row:
    """One view's catalog entry (plus the memory's fields when it is the primary view)."""

    vkey: int
    id: str
    view: int
    namespace: str
    modality: str
    kind: str
    created_at: float
    start: float | None
    end: float | None
    snippet: str | None


class IdView(Mapping[str, list[int]]):
    """``catalog.by_id``: live memory id -> positions of its views (a read-only view)."""

    def __init__(self, catalog: "Catalog"):
        self._c = catalog

    def __getitem__(self, mid: str) -> list[int]:
        positions = self._c.live_positions(mid) if isinstance(mid, str) else []
        if not positions:
            raise KeyError(mid)
        return positions

    def __contains__(self, mid: object) -> bool:
        return isinstance(mid, str) and bool(self._c.live_positions(mid))

    def __iter__(self) -> Iterator[str]:
        c = self._c
        for p in np.flatnonzero(c.alive & (c.array("view") == 0)):
            yield c.get(int(p), "id")

    def __len__(self) -> int:
        c = self._c
        return int(np.count_nonzero(c.alive & (c.array("view") == 0)))


class Catalog:
    """Columnar arrays, one entry per view, in ``vkey`` order."""

    def __init__(self) -> None:
        self.num = {name: Grow(dtype) for name, dtype in NUMERIC.items()}
        self.codes = {name: Grow(np.int32) for name in CODED}
        self.vocab: dict[str, list[str]] = {name: [] for name in CODED}
        # pa.nulls, not pa.array([]): the latter imports pandas (0.3-0.5 s) to sniff its argument
        self.strings = {name: Column(pa.nulls(0, t), t) for name, t in STRINGS.items()}
        self.id_keys = KeyIndex()
        self.hash_keys = KeyIndex()  # content hash -> primary positions
        self.meta = MetaEntries()
        self.rowaddr_watermark = -1  # Lance row addresss up to this one are mirrored (see catalog_file)
        self.saved_base: Base | None = None  # the saved files this catalog was loaded from or saved as
        self.removed: list[int] = []  # vkeys removed, in order, and the rewrites that removed them:
        self.removals = 0  # a tail may carry removals, not other changes (see catalog_tail)
        self.tail_state: tuple[int, int] | None = None  # (rows, removals) the saved tail of those files holds
        self.changes = 0  # rows changed since the catalog was last loaded or saved
        self.version = 0  # bumped by every change and never reset
        # bumped by every change but appended rows: derived values grow over appended rows while it holds
        self.rewrites = 0
        self._derived = DerivedCache(lambda: (self.version, self.rewrites, self.n_rows))
        self._parsed_meta: dict[int, dict[str, Any]] = {}
        self._objects: dict[str, np.ndarray] = {}
        self._expiring = 0  # rows with an expiry time: 0 skips every expiry check

    # -- building ------------------------------------------------------------------------------
    def _code(self, name: str, values: list[str]) -> np.ndarray:
        vocab = self.vocab[name]
        index = {v: i for i, v in enumerate(vocab)}
        out = np.empty(len(values), np.int32)
        for i, v in enumerate(values):
            c = index.get(v)
            if c is None:
                c = index[v] = len(vocab)
                vocab.append(v)
            out[i] = c
        return out

    def append_arrow(self, table: pa.Table) -> None:
        """Add rows (a table with the catalog columns), which must have larger vkeys than any held."""
        if table.num_rows == 0:
            return
        vkeys = to_numpy(table.column("vkey")).astype(np.int64)
        if len(vkeys) > 1 and not bool(np.all(vkeys[1:] > vkeys[:-1])):  # writes build rows in key order:
            table = table.sort_by("vkey")  # a sort (an Arrow take of every column) is rarely needed
            vkeys = to_numpy(table.column("vkey")).astype(np.int64)
        base = self.n_rows
        if base and vkeys[0] <= self.num["vkey"].last():
            raise AssertionError("catalog rows must arrive in increasing vkey order")
        views = to_numpy(table.column("view")).astype(np.int32)
        view_list = views.tolist()
        ids = table.column("id").to_pylist()
        names = set(table.column_names)  # a property that builds a new list on every read
        expires = expiry_seconds(table)
        self._expiring += int(np.count_nonzero(~np.isnan(expires)))
        positions = np.arange(base, base + len(vkeys))
        at = positions.tolist()
        first = {mid: p for p, mid, v in zip(at, ids, view_list) if v == 0}
        for p, mid in zip(at, ids):
            if mid not in first:  # a view whose primary came in an earlier batch
                held = [q for q in self.id_keys.find(mid) if self.num["view"].buf[q] == 0]
                first[mid] = held[0] if held else p
        for name, values in (("vkey", vkeys), ("view", views),
                             ("created", _seconds(table.column("created_at"))),
                             ("start", _floats(table.column("start"))), ("end", _floats(table.column("end"))),
                             ("expires", expires),
                             ("alive", np.ones(len(vkeys), np.bool_)),
                             ("primary", [first[m] for m in ids])):
            self.num[name].extend(values)
        for name in CODED:
            self.codes[name].extend(self._code(name, table.column(name).to_pylist()))
        for name in STRINGS:
            given = table.column(name) if name in names else None
            # a column of nulls (a note's source or snippet) needs no conversion
            self.strings[name].extend([None] * len(vkeys) if given is None or given.null_count == len(vkeys)
                                      else given.to_pylist())
        self.id_keys.add(ids, positions)
        hashes = self.strings["content_hash"].tail[-len(vkeys):]
        self.hash_keys.add([h if v == 0 else None for h, v in zip(hashes, view_list)], positions)
        self.meta.add_rows(self.n_rows, at, self.strings["metadata"].tail[-len(vkeys):])
        self._objects.clear()
        self.changes += len(vkeys)
        self.version += 1  # rows appended, none changed: derived values may grow (see memo)

    def remove_ids(self, ids: Iterable[str], namespace: str | None = None) -> list[int]:
        """Mark every view of these memories dead (of every namespace when None); returns their vkeys."""
        vkeys = []
        for mid in ids:
            for p in self.live_positions(mid):
                if namespace is not None and self.get(p, "namespace") != namespace:
                    continue  # the same id in other namespaces stays
                self.num["alive"].writable()[p] = False
                vkeys.append(int(self.num["vkey"].buf[p]))
        self._removed(vkeys)
        return vkeys

    def remove_vkeys(self, vkeys: np.ndarray) -> int:
        """Mark the views with these keys dead (other processes' deletes); returns how many were live."""
        positions = self.position_of_vkeys(np.asarray(vkeys, np.int64))
        ok = positions < self.n_rows
        positions = positions[ok][self.num["vkey"].view[positions[ok]] == np.asarray(vkeys)[ok]]
        live = positions[self.alive[positions]]
        self.num["alive"].writable()[live] = False
        self._removed(self.num["vkey"].view[live].tolist())
        return len(live)

    def set_metadata(self, position: int, tags: list[str], metadata_json: str) -> None:
        """Mirror a committed change of a primary row's tags and metadata."""
        self.strings["tags"].set(position, list(tags))
        self.strings["metadata"].set(position, metadata_json)
        self._parsed_meta.pop(position, None)
        self.meta.set_row(position, json.loads(metadata_json) if metadata_json else {})
        self._objects.pop("tags", None)
        self._objects.pop("metadata", None)
        self._changed(1)

    def set_expiry(self, positions: Sequence[int] | np.ndarray, at: float | np.ndarray | None) -> None:
        """Mirror a committed change of expiry on these rows: epoch seconds (one for all, or one per
        row), None or NaN for never."""
        self.num["expires"].writable()[np.asarray(positions, dtype=np.int64)] = np.nan if at is None else at
        self.count_expiring()
        self.changes += 1

    def count_expiring(self) -> None:
        """Recount the rows with an expiry time (after the columns were set wholesale)."""
        self._expiring = int(np.count_nonzero(~np.isnan(self.num["expires"].view)))
        self.version += 1
        self.rewrites += 1

    def _removed(self, vkeys: list[int]) -> None:
        self.removed.extend(vkeys)
        self.removals += 1
        self._changed(len(vkeys))

    def _changed(self, rows: int) -> None:
        self.changes += rows
        self.version += 1
        self.rewrites += 1

    # -- derived values ------------------------------------------------------------------------
    def memo(self, key: Any, build: Callable[[], Any], tail: Callable[[int], Any] | None = None) -> Any:
        """``build()``, cached under ``key``: masks and keys that depend only on the rows (not on the
        clock), so a query reuses them instead of redoing O(rows) work. Cached arrays are read-only.
        Appended rows grow a cached value by ``tail(start)``, its value over the rows from
        ``start``; any other change drops them all (see :class:`.derived.DerivedCache`)."""
        return self._derived.get(key, build, tail)

    @property
    def expiring(self) -> bool:
        """Some row has an expiry time: masks then depend on the clock and are not cached whole."""
        return bool(self._expiring)

    # -- columns -------------------------------------------------------------------------------
    @property
    def alive(self) -> np.ndarray:
        return self.num["alive"].view

    @property
    def by_id(self) -> IdView:
        return IdView(self)

    def array(self, name: str) -> np.ndarray:
        """A column as a numpy array (numeric columns are views; others are built once per change)."""
        if name in self.num:
            return self.num[name].view
        arr = self._objects.get(name)
        if arr is None:
            if name in CODED:
                vocab = np.empty(len(self.vocab[name]), dtype=object)
                vocab[:] = self.vocab[name]
                arr = vocab[self.codes[name].view]
            else:
                arr = self.strings[name].numpy()
            self._objects[name] = arr
        return arr

    def is_in(self, name: str, values: Iterable[str]) -> np.ndarray:
        """Bool mask (read-only): the coded column ``name`` (namespace, modality, kind) is one of
        ``values``. Kept until the catalog changes: filtered queries ask for the same few."""
        vocab = {v: i for i, v in enumerate(self.vocab[name])}
        codes = tuple(sorted({vocab[v] for v in values if isinstance(v, str) and v in vocab}))
        return self.memo(("is_in", name, codes), lambda: self._codes_in(name, codes),  # type: ignore[no-any-return]
                         lambda start: self._codes_in(name, codes, start))

    def _codes_in(self, name: str, codes: tuple[int, ...], start: int = 0) -> np.ndarray:
        column = self.codes[name].view[start:]
        if len(codes) > 2:
            return np.isin(column, codes)
        out = np.zeros(len(column), dtype=bool)  # one or two codes: compares (np.isin sorts: 4x slower at 1M)
        for code in codes:
            out |= column == code
        return out

    def codes_of(self, name: str) -> tuple[np.ndarray, list[str]]:
        """The coded column ``name`` (namespace, modality, kind) as (int32 codes per row, names by
        code): comparing codes is what a mask over 1M rows can afford, comparing strings is not."""
        return self.codes[name].view, list(self.vocab[name])

    def namespace_is(self, namespace: str) -> np.ndarray:
        return self.is_in("namespace", [namespace])

    # -- lookups -------------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        """Rows held, live or not (positions run from 0 to this)."""
        return self.num["vkey"].n

    def __len__(self) -> int:  # live memories
        return self.count()

    def live_positions(self, memory_id: str) -> list[int]:
        alive = self.alive
        return [p for p in self.id_keys.find(memory_id) if alive[p]]

    def live_positions_of(self, memory_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`live_positions` of many memories at once -> (positions (m,), which (m,)):
        ``which[j]`` is the index in ``memory_ids`` of the memory the view at ``positions[j]`` is of."""
        positions, which = self.id_keys.find_many(memory_ids)
        live = self.alive[positions]
        return positions[live], which[live]

    def count(self, namespace: str | None = None) -> int:
        """Memories (not expired) in one namespace, or in all when None."""
        primary = self.alive & (self.array("view") == 0)
        if namespace is not None:
            primary &= self.namespace_is(namespace)
        if self._expiring:
            primary &= ~self.expired()
        return int(np.count_nonzero(primary))

    def expired(self, now: float | None = None) -> np.ndarray:
        """Boolean mask: the view's memory has expired (its expiry time is at or before ``now``)."""
        if not self._expiring:
            return np.zeros(self.n_rows, dtype=bool)
        with np.errstate(invalid="ignore"):  # NaN (never) compares False
            out: np.ndarray = self.num["expires"].view <= (time.time() if now is None else now)
        return out

    def is_expired(self, position: int, now: float | None = None) -> bool:
        if not self._expiring:
            return False
        at = float(self.num["expires"].buf[position])
        return at == at and at <= (time.time() if now is None else now)

    def namespaces(self) -> dict[str, int]:
        primary = self.alive & (self.array("view") == 0)
        if self._expiring:
            primary &= ~self.expired()
        counts = np.bincount(self.codes["namespace"].view[primary], minlength=len(self.vocab["namespace"]))
        return {ns: int(c) for ns, c in sorted(zip(self.vocab["namespace"], counts)) if c}

    def value_counts(self, name: str) -> dict[str, int]:
        """Live views per value of a coded column (namespace, modality, kind), sorted by value."""
        counts = np.bincount(self.codes[name].view[self.alive], minlength=len(self.vocab[name]))
        return {v: int(c) for v, c in sorted(zip(self.vocab[name], counts)) if c}

    def positions(self, memory_id: str, namespace: str | None, *, expired: bool = False) -> list[int]:
        """Positions of a memory's views, primary first; [] if absent, in another namespace, or
        expired (unless ``expired``). Ids are unique per namespace: None means the namespace that
        holds the id first."""
        positions = self.live_positions(memory_id)
        if positions:
            ns = self.codes["namespace"].buf
            if namespace is None:
                want = int(ns[positions[0]])
            elif namespace in self.vocab["namespace"]:
                want = self.vocab["namespace"].index(namespace)
            else:
                return []
            positions = [p for p in positions if ns[p] == want]
            if not expired and self._expiring:
                now = time.time()
                positions = [p for p in positions if not self.is_expired(p, now)]
        view = self.num["view"].buf
        return sorted(positions, key=lambda p: view[p])

    def position_of_vkeys(self, vkeys: np.ndarray) -> np.ndarray:
        """vkeys -> positions (vkeys are sorted, so this is a binary search)."""
        return np.searchsorted(self.num["vkey"].view, vkeys)

    def get(self, position: int, name: str) -> Any:
        if name in self.num:
            value = self.num[name].buf[position].item()
            return None if name in OPTIONAL_FLOATS and value != value else value
        if name in CODED:
            return self.vocab[name][self.codes[name].buf[position]]
        return self.strings[name].get(position)

    def take(self, name: str, positions: np.ndarray) -> list[Any]:
        """Values of a string column at many positions, in one read."""
        return self.strings[name].take(positions)

    def values(self, name: str, positions: Sequence[int] | np.ndarray) -> list[Any]:
        """``get(p, name)`` for many positions, one array read per column."""
        at = np.asarray(positions, dtype=np.int64)
        if name in self.num:
            out = self.num[name].buf[at]
            if name in OPTIONAL_FLOATS:
                return [None if v != v else v for v in out.tolist()]
            values: list[Any] = out.tolist()
            return values
        if name in CODED:
            vocab = self.vocab[name]
            return [vocab[c] for c in self.codes[name].buf[at].tolist()]
        return self.strings[name].take(at)

    def rows(self, positions: Sequence[int] | np.ndarray) -> list[Row]:
        """``row(p)`` for many positions, one array read per column."""
        columns = [self.values(name, positions) for name in ROW_COLUMNS]
        return [Row(*fields) for fields in zip(*columns)]

    def primaries_of(self, positions: Sequence[int], memory_ids: Sequence[str]) -> list[int | None]:
        """The position of the live primary view of each ``memory_ids[i]`` whose view is at
        ``positions[i]``, from the primary column (no look-up by id); None where that row is not it
        (the caller then looks the id up): an id may also name a memory of another namespace, or an
        older version."""
        at = np.asarray(positions, dtype=np.int64)
        primary = self.num["primary"].buf[at]
        ns = self.codes["namespace"].buf
        ok = self.alive[primary] & (self.num["view"].buf[primary] == 0) & (ns[primary] == ns[at])
        ids = self.take("id", primary)
        return [int(p) if good and found == mid else None
                for p, good, found, mid in zip(primary.tolist(), ok.tolist(), ids, memory_ids)]

    def row(self, position: int) -> Row:
        g = self.get
        return Row(*(g(position, name) for name in ROW_COLUMNS))

    def metadata(self, primary_position: int) -> dict[str, Any]:
        meta = self._parsed_meta.get(primary_position)
        if meta is None:
            raw = self.get(primary_position, "metadata")
            meta = json.loads(raw) if raw else {}
            self._parsed_meta[primary_position] = meta
        return meta

    def find_duplicate(self, namespace: str, content_hash: str) -> str | None:
        """The id of the newest live memory in ``namespace`` with this content (not an expired one)."""
        for p in sorted(self.hash_keys.find(content_hash), reverse=True):  # positions follow vkeys: newest first
            if self.alive[p] and self.num["view"].buf[p] == 0 and self.get(p, "namespace") == namespace:
                mid = self.get(p, "id")
                if self.positions(mid, namespace):
                    return str(mid)
        return None

    def alive_vkeys(self) -> np.ndarray:
        keys: np.ndarray = self.array("vkey")[self.alive]
        return keys

    # -- filters -------------------------------------------------------------------------------
    def mask(self, namespace: str, modalities: Iterable[str] | None = None, since: float | None = None,
             until: float | None = None, where: Mapping[str, Any] | None = None,
             kinds: Iterable[str] | None = None) -> np.ndarray:
        """Boolean mask over views a query may see. ``namespace`` always applies (hard boundary)."""
        modalities = None if modalities is None else list(modalities)
        kinds = None if kinds is None else list(kinds)
        fixed = ("mask", namespace, _key(modalities), _key(kinds))
        mask: np.ndarray = self.memo(fixed, lambda: self._fixed_mask(namespace, modalities, kinds),
                                     lambda start: self._fixed_mask(namespace, modalities, kinds, start))
        if not (self._expiring or since is not None or until is not None or where):
            return mask  # cached, read-only
        mask = mask.copy()
        if self._expiring:  # expired memories are never returned (the clock moves: not cached)
            mask &= ~self.expired()
        if since is not None:
            mask &= self.array("created") >= since
        if until is not None:
            mask &= self.array("created") < until
        if where:
            mask &= self.where_mask(where, mask)
        return mask

    def _fixed_mask(self, namespace: str, modalities: Iterable[str] | None,
                    kinds: Iterable[str] | None, start: int = 0) -> np.ndarray:
        """The clock-free part of :meth:`mask`: live views of the namespace, modalities and kinds,
        over the rows from ``start``."""
        mask: np.ndarray = self.alive[start:] & self.namespace_is(namespace)[start:]
        if modalities is not None:
            mask &= self.is_in("modality", modalities)[start:]
        if kinds is not None:
            mask &= self.is_in("kind", kinds)[start:]
        return mask

    def where_mask(self, where: Mapping[str, Any], candidates: np.ndarray) -> np.ndarray:
        """Views of memories whose primary view is a candidate and matches every ``where`` entry."""
        wanted = check_where(where)
        n = self.n_rows
        ok = candidates & self.memo(("primary views",), lambda: self.array("view") == 0,
                                    lambda start: self.array("view")[start:] == 0)
        for key, values in wanted.items():
            if not ok.any():
                break
            if key == "modality":  # the other coded columns (namespace, kind) are metadata keys here
                ok &= self.is_in(key, values)
            elif key in COLUMN_FILTERS:
                col = self.strings[key].arrow()
                strs = [w for w in values if isinstance(w, str)]
                hit = pc.is_in(col, value_set=pa.array(strs, pa.large_string())).to_numpy(zero_copy_only=False) \
                    if strs else np.zeros(n, bool)
                if any(w is None for w in values):
                    hit = hit | pc.is_null(col).to_numpy(zero_copy_only=False)
                ok &= hit
            else:
                def match(k: str = key, v: Any = values) -> np.ndarray:
                    found: np.ndarray = self.meta.matches(k, v, n)
                    return found

                ok &= self.memo(("where", key, _key(values)), match)
        out: np.ndarray = ok[self.num["primary"].view]
        return out


def _key(values: Iterable[Any] | None) -> tuple[Any, ...] | None:
    """A hashable cache key of filter values (types kept apart: 1 and True are one dict key)."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    return tuple(sorted(((type(v).__name__, v) for v in values), key=repr))


def _seconds(column: pa.ChunkedArray) -> np.ndarray:
    if column.type == _MICROS_UTC and not column.null_count:  # as writes build it: its int64s in place
        micros = [to_numpy(chunk.view(pa.int64())) for chunk in column.chunks]  # no pandas (see arrow_numpy)
        return (micros[0] if len(micros) == 1 else np.concatenate(micros or [np.zeros(0, np.int64)])) / 1e6
    seconds: np.ndarray = to_numpy(column.cast(_MICROS_UTC).cast(pa.int64())) / 1e6
    return seconds



def expiry_seconds(table: pa.Table) -> np.ndarray:
    """The ``expires_at`` column as seconds since the epoch (NaN for never, or when absent)."""
    if "expires_at" not in table.column_names or table.column("expires_at").null_count == table.num_rows:
        return np.full(table.num_rows, np.nan)  # the usual case: no expiry, and no casts
    micros = table.column("expires_at").cast(_MICROS_UTC).cast(pa.int64())
    # far-future times exceed a double's exact integers: convert in numpy, not with an Arrow cast
    seconds: np.ndarray = filled(micros, 0).astype(np.float64) / 1e6
    seconds[nulls(micros)] = np.nan
    return seconds


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    if column.null_count == len(column):  # a note has no start or end: no cast
        return np.full(len(column), np.nan)
    values: np.ndarray = filled(column.cast(pa.float64()), np.nan)
    return values
