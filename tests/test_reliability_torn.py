"""Torn files: the newest index file, its sidecar, the newest Lance manifest and the newest data file
are truncated, zeroed or emptied. The store must notice, say so in the log, and recover: rebuild the
index, or fall back to the newest readable table version. Never wrong results; when nothing can be
recovered, ``StoreCorruptError``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import ColourEncoder

from aimemory import MemoryStore
from aimemory.errors import StoreCorruptError, StoreError

DAMAGES = ("truncate", "zero", "empty")


def damage(path: Path, how: str) -> None:
    """Tear one file the way a crash or a bad disk would."""
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero":
        path.write_bytes(b"\0" * len(data))
    else:
        path.write_bytes(b"")


def lance_dir(store_path: Path) -> Path:
    return store_path / "tables" / "memories.lance"


def newest_manifest(store_path: Path) -> Path:
    # Lance v2 names count down from 2**64-1: the newest version has the smallest name
    files = list((lance_dir(store_path) / "_versions").glob("*.manifest"))
    return min(files, key=lambda p: int(p.stem)) if int(files[0].stem) > 2**63 else \
        max(files, key=lambda p: int(p.stem))


def data_files(store_path: Path) -> set[Path]:
    return set((lance_dir(store_path) / "data").glob("*.lance"))


def build(path: Path, n: int = 4) -> tuple[list[str], list[str], set[Path]]:
    """n single-commit text memories; returns (ids, texts, data files of the last commit)."""
    texts = [f"red memory number {i} \u00e9\u4e2d" for i in range(n)]
    ids = []
    with MemoryStore(path, model=ColourEncoder(), write_ahead=False) as s:  # a Lance commit each
        for t in texts[:-1]:
            ids.append(s.remember(t).id)
        before = data_files(path)
        ids.append(s.remember(texts[-1]).id)
        last_files = data_files(path) - before
    return ids, texts, last_files


def check_consistent(s: MemoryStore, ids: list[str], texts: list[str]) -> None:
    """Exactly these memories, byte-exact, the index equal to the table, recall only among them."""
    assert sorted(s.catalog.by_id) == sorted(ids)
    for mid, text in zip(ids, texts):
        assert s.get(mid).content == text
    assert sorted(s.index.keys()) == sorted(s.catalog.alive_vkeys())
    hits = s.recall("red memory", k=10)
    assert {h.id for h in hits} == set(ids)
    for h in hits:
        assert h.memory.content == texts[ids.index(h.id)]


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("target", ["index", "sidecar"])
def test_torn_index_files_are_rebuilt(tmp_path, target, how, caplog):
    path = tmp_path / "m"
    ids, texts, _ = build(path)
    folder = path / "index"
    victim = folder / "vectors.json" if target == "sidecar" else next(folder.glob("vectors-*.faiss"))
    damage(victim, how)
    with caplog.at_level(logging.WARNING), MemoryStore(path, model=ColourEncoder()) as s:
        check_consistent(s, ids, texts)
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    with MemoryStore(path, model=ColourEncoder()) as s:  # the rebuilt index was saved and loads
        check_consistent(s, ids, texts)


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("target", ["manifest", "data"])
def test_torn_table_falls_back_to_previous_version(tmp_path, target, how, caplog):
    path = tmp_path / "m"
    ids, texts, last_files = build(path)
    if target == "manifest":
        damage(newest_manifest(path), how)
    else:
        (victim,) = last_files
        damage(victim, how)
    with caplog.at_level(logging.WARNING), MemoryStore(path, model=ColourEncoder()) as s:
        # the last commit is gone, everything before it is intact; nothing wrong is served
        check_consistent(s, ids[:-1], texts[:-1])
        assert s.table.recovered_from is not None
        again = s.remember("blue after the recovery")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("newest readable" in w for w in warnings), warnings
    assert list((path / "quarantine").rglob("*.manifest"))
    with MemoryStore(path, model=ColourEncoder()) as s:  # recovery is durable and writable
        check_consistent(s, ids[:-1] + [again.id], texts[:-1] + ["blue after the recovery"])
        assert s.table.recovered_from is None


def test_torn_compaction_output_falls_back_to_the_fragments_it_merged(tmp_path):
    path = tmp_path / "m"
    ids, texts, _ = build(path, n=5)
    with MemoryStore(path, model=ColourEncoder()) as s:
        before = data_files(path)
        s.compact()
        merged = data_files(path) - before
    assert merged
    for f in merged:
        damage(f, "truncate")
    with MemoryStore(path, model=ColourEncoder()) as s:
        check_consistent(s, ids, texts)  # the pre-compaction version holds the same rows


def test_every_version_torn_is_store_corrupt(tmp_path):
    path = tmp_path / "m"
    build(path, n=2)
    for f in (lance_dir(path) / "_versions").glob("*.manifest"):
        damage(f, "zero")
    with pytest.raises(StoreCorruptError, match="no earlier version"):
        MemoryStore(path, model=ColourEncoder())


def test_every_data_file_torn_is_store_corrupt(tmp_path):
    path = tmp_path / "m"
    build(path, n=3)
    for f in data_files(path):
        damage(f, "truncate")
    with pytest.raises(StoreCorruptError):
        MemoryStore(path, model=ColourEncoder())


def test_file_torn_under_an_open_store_raises_not_guesses(tmp_path):
    """A data file torn while a store has it open: a typed error or the right bytes, never others."""
    path = tmp_path / "m"
    s = MemoryStore(path, model=ColourEncoder(), write_ahead=False)  # each memory in its own data file
    keep = s.remember("red kept")
    before = data_files(path)
    torn = s.remember("green torn")
    (victim,) = data_files(path) - before
    damage(victim, "zero")
    for mid, text in ((torn.id, "green torn"), (keep.id, "red kept")):
        try:
            got = s.get(mid).content
        except StoreError:
            continue
        assert got == text
    try:
        hits = s.recall("green", k=2)
        assert all(h.memory.content in ("red kept", "green torn") for h in hits)
    except StoreError:
        pass
    s.close()
    with MemoryStore(path, model=ColourEncoder()) as s2:
        check_consistent(s2, [keep.id], ["red kept"])


def test_stale_index_from_a_lost_version_is_caught_up(tmp_path):
    """The saved index knows vectors of the lost version: they must not come back as hits."""
    path = tmp_path / "m"
    ids, texts, _ = build(path)
    damage(newest_manifest(path), "zero")
    with MemoryStore(path, model=ColourEncoder()) as s:
        assert s.index.ntotal == len(ids) - 1
        q = s.embed(texts[-1])
        _, keys = s.index.search(q[None], 10)
        assert not set(keys[0].tolist()) - set(s.catalog.alive_vkeys().tolist()) - {-1}
        assert np.isin(s.catalog.alive_vkeys(), keys[0]).all()
