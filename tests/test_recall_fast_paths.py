"""Recall's cached masks and small-set search give the same hits as recomputing every mask and
searching FAISS with an id selector, on random filters, and follow every change of the store:
writes (also those waiting in the write-ahead segment), forgets, metadata updates and expiry."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from conftest import ColourEncoder, solid

from aimemory import MemoryStore
from aimemory.index import faiss as faiss_index
from aimemory.storage.catalog import Catalog

COLOURS = ["red", "blue", "green"]


def _no_fast_paths(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(Catalog, "memo", lambda self, key, build, grow=None: build())
    mp.setattr(faiss_index, "SUBSET_SHARE", 0.0)


def _hits(store: MemoryStore, query: object, **kw) -> list[tuple[str, float, float | None]]:
    return [(h.id, h.score, h.relevance) for h in store.recall(query, **kw)]


def _same(store: MemoryStore, query: object, **kw) -> list[tuple[str, float, float | None]]:
    """The hits of the fast recall, checked against the reference path."""
    with pytest.MonkeyPatch.context() as mp:
        now = time.time()
        mp.setattr(time, "time", lambda: now)  # recency weights must not drift between the two calls
        got = _hits(store, query, **kw)
        _no_fast_paths(mp)
        want = _hits(store, query, **kw)
    assert [g[0] for g in got] == [w[0] for w in want], kw
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=1e-5)
    np.testing.assert_allclose([g[2] or 0.0 for g in got], [w[2] or 0.0 for w in want], atol=1e-5)
    return got


@pytest.fixture
def filled(tmp_path):
    with MemoryStore(tmp_path / "mem", model=ColourEncoder()) as s:
        texts = [f"note {i} {COLOURS[i % 3]} {COLOURS[(i // 3) % 3]}" for i in range(400)]
        s.remember_many(texts, metadata=[{"g": i % 40, "tags": [f"t{i % 3}"]} for i in range(400)])
        s.remember_many([solid(c, noise_seed=i) for i, c in enumerate(COLOURS * 7)],
                        metadata=[{"g": i % 40} for i in range(21)])
        s.remember_many(["other tenant red"] * 1, namespace="other")
        yield s


@pytest.mark.parametrize("subset_share", [None, 0.2])
def test_random_filters_match_the_reference(filled, monkeypatch, subset_share):
    if subset_share is not None:  # this small store's filters then take the gathered-subset search
        monkeypatch.setattr(faiss_index, "SUBSET_SHARE", subset_share)
    rng = random.Random(7)
    t0 = min(m.created_at.timestamp() for m in [filled.get(h.id) for h in filled.recall("red", k=50)])
    for _ in range(25):
        kw: dict = {"k": rng.choice([1, 5, 10, 30])}
        pick = rng.random()
        if pick < 0.3:
            kw["where"] = {"g": rng.sample(range(40), rng.choice([1, 2, 4]))}
        elif pick < 0.5:
            kw["modality"] = rng.choice(["image", "text", ["image", "text"]])
        elif pick < 0.6:
            kw["since"] = t0 + rng.random() * 0.5
        elif pick < 0.7:
            kw["where"] = {"tags": f"t{rng.randrange(3)}"}
        query = rng.choice([f"{rng.choice(COLOURS)} note", solid(rng.choice(COLOURS), noise_seed=99)])
        if isinstance(query, str) and rng.random() < 0.3:
            kw["hybrid"] = True  # keyword-only hits are calibrated against their kind's sample
        if rng.random() < 0.2:
            kw["half_life"] = 3600.0
        _same(filled, query, **kw)
    assert _same(filled, "red", namespace="other", k=5)[0][0]
    assert all(h[0] for h in _same(filled, "red", where={"g": 3}, k=50))


def test_cached_masks_follow_writes_forgets_updates_and_expiry(filled, clock):
    seen = _same(filled, "green", modality="text", k=3)
    assert _same(filled, "green", where={"g": 99}, k=3) == []  # this filter's mask is cached now
    new = filled.remember("green green green", metadata={"g": 99})  # may wait in the write-ahead segment
    assert _same(filled, "green green green", modality="text", k=3)[0][0] == new.id
    assert [h[0] for h in _same(filled, "green", where={"g": 99}, k=3)] == [new.id]
    filled.forget(new.id)
    assert new.id not in [h[0] for h in _same(filled, "green green green", modality="text", k=3)]
    assert _same(filled, "green", where={"g": 99}, k=3) == []
    top = seen[0][0]
    assert top not in [h[0] for h in _same(filled, "green", where={"g": 77}, k=50)]
    filled.update(top, metadata={"g": 77})
    assert [h[0] for h in _same(filled, "green", where={"g": 77}, k=3)] == [top]
    filled.update(top, ttl=60)
    assert top in [h[0] for h in _same(filled, "green", modality="text", k=3)]
    clock[0] += 120  # expired: gone from every recall, cached mask or not
    assert top not in [h[0] for h in _same(filled, "green", modality="text", k=3)]
    assert top not in [h[0] for h in _same(filled, "green", k=3)]


def test_hits_show_their_own_namespace_memory_when_an_id_is_in_two(tmp_path):
    """A hit's memory is read from its primary view's row, found by position: the same id in another
    namespace (and a replaced older version of it) must not be the one shown."""
    with MemoryStore(tmp_path / "mem", model=ColourEncoder()) as s:
        s.remember("red first version", id="shared", namespace="a", metadata={"v": 1})
        s.remember("blue in b", id="shared", namespace="b")
        s.remember("red second version", id="shared", namespace="a", metadata={"v": 2})  # replaces
        s.remember_many([solid("red", noise_seed=i) for i in range(2)], namespace="a")
        (hit,) = [h for h in s.recall("red", namespace="a", k=5) if h.id == "shared"]
        assert hit.memory.content == "red second version" and hit.memory.metadata["v"] == 2
        assert hit.memory.namespace == "a"
        (other,) = s.recall("blue", namespace="b", k=5)
        assert other.memory.content == "blue in b" and other.memory.namespace == "b"


def test_a_search_fetches_k_views_when_each_allowed_view_is_another_memory_of_one_kind(tmp_path, monkeypatch):
    """Short notes have one view each, all of one kind: k views are the k best memories. A long
    note's chunks are several views of one memory, and photos are another kind whose calibration
    differs (a lower cosine may be more relevant): then the search fetches more."""
    asked: list[int] = []
    search = faiss_index.VectorIndex.search
    monkeypatch.setattr(faiss_index.VectorIndex, "search", lambda self, q, k, allowed=None: (
        asked.append(k), search(self, q, k, allowed))[1])
    with MemoryStore(tmp_path / "notes", model=ColourEncoder()) as s:
        s.remember_many([f"note {i} {COLOURS[i % 3]}" for i in range(60)])
        hits = s.recall("red", k=5)
        assert asked == [5] and len({h.id for h in hits}) == 5
        s.remember(" ".join(f"red word{i}" for i in range(200)))  # several chunks, one memory
        asked.clear()
        hits = s.recall("red", k=5)
        assert asked and asked[0] > 5 and len({h.id for h in hits}) == 5
        assert [h.id for h in hits] == [w[0] for w in _same(s, "red", k=5)]
    with MemoryStore(tmp_path / "mixed", model=ColourEncoder()) as s:
        s.remember_many([f"note {i} {COLOURS[i % 3]}" for i in range(30)])
        s.remember_many([solid(c, noise_seed=i) for i, c in enumerate(COLOURS * 4)])
        assert not s.catalog.array("view").any()  # every view a first view: the two kinds decide
        asked.clear()
        hits = s.recall("red", k=5)
        assert asked and asked[0] > 5
        assert [h.id for h in hits] == [w[0] for w in _same(s, "red", k=5)]
