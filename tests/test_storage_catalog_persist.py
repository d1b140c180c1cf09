"""The saved catalog: written beside the table, reopened without a table scan, caught up with other
processes' commits by reading only what changed, rebuilt when missing, stale, torn, garbled or
another store's; and ``where=`` vectorised with the same answers as the per-row filter it replaced."""

from __future__ import annotations

import json
import logging
import random
import shutil
import time

import numpy as np
import pytest
from conftest import ColourEncoder

from aimemory import MemoryStore
from aimemory.errors import FilterError
from aimemory.storage import catalog_file
from aimemory.storage.catalog import COLUMN_FILTERS, Catalog
from aimemory.storage.table import VectorTable


def _open(path):
    return MemoryStore(path, model=ColourEncoder())


def _fill(store, n, start=0, **meta):
    return store.remember_many([f"note {i} red" if i % 2 else f"note {i} blue" for i in range(start, start + n)],
                               metadata=[{"tags": [f"t{i % 3}"], "i": i, **meta} for i in range(start, start + n)])


@pytest.fixture
def no_rebuild(monkeypatch):
    """Fail the test if the catalog is rebuilt from a full table scan."""
    def refuse(table):
        raise AssertionError("catalog was rebuilt from the table")
    monkeypatch.setattr(catalog_file, "build", refuse)


@pytest.fixture
def rows_read(monkeypatch):
    """Rows the catalog read back by row address since the fixture started (catch-ups and saves)."""
    got: list[int] = []
    real = VectorTable.rows_since

    def counting(self, row_id, columns):
        out = real(self, row_id, columns)
        got.append(out.num_rows)
        return out
    monkeypatch.setattr(VectorTable, "rows_since", counting)
    return got


def _snapshot(store):
    c = store.catalog
    return sorted((m.id, m.text, json.dumps(m.metadata, sort_keys=True)) for m in
                  (store.get(mid) for mid in c.by_id))


def test_saved_on_close_and_reopened_without_a_scan(tmp_path, monkeypatch):
    path = tmp_path / "mem"
    with _open(path) as s:
        _fill(s, 30)
        before = _snapshot(s)
        hits_before = [(h.id, h.snippet) for h in s.recall("red", k=5, where={"tags": "t1"})]
    side = json.loads((path / "catalog" / "catalog.json").read_text())
    assert side["rows"] == 30 and side["alive"] == 30
    monkeypatch.setattr(catalog_file, "build", lambda table: pytest.fail("rebuilt"))
    with _open(path) as s:
        assert _snapshot(s) == before
        assert [(h.id, h.snippet) for h in s.recall("red", k=5, where={"tags": "t1"})] == hits_before
        assert all(h.memory.text for h in s.recall("blue", k=3))  # texts come from the catalog
        mid = s.remember("one more green").id  # appends after a load keep working
        assert s.get(mid).text == "one more green" and len(s) == 31


def test_catch_up_on_open_reads_only_the_change(tmp_path, monkeypatch, rows_read):
    path = tmp_path / "mem"
    with _open(path) as s:
        ids = [m.id for m in _fill(s, 40)]
    # another writer changes the store and does not save the catalog
    monkeypatch.setattr(catalog_file, "save_if_due", lambda *a, **k: None)
    with _open(path) as other:
        new = [m.id for m in _fill(other, 3, start=100)]
        other.forget(ids[0])
        other.update(ids[1], tags="changed")
        expected = _snapshot(other)
    rows_read.clear()
    monkeypatch.setattr(catalog_file, "build", lambda table: pytest.fail("rebuilt"))
    with _open(path) as s:
        assert _snapshot(s) == expected
        assert ids[0] not in s and all(m in s for m in new)
        assert "changed" in s.get(ids[1]).tags
        assert [h.id for h in s.recall("note", k=50, where={"tags": "changed"})] == [ids[1]]
    assert rows_read and rows_read[0] == 4  # 3 appended + 1 rewritten row, not the 40 kept


def test_a_catch_up_that_finds_nothing_new_is_not_repeated_by_every_open(tmp_path, monkeypatch):
    path = tmp_path / "mem"
    with _open(path) as s:
        _fill(s, 40)
    with monkeypatch.context() as m:
        m.setattr(catalog_file, "save_if_due", lambda *a, **k: None)  # too few changes to save
        with _open(path) as s:
            gone = s.remember("added, then forgotten").id
            s.flush()
            s.forget(gone)
            expected = _snapshot(s)
    caught_up: list[int] = []
    real = catalog_file.catch_up
    monkeypatch.setattr(catalog_file, "catch_up", lambda *a, **k: caught_up.append(1) or real(*a, **k))
    monkeypatch.setattr(catalog_file, "build", lambda table: pytest.fail("rebuilt"))
    for _ in range(3):
        with _open(path) as s:
            assert _snapshot(s) == expected and gone not in s
            assert s.recall("note 3", k=1)[0].memory.text.startswith("note")
    assert caught_up == [1]  # the first open caught up and found nothing; the others start at the version
    side = json.loads((path / "catalog" / "catalog.json").read_text())
    assert side["rows"] == 40 and side["alive"] == 40


def test_a_failed_rewrite_of_the_sidecar_leaves_the_saved_catalog_usable(tmp_path, monkeypatch):
    path = tmp_path / "mem"
    with _open(path) as s:
        _fill(s, 20)
    with monkeypatch.context() as m:
        m.setattr(catalog_file, "save_if_due", lambda *a, **k: None)
        with _open(path) as s:
            gone = s.remember("added, then forgotten").id
            s.flush()
            s.forget(gone)
            expected = _snapshot(s)
    side_before = (path / "catalog" / "catalog.json").read_text()
    with monkeypatch.context() as m:  # the disk fails (or the process dies) as the sidecar is replaced
        def fail(*a, **k):
            raise OSError("no space left on device")
        m.setattr(catalog_file, "atomic_write_bytes", fail)
        with _open(path) as s:
            assert _snapshot(s) == expected
    assert (path / "catalog" / "catalog.json").read_text() == side_before  # the old one, whole
    monkeypatch.setattr(catalog_file, "build", lambda table: pytest.fail("rebuilt"))
    with _open(path) as s:  # caught up once more, from the old sidecar, and tied to the version now
        assert _snapshot(s) == expected and gone not in s
    assert json.loads((path / "catalog" / "catalog.json").read_text()) != json.loads(side_before)


def test_foreign_commit_is_caught_up_in_place(tmp_path, monkeypatch, rows_read):
    path = tmp_path / "mem"
    reader = _open(path)
    _fill(reader, 20)
    reader.save_catalog(force=True)
    writer = _open(path)
    catalog_before = reader.catalog
    added = writer.remember("a green parrot", metadata={"room": "attic"})
    writer.forget(next(iter(writer.catalog.by_id)))
    rows_read.clear()
    monkeypatch.setattr(catalog_file, "build", lambda table: pytest.fail("rebuilt"))
    time.sleep(0.6)  # past the readers' refresh interval
    hits = reader.recall("green parrot", k=1, where={"room": "attic"})
    assert [h.id for h in hits] == [added.id]
    assert reader.catalog is catalog_before  # updated in place, not reloaded
    assert len(reader) == 20 and reader.index.ntotal == int(reader.catalog.alive.sum())
    assert max(rows_read) <= 1
    writer.close()
    reader.close()


def _corrupt_rows_file(path, how):
    folder = path / "catalog"
    side = json.loads((folder / "catalog.json").read_text())
    rows = folder / side["files"]["rows"]["name"]
    data = bytearray(rows.read_bytes())
    if how == "truncate":
        rows.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "garble":
        mid = len(data) // 2
        data[mid:mid + 64] = bytes(random.Random(0).randrange(256) for _ in range(64))
        rows.write_bytes(bytes(data))
    elif how == "sidecar":
        (folder / "catalog.json").write_text("{not json")
    elif how == "newer":
        side["table_version"] += 5
        (folder / "catalog.json").write_text(json.dumps(side))
    elif how == "delete":
        rows.unlink()


@pytest.fixture(scope="module")
def saved_store(tmp_path_factory):
    """A closed store of 25 memories with its saved catalog, and what it holds (copy before use)."""
    path = tmp_path_factory.mktemp("saved") / "mem"
    with _open(path) as s:
        _fill(s, 25)
        return path, _snapshot(s)


@pytest.mark.parametrize("how", ["truncate", "garble", "sidecar", "newer", "delete"])
def test_torn_or_garbled_catalog_is_rebuilt(tmp_path, saved_store, how, caplog):
    path = tmp_path / "mem"
    shutil.copytree(saved_store[0], path)
    expected = saved_store[1]
    _corrupt_rows_file(path, how)
    with caplog.at_level(logging.WARNING, logger="aimemory.storage"), _open(path) as s:
        assert _snapshot(s) == expected
        assert len(s.recall("red", k=5, where={"i": [1, 3, 5]})) == 3
    assert any("rebuilding" in r.message for r in caplog.records)
    side = json.loads((path / "catalog" / "catalog.json").read_text())  # and saved again, whole
    assert side["rows"] == 25


def test_another_stores_catalog_is_not_trusted(tmp_path, saved_store):
    a, b = saved_store[0], tmp_path / "b"
    with _open(b) as s:
        _fill(s, 25, start=50)  # as many rows as the other store: only the digest tells them apart
        expected = _snapshot(s)
    shutil.rmtree(b / "catalog")
    shutil.copytree(a / "catalog", b / "catalog")  # same version number, another table
    with _open(b) as s:
        assert _snapshot(s) == expected


def _old_where(c: Catalog, where, candidates):
    """The per-row filter the vectorised one replaced (kept here as the reference)."""
    if not isinstance(where, dict):
        raise FilterError("where= must be a dict")
    out = np.zeros(c.n_rows, dtype=bool)
    for p in np.flatnonzero(candidates & (c.array("view") == 0)):
        p = int(p)
        ok = True
        for key, want in where.items():
            wanted = list(want) if isinstance(want, (list, tuple, set, frozenset)) else [want]
            if key == "tags":
                have = set(c.get(p, "tags") or [])
                hit = any(w in have for w in wanted)
            elif key in COLUMN_FILTERS:
                hit = c.get(p, key) in wanted
            else:
                meta = c.metadata(p)
                if key not in meta:
                    hit = None in wanted
                elif isinstance(meta[key], list):
                    hit = any(w in meta[key] for w in wanted)
                else:
                    hit = meta[key] in wanted
            ok = ok and hit
        if ok:
            out[c.live_positions(c.get(p, "id"))] = True
    return out


VALUES = [None, True, False, 0, 1, 2, 1.0, 2.5, -3, "a", "b", "1", "", [], ["a", 1], [None], [[1]], {"x": 1}]


def test_vectorised_where_equals_the_per_row_filter(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "mem"
    with _open(path) as s:
        metas = []
        for _ in range(120):
            meta = {k: rng.choice(VALUES) for k in ("x", "y", "z") if rng.random() < 0.7}
            meta["tags"] = rng.sample(["a", "b", "c", "1"], rng.randint(0, 2))
            metas.append(meta)
        s.remember_many([f"text {i}" for i in range(120)], metadata=metas)
        s.update_many([m for m in list(s.catalog.by_id)[:10]], metadata={"x": "a", "y": None})
        s.forget(list(s.catalog.by_id)[10:15])
    for store in (s, None):  # in memory, then loaded from the saved files
        if store is None:
            store = _open(path)
        c = store.catalog
        candidates = c.alive & c.namespace_is("default")
        wanted = [None, True, 0, 1, 2.5, "a", "b", "1", "", -3, 1.0, False, "text", "text/plain",
                  *list(c.by_id)[:2]]
        for _ in range(300):
            where = {}
            keys = ["x", "y", "z", "tags", "missing", "source", "modality", "mime", "kind", "id"]
            for key in rng.sample(keys, rng.randint(1, 2)):
                where[key] = rng.choice(wanted) if rng.random() < 0.5 else rng.sample(wanted, rng.randint(1, 3))
            assert np.array_equal(c.where_mask(where, candidates), _old_where(c, where, candidates)), where
        store.close()
    with _open(path) as store, pytest.raises(FilterError):
        store.recall("text", where={"x": {"nested": 1}})


def test_expiry_and_provenance_survive_a_saved_catalog(tmp_path, monkeypatch):
    path = tmp_path / "mem"
    with _open(path) as s:
        keep = s.remember("kept red note", created_by="agent-a", ttl=3600).id
        child = s.remember("derived blue note", derived_from=[keep], created_by="agent-b").id
        gone = s.remember("short lived green note", ttl=60).id
        twin = s.remember("shared content", id="first", dedup=False).id
        newer = s.remember("shared content", id="second", dedup=False).id
    side = json.loads((path / "catalog" / "catalog.json").read_text())
    assert side["format"] == catalog_file.FORMAT == 2
    monkeypatch.setattr(catalog_file, "build", lambda table: pytest.fail("rebuilt"))
    with _open(path) as s:
        assert s.get(keep).created_by == "agent-a" and s.get(keep).expires_at is not None
        assert s.get(child).derived_from == [keep] and s.get(child).expires_at is None
        assert len(s) == 5
        c = s.catalog
        h = c.get(c.positions(twin, "default")[0], "content_hash")
        assert c.find_duplicate("default", h) == newer  # the newest of the memories sharing content
        monkeypatch.setattr(time, "time", lambda: time.monotonic() + 10**10)  # far past every expiry
        assert gone not in s and keep not in s and child in s
        assert c.positions(gone, "default") == [] and c.positions(gone, "default", expired=True)
        assert c.count("default") == 3 and c.namespaces() == {"default": 3}


def test_a_catalog_saved_in_the_first_format_is_rebuilt(tmp_path):
    path = tmp_path / "mem"
    with _open(path) as s:
        mid = s.remember("old format note", created_by="agent-a").id
    sidecar = path / "catalog" / "catalog.json"
    side = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**side, "format": 1}))
    with _open(path) as s:
        assert s.get(mid).created_by == "agent-a"
    assert json.loads(sidecar.read_text())["format"] == 2
