"""Smoke test for benchmarks/bench_store.py: its quick mode runs in-process at a tiny size and prints
the results table (every code path once: references, LanceDB, store exact and ANN, one-by-one)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_store.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_store", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_mode_prints_the_table(tmp_path):
    bench = _load()
    lines: list[str] = []
    t = time.perf_counter()
    out = bench.main(["--quick", "--sizes", "1000", "--queries", "10", "--min-queries", "10",
                      "--budget", "1", "--one-by-one", "3", "--threads", "1",
                      "--workdir", str(tmp_path), "--out", str(tmp_path / "r.json")], log=lines.append)
    assert time.perf_counter() - t < 60  # typically well under 20 s; slack for a loaded machine
    table = out["table"]
    assert table == lines[-1]
    assert "CPU:" in table and "faiss-cpu" in table
    for method in ("numpy matvec", "faiss IndexFlatIP", "faiss HNSW32 efSearch=128",
                   "lancedb search, no index", "lancedb IVF_PQ", "store.recall exact",
                   "store.index.search exact", "store.recall ANN"):
        assert method in table, method
    by_method = {(r["dataset"], r["method"]): r for r in out["results"]}
    for dataset in ("uniform", "clustered"):
        # exact paths agree with the ground truth
        assert by_method[(dataset, "numpy matvec+argpartition")]["recall10"] == 1.0
        assert by_method[(dataset, "store.recall exact (flat)")]["recall10"] == 1.0
    assert out["ingest"][0]["rows_per_s"] > 0 and out["ingest"][0]["one_by_one_rows_per_s"] > 0
    assert (tmp_path / "r.json").stat().st_size > 0
