"""Memory semantics for agent frameworks: caller ids (upsert), expiry, recency, near duplicates,
provenance and namespace transfer (see aimemory/semantics.py)."""

from __future__ import annotations

import threading

import pytest
from conftest import ColourEncoder

from aimemory import InputError, MemoryStore, NotFoundError


# -- caller ids and upsert ------------------------------------------------------------------------
def test_named_memory_is_created_then_replaced_in_one_commit(store):
    first = store.remember("red cat on the sofa", id="doc-1", metadata={"tags": ["pets"], "v": 1})
    assert first.id == "doc-1" and first.status == "new"
    again = store.remember("red cat on the sofa", id="doc-1", metadata={"tags": ["pets"], "v": 1})
    assert again.status == "existing"
    version = store.table.version
    new = store.remember("blue sky over the sea", id="doc-1", metadata={"v": 2})
    assert new.status == "replaced" and store.table.version == version + 1  # ONE commit
    got = store.get("doc-1")
    assert got.content == "blue sky over the sea" and got.metadata == {"v": 2, "tags": []}
    assert len(store) == 1 and store.count() == 1
    assert [h.id for h in store.recall("red cat", k=5)] == ["doc-1"]
    assert store.recall("blue", k=1)[0].score > store.recall("red", k=1)[0].score + 0.3  # new vectors
    assert store.index.ntotal == int(store.catalog.alive.sum())


def test_replacing_metadata_only_is_a_replace_too(store):
    store.remember("red", id="a", metadata={"tags": ["x"], "k": 1})
    m = store.remember("red", id="a", metadata={"k": 2})
    assert m.status == "replaced" and store.get("a").metadata == {"k": 2, "tags": []}


def test_ids_are_unique_per_namespace(store):
    a = store.remember("red apple", id="same", namespace="t1")
    b = store.remember("green leaf", id="same", namespace="t2")
    assert a.status == b.status == "new"
    assert len(store) == 2 and store.count("t1") == store.count("t2") == 1
    assert store.get("same", namespace="t1").content == "red apple"
    assert store.get("same", namespace="t2").content == "green leaf"
    store.remember("blue", id="same", namespace="t1")  # replacing one leaves the other alone
    assert store.get("same", namespace="t2").content == "green leaf"
    store.update("same", namespace="t2", tags=["kept"])
    assert store.get("same", namespace="t2").tags == ["kept"] and store.get("same", namespace="t1").tags == []
    store.forget("same", namespace="t2")
    assert store.get("same", namespace="t1").content == "blue" and len(store) == 1
    with pytest.raises(NotFoundError):
        store.get("same", namespace="t2")
    assert [h.id for h in store.recall("green", k=3, namespace="t2")] == []


def test_named_memories_survive_reopen(tmp_path):
    with MemoryStore(tmp_path / "m", model=ColourEncoder()) as s:
        s.remember_many(["red one", "green two", "blue three"], ids=["1", None, "3"])
        s.remember("yellow", id="1")
        s.remember("cyan", id="1", namespace="other")
    with MemoryStore(tmp_path / "m", model=ColourEncoder()) as s:
        assert s.get("1").content == "yellow" and s.get("3").content == "blue three"
        assert s.get("1", namespace="other").content == "cyan"
        assert len(s) == 4 and s.index.ntotal == 4


def test_remember_many_mixes_named_and_generated_ids(store):
    got = store.remember_many(["red a", "green b", "red a"], ids=["x", None, None])
    assert got[0].id == "x" and len(got[1].id) == 24 and got[2].id != "x"  # named: no content dedup
    again = store.remember_many(["blue a", "green b"], ids=["x", None])
    assert again[0].status == "replaced" and again[1].id == got[1].id  # unnamed still dedups
    assert store.get("x").content == "blue a"


def test_named_replace_does_not_swallow_unnamed_content_in_same_batch(store):
    store.remember("red old", id="x")
    got = store.remember_many(["blue new", "red old"], ids=["x", None])
    assert got[0].status == "replaced" and got[1].id != "x" and got[1].status == "new"
    assert store.get(got[1].id).content == "red old" and store.get("x").content == "blue new"


@pytest.mark.parametrize("bad", ["", "   ", "x" * 257, 7, b"bytes", "a\0b"])
def test_bad_ids_are_refused_before_anything_is_stored(store, bad):
    with pytest.raises(InputError):
        store.remember("red", id=bad)
    with pytest.raises(InputError):
        store.remember_many(["red", "blue"], ids=["ok", bad])
    assert len(store) == 0


def test_id_list_must_match_and_be_distinct(store):
    with pytest.raises(InputError, match="2 entries for 3"):
        store.remember_many(["a", "b", "c"], ids=["1", "2"])
    with pytest.raises(InputError, match="twice"):
        store.remember_many(["a", "b"], ids=["1", "1"])
    with pytest.raises(InputError, match="one id per item"):
        store.remember_many(["a"], ids="1")
    assert store.remember("red", id="x" * 256).id == "x" * 256


def test_readers_never_see_neither_or_both_during_upserts(store, monkeypatch):
    """Reader threads poll while a writer replaces the same id: the writer's own store (catalog)
    and a second store on the same folder (reloading from the table on every new version) always
    see exactly one memory named "doc"."""
    import aimemory.store as store_mod

    monkeypatch.setattr(store_mod, "REFRESH_INTERVAL_S", 0.0)
    store.remember("red 0", id="doc")
    other = MemoryStore(store.path, model=ColourEncoder())
    seen, stop = [], threading.Event()

    def reader(s):
        while not stop.is_set():
            with s._lock:
                s._fresh()
                seen.append((s.count("default"), len(s.catalog.positions("doc", "default")) > 0))

    threads = [threading.Thread(target=reader, args=(s,)) for s in (store, other)]
    for t in threads:
        t.start()
    for i in range(1, 15):
        store.remember(f"{'red' if i % 2 else 'blue'} {i}", id="doc")
    stop.set()
    for t in threads:
        t.join()
    other.close()
    assert len(seen) > 10 and all(s == (1, True) for s in seen)
    assert store.get("doc").content == "blue 14"
