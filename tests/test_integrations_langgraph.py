"""aimemory as a LangGraph BaseStore. LangGraph ships no conformance suite, so this is a differential
test: the same seeded random operation sequences run on LangGraph's ``InMemoryStore`` (the
reference) and on ``AimemoryStore``, and every result whose contract is deterministic is compared:
get, put/delete (through what later reads see), search without a query (filters, limit/offset),
search with a query (same embeddings on both sides: same ranking and cosines), list_namespaces.

Two reference behaviours that are not LangGraph's contract are pinned down in ``Reference``: search
without a query lists in namespace-then-key order (InMemoryStore's order is insertion order, its
Postgres store's is recency), and namespaces that hold no item are not listed (InMemoryStore lists a
namespace once read or emptied; its Postgres store does not). One InMemoryStore bug is worked
around: a put keeps the vectors of the value it replaces when the new value has none."""

from __future__ import annotations

import asyncio
import random

import pytest

pytest.importorskip("langgraph")
pytest.importorskip("langchain_core")

from conftest import ColourEncoder  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langgraph.store.base import (  # noqa: E402
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore  # noqa: E402

from aimemory import MemoryStore  # noqa: E402
from aimemory.integrations.langgraph import AimemoryStore, memory_id  # noqa: E402

DIM = 16
SEEDS = range(5)
BATCHES_PER_SEED = 21
OPS_PER_BATCH = (8, 32)  # large batches: a write batch costs two Lance commits, whatever its size
NAMESPACES = [("a",), ("a", "x"), ("a", "y"), ("b",), ("b", "x", "z"), ("c", "ü é"), ("a", "x", "deep", "er")]
KEYS = ["k1", "k2", "k3", "k-4", "ключ", "k 6"]
WORDS = ["tea", "coffee", "green", "blue", "cat", "dog", "meeting", "paris"]
TAGS = ["work", "home", "misc"]


class Reference(InMemoryStore):
    """InMemoryStore, listing in namespace-then-key order, not listing empty namespaces, and dropping
    an item's old vectors when it is put again (InMemoryStore ranks a value stored with
    ``index=False`` by the vectors of the value it replaced)."""

    def _extract_texts(self, put_ops):
        for namespace, key in put_ops:  # a put replaces the item's vectors (InMemoryStore keeps stale ones)
            self._vectors[namespace].pop(key, None)
        return super()._extract_texts(put_ops)

    def _handle_list_namespaces(self, op):
        for ns in [ns for ns, items in self._data.items() if not items]:
            del self._data[ns]
        return super()._handle_list_namespaces(op)

    def _filter_items(self, op):
        everything = super()._filter_items(op._replace(offset=0, limit=10**9))
        return sorted(everything, key=lambda pair: (pair[0].namespace, pair[0].key))


def _index():
    return {"dims": DIM, "embed": DeterministicFakeEmbedding(size=DIM), "fields": ["text"]}


class OpMaker:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.counter = 0

    def value(self) -> dict:
        r = self.rng
        self.counter += 1
        value = {"n": r.randrange(10), "tag": r.choice(TAGS), "nested": {"k": r.choice(TAGS), "x": r.random() < .5},
                 "list": r.sample(WORDS, r.randrange(3))}
        if r.random() < 0.8:  # unique texts: distinct vectors, so rankings have no ties
            value["text"] = " ".join(r.sample(WORDS, 2)) + f" #{self.counter}"
        return value

    def filter(self):
        r = self.rng
        return r.choice([None, {"tag": r.choice(TAGS)}, {"n": {"$gte": r.randrange(10)}},
                         {"n": {"$lt": r.randrange(10), "$ne": 3}}, {"nested": {"k": r.choice(TAGS)}},
                         {"tag": {"$ne": r.choice(TAGS)}, "n": {"$lte": 6}}, {"list": r.sample(WORDS, 1)},
                         {"nested": {"x": True}}, {"n": {"$eq": r.randrange(10)}}])

    def prefix(self):
        ns = self.rng.choice(NAMESPACES)
        return ns[:self.rng.randrange(len(ns) + 1)]

    def op(self):
        r = self.rng
        kind = r.random()
        if kind < 0.45:
            # not ["tag"]: InMemoryStore fails when one text is in two puts of a batch
            index = r.choice([None, None, None, False, ["text"]])
            return PutOp(r.choice(NAMESPACES), r.choice(KEYS), self.value(), index=index)
        if kind < 0.55:
            return PutOp(r.choice(NAMESPACES), r.choice(KEYS), None)
        if kind < 0.70:
            return GetOp(r.choice(NAMESPACES + [("nowhere",)]), r.choice(KEYS))
        if kind < 0.85:
            return SearchOp(self.prefix(), self.filter(), r.randrange(1, 12), r.randrange(0, 5))
        if kind < 0.93:
            return SearchOp(self.prefix(), self.filter(), r.randrange(1, 8), r.randrange(0, 3),
                            query=" ".join(r.sample(WORDS, 2)))
        conditions = []
        for _ in range(r.randrange(3)):
            path = list(r.choice(NAMESPACES))[:r.randrange(1, 3)]
            if r.random() < 0.3:
                path[r.randrange(len(path))] = "*"
            conditions.append(MatchCondition(r.choice(["prefix", "suffix"]), tuple(path)))
        return ListNamespacesOp(tuple(conditions) or None, r.choice([None, 1, 2, 3]), r.randrange(1, 10),
                                r.randrange(0, 3))


def _same(ours, ref, op, where: str) -> None:
    if isinstance(op, PutOp):
        assert ours is None and ref is None, where
    elif isinstance(op, GetOp):
        assert (ours is None) == (ref is None), where
        if ref is not None:
            assert (ours.namespace, ours.key, ours.value) == (ref.namespace, ref.key, ref.value), where
            assert ours.created_at <= ours.updated_at, where
    elif isinstance(op, ListNamespacesOp):
        assert ours == ref, where
    else:
        assert [(i.namespace, i.key, i.value) for i in ours] == [(i.namespace, i.key, i.value) for i in ref], where
        for a, b in zip(ours, ref):
            assert (a.score is None) == (b.score is None), where
            if b.score is not None:
                assert a.score == pytest.approx(b.score, abs=1e-4), where


def test_differential_against_langgraphs_in_memory_store(tmp_path):
    total = 0
    for seed in SEEDS:
        maker = OpMaker(seed)
        ours = AimemoryStore(tmp_path / f"mem{seed}", index=_index())
        ref = Reference(index=_index())
        for b in range(BATCHES_PER_SEED):
            ops = [maker.op() for _ in range(maker.rng.randint(*OPS_PER_BATCH))]
            if b % 7 == 3:
                got = asyncio.run(ours.abatch(ops))
            else:
                got = ours.batch(ops)
            want = ref.batch(ops)
            for i, (op, a, r) in enumerate(zip(ops, got, want)):
                _same(a, r, op, f"seed {seed} batch {b} op {i}: {op}")
            total += len(ops)
        # what was written survives a reopen by path
        ours.store.close()
        again = AimemoryStore(tmp_path / f"mem{seed}", index=_index())
        everything = SearchOp((), None, 1000, 0)
        _same(again.batch([everything])[0], ref.batch([everything])[0], everything, f"seed {seed} reopened")
        again.store.close()
    assert total >= 2000, total


def test_the_convenience_methods_sync_and_async(tmp_path):
    store = AimemoryStore(tmp_path / "mem", index=_index())
    store.put(("users", "ada"), "tea", {"text": "Ada drinks green tea", "cups": 3})
    store.put(("users", "ada"), "code", {"text": "Ada writes programs"}, index=False)
    item = store.get(("users", "ada"), "tea")
    assert item.value == {"text": "Ada drinks green tea", "cups": 3}
    first = item.created_at
    store.put(("users", "ada"), "tea", {"text": "Ada drinks black tea", "cups": 4})
    item = store.get(("users", "ada"), "tea")
    assert item.created_at == first and item.updated_at > first
    hits = store.search(("users",), query="Ada drinks black tea", limit=2)
    assert [h.key for h in hits] == ["tea", "code"] and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].score is None  # index=False: listed after the ranked items, unscored
    assert store.list_namespaces(prefix=("users",)) == [("users", "ada")]

    async def go():
        await store.aput(("users", "bob"), "x", {"text": "hello"})
        await store.adelete(("users", "ada"), "code")
        return await store.aget(("users", "bob"), "x"), await store.asearch(("users",), filter={"cups": 4})

    bob, found = asyncio.run(go())
    assert bob.value == {"text": "hello"} and [f.key for f in found] == ["tea"]
    store.delete(("users", "nobody"), "missing")  # deleting what is not there is no error
    store.store.close()


def test_namespace_rules(tmp_path):
    store = AimemoryStore(tmp_path / "mem", index=_index())
    with pytest.raises(InvalidNamespaceError):
        store.put(("a.b",), "k", {"v": 1})
    with pytest.raises(InvalidNamespaceError):
        store.batch([GetOp(("",), "k")])
    store.store.close()


def test_ttl_expires_items_and_reads_refresh_it(tmp_path):
    import time

    store = AimemoryStore(tmp_path / "mem", index=_index(), ttl={"default_ttl": 60})
    store.put(("t",), "long", {"text": "stays"})  # default_ttl: an hour
    store.put(("t",), "forever", {"text": "never expires"}, ttl=None)
    store.put(("t",), "short", {"text": "gone soon"}, ttl=0.05)  # minutes: 3 s (the write must outlive it)
    time.sleep(3.2)
    assert store.get(("t",), "short") is None
    assert sorted(i.key for i in store.search(("t",))) == ["forever", "long"]
    mid = memory_id(("t",), "long")
    before = store.store.get(mid, store.namespace).expires_at
    store.refresh_fraction = 0.0  # refresh on every read (normally once a tenth of the TTL has passed)
    store.get(("t",), "long", refresh_ttl=False)
    assert store.store.get(mid, store.namespace).expires_at == before
    store.get(("t",), "long")
    after = store.store.get(mid, store.namespace).expires_at
    assert after > before and store.get(("t",), "long").value == {"text": "stays"}
    store.sweep_ttl()
    assert store.store.count(store.namespace) == 2  # the expired item is gone from disk too
    store.store.close()


def test_without_index_the_stores_own_model_embeds(tmp_path):
    """No IndexConfig: the MemoryStore's model embeds each value's JSON, so query= still ranks
    (ColourEncoder: colour words)."""
    ms = MemoryStore(tmp_path / "mem", model=ColourEncoder())
    store = AimemoryStore(ms)
    store.put(("notes",), "sky", {"text": "the blue sky"})
    store.put(("notes",), "grass", {"text": "green grass"})
    assert store.search(("notes",), query="something green", limit=1)[0].key == "grass"
    assert store.search(("notes",), query="blue", limit=1)[0].key == "sky"
    ms.close()
