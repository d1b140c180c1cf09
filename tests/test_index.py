"""aimemory.index: one StoreIndex protocol over FAISS and Lance, opened by open_index from the table
(the saved FAISS copy when it matches, caught up when it lags, rebuilt when it is unusable)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _vectors import clustered, view_rows  # noqa: E402

from aimemory.index import INDEX_DIR, LanceIndex, StoreIndex, VectorIndex, open_index  # noqa: E402
from aimemory.index.tuning import near_queries, recall_at_k  # noqa: E402
from aimemory.storage import VectorTable  # noqa: E402

N, DIM = 200, 16
PROTOCOL = ("kind", "nprobe", "ntotal", "dirty", "search_device", "keys", "add", "remove", "search", "save")


@pytest.fixture
def table(tmp_path):
    t = VectorTable(tmp_path, DIM)
    t.add(view_rows(clustered(N, DIM, seed=1)))
    yield t
    t.close()


def _open(table, tmp_path, kind="faiss", keys=None, **kw) -> StoreIndex:
    keys = table.scan(["vkey"]).column("vkey").to_numpy() if keys is None else keys
    return open_index(kind, table, keys, folder=tmp_path / INDEX_DIR, table_version=table.version, **kw)


@pytest.mark.parametrize("kind, cls", [("faiss", VectorIndex), ("lance", LanceIndex)])
def test_both_kinds_speak_the_protocol(table, tmp_path, kind, cls):
    index = _open(table, tmp_path, kind)
    assert isinstance(index, cls)
    assert all(hasattr(index, name) for name in PROTOCOL)
    assert index.ntotal == N and sorted(index.keys()) == list(range(1, N + 1))
    _, vectors = table.vectors_for([5])
    scores, keys = index.search(vectors, 3)
    assert keys[0][0] == 5 and scores[0][0] == pytest.approx(1.0, abs=1e-5)
    allowed = np.array([7, 9], np.int64)
    _, keys = index.search(vectors, 2, allowed)
    assert set(keys[0].tolist()) == {7, 9}  # a filter restricts the search, not the results after it


def test_faiss_saved_copy_is_reused_when_it_matches(table, tmp_path):
    first = _open(table, tmp_path)
    assert first.dirty  # built from the table: not saved yet
    first.save(tmp_path / INDEX_DIR, table.version)
    again = _open(table, tmp_path)
    assert not again.dirty and again.ntotal == N


def test_faiss_catches_up_with_rows_added_and_removed_behind_its_back(table, tmp_path):
    _open(table, tmp_path).save(tmp_path / INDEX_DIR, table.version)
    table.add(view_rows(clustered(5, DIM, seed=2), start_vkey=N + 1))
    keys = np.array([k for k in range(1, N + 6) if k != 3], np.int64)  # key 3 forgotten, 5 new
    index = _open(table, tmp_path, keys=keys)
    assert sorted(index.keys()) == keys.tolist() and index.dirty


@pytest.mark.parametrize("damage", ["sidecar", "file"])
def test_faiss_is_rebuilt_from_the_table_when_its_files_are_unusable(table, tmp_path, damage):
    _open(table, tmp_path).save(tmp_path / INDEX_DIR, table.version)
    folder = tmp_path / INDEX_DIR
    if damage == "sidecar":
        (folder / "vectors.json").write_text("{torn")
    else:
        next(folder.glob("vectors-*.faiss")).write_bytes(b"\0" * 64)
    index = _open(table, tmp_path)
    assert index.ntotal == N and index.dirty


def test_rebuild_ignores_the_saved_copy(table, tmp_path):
    _open(table, tmp_path).save(tmp_path / INDEX_DIR, table.version)
    assert _open(table, tmp_path, rebuild=True).dirty
    assert _open(table, tmp_path, ann_threshold=50, rebuild=True).kind == "ivf"


def test_small_lance_tables_are_searched_exactly(table, tmp_path):
    index = _open(table, tmp_path, "lance", index_type="IVF_HNSW_SQ")
    assert index.kind == "lance-exact" and index.nprobe == 0


def test_tuning_queries_are_unit_rows_near_their_picks():
    picks = clustered(20, DIM, seed=4)
    queries = near_queries(picks, np.random.default_rng(0))
    assert queries.dtype == np.float32 and np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    assert (np.sum(queries * picks, axis=1) > 0.9).all()
    assert recall_at_k(np.array([[1, 2, 3]]), np.array([[3, 2, 9]])) == pytest.approx(2 / 3)


def test_a_build_streams_the_live_vectors_from_the_table(table):
    from aimemory.index import table_blocks

    alive = np.setdiff1d(np.arange(1, N + 1), [3, 50, 51])  # as if three rows were forgotten
    blocks = list(table_blocks(table, alive, rows=32)())
    assert all(len(keys) <= 32 and vectors.shape == (len(keys), DIM) for keys, vectors in blocks)
    keys = np.concatenate([k for k, _ in blocks])
    assert sorted(keys.tolist()) == alive.tolist()
    _, want = table.vectors_for(keys[:5])
    np.testing.assert_array_equal(blocks[0][1][:5], want)
    flat = VectorIndex.build_from(table_blocks(table, alive, rows=32), len(alive), DIM, ann_threshold=10 * N)
    ivf_index = VectorIndex.build_from(table_blocks(table, alive, rows=32), len(alive), DIM, ann_threshold=1)
    for index in (flat, ivf_index):
        assert sorted(index.keys().tolist()) == alive.tolist()


def test_an_ivf_build_never_holds_all_the_vectors(monkeypatch):
    """Blocks made on the fly, as a table scan gives them: numpy's peak while building stays under
    the vectors' own size, so they are never all held at once (the IVF's lists are FAISS's, outside
    numpy's count)."""
    import tracemalloc

    n, dim, rows = 200_000, 32, 1_000
    centres = clustered(64, dim, seed=5)

    def blocks():
        for start in range(0, n, rows):
            rng = np.random.default_rng(start)
            vectors = centres[rng.integers(0, 64, rows)] + 0.05 * rng.standard_normal((rows, dim)).astype(np.float32)
            yield np.arange(start + 1, start + rows + 1, dtype=np.int64), \
                vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    VectorIndex.build(clustered(400, dim, seed=6), np.arange(1, 401), ann_threshold=1)  # imports, not counted
    tracemalloc.start()
    try:
        index = VectorIndex.build_from(blocks, n, dim, ann_threshold=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert index.kind == "ivf" and index.ntotal == n
    raw = n * dim * 4  # the training sample is 57% of that at this size (64 rows per list)
    assert peak < raw, f"numpy peaked at {peak / raw:.2f}x the vectors"
    _, first = next(iter(blocks()))
    assert index.search(first[:1], 1)[1][0][0] == 1  # it finds a stored vector


def test_lists_filled_in_place_match_faiss_own_adds():
    import faiss

    from aimemory.index import ivf

    vectors, keys = clustered(3000, DIM, seed=7), np.arange(5, 3005, dtype=np.int64) * 3
    ours = ivf.train_ivf(vectors[::3].copy(), len(keys), seed=0)
    ivf.fill_lists(ours, ivf.array_blocks(vectors, keys, rows=256))
    theirs = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, ours.nlist, faiss.METRIC_INNER_PRODUCT)
    theirs.cp.seed = 0
    theirs.train(vectors[::3].copy())
    theirs.add_with_ids(vectors, keys)
    assert ours.ntotal == theirs.ntotal == len(keys)
    np.testing.assert_array_equal(ivf.lists_sizes(faiss.downcast_InvertedLists(ours.invlists), ours.nlist),
                                  ivf.lists_sizes(faiss.downcast_InvertedLists(theirs.invlists), theirs.nlist))
    ours.nprobe = theirs.nprobe = 8
    queries = near_queries(vectors[:50], np.random.default_rng(1))
    (s1, k1), (s2, k2) = ours.search(queries, 10), theirs.search(queries, 10)
    np.testing.assert_array_equal(k1, k2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)


def test_rows_that_change_between_the_passes_leave_consistent_lists():
    """A row gone by the second pass leaves no empty slot behind; one that appeared is not written
    (the index's catch-up adds it later)."""
    import faiss

    from aimemory.index import ivf

    vectors, keys = clustered(2000, DIM, seed=8), np.arange(1, 2001, dtype=np.int64)
    passes = []

    def blocks():
        passes.append(None)
        if len(passes) == 1:  # the assignment pass sees every row
            return ivf.array_blocks(vectors, keys, rows=300)()
        keep = keys != 1000  # then row 1000 is forgotten and row 9999 written
        return iter([(keys[keep], vectors[keep]), (np.array([9999]), vectors[:1])])

    index = ivf.train_ivf(vectors[::2].copy(), len(keys), seed=0)
    ivf.fill_lists(index, blocks)
    sizes = ivf.lists_sizes(faiss.downcast_InvertedLists(index.invlists), index.nlist)
    assert index.ntotal == sizes.sum() == len(keys) - 1
    held = np.sort(np.concatenate([faiss.rev_swig_ptr(index.invlists.get_ids(i), int(n)).copy()
                                   for i, n in enumerate(sizes) if n]))
    np.testing.assert_array_equal(held, keys[keys != 1000])
