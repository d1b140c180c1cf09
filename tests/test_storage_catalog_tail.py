"""The catalog's tail: a close after a few writes saves just the rows appended and the keys removed
since the last full save, and the next open applies them without reading the table (no LanceDB);
a tail that does not extend the saved catalog, is torn, or mirrors a version the table no longer
has is ignored and the open catches up from the table as before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ColourEncoder

from aimemory import MemoryStore
from aimemory.storage import catalog_file, catalog_tail

FAR_FUTURE = 32503680000.0  # year 3000: more microseconds than a double holds exactly
FIELDS = ("id", "view", "namespace", "modality", "kind", "created", "start", "end", "expires", "snippet", "source",
          "content_hash", "tags", "metadata", "mime", "text", "created_by", "derived_from")


def _open(path):
    return MemoryStore(path, model=ColourEncoder())


def _base(path, n=200):
    """A store of ``n`` notes, its catalog saved in full (a few writes later stay under n // 20)."""
    with _open(path) as s:
        ids = [m.id for m in s.remember_many([f"note {i} red" if i % 2 else f"note {i} blue" for i in range(n)],
                                             metadata=[{"tags": [f"t{i % 3}"], "i": i} for i in range(n)])]
    assert not (path / "catalog" / catalog_tail.TAIL).exists()
    return ids


def _few_writes(s):
    """Rows of every kind of field a tail must carry, and a forget."""
    out = [s.remember("green note with provenance", created_by="agent-a", derived_from=["x1"],
                      metadata={"tags": ["fresh"], "lang": "en"}).id,
           s.remember("red note that expires", ttl=3600).id,
           s.remember("blue note that outlives us", expires_at=FAR_FUTURE).id]
    return out


def _same_as_the_table(store):
    """The store's catalog holds what one rebuilt from the table does, field by field."""
    c, rebuilt = store.catalog, catalog_file.build(store.table.real())
    keys = rebuilt.alive_vkeys()
    assert np.array_equal(c.alive_vkeys(), keys)
    mine, theirs = c.position_of_vkeys(keys), rebuilt.position_of_vkeys(keys)
    for name in FIELDS:
        assert c.values(name, mine) == rebuilt.values(name, theirs), name
    assert c.values("vkey", c.values("primary", mine)) == rebuilt.values("vkey", rebuilt.values("primary", theirs))


def test_a_few_writes_are_saved_as_a_tail_and_opened_without_the_table(tmp_path, monkeypatch):
    path = tmp_path / "mem"
    ids = _base(path)
    with _open(path) as s:
        new = _few_writes(s)
        s.forget(ids[5])
    record = json.loads((path / "catalog" / catalog_tail.TAIL).read_text())
    assert record["rows"] == 203 and record["alive"] == 202 and len(record["removed"]) == 1
    monkeypatch.setattr(catalog_file, "build", lambda table: pytest.fail("rebuilt"))
    monkeypatch.setattr(catalog_file, "catch_up", lambda *a, **k: pytest.fail("caught up from the table"))
    with _open(path) as s:
        assert s.catalog.tail_state is not None and not s.table.opened  # LanceDB never loaded
        assert len(s) == 202 and ids[5] not in s and all(m in s for m in new)
        got = s.get(new[0])
        assert (got.created_by, got.derived_from, got.tags) == ("agent-a", ["x1"], ["fresh"])
        assert got.metadata["lang"] == "en"
        assert s.get(new[2]).expires_at.timestamp() == FAR_FUTURE
        assert [h.id for h in s.recall("note", k=3, where={"tags": "fresh"})] == [new[0]]
        monkeypatch.undo()
        _same_as_the_table(s)


def test_an_open_with_nothing_new_rewrites_no_tail(tmp_path):
    path = tmp_path / "mem"
    _base(path)
    with _open(path) as s:
        s.remember("one more note")
    written = (path / "catalog" / catalog_tail.TAIL).stat().st_mtime_ns
    for _ in range(2):
        with _open(path) as s:
            assert len(s) == 201
    assert (path / "catalog" / catalog_tail.TAIL).stat().st_mtime_ns == written


def test_writes_after_a_tail_extend_it_until_a_full_save_supersedes_it(tmp_path):
    path = tmp_path / "mem"
    _base(path)
    for i in range(3):
        with _open(path) as s:
            s.remember(f"extra note {i}")
    assert json.loads((path / "catalog" / catalog_tail.TAIL).read_text())["rows"] == 203
    assert len(list((path / "catalog").glob("tail-*.arrow"))) == 1  # older tails' files are gone
    with _open(path) as s:
        assert s.catalog.tail_state is not None
        s.remember_many([f"bulk note {i}" for i in range(20)])  # 23 changes: a full save is due
    assert not (path / "catalog" / catalog_tail.TAIL).exists()
    assert not list((path / "catalog").glob("tail-*.arrow"))
    with _open(path) as s:
        assert s.catalog.tail_state is None and len(s) == 223
        _same_as_the_table(s)


def test_a_change_a_tail_cannot_carry_leaves_the_open_to_catch_up(tmp_path):
    path = tmp_path / "mem"
    ids = _base(path)
    with _open(path) as s:
        kept = s.remember("note before the update").id
    with _open(path) as s:
        s.update(ids[1], tags="changed")  # a metadata change: only a full save records it
    with _open(path) as s:
        assert s.catalog.tail_state is not None  # the older tail still holds for its version...
        assert "changed" in s.get(ids[1]).tags and kept in s  # ...and the rest was caught up
        _same_as_the_table(s)


@pytest.mark.parametrize("how", ["file", "record", "base", "version"])
def test_a_tail_that_cannot_be_trusted_is_ignored(tmp_path, how, monkeypatch):
    path = tmp_path / "mem"
    ids = _base(path)
    with _open(path) as s:
        new = _few_writes(s)
        s.forget(ids[0])
    folder = path / "catalog"
    record = json.loads((folder / catalog_tail.TAIL).read_text())
    if how == "file":  # a flipped byte: the checksum fails
        tail_file = folder / record["file"]["name"]
        data = bytearray(tail_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        tail_file.write_bytes(bytes(data))
    elif how == "record":
        (folder / catalog_tail.TAIL).write_text("{not json")
    elif how == "base":  # another saved catalog than the one it extends
        record["base"] = "rows-00000000-1.arrow"
        (folder / catalog_tail.TAIL).write_text(json.dumps(record))
    else:  # a version whose manifest is not the one it recorded
        record["manifest_sha256"] = "0" * 64
        (folder / catalog_tail.TAIL).write_text(json.dumps(record))
    monkeypatch.setattr(catalog_file, "build", lambda table: pytest.fail("rebuilt"))
    with _open(path) as s:
        assert s.catalog.tail_state is None  # caught up from the table instead
        assert len(s) == 202 and ids[0] not in s and all(m in s for m in new)
    monkeypatch.undo()
    with _open(path) as s:
        _same_as_the_table(s)


def test_a_tail_that_passes_its_checksum_but_does_not_apply_rebuilds_the_catalog(tmp_path):
    path = tmp_path / "mem"
    _base(path)
    with _open(path) as s:
        new = s.remember("the newest note").id
    folder = path / "catalog"
    record = json.loads((folder / catalog_tail.TAIL).read_text())
    with _open(path) as s:
        rows = catalog_tail.appended_rows(s.catalog, 0).slice(0, 1)  # a row the saved catalog holds already
    record["file"]["name"], record["file"]["crc32"] = catalog_tail.write_ipc(folder, "tail", rows)
    (folder / catalog_tail.TAIL).write_text(json.dumps(record))
    with _open(path) as s:
        assert new in s and len(s) == 201
        _same_as_the_table(s)


def test_a_tail_holds_the_exact_times_of_its_rows(tmp_path):
    path = tmp_path / "mem"
    _base(path)
    with _open(path) as s:
        mid = s.remember("a note for the far future", expires_at=FAR_FUTURE).id
        created = s.get(mid).created_at
    with _open(path) as s:
        assert s.catalog.tail_state is not None
        assert s.get(mid).created_at == created and s.get(mid).expires_at.timestamp() == FAR_FUTURE


def test_a_cold_recall_after_a_write_loads_neither_lancedb_nor_pandas(tmp_path):
    path = tmp_path / "mem"
    _base(path)
    with _open(path) as s:
        s.remember("call mum about the party")
    probe = ("import sys; sys.path.insert(0, {tests!r}); from conftest import ColourEncoder; "
             "from aimemory import MemoryStore; s = MemoryStore({path!r}, model=ColourEncoder()); "
             "print(s.recall('party', k=1)[0].memory.content, 'lancedb' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe.format(tests=str(Path(__file__).parent), path=str(path))],
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert out[-2:] == ["False", "False"], out


def test_a_tail_is_not_saved_while_the_catalog_holds_uncommitted_writes(tmp_path):
    path = tmp_path / "mem"
    _base(path)
    s = _open(path)
    s.remember("a note still in the write-ahead segment")
    catalog_file.save_if_due(s.catalog, path, s.table, s.encoder.model_id, s.encoder.dim, settled=False)
    assert not (path / "catalog" / catalog_tail.TAIL).exists()
    s.close()  # the close folds the segment, then saves the tail
    assert (path / "catalog" / catalog_tail.TAIL).exists()
