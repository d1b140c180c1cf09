"""Smoke test for benchmarks/bench_peers.py: at 2,000 rows, raw FAISS, LanceDB and aimemory are
built, reopened in fresh processes and queried in two rounds taken in turn, and the side-by-side
table prints."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_peers.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_peers", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_side_by_side_table_prints(tmp_path):
    pytest.importorskip("faiss")
    pytest.importorskip("lancedb")
    bench = _load()
    lines: list[str] = []
    out = bench.main(["--n", "2000", "--stores", "faiss-flat,lancedb,aimemory", "--queries", "10",
                      "--filtered-queries", "5", "--single", "3", "--rounds", "2", "--workdir", str(tmp_path),
                      "--out", str(tmp_path / "r.json")], log=lines.append)
    table = out["table"]
    assert table == lines[-1]
    assert "CPU:" in table and "faiss-cpu" in table and "ratios against faiss-flat" in table
    assert "ratios against aimemory" in table
    rows = {r["store"]: r for r in out["rows"]}
    assert all("error" not in r for r in rows.values()), rows
    assert rows["faiss-flat"]["recall"] == 1.0  # exact search is the reference
    assert rows["faiss-flat"]["frecall"] == 1.0
    for r in rows.values():
        assert r["rows_per_s"] > 0 and r["single_per_s"] > 0 and r["disk"] > 0 and r["rss_queries"] > 0
        # two query rounds, each from the store as built; the figure is their median
        assert len(r["rounds"]) == 2 and r["fp50"] == pytest.approx(sum(x["fp50"] for x in r["rounds"]) / 2)
    assert not list(tmp_path.glob("*/store-*"))  # the stores and their copies are removed
    assert (tmp_path / "r.json").stat().st_size > 0
