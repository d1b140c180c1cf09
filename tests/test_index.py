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
