"""Flat searches that skip FAISS's selector scan give FAISS's own answers: a small allowed set scored
by gathering its rows, and the lone-query scan ordered in numpy."""

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from aimemory.index import VectorIndex  # noqa: E402


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _selector_search(index: VectorIndex, vectors: np.ndarray, keys: np.ndarray, query: np.ndarray, k: int,
                     allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's own answer: a fresh flat index searched with an id selector (or none)."""
    ref = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    ref.add_with_ids(vectors, keys)
    params = None if allowed is None else faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
    return ref.search(query, k, params=params)


@pytest.mark.parametrize("shuffled", [False, True])
def test_subset_search_matches_selector_search(shuffled: bool) -> None:
    rng = np.random.default_rng(3)
    n, d = 4000, 32
    vectors = _unit(rng, n, d)
    keys = np.arange(10, 10 + 3 * n, 3, dtype=np.int64)
    if shuffled:  # keys added out of order: positions go through the argsort
        order = rng.permutation(n)
        vectors, keys = vectors[order], keys[order]
    index = VectorIndex.build(vectors, keys, ann_threshold=10 * n)
    index.remove(keys[:50])  # removed keys shift storage rows
    live = np.isin(keys, keys[:50], invert=True)
    for _ in range(20):
        m = int(rng.integers(1, n // 50))  # within SUBSET_SHARE
        allowed = np.sort(rng.choice(keys, m, replace=False))
        allowed = np.union1d(allowed, [1, 2])  # keys the index never held are skipped
        k = int(rng.integers(1, 60))
        query = _unit(rng, 1, d)
        got_s, got_k = index.search(query, k, allowed)
        want_s, want_k = _selector_search(index, vectors[live], keys[live], query, min(k, index.ntotal), allowed)
        held = want_k[0] >= 0
        assert got_k[0][: held.sum()].tolist() == want_k[0][held].tolist()
        np.testing.assert_allclose(got_s[0][: held.sum()], want_s[0][held], atol=1e-5)
        assert (got_k[0][held.sum():] == -1).all()


def test_lone_query_scan_is_ordered_best_first() -> None:
    rng = np.random.default_rng(4)
    vectors = _unit(rng, 3000, 16)
    keys = np.arange(1, 3001, dtype=np.int64)
    index = VectorIndex.build(vectors, keys, ann_threshold=10_000)
    for _ in range(5):
        query = _unit(rng, 1, 16)
        got_s, got_k = index.search(query, 25)
        want_s, want_k = _selector_search(index, vectors, keys, query, 25, None)
        assert got_k.tolist() == want_k.tolist()
        np.testing.assert_allclose(got_s, want_s, atol=1e-5)


def test_subset_search_of_nothing_held() -> None:
    rng = np.random.default_rng(5)
    index = VectorIndex.build(_unit(rng, 500, 8), np.arange(1, 501, dtype=np.int64), ann_threshold=1000)
    scores, keys = index.search(_unit(rng, 1, 8), 5, np.asarray([1000, 1001], np.int64))
    assert (keys == -1).all()


def test_large_allowed_set_scan_matches_selector_search() -> None:
    rng = np.random.default_rng(6)
    n, d = 3000, 24
    vectors = _unit(rng, n, d)
    keys = rng.permutation(np.arange(5, 5 + 2 * n, 2, dtype=np.int64))
    index = VectorIndex.build(vectors, keys, ann_threshold=10 * n)
    for share in (0.06, 0.3, 0.9, 1.0):
        allowed = np.sort(rng.choice(keys, int(share * n), replace=False))
        allowed = np.union1d(allowed, [1, 10 ** 6])  # keys the index never held
        query = _unit(rng, 1, d)
        got_s, got_k = index.search(query, 40, allowed)
        want_s, want_k = _selector_search(index, vectors, keys, query, 40, allowed)
        assert got_k.tolist() == want_k.tolist()
        np.testing.assert_allclose(got_s, want_s, atol=1e-5)


def _kept_filter(seed: int, n: int, d: int, m: int):
    """A flat index of n unit vectors (keys 1..n) and m of its keys as recall hands out a cached
    filter's keys (read-only) -> (rng, vectors, keys, index, allowed)."""
    rng = np.random.default_rng(seed)
    vectors = _unit(rng, n, d)
    keys = np.arange(1, n + 1, dtype=np.int64)
    index = VectorIndex.build(vectors, keys, ann_threshold=10 * n)
    allowed = np.sort(rng.choice(keys, m, replace=False))
    allowed.flags.writeable = False
    return rng, vectors, keys, index, allowed


def test_a_repeated_read_only_filter_reuses_its_rows_until_the_index_changes(monkeypatch) -> None:
    from aimemory.index.flat_search import FlatSearch

    looked_up = []
    positions = FlatSearch.positions
    monkeypatch.setattr(FlatSearch, "positions",
                        lambda self, vkeys: looked_up.append(len(vkeys)) or positions(self, vkeys))
    rng, vectors, keys, index, allowed = _kept_filter(7, 2000, 16, 30)
    d = vectors.shape[1]
    query = _unit(rng, 1, d)
    first = index.search(query, 5, allowed)
    np.testing.assert_array_equal(index.search(query, 5, allowed)[1], first[1])
    assert len(looked_up) == 1  # looked up once
    writable = allowed.copy()  # a caller's array may change: looked up every time
    index.search(query, 5, writable)
    index.search(query, 5, writable)
    assert len(looked_up) == 3
    index.remove(allowed[:1])  # storage rows shift: the kept rows must not be used
    got_s, got_k = index.search(query, 5, allowed)
    assert len(looked_up) == 4
    gone = int(allowed[0]) - 1
    want_s, want_k = _selector_search(index, np.delete(vectors, gone, 0), np.delete(keys, gone), query, 5, allowed)
    assert got_k[0].tolist() == want_k[0].tolist()
    np.testing.assert_allclose(got_s[0], want_s[0], atol=1e-5)


def test_a_kept_filter_scores_its_own_copy_of_its_rows_and_drops_it_on_change() -> None:
    """A repeated read-only filter is scored from a contiguous copy of its rows: the same answers as
    FAISS's selector search, first and later, and after the index changes (add, remove) the copy
    made before is not used."""
    from aimemory.index.flat_search import GATHER_MAX_BYTES

    rng, vectors, keys, index, allowed = _kept_filter(11, 3000, 24, 200)
    n, d = vectors.shape
    assert len(allowed) * d * 4 <= GATHER_MAX_BYTES
    for query in _unit(rng, 3, d):
        for _ in range(2):  # the first search makes the copy, the second reads it
            got_s, got_k = index.search(query[None], 7, allowed)
            want_s, want_k = _selector_search(index, vectors, keys, query[None], 7, allowed)
            assert got_k[0].tolist() == want_k[0].tolist()
            np.testing.assert_allclose(got_s[0], want_s[0], atol=1e-5)
    query = vectors[int(allowed[5]) - 1][None]  # its own row is the best hit while it is held
    assert index.search(query, 1, allowed)[1][0, 0] == allowed[5]
    index.remove(allowed[5:6])
    extra = _unit(rng, 1, d)
    index.add(extra, np.asarray([n + 1]))
    got_s, got_k = index.search(query, 3, allowed)
    left = np.delete(np.arange(n), int(allowed[5]) - 1)
    want_s, want_k = _selector_search(index, np.vstack([vectors[left], extra]), np.append(keys[left], n + 1),
                                      query, 3, allowed)
    assert got_k[0].tolist() == want_k[0].tolist() and allowed[5] not in got_k[0]
    np.testing.assert_allclose(got_s[0], want_s[0], atol=1e-5)


def test_a_kept_filter_gives_its_last_querys_scores_of_any_of_its_keys() -> None:
    """What recall's background sample reads instead of its vectors: the cosines the last search of
    the same query gave the filter's keys, and nothing for another query, a key outside the filter
    or an index that changed since."""
    rng, vectors, keys, index, allowed = _kept_filter(13, 10_000, 16, 150)
    query, other = _unit(rng, 2, 16)
    sample = allowed[::3]
    assert index.scores_of(query, allowed, sample) is None  # nothing searched yet
    index.search(query[None], 5, allowed)
    np.testing.assert_allclose(index.scores_of(query, allowed, sample), vectors[sample - 1] @ query, atol=1e-5)
    assert index.scores_of(other, allowed, sample) is None
    outside = np.setdiff1d(keys, allowed)[:1]
    assert index.scores_of(query, allowed, np.append(sample, outside)) is None
    assert index.scores_of(query, allowed.copy(), sample) is None  # a caller's own (writable) array
    index.remove(allowed[:1])
    assert index.scores_of(query, allowed, sample) is None
