"""aimemory.index.ivf_file: an IVF index written straight into its file, list by list, is byte for
byte what FAISS writes for the same index, and a build into a store's index folder is memory-mapped
from that file and saved without writing it again."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _vectors import clustered  # noqa: E402

import aimemory.index.ivf_file as ivf_file  # noqa: E402
from aimemory.index import VectorIndex  # noqa: E402
from aimemory.index.ivf import array_blocks, fill_lists, train_ivf  # noqa: E402

faiss = pytest.importorskip("faiss")
DIM = 16


@pytest.mark.parametrize("n, nlist_of", [(2000, None), (6, 64)])  # most lists filled ("full"), few ("sprs")
def test_the_written_file_is_what_faiss_writes(tmp_path, monkeypatch, n, nlist_of):
    vectors, keys = clustered(n, DIM, seed=2), np.arange(50, 50 + n, dtype=np.int64)[::-1].copy()
    sample = clustered(4000, DIM, seed=7)
    if nlist_of is not None:
        monkeypatch.setattr("aimemory.index.ivf.nlist_for", lambda n: nlist_of)
    monkeypatch.setattr(ivf_file, "WRITE_ROWS", 256)  # several write rounds, a list spread across them
    blocks = array_blocks(vectors, keys, rows=100)
    in_ram = train_ivf(sample, n, seed=0)
    fill_lists(in_ram, blocks)
    path, digest = ivf_file.write_filled(train_ivf(sample, n, seed=0), blocks, tmp_path)
    assert path.read_bytes() == faiss.serialize_index(in_ram).tobytes()
    assert path.name == f"vectors-{digest[:16]}.faiss" and not list(tmp_path.glob(".vectors.*"))


def test_rows_gone_between_the_passes_lay_the_file_out_again(tmp_path):
    vectors, keys = clustered(500, DIM, seed=2), np.arange(500, dtype=np.int64)
    reads = []

    def blocks():  # the first pass sees 500 rows, every later one 450 (50 were forgotten meanwhile)
        reads.append(1)
        m = 500 if len(reads) == 1 else 450
        yield keys[:m], vectors[:m]

    ivf = train_ivf(clustered(2000, DIM, seed=7), 500, seed=0)
    path, _ = ivf_file.write_filled(ivf, blocks, tmp_path)
    assert faiss.read_index(str(path)).ntotal == 450 and len(reads) == 4  # one attempt wasted


def test_a_build_into_a_folder_is_mapped_and_saved_without_a_rewrite(tmp_path):
    n = 3000
    vectors, keys = clustered(n, DIM, seed=4), np.arange(10, 10 + n, dtype=np.int64)
    blocks = array_blocks(vectors, keys)
    built = VectorIndex.build_from(blocks, n, DIM, ann_threshold=1, folder=tmp_path)
    in_ram = VectorIndex.build_from(blocks, n, DIM, ann_threshold=1)
    assert built.kind == "ivf" and built.recent_count == 0 and built.ntotal == n
    queries = vectors[::300] + 0.01
    assert (built.search(queries, 10)[1] == in_ram.search(queries, 10)[1]).all()
    assert built.nprobe == in_ram.nprobe and built.margin == in_ram.margin
    (path,) = tmp_path.glob("vectors-*.faiss")
    stamp = path.stat().st_mtime_ns
    built.save(tmp_path, table_version=3)
    assert path.stat().st_mtime_ns == stamp and list(tmp_path.glob("vectors-*.faiss")) == [path]
    loaded, sidecar = VectorIndex.load(tmp_path)
    assert sidecar.count == n and (loaded.search(queries, 10)[1] == in_ram.search(queries, 10)[1]).all()


def test_a_build_with_vectors_added_before_its_first_save_is_saved_whole(tmp_path):
    """The sidecar is written for the built file and the added vectors beside it, so the next open
    loads both instead of finding no sidecar and building again."""
    n = 3000
    vectors, keys = clustered(n + 5, DIM, seed=4), np.arange(10, 15 + n, dtype=np.int64)
    built = VectorIndex.build_from(array_blocks(vectors[:n], keys[:n]), n, DIM, ann_threshold=1, folder=tmp_path)
    built.add(vectors[n:], keys[n:])
    built.save(tmp_path, table_version=2)
    loaded, sidecar = VectorIndex.load(tmp_path)
    assert sidecar.count == n and loaded.recent_count == 5 and loaded.ntotal == n + 5
    assert loaded.search(vectors[n + 2:n + 3], 1)[1][0, 0] == keys[n + 2]
