"""An in-memory, columnar mirror of the table's small columns (no vectors, no content).

It answers "which views may this query see" (namespace, modality, time, ``where=``) as a boolean mask
without touching disk, and maps index keys back to memories. It is always rebuilt from the table, so
it can never disagree with it after a reopen.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa

from ..errors import FilterError

# Fields of ``where=`` that are memory columns rather than metadata keys.
COLUMN_FILTERS = ("source", "modality", "mime", "id")


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


class Catalog:
    """Columnar arrays, one entry per view, appended in ``vkey`` order."""

    def __init__(self) -> None:
        self._cols: dict[str, list] = {name: [] for name in (
            "vkey", "id", "view", "namespace", "modality", "kind", "created", "start", "end", "snippet",
            "source", "content_hash", "tags", "metadata", "mime", "expires", "created_by", "derived_from")}
        self._arrays: dict[str, np.ndarray] = {}
        self.alive: np.ndarray = np.zeros(0, dtype=bool)
        self.by_id: dict[str, list[int]] = {}
        # (namespace, content hash) -> ids with that content, oldest first: several when named
        # memories (or dedup=False) share content, so forgetting one leaves the others findable
        self.by_hash: dict[tuple[str, str], list[str]] = {}
        self._parsed_meta: dict[int, dict] = {}
        # namespaces as small ints, so the per-query namespace mask is an int compare rather than
        # one Python string compare per view (about 25 ms per recall at 1M views)
        self._ns_code: dict[str, int] = {}
        self._ns_codes: list[int] = []
        self._memories = 0  # alive primary views: ids are unique per namespace, not across them
        self._expiring = 0  # views with an expiry time: 0 skips every expiry check

    # -- building ------------------------------------------------------------------------------
    def append_arrow(self, table: pa.Table) -> None:
        """Add rows (a table with the catalog columns), which must have larger vkeys than any held."""
        if table.num_rows == 0:
            return
        table = table.sort_by("vkey")
        cols = table.to_pydict()
        created = table.column("created_at").cast(pa.int64()).to_numpy(zero_copy_only=False) / 1e6
        expires = [None] * table.num_rows
        if "expires_at" in cols:  # seconds since the epoch, None for never
            expires = [None if v is None else v / 1e6 for v in table.column("expires_at").cast(pa.int64()).to_pylist()]
            self._expiring += sum(v is not None for v in expires)
        base = len(self._cols["vkey"])
        if base and cols["vkey"][0] <= self._cols["vkey"][-1]:
            raise AssertionError("catalog rows must arrive in increasing vkey order")
        for name, values in self._cols.items():
            values.extend(created.tolist() if name == "created" else expires if name == "expires"
                          else cols.get(name, [None] * table.num_rows))
        codes = self._ns_code
        self._ns_codes.extend(codes.setdefault(ns, len(codes)) for ns in cols["namespace"])
        self._arrays.clear()
        self.alive = np.concatenate([self.alive, np.ones(table.num_rows, dtype=bool)])
        for offset, (mid, view, ns, h) in enumerate(zip(cols["id"], cols["view"], cols["namespace"],
                                                         cols["content_hash"])):
            self.by_id.setdefault(mid, []).append(base + offset)
            self._memories += view == 0
            if view == 0 and h:
                self.by_hash.setdefault((ns, h), []).append(mid)

    def remove_ids(self, ids: Iterable[str], namespace: str | None = None) -> list[int]:
        """Mark every view of these memories dead (of every namespace when None); returns their vkeys."""
        vkeys = []
        for mid in ids:
            held = self.by_id.pop(mid, [])
            positions = [p for p in held if namespace is None or self._cols["namespace"][p] == namespace]
            if len(positions) < len(held):  # the same id in other namespaces stays
                self.by_id[mid] = [p for p in held if p not in positions]
            for p in positions:
                self.alive[p] = False
                self._memories -= self._cols["view"][p] == 0
                vkeys.append(self._cols["vkey"][p])
                if self._cols["view"][p] == 0 and self._cols["content_hash"][p]:
                    key = (self._cols["namespace"][p], self._cols["content_hash"][p])
                    others = [other for other in self.by_hash.get(key, []) if other != mid]
                    if others:
                        self.by_hash[key] = others
                    else:
                        self.by_hash.pop(key, None)
        return vkeys

    def set_metadata(self, position: int, tags: list[str], metadata_json: str) -> None:
        """Mirror a committed change of a primary row's tags and metadata."""
        self._cols["tags"][position] = list(tags)
        self._cols["metadata"][position] = metadata_json
        self._parsed_meta.pop(position, None)
        self._arrays.pop("tags", None)
        self._arrays.pop("metadata", None)

    def array(self, name: str) -> np.ndarray:
        """A column as a numpy array (cached until the next append)."""
        arr = self._arrays.get(name)
        if arr is None:
            values = self._cols[name]
            if name in ("vkey",):
                arr = np.asarray(values, dtype=np.int64)
            elif name in ("created", "start", "end", "expires"):
                arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
            elif name == "view":
                arr = np.asarray(values, dtype=np.int32)
            else:
                arr = np.empty(len(values), dtype=object)
                arr[:] = values
            self._arrays[name] = arr
        return arr

    def namespace_is(self, namespace: str) -> np.ndarray:
        """Boolean mask: the view's namespace is ``namespace`` (cached until the next append)."""
        codes = self._arrays.get("_ns_code")
        if codes is None:
            codes = self._arrays["_ns_code"] = np.asarray(self._ns_codes, dtype=np.int32)
        code = self._ns_code.get(namespace)
        return codes == code if code is not None else np.zeros(len(codes), dtype=bool)

    # -- lookups -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.count(None)

    def count(self, namespace: str | None = None) -> int:
        """Memories (not expired) in one namespace, or in all when None."""
        if namespace is None:
            if not self._expiring:
                return self._memories
            return int((self.alive & (self.array("view") == 0) & ~self.expired()).sum())
        primary = self.alive & (self.array("view") == 0) & self.namespace_is(namespace)
        if self._expiring:
            primary &= ~self.expired()
        return int(primary.sum())

    def expired(self, now: float | None = None) -> np.ndarray:
        """Boolean mask: the view's memory has expired (its expiry time is at or before ``now``)."""
        if not self._expiring:
            return np.zeros(len(self._cols["vkey"]), dtype=bool)
        expires = self.array("expires")
        with np.errstate(invalid="ignore"):  # NaN (never) compares False
            return expires <= (time.time() if now is None else now)

    def is_expired(self, position: int, now: float | None = None) -> bool:
        at = self._cols["expires"][position]
        return at is not None and at <= (time.time() if now is None else now)

    def namespaces(self) -> dict[str, int]:
        primary = self.alive & (self.array("view") == 0)
        if self._expiring:
            primary &= ~self.expired()
        names, counts = np.unique(self.array("namespace")[primary].astype(str), return_counts=True)
        return dict(zip(names.tolist(), counts.tolist()))

    def positions(self, memory_id: str, namespace: str | None, *, expired: bool = False) -> list[int]:
        """Positions of a memory's views, primary first; [] if absent, in another namespace, or
        expired (unless ``expired``). Ids are unique per namespace: None means the namespace that
        holds the id first."""
        positions = self.by_id.get(memory_id, [])
        if positions:
            ns = self._cols["namespace"]
            want = ns[positions[0]] if namespace is None else namespace
            positions = [p for p in positions if ns[p] == want]
            if not expired and self._expiring:
                now = time.time()
                positions = [p for p in positions if not self.is_expired(p, now)]
        return sorted(positions, key=lambda p: self._cols["view"][p])

    def position_of_vkeys(self, vkeys: np.ndarray) -> np.ndarray:
        """vkeys -> positions (vkeys are sorted, so this is a binary search)."""
        return np.searchsorted(self.array("vkey"), vkeys)

    def get(self, position: int, name: str) -> Any:
        return self._cols[name][position]

    def row(self, position: int) -> Row:
        c = self._cols
        return Row(c["vkey"][position], c["id"][position], c["view"][position],
                   c["namespace"][position], c["modality"][position], c["kind"][position],
                   c["created"][position], c["start"][position], c["end"][position],
                   c["snippet"][position])

    def metadata(self, primary_position: int) -> dict:
        meta = self._parsed_meta.get(primary_position)
        if meta is None:
            raw = self._cols["metadata"][primary_position]
            meta = json.loads(raw) if raw else {}
            self._parsed_meta[primary_position] = meta
        return meta

    def find_duplicate(self, namespace: str, content_hash: str) -> str | None:
        """The id of the memory in ``namespace`` with this content (not an expired one)."""
        for mid in reversed(self.by_hash.get((namespace, content_hash), [])):  # the newest first
            if self.positions(mid, namespace):
                return mid
        return None

    def alive_vkeys(self) -> np.ndarray:
        return self.array("vkey")[self.alive]

    # -- filters -------------------------------------------------------------------------------
    def mask(self, namespace: str, modalities: Iterable[str] | None = None, since: float | None = None,
             until: float | None = None, where: Mapping[str, Any] | None = None,
             kinds: Iterable[str] | None = None) -> np.ndarray:
        """Boolean mask over views a query may see. ``namespace`` always applies (hard boundary)."""
        mask = self.alive & self.namespace_is(namespace)
        if self._expiring:  # expired memories are never returned
            mask &= ~self.expired()
        if modalities is not None:
            mask &= np.isin(self.array("modality"), list(modalities))
        if kinds is not None:
            mask &= np.isin(self.array("kind"), list(kinds))
        if since is not None:
            mask &= self.array("created") >= since
        if until is not None:
            mask &= self.array("created") < until
        if where:
            mask &= self._where_mask(where, mask)
        return mask

    def _where_mask(self, where: Mapping[str, Any], candidates: np.ndarray) -> np.ndarray:
        if not isinstance(where, Mapping):
            raise FilterError(f"where= must be a dict like {{'tags': 'pets'}}; got {type(where).__name__}")
        ids = self.array("id")
        out = np.zeros(len(ids), dtype=bool)
        for p in np.flatnonzero(candidates & (self.array("view") == 0)):
            if all(self._matches(int(p), key, want) for key, want in where.items()):
                out[self.by_id[ids[p]]] = True
        return out

    def _matches(self, p: int, key: str, want: Any) -> bool:
        if not isinstance(key, str):
            raise FilterError(f"where= keys must be strings; got {key!r}")
        wanted = list(want) if isinstance(want, (list, tuple, set, frozenset)) else [want]
        for w in wanted:
            if not isinstance(w, (str, int, float, bool)) and w is not None:
                raise FilterError(f"where={{{key!r}: ...}} values must be str, int, float, bool or "
                                  f"None (or a list of them); got {type(w).__name__}")
        if key == "tags":
            have = set(self._cols["tags"][p] or [])
            return any(w in have for w in wanted)
        if key in COLUMN_FILTERS:
            return self._cols[key][p] in wanted
        meta = self.metadata(p)
        if key not in meta:
            return None in wanted
        value = meta[key]
        if isinstance(value, list):
            return any(w in value for w in wanted)
        return value in wanted
