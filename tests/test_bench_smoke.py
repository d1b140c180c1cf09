"""Smoke test for benchmarks/bench_store.py: its quick mode runs in-process at a tiny size and prints
the results table (references, un-indexed LanceDB, store exact and ANN, one-by-one remember)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_store.py"


def _load(name: str = "bench_store"):
    spec = importlib.util.spec_from_file_location(name, BENCH.parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _need_sentence_model() -> None:
    import pytest

    from aimemory.encoders.sentence import find_local_sentence_model

    if find_local_sentence_model() is None:
        pytest.skip("all-MiniLM-L6-v2 not installed")


def test_quick_mode_prints_the_table(tmp_path):
    bench = _load()
    lines: list[str] = []
    # ~10 s on an idle 2-core machine; LanceDB index builds are left out (the slowest part)
    out = bench.main(["--quick", "--sizes", "1000", "--queries", "8", "--min-queries", "8",
                      "--budget", "1", "--one-by-one", "2", "--threads", "1", "--lance-index-max", "0",
                      "--workdir", str(tmp_path), "--out", str(tmp_path / "r.json")], log=lines.append)
    table = out["table"]
    assert table == lines[-1]
    assert "CPU:" in table and "faiss-cpu" in table
    for method in ("numpy matvec", "faiss IndexFlatIP", "faiss HNSW32 efSearch=128",
                   "lancedb search, no index", "store.recall exact",
                   "store.index.search exact", "store.recall ANN"):
        assert method in table, method
    by_method = {(r["dataset"], r["method"]): r for r in out["results"]}
    for dataset in ("uniform", "clustered"):
        # exact paths agree with the ground truth
        assert by_method[(dataset, "numpy matvec+argpartition")]["recall10"] == 1.0
        assert by_method[(dataset, "store.recall exact (flat)")]["recall10"] == 1.0
    assert out["ingest"][0]["rows_per_s"] > 0 and out["ingest"][0]["one_by_one_rows_per_s"] > 0
    assert (tmp_path / "r.json").stat().st_size > 0


def test_text_bench_prints_the_table():
    """benchmarks/bench_text.py at a tiny size: native vs transformers on the real all-MiniLM-L6-v2."""
    import pytest

    pytest.importorskip("transformers")
    _need_sentence_model()
    bench = _load("bench_text")
    lines: list[str] = []
    out = bench.main(["--threads", "1", "--queries", "3", "--sentences", "16", "--repeats", "1"], log=lines.append)
    assert out["table"] == lines[-1] and "CPU:" in out["table"] and "target: one text query" in out["table"]
    cos = out["min_cosine"]
    assert cos["native fp32"] >= 0.9999 and cos["native bf16 lin"] >= 0.9999 and cos["native bf16 wts"] >= 0.99
    assert {r["side"] for r in out["results"]} == {"native fp32", "native bf16 lin", "native bf16 wts",
                                                   "transformers fp32"}
    assert all(r["batch_per_s"] > 0 and r["query_ms"] > 0 and r["busy_ms"] > 0 for r in out["results"])


def test_write_bench_prints_the_table(tmp_path, capsys):
    """benchmarks/bench_writes.py at a tiny size: segment and direct rows, A/B in one run."""
    bench = _load("bench_writes")
    rows = bench.main(["--quick", "--sizes", "300", "--writes", "6", "--threads", "1,2",
                       "--probes", "2", "--cache", str(tmp_path)])
    assert [(r["path"], r["threads"]) for r in rows] == [("segment", 1), ("direct", 1), ("segment", 2), ("direct", 2)]
    assert all(r["rate"] > 0 for r in rows) and rows[0]["folded"] > 0
    assert "fdatasync" in capsys.readouterr().out


def test_session_bench_prints_the_table(tmp_path):
    """benchmarks/bench_session.py at a tiny size: two short processes; calls that quick stay on the
    numpy forward, so neither imports torch."""
    _need_sentence_model()
    bench = _load("bench_session")
    lines: list[str] = []
    out = bench.main(["--runs", "1", "--calls", "12", "--n", "300", "--work", str(tmp_path)], log=lines.append)
    assert "CPU:" in "\n".join(lines) and "calls/s" in lines[-1]
    for op in ("remember", "recall"):
        row = out["results"][op]["new"]
        assert row["calls/s"] > 0 and row["calls 2-8 ms"] > 0
        assert row["torch imported"] == 0
