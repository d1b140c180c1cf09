"""The lazily opened table: Lance's version, rows and data files read from its manifest files agree
with Lance; a store reopened on a saved catalog answers recall and get without loading lancedb (or
pandas, or torch for a model that needs none); anything else opens Lance and goes on as before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import DIM, ColourEncoder, solid

from aimemory import MemoryStore
from aimemory.storage.arrow_numpy import int64_array, to_numpy
from aimemory.storage.lazy_table import (
    LazyTable,
    data_files_intact,
    dataset_folder,
    latest_version,
    live_rows,
    open_table,
    read_manifest,
)
from aimemory.storage.table import VectorTable


def _open(path):
    return MemoryStore(path, model=ColourEncoder())


def _fill(path, n=12):
    with _open(path) as s:
        mems = s.remember_many([f"note {i} {'red' if i % 2 else 'blue'}" for i in range(n)])
        s.save_index()
        s.save_catalog(force=True)
    return [m.id for m in mems]


def test_manifest_facts_agree_with_lance_through_appends_deletes_updates_and_compaction(tmp_path):
    path = tmp_path / "m"
    ids = _fill(path)
    with _open(path) as s:
        checks = []

        def check():
            real = VectorTable(s.path, s.manifest.dim)
            dataset = dataset_folder(s.path)
            assert latest_version(dataset) == real.version
            assert live_rows(dataset, real.version) == real.count_rows()
            facts = read_manifest(dataset, real.version)
            assert facts is not None and facts.data_files and data_files_intact(dataset, facts)
            checks.append(real.version)

        check()
        s.forget(ids[:3])
        check()
        s.update(ids[5], tags=["changed"])
        check()
        s.remember("one more, green")
        s.flush()  # a small write waits in the write-ahead segment until folded
        check()
        s.compact()
        check()
    assert len(set(checks)) == len(checks)  # every step was a new version


def test_a_reopened_store_answers_recall_and_get_without_opening_lance(tmp_path):
    path = tmp_path / "m"
    ids = _fill(path)
    with _open(path) as s:
        assert isinstance(s.table, LazyTable) and not s.table.opened
        assert len(s) == 12 and s.count() == 12
        hits = s.recall("red", k=3)
        assert len(hits) == 3 and all("red" in h.memory.content for h in hits)
        assert s.get(ids[4]).content == "note 4 blue"
        assert [m.id for m in s.recent(2)] == ids[:-3:-1]
        s.refresh()  # nothing new: still answered from the manifest files
        assert not s.table.opened


def test_content_writes_and_other_processes_commits_open_lance(tmp_path):
    path = tmp_path / "m"
    _fill(path)
    with _open(path) as s:
        image = s.remember(solid("green"))  # a write opens Lance
        assert s.table.opened
    with _open(path) as reader:
        assert not reader.table.opened
        assert reader.get(image.id).content[:4] == b"\x89PNG"  # image bytes live in the table only
        assert reader.table.opened
    with _open(path) as reader, _open(path) as writer:
        assert not reader.table.opened
        new = writer.remember("written by another process, red")  # into the write-ahead segment
        reader.refresh()  # the segment's new tail carries the rows: no Lance needed
        assert not reader.table.opened
        assert reader.get(new.id).content == "written by another process, red"
        assert new.id in {h.id for h in reader.recall("red", k=20)}
        writer.flush()
        reader.refresh()  # folded: a newer manifest file, so Lance opens to read what changed
        assert reader.table.opened
        assert reader.get(new.id).content == "written by another process, red"


def test_a_torn_data_file_or_a_missing_catalog_opens_lance_at_once(tmp_path):
    path = tmp_path / "m"
    _fill(path)
    with _open(path) as s:
        s.remember("the last commit, red")
        s.save_catalog(force=True)
    dataset = dataset_folder(path)
    facts = read_manifest(dataset, latest_version(dataset))
    assert isinstance(open_table(path, DIM), LazyTable)
    sidecar = path / "catalog" / "catalog.json"
    saved = sidecar.read_bytes()
    sidecar.unlink()
    assert isinstance(open_table(path, DIM), VectorTable)
    sidecar.write_bytes(saved)
    victim = dataset / "data" / facts.data_files[-1]
    victim.write_bytes(victim.read_bytes()[:100])
    assert not data_files_intact(dataset, facts)
    table = open_table(path, DIM)  # Lance walks back to the newest readable version
    assert isinstance(table, VectorTable) and table.recovered_from is not None


def test_an_unreadable_manifest_is_no_answer(tmp_path):
    path = tmp_path / "m"
    _fill(path)
    dataset = dataset_folder(path)
    version = latest_version(dataset)
    (manifest,) = [p for p in (dataset / "_versions").glob("*.manifest")
                   if int(p.stem) in (version, 2**64 - 1 - version)]
    manifest.write_bytes(b"\0" * 40)
    assert read_manifest(dataset, version) is None and live_rows(dataset, version) is None


COLD_RECALL = """
import sys
sys.path.insert(0, {tests!r})
from conftest import ColourEncoder
from aimemory import MemoryStore
with MemoryStore({store!r}, model=ColourEncoder(), speech_model=None, sound_model=None, ocr=False,
                 device="cpu") as s:
    hits = s.recall("red", k=2)
    assert len(hits) == 2 and s.get(hits[0].id).content.endswith("red")
print(sorted(m for m in ("lancedb", "pandas", "torch", "pyarrow.dataset") if m in sys.modules))
"""


def test_a_cold_recall_imports_neither_lancedb_nor_pandas(tmp_path):
    path = tmp_path / "m"
    _fill(path)
    code = COLD_RECALL.format(tests=str(Path(__file__).parent), store=str(path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


@pytest.mark.parametrize("array", [
    pa.array([1, 2, 3], pa.int64()), pa.array([1.5, float("nan")], pa.float64()),
    pa.array([True, False, True, True, False, False, True, False, True], pa.bool_()).slice(3),
    pa.array(np.arange(10, dtype=np.int32)).slice(4, 3), pa.array([], pa.int8()),
    pa.array([1, None, 3], pa.int64()),
    pa.chunked_array([pa.array([1, 2], pa.uint16()), pa.array([3], pa.uint16())]),
    pa.chunked_array([], pa.float32()), pa.chunked_array([pa.array([False, True])]),
])
def test_to_numpy_matches_pyarrow(array):
    got, want = to_numpy(array), array.to_numpy(zero_copy_only=False)
    assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)


def test_int64_array_takes_like_pa_array():
    base = pa.array(["a", "b", "c", "d"])
    idx = np.array([3, 0, 2])
    assert base.take(int64_array(idx)).to_pylist() == ["d", "a", "c"]


def test_the_flat_index_gives_the_table_s_vectors(tmp_path):
    path = tmp_path / "m"
    _fill(path)
    with _open(path) as s:
        keys = s.catalog.alive_vkeys()[:5]
        got = s.index.vectors(keys)
        want_keys, want = s.table.real().vectors_for(keys)
        order = {int(k): i for i, k in enumerate(want_keys)}
        assert np.array_equal(got, want[[order[int(k)] for k in keys]])
        assert s.index.vectors(np.asarray([10**9])) is None


def test_recall_is_the_same_with_lance_loaded_or_not(tmp_path):
    path = tmp_path / "m"
    _fill(path)

    def answer(store):
        hits = store.recall("red", k=5, min_relevance=0.0)
        return [(h.id, round(h.score, 6), round(h.relevance, 6)) for h in hits]

    with _open(path) as lazy:
        got = answer(lazy)
        assert not lazy.table.opened  # background samples came from the index
    with _open(path) as loaded:
        loaded.table.real()
        assert answer(loaded) == got


def test_a_closed_lazy_table_does_not_open_lance(tmp_path):
    from aimemory.errors import StoreClosedError

    path = tmp_path / "m"
    _fill(path)
    table = open_table(path, DIM)
    table.close()
    with pytest.raises(StoreClosedError):
        table.scan(["vkey"])


def test_an_ivf_index_gives_the_table_s_vectors_too(tmp_path):
    path = tmp_path / "m"
    with MemoryStore(path, model=ColourEncoder(), ann_threshold=50) as s:
        s.remember_many([f"note {i} {'red' if i % 2 else 'blue'}" for i in range(200)])
        s.rebuild_index()
        assert s.index.kind == "ivf"
        s.save_catalog(force=True)
    with MemoryStore(path, model=ColourEncoder(), ann_threshold=50) as s:
        keys = s.catalog.alive_vkeys()[::37]
        got = s.index.vectors(keys)
        assert len(s.recall("red", k=3)) == 3 and not s.table.opened  # background samples from IVF
        want_keys, want = s.table.real().vectors_for(keys)
        order = {int(k): i for i, k in enumerate(want_keys)}
        assert np.array_equal(got, want[[order[int(k)] for k in keys]])
        assert s.index.vectors(np.asarray([10**9])) is None
        assert np.array_equal(s.index.vectors(keys[::-1]), got[::-1])  # in the order asked
        assert s.index.vectors(np.concatenate([keys, keys[:1]])) is None  # a key twice
        added = s.remember("note added after the build, red")
        new_key = int(s.catalog.array("vkey")[s.catalog.live_positions(added.id)[0]])
        new_vector = s.index.vectors(np.asarray([new_key]))  # a key added to the lists since
        s.flush()  # into the table, to compare
        want_keys, want = s.table.real().vectors_for([new_key])
        assert new_vector is not None and np.array_equal(new_vector, want)


def test_the_newest_version_from_lance_s_hint_equals_a_listing_of_every_manifest(tmp_path, monkeypatch):
    import json as json_

    from aimemory.storage import lazy_table

    path = tmp_path / "mem"
    _fill(path)
    with _open(path) as s:
        for i in range(3):  # more commits: the direct path (no write-ahead) commits each
            s.remember_many([f"more {i} {j}" for j in range(20)])
    dataset = dataset_folder(path)
    hint = dataset / "_versions" / lazy_table.VERSION_HINT
    listed = lazy_table._listed_version(dataset)
    assert listed is not None and listed > 3
    assert json_.loads(hint.read_text())["version"] == listed  # Lance keeps it
    probes = []
    real = lazy_table.manifest_file
    monkeypatch.setattr(lazy_table, "manifest_file", lambda d, v: probes.append(v) or real(d, v))
    monkeypatch.setattr(lazy_table, "_listed_version", lambda d: pytest.fail("listed every manifest"))
    assert latest_version(dataset) == listed and len(probes) == 2  # the hinted one, and no next one
    hint.write_text(json_.dumps({"version": listed - 3}))  # stale: stepped past
    assert latest_version(dataset) == listed
    monkeypatch.undo()
    for garbled in ("{not json", json_.dumps({"version": listed + 5}), json_.dumps({"version": "7"})):
        hint.write_text(garbled)  # unreadable, or naming a version that is not there: listed
        assert latest_version(dataset) == listed
    hint.unlink()
    assert latest_version(dataset) == listed
