"""aimemory.index.faiss at scale: a saved index is memory-mapped on open and read into RAM before
its first change; id selectors are bitmaps for large allowed sets; filtered IVF searches probe more
lists the fewer vectors they may match; tuning truth comes from blocks, not a second index."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _vectors import clustered  # noqa: E402

from aimemory.index.faiss import VectorIndex, exact_top, id_selector  # noqa: E402
from aimemory.index.tuning import recall_at_k  # noqa: E402

faiss = pytest.importorskip("faiss")
N, DIM = 4000, 24


@pytest.fixture(scope="module")
def data():
    return clustered(N, DIM, seed=3), np.arange(10, 10 + N, dtype=np.int64)


def _exact(vectors, keys, queries, k, allowed=None):
    if allowed is not None:
        keep = np.isin(keys, allowed)
        vectors, keys = vectors[keep], keys[keep]
    return keys[exact_top(vectors, queries, k)]


def test_exact_top_matches_a_full_sort(data):
    vectors, _ = data
    queries = vectors[:7] + 0.01
    want = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :5]
    assert (exact_top(vectors, queries, 5) == want).all()


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_saved_index_is_mapped_and_survives_changes_after_open(data, tmp_path, kind):
    vectors, keys = data
    index = VectorIndex.build(vectors, keys, ann_threshold=1 if kind == "ivf" else 10 * N)
    index.save(tmp_path, table_version=1)
    loaded, _ = VectorIndex.load(tmp_path)
    assert loaded.kind == kind
    q = vectors[:3]
    assert (loaded.search(q, 5)[1] == index.search(q, 5)[1]).all()
    # FAISS aborts the process when a mapped index grows: the first change reads it into RAM
    extra = clustered(5, DIM, seed=9)
    loaded.add(extra, np.arange(10**6, 10**6 + 5, dtype=np.int64))
    assert loaded.remove(keys[:2]) == 2
    assert loaded.ntotal == N + 3
    got = loaded.search(extra[:1], 1)[1][0][0]
    assert got == 10**6
    loaded.save(tmp_path, table_version=2)  # replaces the file it was mapped from
    again, sidecar = VectorIndex.load(tmp_path)
    assert again.ntotal == N + 3 and sidecar.table_version == 2


def test_a_mapped_index_changes_after_its_file_is_gone(data, tmp_path):
    vectors, keys = data
    index = VectorIndex.build(vectors, keys, ann_threshold=10 * N)
    index.save(tmp_path, table_version=1)
    loaded, sidecar = VectorIndex.load(tmp_path)
    (tmp_path / sidecar.file).unlink()  # another process saved and removed the old file
    loaded.remove(keys[:1])
    assert loaded.ntotal == N - 1


@pytest.mark.parametrize("size", [3, 2000])
def test_id_selectors_keep_exactly_the_allowed_keys(data, size):
    vectors, keys = data
    allowed = np.sort(np.random.default_rng(size).choice(keys, size, replace=False))
    sel = id_selector(allowed)
    assert isinstance(sel, faiss.IDSelectorBitmap if size == 2000 else faiss.IDSelectorBatch)
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    flat.add_with_ids(vectors, keys)
    _, got = flat.search(vectors[:4], min(size, 10), params=faiss.SearchParameters(sel=sel))
    assert np.isin(got, allowed).all()
    assert (got == _exact(vectors, keys, vectors[:4], min(size, 10), allowed)).all()


def test_filtered_ivf_probes_more_lists_and_stays_exact_enough(data):
    vectors, keys = data
    index = VectorIndex.build(vectors, keys, ann_threshold=1)
    assert index.kind == "ivf"
    assert index.nprobe_for(N) == index.nprobe
    assert index.nprobe_for(N // 100) > index.nprobe
    allowed = keys[::50]  # 2% of the vectors
    queries = vectors[1::97][:20] + 0.02
    _, got = index.search(queries, 10, allowed)
    assert np.isin(got, allowed).all()
    assert recall_at_k(got, _exact(vectors, keys, queries, 10, allowed)) >= 0.97


def test_far_queries_probe_more_lists_near_ones_do_not(data):
    vectors, keys = data
    index = VectorIndex.build(vectors, keys, ann_threshold=1)
    index.margin = 0.3  # low dimensions: random directions still sit near some centroids
    near_lists, _ = index.search_lists(vectors[:5], index.nprobe)
    far = np.random.default_rng(0).standard_normal((5, DIM)).astype(np.float32)
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    far_lists, _ = index.search_lists(far, index.nprobe)
    assert ((near_lists >= 0).sum(axis=1) >= index.nprobe).all()
    assert (far_lists >= 0).sum() > (near_lists >= 0).sum()
    _, got = index.search(far, 10)
    assert recall_at_k(got, _exact(vectors, keys, far, 10)) >= 0.9


def test_the_tuned_margin_is_saved_with_the_index(data, tmp_path):
    vectors, keys = data
    index = VectorIndex.build(vectors, keys, ann_threshold=1)
    index.margin = 0.03
    index.save(tmp_path, table_version=1)
    loaded, sidecar = VectorIndex.load(tmp_path)
    assert loaded.margin == sidecar.margin == 0.03


def test_a_lone_exact_query_streams_to_the_same_top_k(data):
    vectors, keys = data
    index = VectorIndex.build(vectors, keys, ann_threshold=10 * N)
    for q in (vectors[7:8] + 0.01, vectors[100:101]):
        scores, got = index.search(q, 10)
        assert (got[0] == _exact(vectors, keys, q, 10)[0]).all()
        assert np.all(np.diff(scores[0]) <= 0)
    small = VectorIndex.build(vectors[:3], keys[:3], ann_threshold=10 * N)
    assert sorted(small.search(vectors[:1], 10)[1][0].tolist()) == sorted(keys[:3].tolist())
