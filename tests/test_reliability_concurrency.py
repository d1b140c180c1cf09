"""Concurrency: writer processes and writer threads remember and forget at once while reader threads
(on the writers' store object and on their own) and a reader process recall. No call may crash or
return a torn hit (a hit without its content, or with another memory's content); at the end the
store holds exactly the acknowledged writes minus the acknowledged forgets."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import ColourEncoder

from aimemory import MemoryStore

TESTS = Path(__file__).parent
PATTERN = re.compile(r"^(red|blue) [pt]\d+ \d+$")

WRITER = textwrap.dedent("""
    import sys, random
    sys.path.insert(0, {tests!r})
    from conftest import ColourEncoder
    from aimemory import MemoryStore
    rng = random.Random({seed})
    store = MemoryStore({path!r}, model=ColourEncoder())
    print("READY", flush=True)
    mine = []
    for n in range({ops}):
        op = rng.random()
        if op < 0.45:
            m = store.remember(f"red p{seed} {{n}}")
            mine.append(m.id)
            print("ADD", m.id, m.content, flush=True)
        elif op < 0.75:
            ms = store.remember_many([f"blue p{seed} {{n * 10 + i}}" for i in range(3)])
            for m in ms:
                mine.append(m.id)
                print("ADD", m.id, m.content, flush=True)
        elif mine:
            victim = mine.pop(rng.randrange(len(mine)))
            store.forget(victim)
            print("DEL", victim, flush=True)
    store.close()
    print("DONE", flush=True)
""")

READER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from conftest import ColourEncoder
    from aimemory import MemoryStore
    store = MemoryStore({path!r}, model=ColourEncoder())
    print("READY", flush=True)
    end = time.time() + {seconds}
    while time.time() < end:
        for h in store.recall("red blue", k=8):
            print("SEEN", h.id, h.memory.content, flush=True)
        store.count()
    store.close()
    print("DONE", flush=True)
""")


def _spawn(script: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc


def run_mix(path: Path, ops: int, seed: int = 0) -> dict:
    """Two writer processes, two writer threads, three readers; returns the figures."""
    MemoryStore(path, model=ColourEncoder()).close()
    procs = [_spawn(WRITER.format(tests=str(TESTS), seed=s, path=str(path), ops=ops)) for s in (1, 2)]
    shared = MemoryStore(path, model=ColourEncoder())
    own = MemoryStore(path, model=ColourEncoder())
    acked: dict[str, str] = {}
    deleted: set[str] = set()
    seen: dict[str, str] = {}
    problems: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(t: int) -> None:
        rng = random.Random(seed * 100 + t)
        mine: list[str] = []
        try:
            for n in range(ops):
                op = rng.random()
                if op < 0.45:
                    got = [shared.remember(f"red t{t} {n}")]
                elif op < 0.75:
                    got = shared.remember_many([f"blue t{t} {n * 10 + i}" for i in range(3)])
                elif mine:
                    victim = mine.pop(rng.randrange(len(mine)))
                    shared.forget(victim)
                    with lock:
                        deleted.add(victim)
                    continue
                else:
                    continue
                with lock:
                    for m in got:
                        acked[m.id] = m.content
                        mine.append(m.id)
        except BaseException as exc:  # noqa: BLE001 - every failure is a finding
            problems.append(f"writer thread {t}: {exc!r}")

    def reader(store: MemoryStore, name: str) -> None:
        try:
            while not stop.is_set():
                for h in store.recall("red blue", k=8):
                    content = h.memory.content
                    if not isinstance(content, str) or not PATTERN.match(content):
                        problems.append(f"{name}: torn hit {h.id}: {content!r}")
                    with lock:
                        if seen.setdefault(h.id, content) != content:
                            problems.append(f"{name}: {h.id} changed content")
                store.count()
                len(store)
                store.count("default")
                store.stats()
        except BaseException as exc:  # noqa: BLE001
            problems.append(f"{name}: {exc!r}")

    reader_proc = _spawn(READER.format(tests=str(TESTS), path=str(path), seconds=max(5, ops // 2)))
    threads = [threading.Thread(target=writer, args=(t,)) for t in (1, 2)]
    threads += [threading.Thread(target=reader, args=(shared, "reader on the writers' store")),
                threading.Thread(target=reader, args=(own, "reader on its own store"))]
    t0 = time.time()
    for th in threads:
        th.start()
    outs = [p.communicate(timeout=900) for p in procs + [reader_proc]]
    for th in threads[:2]:
        th.join()
    stop.set()
    for th in threads[2:]:
        th.join()
    for p, (out, err) in zip(procs + [reader_proc], outs):
        if p.returncode != 0 or "DONE" not in out:
            problems.append(f"process rc={p.returncode}: {err[-2000:]}")
        for line in out.splitlines():
            tag, *rest = line.split(" ", 2)
            if tag == "ADD":
                acked[rest[0]] = rest[1]
            elif tag == "DEL":
                deleted.add(rest[0])
            elif tag == "SEEN":
                if not PATTERN.match(rest[1] if len(rest) > 1 else ""):
                    problems.append(f"reader process: torn hit {line!r}")
                seen.setdefault(rest[0], rest[1] if len(rest) > 1 else None)
    shared.close()
    own.close()
    assert not problems, "\n".join(problems[:20])
    # every id a reader saw was written by someone, with that content
    for mid, content in seen.items():
        assert acked.get(mid) == content, f"reader saw {mid}={content!r}, writers acked {acked.get(mid)!r}"
    expected = {mid: c for mid, c in acked.items() if mid not in deleted}
    with MemoryStore(path, model=ColourEncoder()) as s:
        assert set(s.catalog.by_id) == set(expected)
        assert len(s) == len(expected) == s.count("default")
        assert sorted(s.index.keys()) == sorted(s.catalog.alive_vkeys())
        for mid in random.Random(seed).sample(sorted(expected), min(20, len(expected))):
            assert s.get(mid).content == expected[mid]
    return {"ops": 4 * ops, "acked": len(acked), "forgotten": len(deleted), "reads_seen": len(seen),
            "seconds": round(time.time() - t0, 1)}


def _run_together(*targets) -> None:
    """Start one thread per target and wait for all of them."""
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _report(name: str, figures: dict) -> None:
    out = os.environ.get("AIMEMORY_RELIABILITY_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"suite": name, **figures}) + "\n")


def test_writers_and_readers_at_once(tmp_path):
    figures = run_mix(tmp_path / "m", 20)
    _report("concurrency", figures)


@pytest.mark.slow
def test_writers_and_readers_soak(tmp_path):
    rounds = int(os.environ.get("AIMEMORY_CONC_ROUNDS", "5"))
    for r in range(rounds):
        figures = run_mix(tmp_path / f"m{r}", int(os.environ.get("AIMEMORY_CONC_OPS", "100")), seed=r)
        _report("concurrency_long", figures)


def test_count_while_a_thread_writes(tmp_path):
    """Catalog reads (count, len, stats, namespaces) on the object another thread writes through."""
    with MemoryStore(tmp_path / "m", model=ColourEncoder()) as s:
        errors: list[BaseException] = []
        done = threading.Event()

        def write():
            try:
                for i in range(60):
                    s.remember_many([f"red c {i} {j}" for j in range(3)], namespace=f"ns{i % 3}")
            finally:
                done.set()

        def read():
            try:
                while not done.is_set():
                    s.count("ns1")
                    s.stats()
                    s.catalog.namespaces()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        _run_together(write, read)
        assert not errors, errors
        assert len(s) == 180


def test_catalog_reads_race_with_a_writer_thread(tmp_path):
    """Regression: count(namespace) and stats() read the catalog's arrays without the store lock
    while a writer thread appended to them: 'operands could not be broadcast' ValueErrors."""
    import pyarrow as pa

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible to open the race window
    try:
        with MemoryStore(tmp_path / "m", model=ColourEncoder()) as s:
            s.remember_many([f"red {i}" for i in range(3)])
            s.flush()  # the rows below are read from the table
            rows = s.table.catalog_rows()
            errors: list[BaseException] = []
            done = threading.Event()

            def append():  # what a commit does to the catalog, under the store's lock
                vk = 1000
                for _ in range(1500):
                    batch = rows.set_column(rows.schema.get_field_index("vkey"), "vkey",
                                            pa.array(range(vk, vk + 3), pa.int64()))
                    vk += 3
                    with s.state.lock:
                        s.catalog.append_arrow(batch)
                done.set()

            def read():
                while not done.is_set():
                    try:
                        s.count("default")
                        s.stats()
                    except BaseException as exc:  # noqa: BLE001
                        errors.append(exc)

            _run_together(append, read)
            assert not errors, errors[:3]
            s.index.dirty = False  # the fake rows are not in the table: do not save them
    finally:
        sys.setswitchinterval(old)
