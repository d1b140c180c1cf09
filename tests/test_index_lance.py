"""Lance ANN index: recall@10 against exact search on clustered, embedding-shaped data, with the
tuned defaults (Lance's own defaults are far below), filters, and refresh after appends."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _vectors import clustered, exact_top, view_rows  # noqa: E402

from aimemory.index import recall_at_k  # noqa: E402
from aimemory.index.lance import TUNED_FILE, AnnParams, LanceIndex, choose_index, search_ladder  # noqa: E402
from aimemory.storage import VectorTable  # noqa: E402

N, DIM, Q = 3000, 64, 100  # small: PQ training is the slow part of this test


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    allv = clustered(N + Q, DIM, seed=3)
    base, queries = allv[:N], allv[N:]
    table = VectorTable(tmp_path_factory.mktemp("ann"), DIM)
    table.add(view_rows(base))
    index = LanceIndex(table, DIM, N)
    index.build(AnnParams.for_size(N, DIM))  # refresh() would wait for MIN_ROWS
    return table, index, base, queries


def test_defaults_reach_recall(built):
    table, index, base, queries = built
    assert index.params is not None and index.kind == "lance-ivf_pq"
    truth = exact_top(base, queries, 10) + 1  # vkeys start at 1
    scores, got = index.search(queries, 10)
    assert recall_at_k(got, truth) >= 0.95
    # scores are cosines, best first, like the FAISS index
    exact = np.sort(queries[0] @ base.T)[::-1][:10]
    assert abs(scores[0, 0] - exact[0]) < 0.02 and np.all(np.diff(scores[0]) <= 1e-6)


def test_filter_is_applied_inside_the_search(built):
    table, index, base, queries = built
    allowed = np.arange(1, N + 1, 7, dtype=np.int64)
    _, got = index.search(queries[:5], 10, allowed)
    assert np.isin(got, allowed).all() and (got >= 0).all()


def test_new_rows_are_found_before_the_index_is_refreshed(built):
    table, index, base, queries = built
    extra = clustered(50, DIM, seed=99)
    table.add(view_rows(extra, start_vkey=N + 1))
    index.add(extra, np.arange(N + 1, N + 51))
    _, got = index.search(extra[:5], 1)
    assert got[:, 0].tolist() == list(range(N + 1, N + 6))


def test_params_and_choice():
    p = AnnParams.for_size(1_000_000, 512)
    assert (p.num_partitions, p.num_sub_vectors, p.refine_factor) == (1000, 64, 20)
    assert p.nprobes >= 60
    assert choose_index("auto", Path("/tmp/x"))[0] == "faiss"
    assert choose_index("lance", Path("/tmp/x"))[0] == "lance"
    with pytest.raises(ValueError):
        choose_index("bogus", Path("/tmp/x"))


def test_small_store_searches_exactly(tmp_path):
    from conftest import ColourEncoder

    from aimemory import MemoryStore

    store = MemoryStore(tmp_path / "s", model=ColourEncoder(), index="lance")
    store.remember_many(["red one", "blue two", "green three"])
    assert store.stats()["index"]["kind"] == "lance-exact"
    assert store.recall("blue", k=1)[0].memory.content == "blue two"
    store.forget(store.recall("blue", k=1)[0].id)
    assert [h.memory.content for h in store.recall("blue", k=3)] != ["blue two"]
    assert len(store.recall("blue", k=3)) == 2
    store.close()


def test_exact_stream_is_exact(built):
    table, index, base, queries = built
    got = index.exact_stream(queries[:20], 10)
    truth = exact_top(base, queries[:20], 10) + 1
    assert recall_at_k(got, truth) == 1.0


@pytest.mark.heavy
def test_weak_settings_are_tuned_up_and_kept(tmp_path, monkeypatch):
    """Start from settings far too weak (1 partition probed, no re-ranking): tuning walks the ladder
    to the target on its own queries, held-out queries clear 0.95 too, and a reader that opens the
    table later uses the tuned settings, not the size-based defaults."""
    allv = clustered(N + Q, DIM, seed=5)
    base, queries = allv[:N], allv[N:]
    table = VectorTable(tmp_path, DIM)
    table.add(view_rows(base))
    index = LanceIndex(table, DIM, N)
    weak = AnnParams("IVF_PQ", num_partitions=32, num_sub_vectors=8, nprobes=1, refine_factor=1)
    index.build(weak, tune=False)
    truth = exact_top(base, queries, 10) + 1
    assert recall_at_k(index.search(queries, 10)[1], truth) < 0.9  # the weak start really is weak
    recall = index.tune()
    assert recall >= 0.97 and index.params != weak
    assert recall_at_k(index.search(queries, 10)[1], truth) >= 0.95
    index._save_tuned(recall, N)
    assert (tmp_path / "index" / TUNED_FILE).is_file()
    import aimemory.index.lance as index_lance

    monkeypatch.setattr(index_lance, "MIN_ROWS", N // 2)  # this small table counts as indexed
    reader = LanceIndex(VectorTable(tmp_path, DIM), DIM, N)
    reader.refresh()
    assert reader.params == index.params


def test_search_ladder_only_grows():
    for itype in ("IVF_PQ", "IVF_HNSW_SQ", "IVF_FLAT"):
        steps = search_ladder(AnnParams.for_size(100_000, 512, itype))
        for a, b in zip(steps, steps[1:]):
            assert b.nprobes >= a.nprobes and b.refine_factor >= a.refine_factor and b.ef >= a.ef
        assert all(s.nprobes <= s.num_partitions for s in steps)


def test_tuned_settings_of_a_remote_store_live_in_the_bucket():
    """On an object store every reader must use the same tuned settings: they go to an object
    next to the table, not to one machine's cache folder."""
    from types import SimpleNamespace

    objects: dict[str, bytes] = {}
    remote = SimpleNamespace(put=lambda name, data: objects.__setitem__(name, data),
                             get=lambda name: (objects[name], "etag") if name in objects else None)
    table = SimpleNamespace(remote=remote, folder=Path("/nonexistent"))
    writer = LanceIndex(table, DIM, N)
    writer.params = AnnParams("IVF_PQ", 32, 8, nprobes=4, refine_factor=40)
    writer._save_tuned(0.99, N)
    assert list(objects) == ["_aimemory/lance_ann.json"]
    assert LanceIndex(table, DIM, N)._load_tuned() == writer.params
    assert LanceIndex(table, DIM, N, "IVF_HNSW_SQ")._load_tuned() is None  # another index type


def test_index_type_is_chosen_recorded_and_rebuilt_on_change(tmp_path, monkeypatch):
    """index='lance:IVF_HNSW_SQ' picks the type (recorded in the manifest, so later opens keep it);
    a table indexed with another type is rebuilt with the one asked for; bad types fail early."""
    from conftest import ColourEncoder

    import aimemory.index.lance as index_lance
    from aimemory import MemoryStore
    from aimemory.index.lance import lance_index_type

    assert lance_index_type("lance:ivf_hnsw_sq") == "IVF_HNSW_SQ" and lance_index_type("lance") is None
    with pytest.raises(ValueError, match="IVF_PQ"):
        choose_index("lance:HNSW", Path("/tmp/x"))
    store = MemoryStore(tmp_path / "s", model=ColourEncoder(), index="lance:IVF_HNSW_SQ")
    assert store.manifest.extra["lance_index_type"] == "IVF_HNSW_SQ"
    assert "lance:IVF_HNSW_SQ" in store.stats()["index"]["why"]
    store.close()

    monkeypatch.setattr(index_lance, "MIN_ROWS", 1000)
    table = VectorTable(tmp_path / "t", DIM)
    table.add(view_rows(clustered(N, DIM, seed=8)))
    pq = LanceIndex(table, DIM, N)
    pq.build(AnnParams.for_size(N, DIM), tune=False)
    hnsw = LanceIndex(table, DIM, N, "IVF_HNSW_SQ")
    hnsw.refresh()
    assert table._table.index_stats("vector_idx").index_type == "IVF_HNSW_SQ"
    assert hnsw.kind == "lance-ivf_hnsw_sq"
