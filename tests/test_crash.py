"""Crash safety: a writer process is SIGKILLed at a random moment while remembering, forgetting,
compacting, saving its index and folding its write-ahead segment, and at chosen kill points inside
remember_many (before, during and after each batch's commit, during key reservation), forget
(before/after its commit), a write-ahead append (torn half-way, written but not yet in the index,
before/after its fsync), a fold (before/after its Lance commit) and the save of the vectors added
beside a memory-mapped index (before/after the record naming their file); the store must reopen with every
acknowledged write present, nothing half-visible or twice, no key reused, and an index that agrees
with the table. CI: 12 random trials and 3 per kill point (17 points); slow: 1000 + 20 per point."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ColourEncoder

from aimemory import MemoryStore

TESTS = Path(__file__).parent

WRITER = textwrap.dedent("""
    import sys, random
    sys.path.insert(0, {tests!r})
    from conftest import ColourEncoder, solid
    from aimemory import MemoryStore
    import aimemory.storage.table as table_mod
    table_mod.COMPACT_EVERY_COMMITS = 7       # compaction happens often enough to be hit
    import aimemory.write as write_mod
    write_mod.SAVE_INDEX_AFTER_CHANGES = 5    # and so do index saves
    write_mod.SAVE_INDEX_GROWTH = 0
    import aimemory.write_ahead as write_ahead_mod
    write_ahead_mod.FOLD_AFTER_RECORDS = 3    # and folds of the write-ahead segment
    rng = random.Random({seed})
    store = MemoryStore({path!r}, model=ColourEncoder())
    print("READY", flush=True)
    n = 0
    live = []
    while True:
        op = rng.random()
        if op < 0.5:
            m = store.remember(f"red note {{n}} {seed}")
            live.append(m.id)
            print("ADD", m.id, flush=True)
        elif op < 0.8:
            batch = store.remember_many([f"blue batch {{n}} {{i}} {seed}" for i in range(5)])
            live.extend(m.id for m in batch)
            print("ADD", *[m.id for m in batch], flush=True)
        elif live:
            victim = live.pop(rng.randrange(len(live)))
            print("DEL?", victim, flush=True)   # may or may not land before the kill
            store.forget(victim)
            print("DEL", victim, flush=True)
        n += 1
""")


def _run_trial(path: Path, seed: int) -> None:
    err = path.parent / f"writer-{seed}.err"
    with open(err, "w") as err_fh:
        proc = subprocess.Popen([sys.executable, "-c", WRITER.format(tests=str(TESTS), seed=seed, path=str(path))],
                                stdout=subprocess.PIPE, stderr=err_fh, text=True)
    ready = proc.stdout.readline().strip()
    if ready != "READY":
        proc.kill()
        proc.communicate()
        raise AssertionError(f"trial {seed}: the writer did not start:\n{err.read_text()[-3000:]}")
    time.sleep(random.Random(seed).uniform(0.05, 1.2))
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    acked, deleted, maybe_deleted = set(), set(), set()
    for line in out.splitlines():
        tag, *ids = line.split()
        if tag == "ADD" and len(ids) >= 1:
            acked.update(ids)
        elif tag == "DEL":
            deleted.update(ids)
        elif tag == "DEL?":
            maybe_deleted.update(ids)
    return acked, deleted, maybe_deleted - deleted


@pytest.mark.parametrize("trials", [int(os.environ.get("AIMEMORY_CRASH_TRIALS", "12"))])
def test_sigkill_during_writes_keeps_acknowledged_prefix(tmp_path, trials):
    path = tmp_path / "mem"
    expected: set[str] = set()
    for seed in range(trials):
        acked, deleted, in_flight = _run_trial(path, seed)
        with MemoryStore(path, model=ColourEncoder()) as store:
            present = set(store.catalog.by_id)
            must_have = (expected | acked) - deleted - in_flight
            assert must_have <= present, f"trial {seed}: acknowledged memories lost"
            # the operation in flight at the kill may have committed: all of it or none of it
            extra = present - expected - acked
            contents = {store.get(mid).content.split()[0] for mid in extra}
            assert len(contents) <= 1, f"trial {seed}: more than one unacknowledged operation visible"
            assert len(extra) in ({0, 1} if contents <= {"red"} else {5}), \
                f"trial {seed}: a batch is half visible: {len(extra)} of 5"
            assert not (present & deleted), f"trial {seed}: forgotten memories came back"
            # the index agrees with the table, and every memory has all its views
            assert store.index.ntotal == int(store.catalog.alive.sum())
            assert sorted(store.index.keys()) == sorted(store.catalog.alive_vkeys())
            for mid in present:
                views = [store.catalog.get(p, "view") for p in store.catalog.positions(mid, None)]
                assert views == list(range(len(views))) and views[0] == 0
            if present:
                some = next(iter(present))
                assert store.get(some).content is not None
                assert store.recall("red", k=3)
            expected = present
            assert store.index.ntotal == int(store.catalog.alive.sum())


@pytest.mark.slow
def test_sigkill_soak(tmp_path):
    os.environ["AIMEMORY_CRASH_TRIALS"] = "1000"
    test_sigkill_during_writes_keeps_acknowledged_prefix(tmp_path, 1000)


# -- kill points: SIGKILL at a chosen step of remember_many / forget ------------------------------
KILL_AT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from conftest import ColourEncoder
    from aimemory import MemoryStore
    import aimemory.storage.manifest as manifest_mod
    import aimemory.storage.segment as segment_mod
    import aimemory.storage.table as table_mod
    ahead = {point!r}.startswith(("append", "fold"))
    store = MemoryStore({path!r}, model=ColourEncoder(), write_ahead=ahead)
    base = store.remember_many([f"red base {seed} {{i}}" for i in range(4)])
    print("ADD", *[m.id for m in base], flush=True)
    point, calls = {point!r}, []

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(orig, before, nth=1):
        def f(*a, **k):
            calls.append(1)
            if len(calls) == nth and before:
                die()
            out = orig(*a, **k)
            if len(calls) == nth and not before:
                die()
            return out
        return f

    T, S = table_mod.VectorTable, segment_mod.Segment
    if point == "append_torn":  # half a record reaches the file
        def torn(self, rows):
            record = segment_mod.encode_rows(rows)
            os.pwrite(self.fd, record[: len(record) // 2], self.offset)
            die()
        S.append = torn
    elif point == "append_before_index":  # the record is written, the catalog and index not updated
        S.append = wrap(S.append, False)
    elif point == "append_before_sync":
        S.sync = wrap(S.sync, True)
    elif point == "append_after_sync":  # durable, not yet acknowledged
        S.sync = wrap(S.sync, False)
    elif point == "fold_before_commit":
        T.add = wrap(T.add, True)
    elif point == "fold_after_commit":  # in the table, still in the segment: folded again later
        T.add = wrap(T.add, False)
    elif point == "fold_then_forget":  # forget folds first, then dies before its own commit
        T.delete_vkeys = wrap(T.delete_vkeys, True)
    elif point == "many_before_first_commit":
        T.add = wrap(T.add, True)
    elif point == "many_after_first_commit":
        T.add = wrap(T.add, False)
    elif point == "many_after_last_commit":
        T.add = wrap(T.add, False, nth=2)
    elif point == "many_during_key_reservation":
        manifest_mod.os.replace = lambda *a: die()
    elif point == "forget_before_commit":
        T.delete_vkeys = wrap(T.delete_vkeys, True)
    elif point == "forget_after_commit":
        T.delete_vkeys = wrap(T.delete_vkeys, False)
    elif point.startswith("upsert"):
        store.remember_many([f"red named {seed} {{i}}" for i in range(3)], ids=["n0", "n1", "n2"])
        T.replace = wrap(T.replace, point == "upsert_before_commit")
    elif point.startswith("recent"):  # reopened: the index is mapped, and what is added waits beside it
        store.close()
        store = MemoryStore({path!r}, model=ColourEncoder(), write_ahead=ahead)
        import aimemory.index.faiss_file as faiss_file
        calls.clear()  # the vectors' file is the first write, the record naming it the second
        faiss_file.atomic_write_bytes = wrap(faiss_file.atomic_write_bytes, point == "recent_before_record", nth=2)
    elif point.startswith("tail"):  # a store large enough that a close saves a few rows as a catalog tail
        store.remember_many([f"grey filler {seed} {{i}}" for i in range(200)])  # 4 changes < 200 // 20
        store.close()
        store = MemoryStore({path!r}, model=ColourEncoder(), write_ahead=ahead)
        import aimemory.storage.catalog_tail as catalog_tail
        calls.clear()  # the tail's rows file is the first write, the record naming it the second
        catalog_tail.atomic_write_bytes = wrap(catalog_tail.atomic_write_bytes, point == "tail_before_record", nth=2)
    if point.startswith("upsert"):  # replace three named memories in one commit
        got = store.remember_many([f"blue named {seed} {{i}}" for i in range(3)], ids=["n0", "n1", "n2"])
        print("ADD", *[m.id for m in got], flush=True)
    elif point.startswith(("append", "fold_before", "fold_after")):
        got = store.remember_many([f"blue batch {seed} {{i}}" for i in range(3)])
        print("ADD", *[m.id for m in got], flush=True)
        store.flush()
    elif point.startswith("recent"):
        got = store.remember_many([f"blue batch {seed} {{i}}" for i in range(3)])
        print("ADD", *[m.id for m in got], flush=True)
        store.save_index()  # a few recent vectors: saved on their own, beside the index file
    elif point.startswith("tail"):
        got = store.remember_many([f"blue batch {seed} {{i}}" for i in range(3)])
        store.forget([base[0].id])  # the tail carries a removal too
        print("ADD", *[m.id for m in got], flush=True)
        store.close()
    elif point.startswith("many"):
        got = store.remember_many([f"blue batch {seed} {{i}}" for i in range(6)], batch_size=3)
        print("ADD", *[m.id for m in got], flush=True)
    else:
        store.forget([m.id for m in base[:3]])
        print("DEL", *[m.id for m in base[:3]], flush=True)
    print("SURVIVED", flush=True)
""")

# what may be visible of the killed call: blue memories for remember_many, base memories for forget
KILL_POINTS = {
    "many_before_first_commit": {0},
    "many_during_key_reservation": {0},
    "many_after_first_commit": {3},  # the first batch of 3 committed, the second never started
    "many_after_last_commit": {6},
    "forget_before_commit": {4},
    "forget_after_commit": {1},
    "upsert_before_commit": {0},  # the three named memories are all old...
    "upsert_after_commit": {3},  # ...or all new: never neither, never both
    # the write-ahead segment: a torn record is dropped; a written one survives a killed process
    "append_torn": {0},
    "append_before_index": {3},
    "append_before_sync": {3},
    "append_after_sync": {3},
    "fold_before_commit": {3},  # acknowledged, read by the next open and folded later
    "fold_after_commit": {3},  # folded twice, stored once
    "fold_then_forget": {4},
    # the recent vectors' save: their file is written, the record naming it is not (or is)
    "recent_before_record": {3},
    "recent_after_record": {3},
    # the catalog tail's save on close: its rows file is written, the record naming it is not (or is)
    "tail_before_record": {3},
    "tail_after_record": {3},
}


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_sigkill_at_kill_points(tmp_path, point):
    """A few trials per kill point, started side by side (each on its own store)."""
    seeds = range(int(os.environ.get("AIMEMORY_KILL_POINT_SEEDS", "3")))
    procs = {seed: subprocess.Popen(
        [sys.executable, "-c", KILL_AT.format(tests=str(TESTS), path=str(tmp_path / f"mem{seed}"),
                                              point=point, seed=seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in seeds}
    for seed, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == -signal.SIGKILL and "SURVIVED" not in stdout, stderr[-2000:]
        _check_kill_point(tmp_path / f"mem{seed}", point, stdout.splitlines()[0].split()[1:])


def _check_kill_point(path: Path, point: str, base: list[str]) -> None:
    with MemoryStore(path, model=ColourEncoder()) as store:
        contents = {mid: store.get(mid).content for mid in store.catalog.by_id}
        blue = [c for c in contents.values() if c.startswith("blue")]
        red = [mid for mid in base if mid in contents]
        visible = len(red) if "forget" in point else len(blue)
        assert visible in KILL_POINTS[point], f"{point}: {visible} visible"
        if point.startswith("tail"):  # the first base memory was forgotten before the close
            assert red == base[1:], "acknowledged memories lost, or a forgotten one back"
            assert store.catalog.tail_state is not None or point == "tail_before_record"
        elif "forget" not in point:
            assert red == base, "acknowledged memories lost"
        # nothing twice (a fold repeated after a crash), the table holds what the catalog does
        assert len(set(store.catalog.array("vkey").tolist())) == store.catalog.n_rows
        unfolded = store.segment.n_records
        store.flush()  # what the open left in the segment (a fold not due yet) goes into the table
        assert store.table.count_rows() == int(store.catalog.alive.sum()), f"fold of {unfolded} records"
        if point.startswith("upsert"):
            assert {"n0", "n1", "n2"} <= set(contents) and len(contents) == len(base) + 3, sorted(contents)
        keys = store.catalog.array("vkey").tolist()
        assert sorted(store.index.keys()) == sorted(store.catalog.alive_vkeys())
        after = store.remember(f"green after {point}")
        assert len(set(store.catalog.array("vkey").tolist())) == len(keys) + 1, "a key was reused"
        assert store.recall("green", k=1)[0].id == after.id


@pytest.mark.slow
def test_sigkill_at_kill_points_soak(tmp_path):
    os.environ.setdefault("AIMEMORY_KILL_POINT_SEEDS", "20")
    for point in sorted(KILL_POINTS):
        test_sigkill_at_kill_points(tmp_path / point, point)
