"""aimemory.index.recent: vectors added to a memory-mapped FAISS index wait beside it (no copy of the
index), are searched with it as one index, are saved on their own file until a save folds them in,
and an open whose saved index lacks the newest rows catches up just those."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _vectors import clustered  # noqa: E402
from conftest import ColourEncoder  # noqa: E402

import aimemory.index.faiss as faiss_index  # noqa: E402
from aimemory import MemoryStore  # noqa: E402
from aimemory.index import INDEX_DIR, VectorIndex, keys_checksum  # noqa: E402
from aimemory.index.faiss_file import RECENT_FILE  # noqa: E402
from aimemory.index.recent import merge_top, prefix_missing  # noqa: E402

pytest.importorskip("faiss")
N, EXTRA, DIM = 3000, 40, 24


@pytest.fixture(scope="module")
def data():
    vectors = clustered(N + EXTRA, DIM, seed=5)
    return vectors, np.arange(100, 100 + N + EXTRA, dtype=np.int64)


def _mapped(data, folder, kind):
    """A saved index of the first N vectors, loaded (memory-mapped), and EXTRA more added to it."""
    vectors, keys = data
    built = VectorIndex.build(vectors[:N], keys[:N], ann_threshold=1 if kind == "ivf" else 10 * N)
    built.save(folder, table_version=1)
    index, _ = VectorIndex.load(folder)
    index.add(vectors[N:], keys[N:])
    return index


def _index_file(folder):
    (path,) = folder.glob("vectors-*.faiss")
    return path.name, path.stat().st_mtime_ns


def test_merge_top_keeps_the_best_k_ties_by_key_and_no_results_last():
    first = (np.array([[0.9, 0.5, -np.inf]], np.float32), np.array([[7, 3, -1]]))
    second = (np.array([[0.5, 0.8]], np.float32), np.array([[2, 9]]))
    scores, keys = merge_top(first, second, 4)
    assert keys.tolist() == [[7, 9, 2, 3]] and scores[0].tolist() == pytest.approx([0.9, 0.8, 0.5, 0.5])
    scores, keys = merge_top(first, (np.zeros((1, 0), np.float32), np.zeros((1, 0), np.int64)), 5)
    assert keys.tolist() == [[7, 3, -1]] and scores[0, 2] == -np.inf


def test_prefix_missing_names_the_appended_keys_and_refuses_anything_else():
    table = np.arange(10, 30, dtype=np.int64)
    assert prefix_missing(table, 12, keys_checksum(table[:12]), table[12:15], keys_checksum).tolist() == \
        list(range(25, 30))
    assert prefix_missing(table, 12, keys_checksum(table[:12]), np.zeros(0, np.int64), keys_checksum).tolist() == \
        list(range(22, 30))
    gone = np.delete(table, 3)  # a forgotten row: the saved keys are no longer a prefix
    assert prefix_missing(gone, 12, keys_checksum(table[:12]), np.zeros(0, np.int64), keys_checksum) is None
    assert prefix_missing(table, 12, keys_checksum(table[:12]), np.array([23, 24]), keys_checksum) is None  # 22 skipped


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_adds_wait_beside_the_mapped_index_and_search_as_one(data, tmp_path, kind):
    vectors, keys = data
    index = _mapped(data, tmp_path, kind)
    assert index.recent_count == EXTRA and index.ntotal == N + EXTRA  # the mapped file was not read in
    whole = VectorIndex.build(vectors, keys, ann_threshold=10 * N)  # exact reference over all
    queries = np.concatenate([vectors[N:N + 5], vectors[:5]]) + 0.01
    got, want = index.search(queries, 10)[1], whole.search(queries, 10)[1]
    assert got[:5, 0].tolist() == keys[N:N + 5].tolist()  # the added vectors are found first
    if kind == "flat":
        assert (got == want).all()
    small = np.sort(np.concatenate([keys[:300:10], keys[N::4]]))  # a few keys, some recent
    large = keys[::2]
    for allowed in (small, large):
        found = index.search(queries, 10, allowed)[1]
        assert np.isin(found, allowed).all()
        assert (found == whole.search(queries, 10, allowed)[1]).mean() >= (1.0 if kind == "flat" else 0.95)
    mixed = keys[[1, N + 2, 5, N + 7]]
    assert np.array_equal(index.vectors(mixed), vectors[[1, N + 2, 5, N + 7]])
    assert sorted(index.keys().tolist()) == keys.tolist()


def test_removing_a_recent_key_keeps_the_index_mapped_and_a_held_key_folds_them_in(data, tmp_path):
    vectors, keys = data
    index = _mapped(data, tmp_path, "flat")
    assert index.remove(keys[[N, N + 1]]) == 2
    assert index.recent_count == EXTRA - 2
    assert index.remove(keys[[0, N + 3]]) == 2  # a key of the file's: it is read into RAM
    assert index.recent_count == 0 and index.ntotal == N + EXTRA - 4
    assert index.search(vectors[N + 5:N + 6], 1)[1][0, 0] == keys[N + 5]


def test_adds_past_recent_max_fold_into_the_index(data, tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_index, "RECENT_MAX", EXTRA - 1)
    index = _mapped(data, tmp_path, "ivf")
    assert index.recent_count == 0 and index.ntotal == N + EXTRA
    assert index.search(data[0][N:N + 1], 1)[1][0, 0] == data[1][N]


def test_a_save_with_few_recent_vectors_writes_them_alone(data, tmp_path, monkeypatch):
    vectors, keys = data
    index = _mapped(data, tmp_path, "flat")
    before = _index_file(tmp_path)
    index.save(tmp_path, table_version=2)
    assert _index_file(tmp_path) == before and (tmp_path / RECENT_FILE).exists()  # the big file stayed
    loaded, sidecar = VectorIndex.load(tmp_path)
    assert sidecar.count == N and loaded.recent_count == EXTRA
    queries = vectors[N - 3:N + 3]
    assert (loaded.search(queries, 5)[1] == index.search(queries, 5)[1]).all()
    assert loaded.remove(keys[[N]]) == 1
    loaded.save(tmp_path, table_version=3)
    assert len(list(tmp_path.glob("vectors-recent-*.npz"))) == 1  # the older one was removed
    assert VectorIndex.load(tmp_path)[0].recent_count == EXTRA - 1
    monkeypatch.setattr(faiss_index, "SAVE_FOLD_MIN", 10)  # enough of them: one index file again
    loaded.save(tmp_path, table_version=4)
    assert _index_file(tmp_path) != before and not (tmp_path / RECENT_FILE).exists()
    again, sidecar = VectorIndex.load(tmp_path)
    assert again.recent_count == 0 and sidecar.count == again.ntotal == N + EXTRA - 1


def _store(path):
    return MemoryStore(path, model=ColourEncoder())


def test_a_store_write_leaves_the_index_file_and_a_torn_recent_file_is_caught_up(tmp_path):
    path = tmp_path / "m"
    with _store(path) as s:
        s.remember_many([f"note {i} blue" for i in range(20)])
    folder = path / INDEX_DIR
    before = _index_file(folder)
    with _store(path) as s:
        red = s.remember("a red note")
    assert _index_file(folder) == before
    with _store(path) as s:
        assert s.index.recent_count == 1 and s.recall("red", k=1)[0].id == red.id
    (recent,) = folder.glob("vectors-recent-*.npz")
    recent.write_bytes(recent.read_bytes()[:40])  # torn: the open catches the row up from the table
    with _store(path) as s:
        assert s.recall("red", k=1)[0].id == red.id
        assert sorted(s.index.keys().tolist()) == sorted(s.catalog.alive_vkeys().tolist())
        s.forget(red.id)
    with _store(path) as s:
        assert red.id not in s.catalog.by_id and s.index.ntotal == 20

