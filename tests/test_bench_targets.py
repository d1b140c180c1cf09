"""benchmarks/_targets.py (bench_store.py --targets): the store layout, the ground-truth index and the
two targets tables, without building a 1M store."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _targets  # noqa: E402
import _vectors  # noqa: E402


def test_layout_covers_every_row_with_whole_memories():
    kind, mod, view, mem = _targets.layout(10_000)
    assert len(kind) == len(mod) == len(view) == len(mem) == 10_000
    assert (np.diff(mem) >= 0).all()
    assert set(kind) == {"text", "text.chunk", "image", "image.appearance", "image.drawing",
                         "audio.sound", "audio.speech"}
    assert (view[np.r_[True, mem[1:] != mem[:-1]]] == 0).all()  # each memory starts at its view 0


def test_exact_index_honours_allowed_keys():
    vectors = np.eye(4, dtype=np.float32)
    index = _vectors.ExactIndex(vectors)
    _, keys = index.search(vectors[:1], 2, allowed=np.array([2, 3]))
    assert set(keys[0].tolist()) == {2, 3}


def test_primed_ground_truth_equals_a_full_scan(monkeypatch):
    monkeypatch.setattr(_vectors, "EXACT_BLOCK_ROWS", 300)  # several blocks
    vectors = _vectors.clustered(1000, 16, seed=3)
    queries = _vectors.clustered(5, 16, seed=4)
    cold, primed = _vectors.ExactIndex(vectors), _vectors.ExactIndex(vectors)
    primed.prime(queries)
    allowed = np.arange(1, 1001, 3)
    for q in queries:
        for k, among in ((10, None), (40, None), (10, allowed)):
            want, got = cold.search(q[None], k, among), primed.search(q[None], k, among)
            assert np.array_equal(want[1], got[1]) and np.allclose(want[0], got[0], atol=1e-6)
    assert primed.hits == 15 and primed.scans == 0 and cold.scans == 15


def test_tables_say_which_targets_are_met():
    out = {"n": 10, "index": {}, "loadavg_start": (1, 1, 1), "loadavg_end": (1, 1, 1), "recall_encode_p50_ms": 8.0,
           "encode_p50_ms": 3.0, "recall_encode_p99_ms": 40.0, "recall_p50_ms": 4.0, "recall_p99_ms": 9.0,
           "recall10": 1.0, "text_recall10": 0.99, "filtered_recall10": 0.98, "filtered_p50_ms": 5.0,
           "filtered_p99_ms": 9.0, "exact_min_ms": 10.0, "exact_p50_ms": 12.0, "bound_ms": 9.0,
           "exact_over_bound": 1.11, "rss_after_recalls_mib": 90.0, "raw_mib": 100.0, "rss_over_raw": 0.9,
           "open_s": 0.5, "open_first_s": 0.7}
    lines = _targets.table_lines(out)
    assert sum(line.endswith("yes") for line in lines) == 5 and sum(line.endswith("NO") for line in lines) == 1
    rows = [{"store": "aimemory", "open_s": 0.1, "single_per_s": 50, "fp50": 1.0, "p50": 2.0},
            {"store": "faiss-flat", "open_s": 0.3, "single_per_s": 900, "fp50": 0.5, "p50": 2.0},
            {"store": "qdrant-local", "error": "skipped"}]
    peer = _targets.peer_target_lines(rows)
    assert [line.split()[-1] for line in peer[1:]] == ["yes", "NO", "NO", "yes"]
    # the fairer readings: open + first query, durable inserts only, exact filtered peers only
    rows[0] |= {"first_ms": 20.0, "durable": True, "frecall": 1.0}
    rows[1] |= {"first_ms": 150.0, "durable": False, "frecall": 1.0}
    rows.insert(2, {"store": "lancedb", "open_s": 0.0, "first_ms": 200.0, "single_per_s": 40, "fp50": 9.0,
                    "p50": 50.0, "durable": True, "frecall": 1.0})
    verdicts = {line[:44].strip(): line.split()[-1] for line in _targets.peer_target_lines(rows)[1:]}
    assert verdicts["open (ms), ahead of every peer"] == "NO"  # lancedb opens in 0.0 s
    assert verdicts["open + first query (ms)"] == "yes"  # 120 ms against 200 and 450
    assert verdicts["single insert, among durable peers"] == "yes"  # 50 against lancedb's 40
    assert verdicts["filtered p50, among exact peers"] == "NO"  # faiss-flat's 0.5 ms
