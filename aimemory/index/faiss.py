"""FAISS indexes derived from the table: exact inner-product search for small stores, IVF past a
size threshold with ``nprobe`` tuned so recall@10 against exact search stays >= the target.

The index is a cache. It is saved beside the table with a sidecar (table version, key count, key
checksum, file checksum) written atomically, and on open it is verified and caught up, or rebuilt.
A saved index is memory-mapped on open (its vectors are paged in as searches touch them, so opening
a 1M store reads no vectors and a reader's RAM holds one copy of them); the first change in this
process reads it into RAM, since FAISS cannot grow a mapped index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..storage.manifest import atomic_write_bytes
from .tuning import FAISS_TUNING_QUERIES, TARGET_RECALL, TUNING_MARGIN, far_queries, near_queries, recall_at_k

log = logging.getLogger("aimemory.index")

INDEX_STEM = "vectors"
SIDECAR_FILE = "vectors.json"
STAMP_FILE = "vectors.stamp.json"  # the saved file's (size, mtime, inode) once its hash checked out
ANN_THRESHOLD = 200_000  # vectors; below it exact search is fast enough (about 15 ms at 100k x 512)
NPROBE_CANDIDATES = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
SMALL_BATCH = 20  # FAISS's BLAS threshold: below it a flat search scans each query on one thread
SCORE_MARGINS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15)  # tried in order, see _tune_margin
ADAPTIVE_MAX_LISTS = 16  # x nprobe: the most lists a query far from every list probes
BATCH_SELECTOR_MAX = 64  # allowed sets smaller than max key / this use a hash set, larger a bitmap
SCAN_BLOCK = 65_536  # rows scored per block by a lone exact query (256 KB of scores stay in cache)
TRUTH_CHUNK = 65_536  # rows per block when computing exact top-k for tuning (bounded extra memory)
#: a lone flat query allowed at most this share of the vectors gathers and scores just those rows;
#: above it FAISS's selector search (which skips disallowed rows) is as fast. Measured at 100k x 384
#: on one thread, ms: share 1%: gather 0.27, selector 0.41; 5%: 3.4, 1.7; 95%: selector 8.9 = scan
SUBSET_SHARE = 0.02


def keys_checksum(vkeys: np.ndarray) -> str:
    return hashlib.blake2b(np.sort(np.asarray(vkeys, dtype=np.int64)).tobytes(), digest_size=16).hexdigest()


@dataclass
class Sidecar:
    table_version: int
    count: int
    keys_checksum: str
    file_sha256: str
    kind: str
    dim: int
    nprobe: int = 0
    file: str = ""
    margin: float = 0.0  # IVF: also probe lists whose centroid scores within this of the best


def _faiss() -> Any:
    import faiss

    return faiss


class VectorIndex:
    """An id-mapped FAISS index over unit vectors (inner product = cosine)."""

    def __init__(self, dim: int, kind: str = "flat", nprobe: int = 0):
        faiss = _faiss()
        self.dim = dim
        self.kind = kind
        self.nprobe = nprobe
        self.margin = 0.0  # IVF: see search_lists
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim)) if kind == "flat" else None
        self._ids: np.ndarray | None = None  # flat: position -> vkey, cached until add/remove
        self._id_order: np.ndarray | None = None  # flat: argsort of _ids, built on first use
        self._mapped: Path | None = None  # the file this index is memory-mapped from, if it is
        self.dirty = False

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, vkeys: np.ndarray, *, ann_threshold: int = ANN_THRESHOLD,
              seed: int = 0) -> "VectorIndex":
        """vectors (n, d) float32 unit rows, vkeys (n,) int64 -> an index of the right kind."""
        n, dim = vectors.shape
        if n < max(ann_threshold, 1):  # an IVF needs at least one vector to train on
            index = cls(dim, "flat")
            index.add(vectors, vkeys)
            return index
        return cls._build_ivf(vectors, vkeys, seed)

    @classmethod
    def _build_ivf(cls, vectors: np.ndarray, vkeys: np.ndarray, seed: int) -> "VectorIndex":
        faiss = _faiss()
        n, dim = vectors.shape
        # FAISS wants >= 39 points per centroid; at least one list, or every search fails (nprobe 0)
        nlist = max(1, int(min(max(64, 4 * np.sqrt(n)), n // 39)))
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = vectors[rng.choice(n, size=min(n, nlist * 64), replace=False)]
        ivf.cp.seed = seed
        ivf.train(np.ascontiguousarray(train, dtype=np.float32))
        ivf.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(vkeys, np.int64))
        index = cls(dim, "ivf")
        index._index = ivf
        index.nprobe = index._tune_nprobe(vectors, vkeys, rng)
        index.margin = index.tune_margin(vectors, vkeys, rng)
        index.dirty = True
        return index

    def _tune_nprobe(self, vectors: np.ndarray, vkeys: np.ndarray, rng: np.random.Generator) -> int:
        """Smallest nprobe whose recall@10 against exact search reaches TARGET_RECALL (plus a
        margin) on queries drawn near stored vectors, which is where real queries land."""
        faiss = _faiss()
        n, dim = vectors.shape
        queries = near_queries(vectors[rng.choice(n, size=min(FAISS_TUNING_QUERIES, n), replace=False)], rng)
        want = np.asarray(vkeys, dtype=np.int64)[exact_top(vectors, queries, 10)]
        ivf = faiss.extract_index_ivf(self._index)
        for nprobe in NPROBE_CANDIDATES:
            if nprobe >= ivf.nlist:
                break
            _, got = self._index.search(queries, 10, params=faiss.SearchParametersIVF(nprobe=nprobe))
            recall = recall_at_k(got, want)
            if recall >= TARGET_RECALL + TUNING_MARGIN:
                log.info("IVF nlist=%d tuned to nprobe=%d (recall@10 %.3f)", ivf.nlist, nprobe, recall)
                return nprobe
        return int(ivf.nlist)

    def tune_margin(self, vectors: np.ndarray, vkeys: np.ndarray, rng: np.random.Generator) -> float:
        """Smallest centroid-score margin (see :meth:`search_lists`) whose recall@10 reaches the
        target on queries far from every stored vector (random directions: the worst case, and
        where a text query lands among photos). Near queries need no margin: their best list
        stands far ahead of the rest, so the margin adds no lists for them."""
        n, dim = vectors.shape
        queries = far_queries(rng, min(FAISS_TUNING_QUERIES, n), dim)
        want = np.asarray(vkeys, dtype=np.int64)[exact_top(vectors, queries, 10)]
        recall = 0.0
        for margin in SCORE_MARGINS:
            self.margin = margin
            recall = recall_at_k(self.search(queries, 10)[1], want)
            if recall >= TARGET_RECALL + TUNING_MARGIN:
                break
        log.info("IVF tuned to a centroid margin of %.2f for far queries (recall@10 %.3f)", self.margin, recall)
        return self.margin

    # -- mutation ------------------------------------------------------------------------------
    def _own(self) -> None:
        """Read a memory-mapped index into RAM before changing it (FAISS aborts the process when
        a mapped index grows). From its file when that is still there, else through a copy."""
        if self._mapped is None:
            return
        faiss = _faiss()
        try:
            owned = faiss.read_index(str(self._mapped))
        except RuntimeError:  # the file was replaced by another process's save meanwhile
            owned = faiss.deserialize_index(faiss.serialize_index(self._index))
        if owned.ntotal != self._index.ntotal:  # another save reused nothing: names hash contents
            owned = faiss.deserialize_index(faiss.serialize_index(self._index))
        self._index, self._mapped, self._ids, self._id_order = owned, None, None, None

    def add(self, vectors: np.ndarray, vkeys: np.ndarray) -> None:
        if len(vkeys) == 0:
            return
        self._own()
        self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                 np.ascontiguousarray(vkeys, dtype=np.int64))
        self._ids = self._id_order = None
        self.dirty = True

    def remove(self, vkeys: np.ndarray | list[int]) -> int:
        if len(vkeys) == 0:
            return 0
        faiss = _faiss()
        self._own()
        removed = self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(vkeys, dtype=np.int64)))
        self._ids = self._id_order = None
        self.dirty = True
        return int(removed)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def keys(self) -> np.ndarray:
        faiss = _faiss()
        if self.kind == "flat":
            keys: np.ndarray = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            return keys
        ivf = faiss.extract_index_ivf(self._index)
        invlists = ivf.invlists
        out = []
        for list_no in range(ivf.nlist):
            size = invlists.list_size(list_no)
            if size:
                ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
                out.append(np.array(ids, dtype=np.int64))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def vectors(self, vkeys: np.ndarray) -> np.ndarray | None:
        """(n, dim) float32 vectors of ``vkeys`` (exact copies of the table's: both index kinds store
        raw float32 vectors, and keys are never reused), or None when the index lacks one."""
        keys = np.asarray(vkeys, np.int64)
        out = np.empty((len(keys), self.dim), np.float32)  # (n, dim)
        if self.kind == "flat":
            try:
                for i, key in enumerate(keys.tolist()):
                    out[i] = self._index.reconstruct(key)
            except RuntimeError:  # a key the index does not hold
                return None
            return out
        # IVF keeps no id -> position map: look the keys up list by list (one pass over the ids)
        faiss = _faiss()
        ivf = faiss.extract_index_ivf(self._index)
        invlists = ivf.invlists
        if invlists.code_size != self.dim * 4:  # not raw float32 codes (not an IndexIVFFlat)
            return None
        want = {key: i for i, key in enumerate(keys.tolist())}
        found = 0
        for list_no in range(ivf.nlist):
            size = invlists.list_size(list_no)
            if not size:
                continue
            ids = np.array(faiss.rev_swig_ptr(invlists.get_ids(list_no), size), dtype=np.int64)
            hit = np.flatnonzero(np.isin(ids, keys))
            if not len(hit):
                continue
            codes = np.array(faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size))
            rows = codes.view(np.float32).reshape(size, self.dim)  # IndexIVFFlat codes are the vectors
            for j in hit.tolist():
                out[want[int(ids[j])]] = rows[j]
            found += len(hit)
        return out if found == len(want) == len(keys) else None

    # -- search --------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """queries (q, d) -> (scores (q, k), vkeys (q, k)); -1 keys pad missing results.
        ``allowed`` (sorted int64 vkeys) restricts the search inside FAISS, so filtered queries
        still return k results when k exist."""
        if len(queries) != 1:
            return self._search(queries, k, allowed)
        # FAISS splits work by query: for one query its OpenMP regions leave all threads but one
        # idle, and on a busy machine waiting for them costs milliseconds per region (measured:
        # 24 -> 10 ms at 100k flat, load 4). The setting is this thread's own (an OpenMP ICV).
        faiss = _faiss()
        threads = faiss.omp_get_max_threads()
        if threads == 1:
            return self._search(queries, k, allowed)
        faiss.omp_set_num_threads(1)
        try:
            return self._search(queries, k, allowed)
        finally:
            faiss.omp_set_num_threads(threads)

    def _search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, self.ntotal)) if self.ntotal else 1
        if self.ntotal == 0:
            return (np.full((len(queries), 0), -np.inf, np.float32), np.full((len(queries), 0), -1, np.int64))
        if self.kind == "flat" and allowed is None and len(queries) == 1:
            return self._scan_flat_search(queries, k)
        if self.kind == "flat" and allowed is not None and len(allowed) <= SUBSET_SHARE * self.ntotal:
            return self._subset_flat_search(queries, k, allowed)
        if self.kind == "flat" and allowed is None and len(queries) < SMALL_BATCH:
            return self._blas_flat_search(queries, k)
        sel = None if allowed is None else id_selector(allowed)
        if self.kind != "flat":
            return self._ivf_search(queries, k, sel, self.nprobe_for(len(allowed) if allowed is not None
                                                                     else self.ntotal))
        params = None if sel is None else faiss.SearchParameters(sel=sel)
        scores, keys = self._index.search(queries, k, params=params)
        return scores, keys

    def _ivf_search(self, queries: np.ndarray, k: int, sel: Any, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """Probe the lists :meth:`search_lists` picks, through FAISS's preassigned search (the
        selector still applies)."""
        faiss = _faiss()
        ivf = faiss.extract_index_ivf(self._index)
        lists, list_scores = self.search_lists(queries, nprobe)  # (q, m) list numbers, -1 = skip
        scores = np.empty((len(queries), k), np.float32)
        keys = np.empty((len(queries), k), np.int64)
        params = faiss.SearchParametersIVF(nprobe=lists.shape[1]) if sel is None \
            else faiss.SearchParametersIVF(nprobe=lists.shape[1], sel=sel)
        ivf.search_preassigned_c(len(queries), faiss.swig_ptr(queries), k, faiss.swig_ptr(lists),
                                 faiss.swig_ptr(list_scores), faiss.swig_ptr(scores), faiss.swig_ptr(keys),
                                 False, params)
        return scores, keys

    def search_lists(self, queries: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """The IVF lists each query probes -> (lists (q, m) int64 with -1 for none, their centroid
        scores (q, m)): the ``nprobe`` best, plus every list whose centroid scores within
        ``margin`` of the best one, up to ADAPTIVE_MAX_LISTS x nprobe. A query near stored vectors
        has one clear best list and probes ``nprobe``; a query far from all of them (a text query
        among photos) sees flat centroid scores and probes more, which is what keeps its recall."""
        faiss = _faiss()
        ivf = faiss.extract_index_ivf(self._index)
        most = min(int(ivf.nlist), max(nprobe, ADAPTIVE_MAX_LISTS * self.nprobe) if self.margin else nprobe)
        list_scores, lists = ivf.quantizer.search(queries, most)  # (q, most) each, best first
        if self.margin and most > nprobe:
            near = list_scores >= list_scores[:, :1] - self.margin
            near[:, :nprobe] = True
            lists = np.where(near, lists, -1)
            lists = np.ascontiguousarray(lists[:, :max(nprobe, int(near.sum(axis=1).max()))])
            list_scores = np.ascontiguousarray(list_scores[:, :lists.shape[1]])
        return np.ascontiguousarray(lists, dtype=np.int64), np.ascontiguousarray(list_scores, dtype=np.float32)

    def nprobe_for(self, n_allowed: int) -> int:
        """Lists an IVF search probes when ``n_allowed`` of its vectors may match: the tuned nprobe
        scaled by the inverse of that fraction, so a filtered search meets about as many allowed
        vectors as an unfiltered one (a 1% filter probes 100x the lists, up to all: exact)."""
        if self.kind == "flat":
            return 0
        nlist = int(_faiss().extract_index_ivf(self._index).nlist)
        if n_allowed >= self.ntotal:
            return min(self.nprobe, nlist)
        return min(nlist, math.ceil(self.nprobe * self.ntotal / max(n_allowed, 1)))

    def _flat_rows(self) -> np.ndarray:
        """The flat index's own vectors (n, d), no copy, and its position -> vkey map (cached)."""
        faiss = _faiss()
        n = self.ntotal
        flat = faiss.downcast_index(self._index.index)
        if self._ids is None or len(self._ids) != n:
            self._ids = faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
            self._id_order = None
        rows: np.ndarray = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)
        return rows

    def _scan_flat_search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k for one query (1, d) in one streaming pass: FAISS's SIMD inner products over
        a block of rows, then a k-heap over the block's scores while they are in cache. On one
        thread this runs near the memory bandwidth (a BLAS matvec on two threads stalled on a busy
        machine, and a top-k over all n scores afterwards re-read them from memory)."""
        faiss = _faiss()
        rows, n = self._flat_rows(), self.ntotal
        assert self._ids is not None
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
        keys = np.where(found >= 0, self._ids[np.maximum(found, 0)], -1)
        return scores[None], keys[None]

    def _subset_flat_search(self, queries: np.ndarray, k: int, allowed: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k among the ``allowed`` vkeys only: gather their rows from the flat storage and
        score them in one matmul (the same results as a selector search, which scans every row)."""
        rows = self._flat_rows()  # (n, d)
        position = self._position_of(np.asarray(allowed, np.int64))  # (m,), -1 where not held
        held = position >= 0
        keys, position = np.asarray(allowed, np.int64)[held], position[held]
        k_out = k
        k = min(k, len(keys))
        if k == 0:
            return (np.full((len(queries), k_out), -np.inf, np.float32), np.full((len(queries), k_out), -1, np.int64))
        gathered = rows[position]  # (m, d)
        if len(queries) == 1:  # FAISS's SIMD loop on this thread: a BLAS call wakes its threads,
            faiss = _faiss()   # which on a busy machine costs more than the 1-10k rows it scores
            scores = np.empty((1, len(keys)), np.float32)  # (1, m)
            faiss.fvec_inner_products_ny(faiss.swig_ptr(scores), faiss.swig_ptr(queries[0]),
                                         faiss.swig_ptr(gathered), self.dim, len(keys))
        else:
            scores = queries @ gathered.T  # (q, m)
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

    def _position_of(self, vkeys: np.ndarray) -> np.ndarray:
        """Flat storage rows of ``vkeys`` (-1 for keys not held), through the cached sorted ids."""
        self._flat_rows()  # (re)builds self._ids, and drops _id_order with it
        ids = self._ids
        assert ids is not None
        if not len(ids):
            return np.full(len(vkeys), -1, np.int64)
        if self._id_order is None:  # adds come in increasing keys: usually sorted already
            self._id_order = np.arange(len(ids)) if bool(np.all(ids[1:] > ids[:-1])) \
                else np.argsort(ids, kind="stable")
        at = np.minimum(np.searchsorted(ids, vkeys, sorter=self._id_order), len(ids) - 1)
        pos = self._id_order[at]
        return np.where(ids[pos] == vkeys, pos, -1)

    def _blas_flat_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k for a few queries by a BLAS matvec over the flat index's own storage (no
        copy). FAISS scans a lone query on one thread and then opens an OpenMP region just to map
        ids, which stalls on a busy machine; sgemv uses every BLAS thread at memory bandwidth."""
        faiss = _faiss()
        n = self.ntotal
        flat = faiss.downcast_index(self._index.index)
        xb = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)
        if self._ids is None or len(self._ids) != n:
            self._ids = faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
            self._id_order = None
        scores = (xb @ queries[0])[None] if len(queries) == 1 else (xb @ queries.T).T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(scores, top, 1)
        order = np.argsort(-best, axis=1, kind="stable")
        return (np.ascontiguousarray(np.take_along_axis(best, order, 1)),
                self._ids[np.take_along_axis(top, order, 1)])

    # -- persistence ---------------------------------------------------------------------------
    def save(self, folder: Path, table_version: int) -> None:
        """Write index then sidecar, each atomically; the sidecar names the index file's hash."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # A new file name per save: the sidecar switches to it in one atomic rename, so a crash
        # at any point leaves a matching (sidecar, index) pair behind.
        name, digest = _write_index_file(self._index, folder)
        keys = self.keys()
        sidecar = Sidecar(table_version, len(keys), keys_checksum(keys), digest, self.kind, self.dim,
                          self.nprobe, name, self.margin)
        atomic_write_bytes(folder / SIDECAR_FILE, json.dumps(asdict(sidecar)).encode())
        _write_stamp(folder, sidecar, folder / name)
        for old in folder.glob(f"{INDEX_STEM}-*.faiss"):
            if old.name != name:
                old.unlink(missing_ok=True)
        self.dirty = False

    @classmethod
    def load(cls, folder: Path) -> tuple["VectorIndex", Sidecar] | None:
        """The saved index, or None (with a warning) when it is missing, torn or unreadable."""
        faiss = _faiss()
        folder = Path(folder)
        sidecar_path = folder / SIDECAR_FILE
        if not sidecar_path.exists():
            return None
        try:
            sidecar = Sidecar(**json.loads(sidecar_path.read_text()))
            path = folder / sidecar.file
            if not _stamp_matches(folder, sidecar, path):
                with open(path, "rb") as fh:
                    if hashlib.file_digest(fh, "sha256").hexdigest() != sidecar.file_sha256:
                        raise ValueError("index file checksum does not match its sidecar")
                _write_stamp(folder, sidecar, path)
            raw = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        except Exception as exc:  # torn, truncated or foreign file: the table can rebuild it
            log.warning("vector index in %s is unusable (%s); rebuilding it from the table", folder, exc)
            return None
        index = cls(sidecar.dim, sidecar.kind, sidecar.nprobe)
        index.margin = float(sidecar.margin)
        index._index, index._mapped = raw, path
        _read_ahead(path)
        if index.ntotal != sidecar.count:
            log.warning("vector index in %s holds %d vectors, sidecar says %d; rebuilding",
                        folder, index.ntotal, sidecar.count)
            return None
        return index, sidecar


def _write_index_file(index: Any, folder: Path) -> tuple[str, str]:
    """Stream ``index`` to a temp file in ``folder``, hash it, fsync and rename it to a name made of
    its hash -> (file name, sha256). No in-memory copy of the vectors is made (serialising to a
    buffer made two)."""
    faiss = _faiss()
    fd, tmp = tempfile.mkstemp(prefix=f".{INDEX_STEM}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        with open(tmp, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
            os.fsync(fh.fileno())
        name = f"{INDEX_STEM}-{digest[:16]}.faiss"
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return name, digest


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


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers (q, k) of the k largest inner products of ``queries`` (q, d) in ``vectors``
    (n, d), best first, by blocks of rows (no second copy of the vectors)."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(vectors), TRUTH_CHUNK):
        block = np.asarray(vectors[start:start + TRUTH_CHUNK], np.float32)
        scores = queries @ block.T  # (q, m)
        m = min(k, scores.shape[1])
        top = np.argpartition(-scores, m - 1, axis=1)[:, :m]
        best_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], axis=1)
        best_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def _read_ahead(path: Path) -> None:
    """Ask the kernel to read a mapped index file into the page cache in the background (returns at
    once): the first searches then map cached pages instead of waiting on the disk for each list."""
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)
    except OSError:
        pass


def _stamp(path: Path) -> list[int]:
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _stamp_matches(folder: Path, sidecar: Sidecar, path: Path) -> bool:
    """Whether ``path`` is the very file whose hash was checked (same name, hash, size, mtime and
    inode; files are written under a new name per save and renamed atomically), so opening a large
    index does not hash it again (sha256 of a 1.5 GB index costs seconds)."""
    try:
        record = json.loads((Path(folder) / STAMP_FILE).read_text())
        return bool(record["file"] == sidecar.file and record["sha256"] == sidecar.file_sha256
                    and record["stamp"] == _stamp(path))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_stamp(folder: Path, sidecar: Sidecar, path: Path) -> None:
    """Record the stamp of a file whose hash was just checked or written (a separate file, so
    sidecars stay readable by older versions)."""
    try:
        atomic_write_bytes(Path(folder) / STAMP_FILE, json.dumps(
            {"file": sidecar.file, "sha256": sidecar.file_sha256, "stamp": _stamp(path)}).encode())
    except OSError:
        pass


def remove_files(folder: Path) -> None:
    """Delete the saved index (it is rebuilt from the table on the next open)."""
    for path in [Path(folder) / SIDECAR_FILE, Path(folder) / STAMP_FILE, *Path(folder).glob(f"{INDEX_STEM}-*.faiss")]:
        path.unlink(missing_ok=True)
