"""Ray ingestion (local Ray, 2 CPUs): the same store contents as single-process ingestion of the
same files, and a second run stores nothing (resumable by content hash)."""

from __future__ import annotations

import os

import conftest
import numpy as np
import pytest
from conftest import ColourEncoder, solid

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'aimemory-multimodal[ray]'); "
                                        "it is kept out of the test extra because it is large")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")


@pytest.fixture(scope="module")
def local_ray():
    from pathlib import Path

    # workers must import tests/conftest.py (ColourEncoder) and this checkout's aimemory
    here = Path(conftest.__file__).resolve().parent
    path = os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             runtime_env={"env_vars": {"PYTHONPATH": path, "AIMEMORY_SPEECH": "0"}})
    yield
    ray.shutdown()


def _files(folder):
    folder.mkdir()
    for i in range(10):
        (folder / f"note{i:02d}.txt").write_text(f"{['red', 'green', 'blue'][i % 3]} note number {i}")
    for i, colour in enumerate(["red", "green", "blue", "red"]):
        solid(colour, noise_seed=i).save(folder / f"img{i}.png")
    (folder / "dup.txt").write_text("red note number 0")  # same content as note00
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return folder


def _contents(store):
    keys, vectors = store.table.vectors_for(None)
    rows = store.table.scan(["vkey", "content_hash", "view"]).to_pylist()
    by_key = dict(zip(keys.tolist(), vectors))
    return {r["content_hash"]: by_key[r["vkey"]] for r in rows if r["view"] == 0}


# Ray start-up + actor pools: ~30 s on 2 cores (75 s when the machine is busy)
def test_ray_equals_single_process(local_ray, tmp_path):
    from aimemory import MemoryStore
    from aimemory.distributed import ingest

    folder = _files(tmp_path / "files")
    report = ingest(folder, str(tmp_path / "ray"), model=ColourEncoder, num_workers=2, block_items=4)
    assert report.stored == 14 and report.already_stored == 1
    assert len(report.failed) == 1 and "broken.png" in report.failed[0][0]
    assert report.commits >= 3

    single = MemoryStore(tmp_path / "single", model=ColourEncoder())
    single.remember_many(sorted(folder.glob("*")), errors="skip")
    by_ray = MemoryStore(tmp_path / "ray", model=ColourEncoder())
    want, got = _contents(single), _contents(by_ray)
    assert set(want) == set(got) and len(got) == 14
    for h in want:
        np.testing.assert_allclose(got[h], want[h], atol=1e-6)
    assert by_ray.recall("blue", k=1)[0].modality in ("text", "image")
    assert {h.memory.source for h in by_ray.recall("red note number 3", k=1)} == {
        str(folder / "note03.txt")}
    single.close()
    by_ray.close()

    again = ingest(folder, str(tmp_path / "ray"), model=ColourEncoder, num_workers=2, block_items=4)
    assert again.stored == 0 and again.already_stored == 15 and again.commits == 0
