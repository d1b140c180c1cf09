"""Exact searches over a flat FAISS index's own storage, and the id selector of filtered searches.

:class:`FlatSearch` reads an ``IndexIDMap(IndexFlatIP)``'s vectors in place (no copy; stores saved by
older versions hold an ``IndexIDMap2``, read the same way) and keeps
its position -> vkey map; it serves the paths where FAISS's own flat search is slow on a busy
machine: a lone query (one streaming pass), a few queries (a BLAS matvec) and a small allowed
subset (gather the allowed rows, score only those). :func:`id_selector` builds the selector
FAISS's filtered search (flat or IVF) skips disallowed rows with.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

BATCH_SELECTOR_MAX = 64  # allowed sets smaller than max key / this use a hash set, larger a bitmap
HELD_CACHE = 8  # allowed sets whose rows are kept (a query's plans use one or two)
# a kept allowed set up to this size also keeps a contiguous copy of its vectors: scoring 1k 384-d
# rows read from all over a 100k index waits on memory (0.08-0.12 ms), the copy takes 0.02 ms
GATHER_MAX_BYTES = 8 << 20
SCAN_BLOCK = 65_536  # rows scored per block by a lone exact query (256 KB of scores stay in cache)


def _faiss() -> Any:
    import faiss

    return faiss


class FlatSearch:
    """Exact top-k over an ``IndexIDMap(IndexFlatIP)`` ``index`` of ``dim``-d unit vectors.
    Caches the position -> vkey map: make a new one whenever the index changes."""

    def __init__(self, index: Any, dim: int):
        self.index = index
        self.dim = dim
        self.ids: np.ndarray | None = None  # position -> vkey
        self.id_order: np.ndarray | None = None  # argsort of ids, built on first use; None when sorted
        self.ids_sorted: bool | None = None  # whether ids ascend (adds come in increasing keys)
        # id(allowed) -> [allowed, keys (m,), positions (m,), copy of their rows (m, d) or None, the last
        # query's (bytes, (m,) scores) or None, the last read-only keys scores_of looked up with their
        # places among keys or None]: see held_rows, scores_of
        self._held: dict[int, list[Any]] = {}
        self._held_lock = threading.Lock()

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def rows(self) -> np.ndarray:
        """The flat index's own vectors (n, d), no copy, and its position -> vkey map (cached).
        Read anew per search: FAISS may move its storage when vectors are added."""
        faiss = _faiss()
        n = self.ntotal
        flat = faiss.downcast_index(self.index.index)
        if self.ids is None or len(self.ids) != n:
            self.ids = faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)
            self.id_order, self.ids_sorted = None, None
            with self._held_lock:
                self._held.clear()
        rows: np.ndarray = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)
        return rows

    def scan(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k for one query (1, d) in one streaming pass: FAISS's SIMD inner products over
        a block of rows, then a k-heap over the block's scores while they are in cache. On one
        thread this runs near the memory bandwidth (a BLAS matvec on two threads stalled on a busy
        machine, and a top-k over all n scores afterwards re-read them from memory)."""
        faiss = _faiss()
        rows, n = self.rows(), self.ntotal
        assert self.ids is not None
        scores, found = np.full(k, -np.inf, np.float32), np.full(k, -1, np.int64)
        heap = faiss.float_minheap_array_t()  # all -inf is already a valid heap: no heapify
        heap.nh, heap.k, heap.val, heap.ids = 1, k, faiss.swig_ptr(scores), faiss.swig_ptr(found)
        block = np.empty(min(SCAN_BLOCK, n), np.float32)  # (b,) scores of one block of rows
        q = faiss.swig_ptr(query)
        for start in range(0, n, SCAN_BLOCK):
            m = min(SCAN_BLOCK, n - start)
            faiss.fvec_inner_products_ny(faiss.swig_ptr(block), q, faiss.swig_ptr(rows[start:start + m]), self.dim, m)
            heap.addn(m, faiss.swig_ptr(block), start)
        # best first in numpy: FAISS's heapify / reorder open an OpenMP region each, which on a busy
        # machine waits milliseconds for its threads to sort k numbers
        order = np.lexsort((found, -scores))
        scores, found = scores[order], found[order]
        keys = np.where(found >= 0, self.ids[np.maximum(found, 0)], -1)
        return scores[None], keys[None]

    def subset(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k among the ``allowed`` vkeys only: score just their rows of the flat storage
        (the same results as a selector search, which scans every row)."""
        kept = self._kept(allowed)
        if len(queries) == 1 and kept is not None and kept[3] is not None and len(kept[1]) and \
                self.ids is not None and len(self.ids) == self.ntotal:  # a repeated filter's own copy
            return self._subset_one(queries, min(k, len(kept[1])), k, kept[3], kept[1], None, kept)
        rows = self.rows()  # (n, d)
        keys, position = self.held_rows(allowed)  # (m,) each
        k_out = k
        k = min(k, len(keys))
        if k == 0:
            return (np.full((len(queries), k_out), -np.inf, np.float32), np.full((len(queries), k_out), -1, np.int64))
        if len(queries) == 1:
            source, at = self._gathered_rows(allowed, rows, position)
            return self._subset_one(queries, k, k_out, source, keys, at, self._kept(allowed))
        scores = queries @ rows[position].T  # (q, m)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < len(keys) else \
            np.broadcast_to(np.arange(len(keys)), scores.shape)
        best = np.take_along_axis(scores, top, 1)
        best_keys = keys[top]
        order = np.lexsort((best_keys, -best), axis=1)  # by score, ties by key
        out_s = np.full((len(queries), k_out), -np.inf, np.float32)
        out_k = np.full((len(queries), k_out), -1, np.int64)
        out_s[:, :k] = np.take_along_axis(best, order, 1)
        out_k[:, :k] = np.take_along_axis(best_keys, order, 1)
        return out_s, out_k

    def _subset_one(self, query: np.ndarray, k: int, k_out: int, rows: np.ndarray, keys: np.ndarray,
                    position: np.ndarray | None, kept: list[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``subset`` for one query (1, d), k <= m: the same result in 1-D steps (a filtered recall
        spends as long in numpy's per-call costs as in scoring its 1k rows). ``rows`` (n, d) with
        ``position`` (m,), or the allowed rows themselves (m, d) with ``position`` None. Scored by
        FAISS's SIMD loop on this thread: a BLAS call wakes its threads, which on a busy machine
        costs more than the 1-10k rows it scores."""
        faiss = _faiss()
        m = len(keys)
        scores = np.empty(m, np.float32)  # (m,)
        if position is None:
            faiss.fvec_inner_products_ny(faiss.swig_ptr(scores), faiss.swig_ptr(query), faiss.swig_ptr(rows),
                                         self.dim, m)
        else:
            faiss.fvec_inner_products_by_idx(faiss.swig_ptr(scores), faiss.swig_ptr(query), faiss.swig_ptr(rows),
                                             faiss.swig_ptr(position), self.dim, 1, m)
        if kept is not None:  # a kept filter remembers its last query's scores (see scores_of)
            kept[4] = (query.tobytes(), scores)
        top = np.argpartition(-scores, k - 1)[:k] if k < m else np.arange(m)
        best, best_keys = scores[top], keys[top]
        order = np.lexsort((best_keys, -best))  # by score, ties by key
        out_s = np.full((1, k_out), -np.inf, np.float32)
        out_k = np.full((1, k_out), -1, np.int64)
        out_s[0, :k], out_k[0, :k] = best[order], best_keys[order]
        return out_s, out_k

    def _gathered_rows(self, allowed: np.ndarray, rows: np.ndarray, position: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray | None]:
        """(rows, position) for :meth:`_subset_one`: a kept allowed set's own contiguous copy (made
        on its first search; position None), else the storage with the positions."""
        kept = self._kept(allowed)
        if kept is None or len(position) * self.dim * 4 > GATHER_MAX_BYTES:
            return rows, position
        if kept[3] is None:
            kept[3] = np.take(rows, position, axis=0)  # (m, d)
        return kept[3], None

    def _kept(self, allowed: np.ndarray) -> list[Any] | None:
        """The :attr:`_held` entry of a read-only ``allowed``, or None."""
        if not isinstance(allowed, np.ndarray) or allowed.flags.writeable:
            return None
        kept = self._held.get(id(allowed))
        return kept if kept is not None and kept[0] is allowed else None

    def held_rows(self, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The keys of ``allowed`` this index holds and their storage rows, (m,) each. Kept for a
        read-only ``allowed`` (recall hands out a filter's keys as one read-only array until the
        catalog changes), so a repeated filter looks nothing up; a few are kept, dropped on change."""
        kept = self._kept(allowed)
        if kept is not None:
            return kept[1], kept[2]
        cacheable = isinstance(allowed, np.ndarray) and not allowed.flags.writeable
        allowed = np.asarray(allowed, np.int64)
        position = self.positions(allowed)  # (m,), -1 where not held
        held = position >= 0
        keys, position = allowed[held], np.ascontiguousarray(position[held])
        if cacheable:
            with self._held_lock:  # a query's plans search side by side: one evicts while another adds
                while len(self._held) >= HELD_CACHE:
                    self._held.pop(next(iter(self._held)))
                self._held[id(allowed)] = [allowed, keys, position, None, None, None]
        return keys, position

    def scores_of(self, query: np.ndarray, allowed: np.ndarray, keys: np.ndarray) -> np.ndarray | None:
        """See :meth:`VectorIndex.scores_of`: from the kept ``allowed`` set's last scores, when they
        were ``query``'s (d,) and cover every one of ``keys``."""
        kept = self._kept(allowed)
        if kept is None or kept[4] is None or not len(keys) or kept[4][0] != \
                np.ascontiguousarray(query, np.float32).tobytes():
            return None
        held, scores = kept[1], kept[4][1]
        if kept[5] is not None and kept[5][0] is keys:  # recall's cached sample: looked up once
            at = kept[5][1]
        else:
            at = np.minimum(np.searchsorted(held, keys), len(held) - 1)
            if not np.array_equal(held[at], keys):  # a key not held (recent, or not searched)
                return None
            if not keys.flags.writeable:
                kept[5] = (keys, at)
        found: np.ndarray = scores[at]
        return found

    def key_range(self) -> tuple[int, int]:
        """The least and greatest key held ((0, -1) when none)."""
        self.rows()  # (re)builds self.ids
        ids = self.ids
        assert ids is not None
        return (int(ids.min()), int(ids.max())) if len(ids) else (0, -1)

    def positions(self, vkeys: np.ndarray) -> np.ndarray:
        """Flat storage rows of ``vkeys`` (-1 for keys not held), through the cached sorted ids."""
        self.rows()  # (re)builds self.ids, and drops id_order with it
        ids = self.ids
        assert ids is not None
        if not len(ids):
            return np.full(len(vkeys), -1, np.int64)
        if self.ids_sorted is None:  # adds come in increasing keys: usually sorted already
            self.ids_sorted = bool(np.all(ids[1:] > ids[:-1]))
            self.id_order = None if self.ids_sorted else np.argsort(ids, kind="stable")
        if self.id_order is None:
            pos = np.minimum(np.searchsorted(ids, vkeys), len(ids) - 1)
        else:
            pos = self.id_order[np.minimum(np.searchsorted(ids, vkeys, sorter=self.id_order), len(ids) - 1)]
        return np.where(ids[pos] == vkeys, pos, -1)

    def blas(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k for a few queries by a BLAS matvec over the flat index's own storage (no
        copy). FAISS scans a lone query on one thread and then opens an OpenMP region just to map
        ids, which stalls on a busy machine; sgemv uses every BLAS thread at memory bandwidth."""
        xb = self.rows()  # (n, d)
        assert self.ids is not None
        scores = (xb @ queries[0])[None] if len(queries) == 1 else (xb @ queries.T).T  # (q, n)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(scores, top, 1)
        order = np.argsort(-best, axis=1, kind="stable")
        return (np.ascontiguousarray(np.take_along_axis(best, order, 1)),
                self.ids[np.take_along_axis(top, order, 1)])


def id_selector(allowed: np.ndarray) -> object:
    """A FAISS id selector for the sorted int64 keys ``allowed``: a bitmap over the key range when
    the set is large (built in a few ms at 1M keys, where a hash set takes tens of ms per query),
    else a hash set. The bitmap's bytes stay alive as an attribute of the selector."""
    faiss = _faiss()
    allowed = np.asarray(allowed, dtype=np.int64)
    top = int(allowed[-1]) if len(allowed) else 0
    if len(allowed) * BATCH_SELECTOR_MAX < top or top < 0 or (len(allowed) and allowed[0] < 0):
        return faiss.IDSelectorBatch(allowed)
    bits = np.zeros(top + 1, dtype=bool)
    bits[allowed] = True
    packed = np.packbits(bits, bitorder="little")  # bit (key & 7) of byte (key >> 3), as FAISS reads it
    sel = faiss.IDSelectorBitmap(len(packed), faiss.swig_ptr(packed))
    sel.bitmap_bytes = packed  # keep the buffer alive with the selector
    return sel
