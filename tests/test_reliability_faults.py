"""Resource faults: a full disk (a small tmpfs), a low open-files limit (RLIMIT_NOFILE in a
subprocess), and injected IO errors at each step of a write. Every failure is a typed
:class:`StoreError` saying what ran out; what was stored before is intact and the store keeps
working once the resource is back; thousands of single remembers do not leak file handles."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ColourEncoder

from aimemory import MemoryStore
from aimemory.errors import StoreCorruptError, StoreError

TESTS = Path(__file__).parent
FIGURES = {"faults_injected": 0}


def _report(name: str, figures: dict) -> None:
    out = os.environ.get("AIMEMORY_RELIABILITY_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"suite": name, **figures}) + "\n")


def assert_intact(path: Path, expected: dict[str, str]) -> None:
    """Reopen: exactly the acknowledged memories, byte-exact, index equal to the table."""
    with MemoryStore(path, model=ColourEncoder()) as s:
        assert set(s.catalog.by_id) == set(expected)
        for mid, text in expected.items():
            assert s.get(mid).content == text
        assert sorted(s.index.keys()) == sorted(s.catalog.alive_vkeys())


def fill(path: Path) -> Path:
    """Fill the file system holding ``path`` to the last block; returns the ballast file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return path


# -- a full disk ---------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                        capture_output=True).returncode
    if rc != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root / CAP_SYS_ADMIN)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("write_ahead", [False, True])
def test_full_disk_is_a_typed_error_and_nothing_is_lost(small_disk, write_ahead):
    path = small_disk / "m"
    store = MemoryStore(path, model=ColourEncoder(), write_ahead=write_ahead)
    stored = {}
    for i in range(5):
        m = store.remember(f"red early {i}")
        stored[m.id] = m.content
    ballast = fill(small_disk / "ballast")
    failures = 0
    # a fresh write per try; some small ones may still fit in slack (the segment's zeros written
    # ahead hold about a megabyte: its writes are larger, to get past them)
    size, tries = (40_000, 60) if write_ahead else (4000, 20)
    for i in range(tries):
        try:
            m = store.remember(f"blue {'x' * size} {i}")
            stored[m.id] = m.content
        except StoreError as exc:
            assert not isinstance(exc, StoreCorruptError), exc
            assert "disk is full" in str(exc)
            failures += 1
    assert failures, "the disk never filled"
    victim = next(iter(stored))
    try:
        store.forget(victim)
        del stored[victim]
    except StoreError as exc:
        assert "disk is full" in str(exc)
        failures += 1
    assert store.get(victim).content == stored[victim] if victim in stored else True
    # reads keep working on a full disk, and they see only acknowledged memories
    assert set(store.catalog.by_id) == set(stored)
    assert {h.id for h in store.recall("red", k=50)} == set(stored)
    ballast.unlink()  # space is back: the same object writes again
    m = store.remember("green after the disk was freed")
    stored[m.id] = m.content
    store.close()
    FIGURES["faults_injected"] += failures
    assert_intact(path, stored)


def test_close_on_a_full_disk_is_typed_and_releases(small_disk):
    path = small_disk / "m"
    store = MemoryStore(path, model=ColourEncoder())
    m = store.remember("red before")
    store.index.dirty = True
    ballast = fill(small_disk / "ballast")
    try:
        store.close()
    except StoreError as exc:
        assert "disk is full" in str(exc)
        FIGURES["faults_injected"] += 1
    assert store.state.closed
    ballast.unlink()
    assert_intact(path, {m.id: "red before"})


# -- injected IO errors at each step of a write ---------------------------------------------------
def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def _lance_enospc(*_a, **_k):
    raise RuntimeError("lance error: LanceError(IO): No space left on device (os error 28)")


@pytest.mark.parametrize("step", ["manifest", "table_add", "table_delete", "index_save", "compaction",
                                  "segment_append", "fold"])
def test_injected_io_error_at_each_write_step(tmp_path, monkeypatch, step):
    import aimemory.index as index_mod
    import aimemory.storage.manifest as manifest_mod
    import aimemory.storage.segment as segment_mod
    import aimemory.storage.table as table_mod
    import aimemory.write as write_mod

    path = tmp_path / "m"
    # the direct path's steps with the write-ahead segment off; its own steps with it on
    store = MemoryStore(path, model=ColourEncoder(), write_ahead=step in ("segment_append", "fold"))
    kept = {m.id: m.content for m in store.remember_many([f"red kept {i}" for i in range(3)])}
    rows_before = store.table.count_rows()
    with monkeypatch.context() as mp:
        if step == "manifest":
            mp.setattr(manifest_mod, "atomic_write_bytes", _enospc)
        elif step == "table_add":
            mp.setattr(table_mod.VectorTable, "add", _lance_enospc)
        elif step == "table_delete":
            mp.setattr(table_mod.VectorTable, "delete_vkeys", _lance_enospc)
        elif step == "segment_append":
            mp.setattr(segment_mod.Segment, "append", _enospc)
        elif step == "fold":
            mp.setattr(table_mod.VectorTable, "add", _lance_enospc)
        elif step == "index_save":
            mp.setattr(write_mod, "SAVE_INDEX_AFTER_CHANGES", 1)
            mp.setattr(index_mod.VectorIndex, "save", _enospc)
        else:
            mp.setattr(table_mod, "COMPACT_EVERY_COMMITS", 1)
            mp.setattr(table_mod.VectorTable, "compact", _lance_enospc)
        if step == "fold":  # the records stay in the segment, every memory stays readable
            with pytest.raises(StoreError, match="disk is full"):
                store.flush()
            assert store.segment.n_records == 1 and len(store) == 3
        elif step == "table_delete":
            victim = next(iter(kept))
            with pytest.raises(StoreError, match="disk is full"):
                store.forget(victim)
            assert store.get(victim).content == kept[victim]
        elif step in ("index_save", "compaction"):
            # after the commit: the write stands, the cache/optimisation is retried later
            m = store.remember("blue acknowledged despite the failed save")
            kept[m.id] = m.content
        else:
            with pytest.raises(StoreError, match="disk is full"):
                store.remember("blue refused")
            assert store.table.count_rows() == rows_before
            assert len(store) == 3
    FIGURES["faults_injected"] += 1
    m = store.remember("green after the fault")  # the same object recovers
    kept[m.id] = m.content
    keys = store.catalog.array("vkey")
    assert len(set(keys.tolist())) == len(keys), "an index key was reused"
    store.close()
    assert_intact(path, kept)


# -- a low open-files limit ----------------------------------------------------------------------
LOW_FILES = textwrap.dedent("""
    import json, os, resource, sys
    sys.path.insert(0, {tests!r})
    from conftest import ColourEncoder
    from aimemory import MemoryStore
    from aimemory.errors import AimemoryError, StoreError
    out = {{"errors": [], "untyped": [], "fds": []}}
    path, n, mode = {path!r}, {n}, {mode!r}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    def fds():
        return len(os.listdir("/proc/self/fd"))
    if mode == "tiny_at_open":
        resource.setrlimit(resource.RLIMIT_NOFILE, (8, hard))
        try:
            MemoryStore(path, model=ColourEncoder())
            out["opened"] = True
        except AimemoryError as exc:
            out["errors"].append(type(exc).__name__ + ": " + str(exc)[:200])
        except BaseException as exc:
            out["untyped"].append(repr(exc)[:300])
    else:
        store = MemoryStore(path, model=ColourEncoder())
        acked = {{}}
        base = fds()
        if mode != "squeeze":
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        for i in range(n):
            if mode == "squeeze":  # 0 to 3 spare handles: the failure lands at different steps
                resource.setrlimit(resource.RLIMIT_NOFILE, (base + i % 4, hard))
            try:
                m = store.remember(f"red single {{i}}")
                acked[m.id] = m.content
                if i % 50 == 0:
                    store.recall("red", k=3)
                    if acked and i % 100 == 0:
                        victim = next(iter(acked))
                        store.forget(victim)
                        del acked[victim]
            except StoreError as exc:
                out["errors"].append(type(exc).__name__ + ": " + str(exc)[:200])
            except BaseException as exc:
                out["untyped"].append(repr(exc)[:300])
            if i % 100 == 0:
                out["fds"].append(fds())
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        m = store.remember("green after the limit was raised")
        acked[m.id] = m.content
        store.close()
        out["acked"] = acked
    print("RESULT", json.dumps(out))
""")


def _low_files(path: Path, n: int, mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", LOW_FILES.format(tests=str(TESTS), path=str(path), n=n,
                                                                    mode=mode)],
                          capture_output=True, text=True, timeout=1200)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"rc={proc.returncode}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][7:])


def test_tiny_open_files_limit_at_open_is_typed(tmp_path):
    path = tmp_path / "m"
    with MemoryStore(path, model=ColourEncoder()) as s:
        m = s.remember("red before")
    out = _low_files(path, 0, "tiny_at_open")
    assert not out["untyped"], out
    assert out.get("opened") or any("open files" in e for e in out["errors"]), out
    FIGURES["faults_injected"] += len(out["errors"])
    assert_intact(path, {m.id: "red before"})


def test_squeezed_open_files_mid_session_is_typed_and_recovers(tmp_path):
    path = tmp_path / "m"
    with MemoryStore(path, model=ColourEncoder()) as s:
        before = {m.id: m.content for m in s.remember_many([f"blue {i}" for i in range(3)])}
    out = _low_files(path, 12, "squeeze")
    assert not out["untyped"], out
    assert all(e.startswith("StoreError") for e in out["errors"]), out
    FIGURES["faults_injected"] += len(out["errors"])
    assert_intact(path, {**before, **out["acked"]})


def _many_single_remembers(tmp_path, n):
    out = _low_files(tmp_path / "m", n, "many")
    assert not out["untyped"] and not out["errors"], out
    assert max(out["fds"]) <= out["fds"][0] + 4, f"file handles grow: {out['fds']}"
    assert_intact(tmp_path / "m", out["acked"])
    return out


def test_hundreds_of_single_remembers_under_64_files(tmp_path):
    out = _many_single_remembers(tmp_path, 150)
    FIGURES["fd_remembers"] = len(out["acked"])
    _report("faults", dict(FIGURES))


@pytest.mark.slow
def test_thousands_of_single_remembers_under_64_files(tmp_path):
    out = _many_single_remembers(tmp_path, int(os.environ.get("AIMEMORY_FD_REMEMBERS", "5000")))
    _report("faults_long", {"fd_remembers": len(out["acked"]), "fds": out["fds"][-1]})
