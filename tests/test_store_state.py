"""aimemory.store_state: an open reads a few files and defers the catalog and the index to their
first use; that use loads them once across threads, sees what other processes wrote meanwhile, and
a store closed unused rewrites nothing. The default OCR choice is settled on the first image."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ColourEncoder, solid

from aimemory import MemoryStore
from aimemory.store_state import StoreState


def _open(path, **kw):
    return MemoryStore(path, model=ColourEncoder(), **kw)


@pytest.fixture
def loads(monkeypatch) -> list[int]:
    """One entry per load of a catalog and index, in any store."""
    out: list[int] = []
    real = StoreState.load_catalog_and_index
    monkeypatch.setattr(StoreState, "load_catalog_and_index", lambda self: (out.append(1), real(self))[1])
    return out


def _files(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}


def test_an_open_defers_the_catalog_and_index_to_their_first_use(tmp_path, loads):
    path = tmp_path / "mem"
    with _open(path) as s:
        s.remember_many([f"note {i} red" for i in range(30)] + ["a blue note"])
    loads.clear()
    before = _files(path)
    with _open(path) as s:
        assert not s.state.loaded and loads == []
    assert _files(path) == before  # closed unused: nothing loaded, nothing rewritten
    with _open(path) as s:
        assert s.recall("blue", k=1)[0].memory.content == "a blue note"
        assert s.state.loaded and loads == [1]
        assert s.count() == 31 and loads == [1]


def test_the_first_use_loads_once_for_every_thread(tmp_path, loads):
    """Readers and a writer make their first calls at once: one load, and every call sees it whole."""
    path = tmp_path / "mem"
    with _open(path) as s:
        s.remember_many([f"note {i} red" for i in range(40)] + ["a green note"])
    loads.clear()
    with _open(path) as s:
        start, found, errors = threading.Barrier(4), [], []

        def ask():
            start.wait()
            try:
                found.append(s.recall("green", k=1)[0].memory.content)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def write():
            start.wait()
            try:
                s.remember("a blue note")
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=ask) for _ in range(3)] + [threading.Thread(target=write)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and found == ["a green note"] * 3 and loads == [1]
        assert s.count() == 42 and s.recall("blue", k=1)[0].memory.content == "a blue note"


def test_the_first_use_sees_what_another_writer_committed_after_the_open(tmp_path):
    path = tmp_path / "mem"
    with _open(path) as s:
        kept = s.remember("a red note")
        gone = s.remember("a yellow note")
    reader = _open(path)
    try:
        with _open(path) as writer:
            writer.remember("a blue note")
            writer.forget(gone.id)
        assert not reader.state.loaded
        assert reader.recall("blue", k=1)[0].memory.content == "a blue note"
        assert {m.id for m in reader.recent(10)} == {kept.id} | {h.memory.id for h in reader.recall("blue", k=1)}
    finally:
        reader.close()


def test_a_write_first_loads_and_keeps_what_the_store_held(tmp_path):
    path = tmp_path / "mem"
    with _open(path) as s:
        first = s.remember("a red note")
    with _open(path) as s:
        second = s.remember("a blue note")  # the write path loads the catalog (duplicates, keys)
        assert s.remember("a red note").id == first.id  # a duplicate found in what was loaded
    with _open(path) as s:
        assert {m.id for m in s.recent(10)} == {first.id, second.id}


def test_the_default_ocr_is_settled_on_the_first_image(tmp_path):
    """A text-only process never looks for the OCR engine (its check imports package metadata)."""
    probe = ("import sys; sys.path.insert(0, {tests!r}); from conftest import ColourEncoder;"
             "from aimemory import MemoryStore; s = MemoryStore({path!r}, model=ColourEncoder());"
             "s.remember('a red note'); print('aimemory.encoders.ocr' in sys.modules); s.close()")
    out = subprocess.run([sys.executable, "-c", probe.format(tests=str(Path(__file__).parent),
                                                             path=str(tmp_path / "mem"))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]
    with _open(tmp_path / "mem", ocr=False) as s:
        s.remember(solid("red"))
        assert s.ocr is None and s.ocr_status == "off (ocr=False)"
