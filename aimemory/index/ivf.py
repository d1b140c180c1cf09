"""The IVF side of the FAISS index: training the lists, tuning ``nprobe`` and the centroid-score
margin against exact search, picking the lists each query probes, and reading keys and vectors back
out of the lists.

Functions take the raw FAISS index (an ``IndexIVFFlat``); :class:`.faiss.VectorIndex` holds it.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .tuning import FAISS_TUNING_QUERIES, TARGET_RECALL, TUNING_MARGIN, far_queries, near_queries, recall_at_k

log = logging.getLogger("aimemory.index")

NPROBE_CANDIDATES = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
SCORE_MARGINS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15)  # tried in order, see tune_margin
ADAPTIVE_MAX_LISTS = 16  # x nprobe: the most lists a query far from every list probes
# The least centroid-score margin a search uses, whatever tuning found. Tuning's far queries are
# random directions, and real text queries can be harder: on a 1M store of stand-in vectors whose
# tuning found 0.0-0.04 enough, 200 real MiniLM queries had recall@10 0.963 at 0.04 and 0.987 at
# 0.05, for about 0.5 ms more per text query (benchmarks/bench_store.py --targets). Near queries are
# not affected: hardly any other list scores within 0.05 of their best one.
MARGIN_FLOOR = 0.05
TRUTH_CHUNK = 65_536  # rows per block when computing exact top-k for tuning (bounded extra memory)
TUNE_K = 10  # recall@10 is what tuning measures
TRAINING_ROWS_PER_LIST = 64  # FAISS's k-means samples at most this many points per centroid

#: () -> blocks of (vkeys (m,) int64, vectors (m, d) float32) covering every vector of an index being
#: built, read afresh for each pass (sample, adds, each tuning's exact truth), so no pass holds them all
Blocks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


def _faiss() -> Any:
    import faiss

    return faiss


def array_blocks(vectors: np.ndarray, vkeys: np.ndarray, rows: int = TRUTH_CHUNK) -> Blocks:
    """:data:`Blocks` over vectors already in memory (n, d) and their vkeys (n,)."""
    def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(vkeys), rows):
            yield (np.asarray(vkeys[start:start + rows], np.int64),
                   np.asarray(vectors[start:start + rows], np.float32))
    return blocks


def nlist_for(n: int) -> int:
    """IVF lists for n vectors: ~4 sqrt(n); FAISS wants >= 39 points per centroid; at least one
    list, or every search fails (nprobe 0)."""
    return max(1, int(min(max(64, 4 * np.sqrt(n)), n // 39)))


def training_sample(blocks: Blocks, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random sample of the n vectors, (m, d) float32, TRAINING_ROWS_PER_LIST per list (all of
    them when n is smaller): rows picked up front and gathered in one pass, so only the sample is held."""
    m = min(n, nlist_for(n) * TRAINING_ROWS_PER_LIST)
    picked = np.sort(rng.choice(n, size=m, replace=False))  # (m,) row numbers in block order
    out: np.ndarray | None = None
    filled = start = 0
    for _, vectors in blocks():
        at = picked[np.searchsorted(picked, start):np.searchsorted(picked, start + len(vectors))] - start
        if out is None:
            out = np.empty((m, vectors.shape[1]), np.float32)
        out[filled:filled + len(at)] = vectors[at]
        filled, start = filled + len(at), start + len(vectors)
    if out is None:
        raise ValueError("no vectors to train an IVF index on")
    return out[:filled]  # fewer when rows went away while the build read them


def train_ivf(sample: np.ndarray, n: int, seed: int) -> Any:
    """An empty ``IndexIVFFlat`` (inner product) for n vectors, trained on ``sample`` (m, d); see
    :func:`fill_lists` and :func:`.ivf_file.write_filled` for putting the vectors in."""
    faiss = _faiss()
    dim = sample.shape[1]
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist_for(n), faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = seed
    ivf.train(sample)
    return ivf


def assign(ivf: Any, blocks: Blocks) -> tuple[np.ndarray, np.ndarray]:
    """The quantizer's list for every vector of ``blocks`` (as ``add`` would put it) -> (keys (n,)
    int64 sorted, their lists (n,) int64)."""
    seen_keys, seen_lists = [], []
    for keys, vectors in blocks():
        seen_keys.append(np.asarray(keys, np.int64))
        seen_lists.append(ivf.quantizer.assign(np.ascontiguousarray(vectors, dtype=np.float32), 1)[:, 0])
    if not seen_keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    all_keys, all_lists = np.concatenate(seen_keys), np.concatenate(seen_lists).astype(np.int64, copy=False)
    del seen_keys, seen_lists
    order = np.argsort(all_keys)
    return all_keys[order], all_lists[order]


def by_list(keys: np.ndarray, vectors: np.ndarray, all_keys: np.ndarray, all_lists: np.ndarray
            ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """A block's vectors grouped by the list :func:`assign` gave them (``all_keys`` (n,) sorted,
    ``all_lists`` (n,)) -> (list, keys (m,) int64, vectors (m, d) float32) per list, contiguous,
    in block order within a list; keys the assignment did not meet (rows written since) left out."""
    keys = np.asarray(keys, np.int64)
    at = np.minimum(np.searchsorted(all_keys, keys), max(len(all_keys) - 1, 0))
    known = all_keys[at] == keys if len(all_keys) else np.zeros(len(keys), bool)
    list_of = all_lists[at[known]]
    order = np.argsort(list_of, kind="stable")
    list_of = list_of[order]
    ids = np.ascontiguousarray(keys[known][order])
    rows = np.ascontiguousarray(np.asarray(vectors, np.float32)[known][order])
    starts = np.flatnonzero(np.r_[True, list_of[1:] != list_of[:-1]]) if len(list_of) else np.zeros(0, np.int64)
    for start, end in zip(starts.tolist(), [*starts[1:].tolist(), len(list_of)]):
        yield int(list_of[start]), ids[start:end], rows[start:end]


def fill_lists(ivf: Any, blocks: Blocks) -> None:
    """Put every vector of ``blocks`` in the trained ``ivf``'s lists, each list sized once.

    Appending block by block (``add_with_ids``) grows each list's arrays by doubling, which at its
    worst holds twice the index. Instead: one pass assigns every vector to its list (the quantizer's
    own assignment, as ``add`` makes it) and counts them, each list is sized to its count, and a
    second pass writes the vectors in place. Keys the second pass does not meet in the first (rows
    written meanwhile) are left to the index's catch-up; lists end at what was written."""
    faiss = _faiss()
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    if not isinstance(lists, faiss.ArrayInvertedLists):  # another list store: FAISS's own adds
        for keys, vectors in blocks():
            ivf.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(keys, np.int64))
        return
    all_keys, all_lists = assign(ivf, blocks)  # pass 1: (n,) keys sorted and their lists
    for list_no, count in enumerate(np.bincount(all_lists, minlength=ivf.nlist).tolist()):
        lists.resize(list_no, count)
    filled = np.zeros(ivf.nlist, np.int64)  # (nlist,) entries written per list
    for keys, vectors in blocks():  # pass 2: write in place
        for list_no, ids, rows in by_list(keys, vectors, all_keys, all_lists):
            codes = rows.view(np.uint8)  # (m, 4d)
            lists.update_entries(list_no, int(filled[list_no]), len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
            filled[list_no] += len(ids)
    for list_no in np.flatnonzero(filled != lists_sizes(lists, ivf.nlist)).tolist():
        lists.resize(list_no, int(filled[list_no]))  # keys that went away between the passes
    ivf.ntotal = int(filled.sum())


def lists_sizes(lists: Any, nlist: int) -> np.ndarray:
    """(nlist,) entries per IVF list."""
    return np.fromiter((lists.list_size(i) for i in range(nlist)), np.int64, nlist)


def tuning_queries(sample: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The queries tuning measures recall on -> (near (q, d): stored vectors of ``sample`` plus
    noise, where real queries land; far (q', d): random directions, the worst case)."""
    picks = sample[rng.choice(len(sample), size=min(FAISS_TUNING_QUERIES, len(sample)), replace=False)]
    near = near_queries(picks, rng)
    return near, far_queries(rng, min(FAISS_TUNING_QUERIES, n), sample.shape[1])


def tune_nprobe(index: Any, queries: np.ndarray, want: np.ndarray) -> int:
    """Smallest nprobe whose recall@10 against exact search (``want`` (q, 10) keys) reaches
    TARGET_RECALL (plus a margin) on ``queries`` (q, d) drawn near stored vectors."""
    faiss = _faiss()
    ivf = faiss.extract_index_ivf(index)
    for nprobe in NPROBE_CANDIDATES:
        if nprobe >= ivf.nlist:
            break
        _, got = index.search(queries, TUNE_K, params=faiss.SearchParametersIVF(nprobe=nprobe))
        recall = recall_at_k(got, want)
        if recall >= TARGET_RECALL + TUNING_MARGIN:
            log.info("IVF nlist=%d tuned to nprobe=%d (recall@10 %.3f)", ivf.nlist, nprobe, recall)
            return nprobe
    return int(ivf.nlist)


def tune_margin(keys_at: Callable[[np.ndarray, float], np.ndarray], queries: np.ndarray, want: np.ndarray
                ) -> float:
    """Smallest centroid-score margin (see :func:`probe_lists`) whose recall@10 against exact search
    (``want`` (q, 10) keys) reaches the target on ``queries`` far from every stored vector (random
    directions: the worst case, and where a text query lands among photos); the last one tried when
    none does. ``keys_at(queries, margin)`` -> the top-10 keys (q, 10) of a search at that margin.
    Near queries need no margin: their best list stands far ahead of the rest, so the margin adds no
    lists for them."""
    recall, margin = 0.0, MARGIN_FLOOR
    for margin in [m for m in SCORE_MARGINS if m >= MARGIN_FLOOR]:
        recall = recall_at_k(keys_at(queries, margin), want)
        if recall >= TARGET_RECALL + TUNING_MARGIN:
            break
    log.info("IVF tuned to a centroid margin of %.2f for far queries (recall@10 %.3f)", margin, recall)
    return margin


def probe_lists(index: Any, queries: np.ndarray, nprobe: int, tuned_nprobe: int, margin: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """The IVF lists each query probes -> (lists (q, m) int64 with -1 for none, their centroid
    scores (q, m)): the ``nprobe`` best, plus every list whose centroid scores within ``margin``
    of the best one, up to ADAPTIVE_MAX_LISTS x ``tuned_nprobe``. A query near stored vectors has
    one clear best list and probes ``nprobe``; a query far from all of them (a text query among
    photos) sees flat centroid scores and probes more, which is what keeps its recall."""
    ivf = _faiss().extract_index_ivf(index)
    margin = max(margin, MARGIN_FLOOR)
    most = min(int(ivf.nlist), max(nprobe, ADAPTIVE_MAX_LISTS * tuned_nprobe))
    list_scores, lists = ivf.quantizer.search(queries, most)  # (q, most) each, best first
    if most > nprobe:
        near = list_scores >= list_scores[:, :1] - margin
        near[:, :nprobe] = True
        lists = np.where(near, lists, -1)
        lists = np.ascontiguousarray(lists[:, :max(nprobe, int(near.sum(axis=1).max()))])
        list_scores = np.ascontiguousarray(list_scores[:, :lists.shape[1]])
    return np.ascontiguousarray(lists, dtype=np.int64), np.ascontiguousarray(list_scores, dtype=np.float32)


def search_preassigned(ivf: Any, queries: np.ndarray, k: int, lists: np.ndarray, list_scores: np.ndarray,
                       sel: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Scan the given ``lists`` (q, m) (-1: skip) of the IVF index ``ivf`` for ``queries`` (q, d)
    float32 -> (scores (q, k), vkeys (q, k)); ``sel``: an id selector, or None."""
    faiss = _faiss()
    scores = np.empty((len(queries), k), np.float32)
    keys = np.empty((len(queries), k), np.int64)
    params = faiss.SearchParametersIVF(nprobe=lists.shape[1]) if sel is None \
        else faiss.SearchParametersIVF(nprobe=lists.shape[1], sel=sel)
    ivf.search_preassigned_c(len(queries), faiss.swig_ptr(queries), k, faiss.swig_ptr(lists),
                             faiss.swig_ptr(list_scores), faiss.swig_ptr(scores), faiss.swig_ptr(keys),
                             False, params)
    return scores, keys


def scaled_nprobe(index: Any, tuned_nprobe: int, ntotal: int, n_allowed: int) -> int:
    """Lists a search probes when ``n_allowed`` of the ``ntotal`` vectors may match: the tuned
    nprobe scaled by the inverse of that fraction, so a filtered search meets about as many allowed
    vectors as an unfiltered one (a 1% filter probes 100x the lists, up to all: exact)."""
    nlist = int(_faiss().extract_index_ivf(index).nlist)
    if n_allowed >= ntotal:
        return min(tuned_nprobe, nlist)
    return min(nlist, math.ceil(tuned_nprobe * ntotal / max(n_allowed, 1)))


def list_keys(index: Any) -> np.ndarray:
    """Every vkey the IVF index holds (n,), list by list."""
    faiss = _faiss()
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    out = []
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size:
            ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
            out.append(np.array(ids, dtype=np.int64))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def list_vectors(index: Any, keys: np.ndarray, dim: int, lists: np.ndarray | None = None) -> np.ndarray | None:
    """(n, dim) float32 vectors of ``keys`` (n,) from the lists, or None when one is missing or the
    lists do not hold raw float32 vectors. IVF keeps no id -> position map: the keys are looked up
    list by list, in ``lists`` (the lists holding them, from :class:`.ivf_lists.ListMap`) when
    given, else in every list (at 1M rows, 4,000 lists: 0.5 s for a background sample's 256 keys)."""
    faiss = _faiss()
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    if invlists.code_size != dim * 4:  # not raw float32 codes (not an IndexIVFFlat)
        return None
    keys = np.asarray(keys, np.int64)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]  # (n,): each list's ids are looked up by bisection
    out = np.empty((len(keys), dim), np.float32)  # (n, dim)
    if not len(keys):
        return out
    if (sorted_keys[1:] == sorted_keys[:-1]).any():  # a key asked twice: no answer, as for a missing one
        return None
    seen = np.zeros(len(keys), bool)
    for list_no in (range(ivf.nlist) if lists is None else np.asarray(lists, np.int64).tolist()):
        size = invlists.list_size(list_no)
        if not size:
            continue
        # views of the list's memory, read before the next call into the index: only hits are copied
        ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)  # (size,) int64
        at = np.minimum(np.searchsorted(sorted_keys, ids), len(keys) - 1)
        hit = np.flatnonzero(sorted_keys[at] == ids)
        if not len(hit):
            continue
        rows = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size) \
            .view(np.float32).reshape(size, dim)  # IndexIVFFlat codes are the vectors
        where = order[at[hit]]
        out[where] = rows[hit]
        seen[where] = True
    return out if seen.all() else None


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers (q, k) of the k largest inner products of ``queries`` (q, d) in ``vectors``
    (n, d), best first, by blocks of rows (no second copy of the vectors)."""
    return exact_top_keys(array_blocks(vectors, np.arange(len(vectors), dtype=np.int64)), queries, k)


def exact_top_keys(blocks: Blocks, queries: np.ndarray, k: int) -> np.ndarray:
    """The vkeys (q, k) of the k largest inner products of ``queries`` (q, d) among every vector
    of ``blocks``, best first (fewer columns when there are fewer than k vectors)."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_k = np.zeros((len(queries), 0), np.int64)
    for keys, block in blocks():
        if not len(keys):
            continue
        scores = queries @ np.asarray(block, np.float32).T  # (q, m)
        m = min(k, scores.shape[1])
        top = np.argpartition(-scores, m - 1, axis=1)[:, :m]
        best_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], axis=1)
        best_k = np.concatenate([best_k, np.asarray(keys, np.int64)[top]], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_k = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_k, keep, 1)
    return best_k
