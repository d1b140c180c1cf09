"""Changing a stored memory's tags and metadata: ``MemoryStore.update`` / ``update_many`` and the merge
when identical content is remembered again with new tags. One Lance commit per call, the catalog
mirror in step with the table (also after a reopen), content and vectors untouched, namespaces a
hard boundary."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ColourEncoder, solid

from aimemory import MemoryStore
from aimemory.errors import InputError, NotFoundError, StoreError


def _vectors(store, memory_id):
    keys = [int(store.catalog.get(p, "vkey")) for p in store.catalog.positions(memory_id, None)]
    return store.table.vectors_for(keys)


def test_remembering_again_merges_new_tags_and_metadata(store, tmp_path):
    first = store.remember(solid("red"), metadata={"tags": ["trip"], "year": 2023, "place": "Oslo"})
    assert first.status == "new"
    again = store.remember(solid("red"), metadata={"tags": ["pets", "trip"], "year": 2024})
    assert again.id == first.id and again.status == "updated" and len(store) == 1
    assert again.tags == ["trip", "pets"]  # union, stored order first
    assert again.metadata == {"tags": ["trip", "pets"], "year": 2024, "place": "Oslo"}  # key-wise merge
    assert [h.id for h in store.recall("red", k=3, where={"tags": "pets"})] == [first.id]
    same = store.remember(solid("red"), metadata={"tags": ["pets"]})
    assert same.status == "existing" and same.tags == ["trip", "pets"]
    # within one batch too: the second copy's tags are not dropped
    batch = store.remember_many(["red note", "red note"], metadata=[{"tags": ["a"]}, {"tags": ["b"]}])
    assert batch[0].id == batch[1].id and store.get(batch[0].id).tags == ["a", "b"]
    path = store.path
    store.close()
    with MemoryStore(path, model=ColourEncoder()) as reopened:
        m = reopened.get(first.id)
        assert m.tags == ["trip", "pets"] and m.metadata["year"] == 2024
        assert [h.id for h in reopened.recall("red", k=3, where={"tags": "pets"})] == [first.id]


def test_update_merges_removes_and_replaces(store):
    m = store.remember("the red door", metadata={"tags": ["home", "old"], "room": "hall", "n": 1})
    store.remember("a green lawn")
    assert store.recall("door", k=1, hybrid=True)[0].id == m.id  # builds the full-text index
    keys0, vecs0 = _vectors(store, m.id)
    version = store.table.version
    u = store.update(m.id, tags=["paint"], remove_tags=["old"], metadata={"n": 2, "colour": "red"})
    assert u.status == "updated" and u.tags == ["home", "paint"]
    assert u.metadata == {"tags": ["home", "paint"], "room": "hall", "n": 2, "colour": "red"}
    assert store.table.version == version + 1  # one commit
    assert store.get(m.id).content == "the red door" and store.get(m.id).created_at == m.created_at
    keys1, vecs1 = _vectors(store, m.id)
    assert np.array_equal(np.sort(keys0), np.sort(keys1))
    assert np.allclose(vecs0[np.argsort(keys0)], vecs1[np.argsort(keys1)])
    assert store.recall("red door", k=1, where={"tags": "paint"})[0].id == m.id
    assert store.table.full_text("door", "default", 5).column("id").to_pylist() == [m.id]  # rewritten row still indexed
    assert store.recall("red", k=1, where={"tags": "old"}) == []

    version = store.table.version
    unchanged = store.update(m.id, tags=["home"], metadata={"n": 2})
    assert unchanged.status == "existing" and store.table.version == version  # nothing to commit

    r = store.update(m.id, metadata={"only": True}, tags=["fresh"], replace=True)
    assert r.metadata == {"only": True, "tags": ["fresh"]} and r.tags == ["fresh"]
    cleared = store.update(m.id, replace=True)
    assert cleared.metadata == {"tags": []} and cleared.tags == []
    assert len(store) == 2 and store.index.ntotal == 2


def test_update_many_is_one_commit(store):
    a, b, c = store.remember_many(["red a", "green b", "blue c"])
    store.flush()  # the write-ahead segment into the table: the update below is then one commit
    version = store.table.version
    out = store.update_many([a.id, c.id], tags="picked")
    assert [m.tags for m in out] == [["picked"], ["picked"]]
    assert store.table.version == version + 1
    assert {h.id for h in store.recall("colour", k=3, where={"tags": "picked"})} == {a.id, c.id}
    with pytest.raises(NotFoundError):  # one unknown id: nothing changed
        store.update_many([b.id, "nope"], tags="x")
    assert store.get(b.id).tags == [] and store.table.version == version + 1


def test_update_respects_namespaces_and_validates(store):
    alice = store.remember("red secret", namespace="alice")
    with pytest.raises(NotFoundError):
        store.update(alice.id, tags=["mine"])  # default namespace: not found
    with pytest.raises(NotFoundError):
        store.update(alice.id, tags=["mine"], namespace="bob")
    assert store.get(alice.id, namespace="alice").tags == []
    assert store.update(alice.id, tags="mine", namespace="alice").tags == ["mine"]
    for bad in ({"tags": [1]}, {"metadata": {"x": object()}}, {"metadata": ["not", "a", "dict"]},
                {"remove_tags": "x", "replace": True}):
        with pytest.raises(InputError):
            store.update(alice.id, namespace="alice", **bad)
    assert store.get(alice.id, namespace="alice").tags == ["mine"]


def test_a_failed_commit_changes_nothing(store, monkeypatch):
    m = store.remember("red keep", metadata={"tags": ["a"]})

    def boom(rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.table, "rewrite_rows", boom)
    with pytest.raises(StoreError, match="nothing was changed"):
        store.update(m.id, tags=["b"])
    assert store.get(m.id).tags == ["a"]
    assert store.recall("red", k=1, where={"tags": "b"}) == []
    monkeypatch.undo()
    assert store.update(m.id, tags=["b"]).tags == ["a", "b"]


def test_updates_from_another_process_are_seen(tmp_path):
    path = tmp_path / "m"
    with MemoryStore(path, model=ColourEncoder()) as writer, MemoryStore(path, model=ColourEncoder()) as other:
        m = writer.remember("red shared")
        other.update(m.id, tags=["seen"])
        writer.state.last_refresh = 0  # skip the refresh interval
        assert writer.recall("red", k=1, where={"tags": "seen"})[0].id == m.id
        # the writer merges into what the other process stored, never over a stale copy
        assert writer.update(m.id, tags=["more"]).tags == ["seen", "more"]
    with MemoryStore(path, model=ColourEncoder()) as reopened:
        assert reopened.get(m.id).tags == ["seen", "more"]


def test_stored_non_finite_metadata_does_not_block_a_merge(store):
    m = store.remember("red odd", metadata={"score": float("nan")})
    again = store.remember("red odd", metadata={"tags": ["x"]})
    assert again.id == m.id and again.status == "updated" and again.tags == ["x"]
    assert store.update(m.id, tags="y").tags == ["x", "y"]


# -- expiry ----------------------------------------------------------------------------------------
def test_update_sets_extends_and_clears_expiry_on_every_view(tmp_path, clock):
    long_text = " ".join(["green leaves and green grass"] * 40)  # 200 words: several chunk views
    with MemoryStore(tmp_path / "m", model=ColourEncoder(), speech_model=None) as store:
        note = store.remember("a red note", metadata={"tags": ["keep"]})
        clip = store.remember(long_text, ttl=60)
        store.flush()  # small writes wait in the write-ahead segment; count the update's commit alone
        version = store.table.version
        assert store.update(note.id, ttl=30).status == "updated"
        assert store.table.version == version + 1  # one commit
        assert store.get(note.id).expires_at is not None and store.get(note.id).tags == ["keep"]
        extended = store.update(clip.id, ttl=3600)
        assert extended.expires_at.timestamp() > clip.expires_at.timestamp() + 3000
        clock[0] += 120  # the note's 30 s are over, the clip's hour is not
        assert note.id not in store and [h.id for h in store.recall("green", k=5)] == [clip.id]
        assert store.update(clip.id, expires_at="never").expires_at is None
        clock[0] += 7200
        assert clip.id in store and [h.id for h in store.recall("green", k=5)] == [clip.id]
        views = store.catalog.positions(clip.id, None)
        assert len(views) > 1  # the chunks' views besides the primary row
        assert all(store.catalog.get(p, "expires") is None for p in views)
    with MemoryStore(tmp_path / "m", model=ColourEncoder(), speech_model=None) as reopened:  # from the table
        assert reopened.get(clip.id).expires_at is None and note.id not in reopened


def test_update_expiry_that_changes_nothing_commits_nothing_and_bad_expiry_is_refused(store, clock):
    import time

    at = time.time() + 600
    memory = store.remember("a blue note", expires_at=at)
    store.flush()
    version = store.table.version
    assert store.update(memory.id, expires_at=at).status == "existing"
    assert store.table.version == version
    with pytest.raises(InputError, match="not in the future"):
        store.update(memory.id, expires_at=time.time() - 5)
    with pytest.raises(InputError, match="not both"):
        store.update(memory.id, expires_at="never", ttl=5)
    with pytest.raises(InputError, match="ttl must be a positive"):
        store.update(memory.id, ttl=-1)
    assert store.table.version == version and store.get(memory.id).expires_at.timestamp() == pytest.approx(at)


def test_another_handle_sees_an_expiry_change(tmp_path, clock):
    path = tmp_path / "m"
    with MemoryStore(path, model=ColourEncoder()) as writer, MemoryStore(path, model=ColourEncoder()) as reader:
        memory = writer.remember("a green note", ttl=60)
        reader.refresh()
        assert reader.get(memory.id).expires_at is not None
        writer.update(memory.id, expires_at="never")
        reader.refresh()  # the rewritten rows carry the new expiry into the reader's catalog
        assert reader.get(memory.id).expires_at is None
        clock[0] += 3600
        assert memory.id in reader and reader.count() == 1
        writer.update(memory.id, ttl=30)
        reader.refresh()
        clock[0] += 60
        assert memory.id not in reader and reader.count() == 0
