"""Which IVF list holds each key, so that a search among a few known keys scans only their lists.

Without it, FAISS can only find a handful of allowed keys by probing every list and testing each id
against the selector: about 1M id checks and 4,000 list visits at 1M vectors (2-9 ms per search,
measured), for what are often under 50 vectors (the primary views of memories whose secondary
views were hits, see :mod:`aimemory.ranking`).

A key's list never changes while the key is stored: FAISS puts a vector in the list its quantizer
assigns, removal only moves vectors within a list, and keys are never reused. So the map is built
once from the lists (0.02 s at 1M with keys handed out in order, 0.1 s if they must be sorted),
extended on every add with the quantizer's own assignment (the same call FAISS makes), and never
invalidated by removals: a removed key is simply not found in its list. Searches stay exact: the
selector still decides what matches, the map only says where to look.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: allowed keys up to which a filtered IVF search scans only their lists (past it, the lists of
#: random keys are most of the index and the usual probing is as fast)
SMALL_SET = 512
#: keys are looked up in a table over their range (4 bytes per key in it, no sort) when the range
#: is at most this many times the keys: a store's keys are handed out in order, so they mostly are
DENSE_RANGE = 4


def _faiss() -> Any:
    import faiss

    return faiss


class KeyLookup:
    """Key -> list for a fixed set of keys: a table over the key range when it is dense, else the
    keys sorted (bisected)."""

    def __init__(self, keys: np.ndarray, lists: np.ndarray):
        self.size = len(keys)
        self.base = int(keys.min()) if len(keys) else 0
        span = int(keys.max()) - self.base + 1 if len(keys) else 0
        if span <= DENSE_RANGE * len(keys):
            self.table: np.ndarray | None = np.full(span, -1, np.int32)  # (span,) list, -1: no key
            self.table[keys - self.base] = lists
        else:
            self.table = None
            order = np.argsort(keys)
            self.sorted_keys, self.sorted_lists = keys[order], lists[order]

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(known (n,) bool, their lists (known.sum(),) int64)."""
        if self.table is not None:
            at = keys - self.base
            known = (at >= 0) & (at < len(self.table))
            lists = self.table[at[known]]
            known[known] = lists >= 0
            return known, lists[lists >= 0].astype(np.int64)
        at = np.searchsorted(self.sorted_keys, keys)
        known = at < len(self.sorted_keys)
        known[known] = self.sorted_keys[at[known]] == keys[known]
        return known, self.sorted_lists[at[known]].astype(np.int64)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys (n,) int64, lists (n,) int32) it holds."""
        if self.table is not None:
            at = np.flatnonzero(self.table >= 0)
            return at.astype(np.int64) + self.base, self.table[at]
        return self.sorted_keys, self.sorted_lists


class ListMap:
    """Key -> IVF list number for every vector of one ``IndexIVF``."""

    def __init__(self, ivf: Any):
        faiss = _faiss()
        invlists = ivf.invlists
        sizes = np.fromiter((invlists.list_size(i) for i in range(ivf.nlist)), np.int64, ivf.nlist)  # (nlist,)
        keys = np.empty(int(sizes.sum()), np.int64)  # (n,) every list's ids, list after list
        at = 0
        for list_no in np.flatnonzero(sizes).tolist():
            size = int(sizes[list_no])
            keys[at:at + size] = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
            at += size
        # replaced as one object, so a reader never mixes two
        self._lookup = KeyLookup(keys, np.repeat(np.arange(ivf.nlist, dtype=np.int32), sizes))
        self._added: dict[int, int] = {}  # keys added after the build -> list

    def note_added(self, ivf: Any, vectors: np.ndarray, keys: np.ndarray) -> None:
        """Record the lists of ``keys`` (n,) whose ``vectors`` (n, d) float32 are being added to ``ivf``."""
        assigned = np.asarray(ivf.quantizer.assign(np.ascontiguousarray(vectors, np.float32), 1)).reshape(-1)
        self._added.update(zip(np.asarray(keys, np.int64).tolist(), assigned.tolist()))
        lookup = self._lookup
        if len(self._added) > max(4096, lookup.size // 8):  # fold into the lookup
            added = dict(self._added)
            held_keys, held_lists = lookup.items()
            extra = np.fromiter(added, np.int64, len(added))
            self._lookup = KeyLookup(np.concatenate([held_keys, extra]),
                                   np.concatenate([held_lists, np.fromiter(added.values(), np.int32, len(extra))]))
            for key in added:  # now in the lookup
                self._added.pop(key, None)

    def lists_of(self, keys: np.ndarray) -> np.ndarray | None:
        """The distinct lists (m,) int64 holding ``keys`` (sorted or not), or None when a key is
        unknown (the caller then probes as usual)."""
        keys = np.asarray(keys, np.int64)
        known, found = self._lookup.find(keys)
        if not known.all():
            try:
                rest = [self._added[int(key)] for key in keys[~known].tolist()]
            except KeyError:
                return None
            found = np.concatenate([found, np.asarray(rest, np.int64)])
        return np.unique(found)
