"""Which IVF list holds each key, so that a search among a few known keys scans only their lists.

Without it, FAISS can only find a handful of allowed keys by probing every list and testing each id
against the selector: about 1M id checks and 4,000 list visits at 1M vectors (2-9 ms per search,
measured), for what are often under 50 vectors (the primary views of memories whose secondary
views were hits, see :mod:`aimemory.ranking`).

A key's list never changes while the key is stored: FAISS puts a vector in the list its quantizer
assigns, removal only moves vectors within a list, and keys are never reused. So the map is built
once from the lists (~0.1 s at 1M), extended on every add with the quantizer's own assignment (the
same call FAISS makes), and never invalidated by removals: a removed key is simply not found in its
list. Searches stay exact: the selector still decides what matches, the map only says where to look.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: allowed keys up to which a filtered IVF search scans only their lists (past it, the lists of
#: random keys are most of the index and the usual probing is as fast)
SMALL_SET = 512


def _faiss() -> Any:
    import faiss

    return faiss


class ListMap:
    """Key -> IVF list number for every vector of one ``IndexIVF``."""

    def __init__(self, ivf: Any):
        faiss = _faiss()
        invlists = ivf.invlists
        keys, lists = [], []
        for list_no in range(ivf.nlist):
            size = invlists.list_size(list_no)
            if size:
                keys.append(np.array(faiss.rev_swig_ptr(invlists.get_ids(list_no), size), dtype=np.int64))
                lists.append(np.full(size, list_no, np.int32))
        all_keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)  # (n,)
        order = np.argsort(all_keys, kind="stable")
        # (sorted keys (n,), their lists (n,)), replaced as one pair so a reader never mixes two
        self._sorted = (all_keys[order], (np.concatenate(lists) if lists else np.zeros(0, np.int32))[order])
        self._added: dict[int, int] = {}  # keys added after the build -> list

    def note_added(self, ivf: Any, vectors: np.ndarray, keys: np.ndarray) -> None:
        """Record the lists of ``keys`` (n,) whose ``vectors`` (n, d) float32 are being added to ``ivf``."""
        assigned = np.asarray(ivf.quantizer.assign(np.ascontiguousarray(vectors, np.float32), 1)).reshape(-1)
        self._added.update(zip(np.asarray(keys, np.int64).tolist(), assigned.tolist()))
        keys_now, lists_now = self._sorted
        if len(self._added) > max(4096, len(keys_now) // 8):  # fold into the sorted arrays
            added = dict(self._added)
            extra = np.fromiter(added, np.int64, len(added))
            all_keys = np.concatenate([keys_now, extra])
            all_lists = np.concatenate([lists_now, np.fromiter(added.values(), np.int32, len(extra))])
            order = np.argsort(all_keys, kind="stable")
            self._sorted = (all_keys[order], all_lists[order])
            for key in added:  # now in the sorted arrays
                self._added.pop(key, None)

    def lists_of(self, keys: np.ndarray) -> np.ndarray | None:
        """The distinct lists (m,) int64 holding ``keys`` (sorted or not), or None when a key is
        unknown (the caller then probes as usual)."""
        keys = np.asarray(keys, np.int64)
        sorted_keys, sorted_lists = self._sorted
        at = np.searchsorted(sorted_keys, keys)
        known = at < len(sorted_keys)
        known[known] = sorted_keys[at[known]] == keys[known]
        found = sorted_lists[at[known]].astype(np.int64)
        if not known.all():
            try:
                rest = [self._added[int(key)] for key in keys[~known].tolist()]
            except KeyError:
                return None
            found = np.concatenate([found, np.asarray(rest, np.int64)])
        return np.unique(found)
