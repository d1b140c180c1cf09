"""aimemory.index.gpu: FAISS searches on a CUDA GPU when FAISS is a GPU build and the store runs on
CUDA. FAISS's GPU entry points are replaced by stand-ins that record their calls and search a CPU
copy of the index, so the switch, the CPU-identical results and the invalidation are checked on
the CPU; the plain faiss-cpu build must never reach them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _vectors import clustered, view_rows  # noqa: E402

import aimemory.index.gpu as gpu  # noqa: E402
import aimemory.index.ivf as ivf  # noqa: E402
from aimemory.index import INDEX_DIR, VectorIndex, open_index  # noqa: E402
from aimemory.index.gpu import cuda_ordinal, search_device_for  # noqa: E402
from aimemory.storage import VectorTable  # noqa: E402

DIM = 32


def _unit(rng, n, dim=DIM):
    v = rng.standard_normal((n, dim)).astype(np.float32)  # (n, dim)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class _Recorder:
    """Stands in for a GPU index: searches a CPU copy and records which search ran."""

    def __init__(self, index):
        self.index, self.calls = index, []

    def search(self, *args, **kwargs):
        self.calls.append("search")
        return self.index.search(*args, **kwargs)

    def search_preassigned_c(self, *args):
        self.calls.append("preassigned")
        return self.index.search_preassigned_c(*args)


class _FakeGpus:
    """faiss's GPU entry points on a CPU build: ``n`` GPUs, clones recorded."""

    def __init__(self, n=1, fail=False):
        self.n, self.fail, self.clones, self.resources = n, fail, [], 0

    def install(self, monkeypatch):
        fakes = self

        class Resources:
            def __init__(self):
                fakes.resources += 1

        class ClonerOptions:
            use_cuvs = True

        def to_gpu(res, device, index, options=None):
            if fakes.fail:
                raise RuntimeError("no kernel image is available for execution on the device")
            assert isinstance(res, Resources) and options is not None and options.use_cuvs is False
            clone = _Recorder(faiss.deserialize_index(faiss.serialize_index(index)))  # a copy, as a GPU's is
            fakes.clones.append((device, clone))
            return clone

        monkeypatch.setattr(faiss, "get_num_gpus", lambda: fakes.n, raising=False)
        monkeypatch.setattr(faiss, "StandardGpuResources", Resources, raising=False)
        monkeypatch.setattr(faiss, "GpuClonerOptions", ClonerOptions, raising=False)
        monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
        monkeypatch.setattr(gpu, "_resources", {})  # resources are made once per process: start clean
        return self

    @property
    def calls(self):
        return [call for _, clone in self.clones for call in clone.calls]


@pytest.fixture
def fake_gpus(monkeypatch):
    return _FakeGpus().install(monkeypatch)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return _unit(rng, 4000), np.arange(4000, dtype=np.int64) * 2 + 1, _unit(rng, 40)


def test_placement_devices_map_to_search_devices(fake_gpus):
    assert cuda_ordinal("cuda") == 0 and cuda_ordinal("cuda:1") == 1
    assert cuda_ordinal("cpu") is None and cuda_ordinal("mps") is None
    assert search_device_for("cuda") == "cuda:0" and search_device_for("cuda:0") == "cuda:0"
    assert search_device_for("cuda:1") == "cpu"  # a GPU this FAISS build does not see
    assert search_device_for("cpu") == "cpu" and search_device_for("mps") == "cpu"


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="a GPU build of FAISS is installed")
def test_faiss_cpu_build_never_tries_the_gpu(monkeypatch, data):
    def refuse(*args, **kwargs):
        raise AssertionError("a GPU entry point was called on a CPU build")

    monkeypatch.setattr(faiss, "index_cpu_to_gpu", refuse, raising=False)
    monkeypatch.setattr(faiss, "StandardGpuResources", refuse, raising=False)
    vectors, keys, queries = data
    index = VectorIndex.build(vectors, keys)
    for device in ("cuda", "cuda:0", "cpu", "mps"):
        assert index.place(device) == "cpu" and index.search_device == "cpu"
    index.search(queries, 10)
    index.search(queries[:1], 10)
    assert index.gpu_clones == 0


def test_cpu_placement_stays_on_the_cpu_even_with_gpus(fake_gpus, data):
    vectors, keys, queries = data
    index = VectorIndex.build(vectors, keys)
    assert index.place("cpu") == "cpu"
    index.search(queries, 10)
    assert fake_gpus.clones == [] and fake_gpus.resources == 0


@pytest.mark.parametrize("n_queries", [1, 5, 40])
def test_flat_gpu_search_matches_the_cpu(fake_gpus, data, n_queries):
    vectors, keys, queries = data
    index = VectorIndex.build(vectors, keys)
    want_s, want_k = index.search(queries[:n_queries], 10)
    assert index.place("cuda") == "cuda:0" and index.search_device == "cuda:0"
    got_s, got_k = index.search(queries[:n_queries], 10)
    assert fake_gpus.calls == ["search"] and fake_gpus.clones[0][0] == 0
    np.testing.assert_array_equal(got_k, want_k)
    np.testing.assert_allclose(got_s, want_s, atol=1e-5)


@pytest.mark.parametrize("margin", [0.0, 0.1])
def test_ivf_gpu_search_probes_the_cpus_lists(fake_gpus, data, margin, monkeypatch):
    _, keys, queries = data  # queries far from the clusters: their lists vary with the margin
    monkeypatch.setattr(ivf, "MARGIN_FLOOR", 0.0)  # so margin 0 probes exactly nprobe lists
    vectors = clustered(len(keys), DIM, seed=3)
    index = VectorIndex.build(vectors, keys, ann_threshold=1000)
    assert index.kind == "ivf" and index.nprobe < 64
    index.margin = margin  # 0.1: queries probe their own lists, -1 padding the rest
    lists, _ = index.search_lists(queries, index.nprobe)
    assert (margin == 0) == bool((lists >= 0).all())
    want_s, want_k = index.search(queries, 10)
    index.place("cuda:0")
    got_s, got_k = index.search(queries, 10)
    assert fake_gpus.calls == ["preassigned"]
    np.testing.assert_array_equal(got_k, want_k)
    np.testing.assert_allclose(got_s, want_s, atol=1e-5)


def test_a_change_drops_the_gpu_copy(fake_gpus, data):
    vectors, keys, queries = data
    index = VectorIndex.build(vectors[:-1], keys[:-1])
    index.place("cuda")
    index.search(queries, 5)
    index.search(queries[:1], 5)
    assert index.gpu_clones == 1  # cloned once, on first use
    index.add(vectors[-1:], keys[-1:])
    _, found = index.search(vectors[-1:], 1)
    assert found[0, 0] == keys[-1] and index.gpu_clones == 2  # the new vector is on the new copy
    index.remove(keys[-1:])
    _, found = index.search(vectors[-1:], 1)
    assert found[0, 0] != keys[-1] and index.gpu_clones == 3


def test_filtered_searches_stay_on_the_cpu(fake_gpus, data):
    vectors, keys, queries = data
    index = VectorIndex.build(vectors, keys)
    want = index.search(queries, 10, keys[:100])
    index.place("cuda")
    got = index.search(queries, 10, keys[:100])
    assert fake_gpus.clones == []
    np.testing.assert_array_equal(got[1], want[1])


def test_a_gpu_failure_falls_back_to_the_cpu(monkeypatch, data):
    _FakeGpus(fail=True).install(monkeypatch)
    vectors, keys, queries = data
    index = VectorIndex.build(vectors, keys)
    want = index.search(queries, 10)
    assert index.place("cuda") == "cuda:0"
    got = index.search(queries, 10)
    np.testing.assert_array_equal(got[1], want[1])
    assert index.search_device == "cpu"


def test_open_index_places_faiss_and_saves_the_cpu_index(fake_gpus, tmp_path):
    table = VectorTable(tmp_path, 16)
    try:
        table.add(view_rows(clustered(200, 16, seed=1)))
        keys = table.scan(["vkey"]).column("vkey").to_numpy()
        index = open_index("faiss", table, keys, folder=tmp_path / INDEX_DIR, table_version=table.version,
                           device="cuda")
        assert index.search_device == "cuda:0"
        _, vectors = table.vectors_for([5])
        assert index.search(vectors, 1)[1][0, 0] == 5 and len(fake_gpus.clones) == 1
        index.save(tmp_path / INDEX_DIR, table.version)  # the CPU index: a CPU build can load it
        again = open_index("faiss", table, keys, folder=tmp_path / INDEX_DIR, table_version=table.version)
        assert not again.dirty and again.search_device == "cpu" and again.search(vectors, 1)[1][0, 0] == 5
        lance = open_index("lance", table, keys, folder=tmp_path / INDEX_DIR, table_version=table.version,
                           device="cuda")
        assert lance.search_device == "cpu"
    finally:
        table.close()


def test_an_environment_switch_keeps_searches_on_the_cpu(fake_gpus, monkeypatch, data):
    monkeypatch.setenv("AIMEMORY_FAISS_GPU", "0")
    vectors, keys, queries = data
    index = VectorIndex.build(vectors, keys)
    assert index.place("cuda") == "cpu"
    index.search(queries, 10)
    assert fake_gpus.clones == []
