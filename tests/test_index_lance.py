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
from aimemory.index_lance import AnnParams, LanceIndex, choose_index  # noqa: E402
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
