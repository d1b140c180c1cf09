"""Reading memories back by id (``aimemory.lookup``): the catalog answers texts and metadata, the table
answers media on first use, content that was not kept reads as None, and namespaces stay apart."""

from __future__ import annotations

import pytest
from conftest import ColourEncoder, solid

from aimemory import MemoryStore
from aimemory.errors import NotFoundError
from aimemory.lookup import load_content, memory_at, recent_memories


def test_memory_at_reads_the_catalog_and_loads_media_on_first_use(store):
    note = store.remember("a red umbrella", metadata={"tags": ["rain"]})
    photo = store.remember(solid("blue"))
    with store.reading():
        m = memory_at(store, note.id, "default")
        p = memory_at(store, photo.id, None)  # None: any namespace
    assert m.content == "a red umbrella" and m.tags == ["rain"] and m.namespace == "default"
    assert p.modality == "image" and isinstance(p.content, bytes) and p.content[:4] == b"\x89PNG"


def test_unknown_ids_and_other_namespaces_are_not_found(store):
    note = store.remember("only in alice", namespace="alice")
    with store.reading():
        with pytest.raises(NotFoundError, match="in namespace 'bob'"):
            memory_at(store, note.id, "bob")
        with pytest.raises(NotFoundError, match="no memory 'nope'"):
            memory_at(store, "nope", None)
    assert recent_memories(store, "bob", 5) == []


def test_content_not_kept_reads_as_none_but_texts_stay(tmp_path):
    with MemoryStore(tmp_path / "m", model=ColourEncoder(), keep_content=False) as store:
        photo = store.remember(solid("green"))
        note = store.remember("green tea")
        vkey = {mid: int(store.catalog.get(store.catalog.positions(mid, None)[0], "vkey"))
                for mid in (photo.id, note.id)}
        assert load_content(store, vkey[photo.id], "image") is None
        assert load_content(store, vkey[note.id], "text") == "green tea"


def test_recent_is_newest_first_with_texts_attached(store):
    ids = [store.remember(f"{colour} note", created_at=1_700_000_000 + i).id
           for i, colour in enumerate(["red", "green", "blue"])]
    newest = recent_memories(store, "default", 2)
    assert [m.id for m in newest] == ids[::-1][:2]
    assert [m.content for m in newest] == ["blue note", "green note"]
