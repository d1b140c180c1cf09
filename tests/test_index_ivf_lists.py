"""IVF searches among a few allowed keys scan only the lists holding them (index/ivf_lists.py), and
give exact search's answer among those keys, also after adds and removes; reused id selectors."""

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from aimemory.index import VectorIndex  # noqa: E402
from aimemory.index import faiss as faiss_index  # noqa: E402
from aimemory.index.ivf_lists import ListMap  # noqa: E402


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _exact_among(vectors: dict[int, np.ndarray], query: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    held = [int(a) for a in allowed if int(a) in vectors]
    scores = {key: float(vectors[key] @ query[0]) for key in held}
    return sorted(scores, key=lambda key: -scores[key])[:k]


@pytest.fixture()
def ivf_index():
    rng = np.random.default_rng(11)
    n, d = 6000, 24
    vectors = _unit(rng, n, d)
    keys = np.arange(100, 100 + 2 * n, 2, dtype=np.int64)
    index = VectorIndex.build(vectors, keys, ann_threshold=1000)
    assert index.kind == "ivf"
    return index, dict(zip(keys.tolist(), vectors)), rng


def test_small_allowed_sets_search_only_their_lists_and_stay_exact(ivf_index, monkeypatch) -> None:
    index, stored, rng = ivf_index
    d = index.dim
    probed: list[int] = []
    real = faiss_index.ivf.search_preassigned

    def counting(ivf, queries, k, lists, list_scores, sel=None):
        probed.append(int((lists[0] >= 0).sum()))
        return real(ivf, queries, k, lists, list_scores, sel)

    monkeypatch.setattr(faiss_index.ivf, "search_preassigned", counting)
    nlist = faiss.extract_index_ivf(index._index).nlist

    def check(rounds: int) -> None:
        keys = np.array(sorted(stored), np.int64)
        for _ in range(rounds):
            allowed = np.sort(rng.choice(keys, int(rng.integers(1, 40)), replace=False))
            query = _unit(rng, 1, d)
            k = int(rng.integers(1, 50))
            probed.clear()
            scores, got = index.search(query, k, allowed)
            want = _exact_among(stored, query, allowed, k)
            assert got[0][: len(want)].tolist() == want
            assert (got[0][len(want):] == -1).all()
            assert probed and probed[0] <= len(allowed) < nlist  # only the lists holding them

    check(15)
    new = _unit(rng, 300, d)  # adds after the map exists: their lists come from the quantizer
    new_keys = np.arange(10**9, 10**9 + 300, dtype=np.int64)
    index.add(new, new_keys)
    stored.update(zip(new_keys.tolist(), new))
    gone = np.array(sorted(stored), np.int64)[::7]
    index.remove(gone)  # removals reorder lists, never move a key to another list
    for key in gone.tolist():
        del stored[key]
    check(25)
    allowed = np.concatenate([new_keys[:5], gone[:5]])  # removed keys are known but not found
    got = index.search(_unit(rng, 1, d), 20, np.sort(allowed))[1][0]
    assert set(got[got >= 0].tolist()) == set(new_keys[:5].tolist())


def test_an_unknown_key_probes_as_before_and_still_finds_the_others(ivf_index) -> None:
    index, stored, rng = ivf_index
    keys = np.array(sorted(stored), np.int64)
    allowed = np.sort(np.concatenate([keys[:10], [1, 3]]))  # 1 and 3 were never stored
    query = _unit(rng, 1, index.dim)
    got = index.search(query, 12, allowed)[1][0]
    assert got[got >= 0].tolist() == _exact_among(stored, query, allowed, 12)


def test_list_map_folds_many_adds_into_its_sorted_arrays(ivf_index) -> None:
    index, stored, rng = ivf_index
    ivf = faiss.extract_index_ivf(index._index)
    lists = ListMap(ivf)
    more = _unit(rng, 5000, index.dim)
    more_keys = np.arange(5 * 10**8, 5 * 10**8 + 5000, dtype=np.int64)
    lists.note_added(ivf, more, more_keys)  # past the fold size: merged and sorted
    ivf.add_with_ids(more, more_keys)
    for key in (more_keys[0], more_keys[-1], min(stored)):
        (list_no,) = lists.lists_of(np.array([key])).tolist()
        ids = faiss.rev_swig_ptr(ivf.invlists.get_ids(list_no), ivf.invlists.list_size(list_no))
        assert int(key) in np.array(ids).tolist()
    assert lists.lists_of(np.array([7])) is None


def test_frozen_allowed_arrays_reuse_their_selector(ivf_index, monkeypatch) -> None:
    index, stored, rng = ivf_index
    built = []
    real = faiss_index.id_selector
    monkeypatch.setattr(faiss_index, "id_selector", lambda allowed: built.append(len(allowed)) or real(allowed))
    keys = np.array(sorted(stored), np.int64)
    frozen = keys[::2].copy()
    frozen.flags.writeable = False
    query = _unit(rng, 1, index.dim)
    first = index.search(query, 10, frozen)
    again = index.search(query, 10, frozen)
    assert built == [len(frozen)]  # made once
    assert first[1].tolist() == again[1].tolist()
    writable = keys[::2].copy()
    index.search(query, 10, writable)
    index.search(query, 10, writable)
    assert built == [len(frozen)] + [len(writable)] * 2  # a writable array may change: never reused


@pytest.mark.parametrize("keys", [np.arange(50, 650, dtype=np.int64),  # handed out in order: a table
                                  np.arange(600, dtype=np.int64) * 10**6])  # far apart: sorted
def test_list_map_answers_as_the_lists_do_for_dense_and_sparse_keys(keys) -> None:
    from aimemory.index.ivf_lists import KeyLookup

    rng = np.random.default_rng(5)
    lists = rng.integers(0, 40, len(keys)).astype(np.int32)
    lookup = KeyLookup(keys, lists)
    assert (lookup.table is not None) == (keys[-1] - keys[0] < 10_000)
    ask = np.concatenate([rng.permutation(keys)[:50], [keys[0] - 1, keys[-1] + 1, 10**15]])
    known, found = lookup.find(ask)
    assert known.tolist() == [True] * 50 + [False] * 3
    assert found.tolist() == [int(lists[np.flatnonzero(keys == k)[0]]) for k in ask[:50]]
    held, held_lists = lookup.items()
    order = np.argsort(held)
    assert held[order].tolist() == keys.tolist() and held_lists[order].tolist() == lists.tolist()
