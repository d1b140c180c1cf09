"""The write-ahead segment: record framing, what reads see before a fold, folding (threshold, close,
reopen, twice after a crash), other processes' appends, group commit, and the direct path it
leaves alone. Kill points are in test_crash.py."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pyarrow as pa
from conftest import ColourEncoder

import aimemory.write_ahead as write_ahead
from aimemory import MemoryStore
from aimemory.storage import segment as segment_mod
from aimemory.storage.segment import SEGMENT_NAME, decode_records, encode_rows


def _open(path, **kw) -> MemoryStore:
    return MemoryStore(path, model=ColourEncoder(), **kw)


def test_records_round_trip_and_a_torn_tail_is_dropped():
    rows = pa.table({"vkey": pa.array([1, 2], pa.int64()), "text": ["a", "b"]})
    data = encode_rows(rows) + encode_rows(rows.slice(1))
    got, end = decode_records(data)
    assert [t.to_pylist() for t in got] == [rows.to_pylist(), rows.slice(1).to_pylist()] and end == len(data)
    whole = len(encode_rows(rows))
    for cut in (whole + 3, whole + 20, len(data) - 1):  # torn inside the second record
        got, end = decode_records(data[:cut])
        assert len(got) == 1 and end == whole
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF  # a damaged payload fails its CRC
    assert len(decode_records(bytes(flipped))[0]) == 1


def test_segment_rows_are_one_chunk_and_unify_older_records(tmp_path):
    """A fold hands Lance one chunk (a chunk per record made it 7x slower); a record of an older
    schema (a column short) still joins, its missing column null."""
    seg = segment_mod.Segment(tmp_path)
    seg.create(0)
    new = pa.table({"vkey": pa.array([1, 2], pa.int64()), "text": ["a", "b"]})
    for rows in (new, new.slice(1), pa.table({"vkey": pa.array([3], pa.int64())})):
        seg.append(rows)
    rows = seg.rows()
    assert rows.column("vkey").num_chunks == 1 and rows.column("text").num_chunks == 1
    assert rows.to_pylist() == [{"vkey": 1, "text": "a"}, {"vkey": 2, "text": "b"}, {"vkey": 2, "text": "b"},
                                {"vkey": 3, "text": None}]
    seg.close()


def test_small_writes_are_visible_at_once_and_folded_later(tmp_path):
    with _open(tmp_path / "m") as s:
        version = s.table.version
        a = s.remember("red apple", metadata={"tags": ["fruit"]}, created_by="agent")
        b = s.remember_many(["green leaf", "blue sky"])
        assert s.table.version == version and s.segment.n_records == 2  # nothing in Lance yet
        assert a.id in s and s.count() == 3 and len(s) == 3
        assert s.get(a.id).content == "red apple" and s.get(a.id).metadata["tags"] == ["fruit"]
        assert s.get(a.id).created_by == "agent"
        assert s.recall("red", k=1)[0].id == a.id
        assert [m.content for m in s.recent(3)] == ["blue sky", "green leaf", "red apple"]
        assert s.remember("red apple").id == a.id  # dedup sees the segment
        near = s.remember("red apple pie", near_duplicate=0.5)
        assert near.near_duplicate_of is not None
        assert s.to_arrow().num_rows == 4  # an export folds first
        assert s.segment.n_records == 0 and s.table.count_rows() == 4 and b[0].id in s


def test_forget_update_and_upsert_of_segment_memories(tmp_path):
    with _open(tmp_path / "m") as s:
        a, b = s.remember("red one"), s.remember("blue two")
        s.update(b.id, tags=["kept"])
        assert s.get(b.id).metadata["tags"] == ["kept"]
        assert s.forget(a.id) == 1 and a.id not in s
        s.remember("green three", id="doc")
        again = s.remember("green four", id="doc")
        assert again.status == "replaced" and s.get("doc").content == "green four"
        merged = s.remember("blue two", metadata={"x": 1})
        assert merged.status == "updated" and s.get(b.id).metadata["x"] == 1
    with _open(tmp_path / "m") as s:
        assert sorted(m.content for m in s.recent(10)) == ["blue two", "green four"]
        assert s.get(b.id).metadata == {"tags": ["kept"], "x": 1}


def test_fold_threshold_and_reopen_with_a_leftover_segment(tmp_path, monkeypatch):
    monkeypatch.setattr(write_ahead, "FOLD_AFTER_RECORDS", 3)
    s = _open(tmp_path / "m")
    ids = [s.remember(f"red note {i}").id for i in range(4)]
    assert s.segment.n_records == 1 and s.table.count_rows() == 3  # three folded, one waiting
    # not closed (a crash): the next open reads the leftover, and folds it only when that is due
    with _open(tmp_path / "m") as t:
        assert t.segment.n_records == 1 and t.table.count_rows() == 3
        assert sorted(m.id for m in t.recent(10)) == sorted(ids)
        assert t.index.ntotal == 4
    # closed with LanceDB loaded (as in this process): the close folded it
    with _open(tmp_path / "m") as t:
        assert t.segment.n_records == 0 and t.table.count_rows() == 4
    s.close()
    monkeypatch.setattr(write_ahead, "FOLD_AFTER_RECORDS", 10)
    s = _open(tmp_path / "m")
    for i in range(3):
        s.remember(f"blue note {i}")
    assert s.segment.n_records == 3  # then a crash
    monkeypatch.setattr(write_ahead, "FOLD_AFTER_RECORDS", 3)
    with _open(tmp_path / "m") as t:  # three left: due, so the open folds them
        assert t.segment.n_records == 0 and t.table.count_rows() == 7 and t.count() == 7
    s.close()


def test_fold_twice_adds_nothing_twice(tmp_path):
    """A fold that crashed after its Lance commit left the records in the segment: folded again."""
    with _open(tmp_path / "m") as s:
        s.remember_many(["red a", "blue b"])
        s.remember("green c")
        rows = s.segment.rows()
        with s.writing(fold=False):
            s.table.add(rows)  # the crashed fold's commit, without its reset
            assert write_ahead.fold(s) == 0
        assert s.table.count_rows() == 3 and s.segment.n_records == 0
    with _open(tmp_path / "m") as s:
        assert s.count() == 3 and s.table.count_rows() == 3


def test_torn_tail_is_cut_and_the_store_stays_consistent(tmp_path):
    s = _open(tmp_path / "m")
    a = s.remember("red kept")
    with open(tmp_path / "m" / SEGMENT_NAME, "r+b") as fh:
        fh.seek(s.segment.offset)
        fh.write(encode_rows(s.segment.rows())[:40])  # a crashed append
    with _open(tmp_path / "m") as t:
        assert t.count() == 1 and a.id in t
        b = t.remember("blue after")
        assert t.segment.torn_bytes() == 0
    with _open(tmp_path / "m") as t:
        assert {a.id, b.id} == set(t.catalog.by_id)
    s.close()


def test_other_processes_see_appends_on_their_next_read(tmp_path):
    writer, reader = _open(tmp_path / "m"), _open(tmp_path / "m")
    try:
        a = writer.remember("red shared")
        assert reader.count() == 1 and reader.get(a.id).content == "red shared"
        assert reader.recall("red", k=1)[0].id == a.id
        writer.remember_many([f"blue {i}" for i in range(40)])  # a direct commit (folds first)
        b = writer.remember("green late")
        assert reader.count() == 42 and b.id in reader
        reader.forget(a.id)  # the reader folds the writer's record, then deletes
        assert writer.count() == 41 and a.id not in writer
        c = writer.remember("red again")
        assert reader.count() == 42 and reader.get(c.id).content == "red again"
    finally:
        writer.close()
        reader.close()
    with _open(tmp_path / "m") as s:
        assert s.count() == 42 and s.table.count_rows() == 42


def test_concurrent_writers_share_fsyncs(tmp_path, monkeypatch):
    syncs = []
    real = segment_mod.datasync
    # a flush as slow as a disk's (5 ms): writers arriving during one must share the next. With this
    # test's instant encoder and fdatasync on a fast disk, six threads could otherwise each find the
    # segment idle and sync alone (it failed about 1 run in 6 that way)
    monkeypatch.setattr(segment_mod, "datasync", lambda fd: (syncs.append(1), time.sleep(0.005), real(fd)))
    with _open(tmp_path / "m") as s:
        def work(t):
            for i in range(15):
                s.remember(f"red thread {t} note {i}")
        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert s.count() == 90 and s.index.ntotal == 90
        assert len(syncs) < 90, "each write synced alone"
    with _open(tmp_path / "m") as s:
        assert s.count() == 90


def test_direct_path_when_off_and_for_batches(tmp_path):
    with _open(tmp_path / "m", write_ahead=False) as s:
        s.remember("red direct")
        assert s.segment.n_records == 0 and s.table.count_rows() == 1
    with _open(tmp_path / "n") as s:
        s.remember_many([f"blue {i}" for i in range(write_ahead.WRITE_AHEAD_MAX_ITEMS + 1)])
        assert s.segment.n_records == 0 and s.table.count_rows() == write_ahead.WRITE_AHEAD_MAX_ITEMS + 1
        s.remember("red small")
        assert s.segment.n_records == 1
        keys = s.catalog.array("vkey")
        assert len(np.unique(keys)) == len(keys)


def test_lancedb_is_imported_in_the_background_before_the_first_fold(tmp_path, monkeypatch):
    """Half way to a fold the writer asks for LanceDB's import off its thread (a first fold would
    otherwise stall it for the import); the fold itself still happens at the threshold."""
    monkeypatch.setattr(write_ahead, "FOLD_AFTER_RECORDS", 10)
    asked: list[str] = []
    monkeypatch.setattr(write_ahead.background, "preload", asked.append)
    with _open(tmp_path / "m") as s:
        for i in range(4):
            s.remember(f"note {i} red")
        assert asked == [] and s.segment.n_records == 4
        s.remember("note 4 red")
        assert asked == ["lancedb"] and s.segment.n_records == 5
        for i in range(5, 10):
            s.remember(f"note {i} red")
        assert s.segment.n_records == 0 and s.table.count_rows() == 10  # folded at the threshold
    crashed = _open(tmp_path / "n")
    for i in range(6):
        crashed.remember(f"note {i} blue")
    asked.clear()
    with _open(tmp_path / "n") as s:  # finds six records it did not write: no sign of a long life
        s.remember("one more blue")
        assert asked == [] and s.segment.n_records == 7
    crashed.close()


def test_a_short_process_leaves_its_record_for_the_next_instead_of_importing_lancedb(tmp_path):
    """A CLI ``remember`` or a hook in a process that never loaded LanceDB closes without a fold:
    its record stays in the segment, durable, and the next process reads it, still without LanceDB.
    A process that has LanceDB loaded folds on close."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    with _open(tmp_path / "m") as s:  # made here: creating the table needs LanceDB
        first = s.remember("red first").id

    def short_process(code: str) -> list[str]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
        out = subprocess.run([sys.executable, "-c", "import sys\nfrom aimemory import MemoryStore\n"
                              "from conftest import ColourEncoder\n" + code], env=env, cwd=tests.parent,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()

    store = f"MemoryStore({str(tmp_path / 'm')!r}, model=ColourEncoder())"
    left = []
    for colour in ("blue", "green"):
        got = short_process(f"with {store} as s:\n    print(s.remember('{colour} from a hook').id)\n"
                            "print('lancedb' in sys.modules)\n")
        assert got[1] == "False"
        left.append(got[0])
    got = short_process(f"with {store} as s:\n    print(s.recall('blue', k=1)[0].id, s.count())\n"
                        "print('lancedb' in sys.modules)\n")
    assert got == [left[0], "3", "False"]
    with _open(tmp_path / "m") as s:  # both records taken in at once
        assert s.segment.n_records == 2 and s.table.count_rows() == 1 and s.index.ntotal == 3
        assert {first, *left} == set(s.catalog.by_id)
    with _open(tmp_path / "m") as s:  # the close above (LanceDB loaded here) folded them
        assert s.segment.n_records == 0 and s.table.count_rows() == 3
