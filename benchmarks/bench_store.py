"""MemoryStore benchmark: ingest rows/s and recall latency (p50/p99) with recall@10, exact vs ANN,
against numpy brute force, FAISS defaults and LanceDB's own search, measured in the same run.

    .venv/bin/python benchmarks/bench_store.py --sizes 10000,100000,1000000 --threads 2 --out r.json
    .venv/bin/python benchmarks/bench_store.py --quick          # 10k only, a smoke test
    .venv/bin/python benchmarks/bench_store.py --targets --n 1000000 --work /tmp/scale   # targets table

The encoder is excluded: a benchmark encoder maps texts "v<i>" / "q<i>" to precomputed vectors,
so the store's cost is everything after the embedding (catalog, Lance commit, FAISS, hydration).
Two data sets: uniform random unit vectors (no structure: worst case for IVF and graph ANN) and
clustered vectors shaped like real embeddings (Zipf-sized Gaussian clusters in a cone, anisotropic
spread; queries drawn near data points). Latencies are single queries, one at a time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_info, machine_lines  # noqa: E402

D = 512
K = 10
CHUNK = 50_000  # rows generated / scanned at a time, so no full-size temporaries appear
BANDWIDTH_GBS_ASSUMED = 25.0  # the figure for this class of machine


# -- data ------------------------------------------------------------------------------------------
def _normalize(x: np.ndarray) -> np.ndarray:
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


class Clustered:
    """Embedding-like data: ``n_clusters`` centres in a cone around a shared mean direction (real
    embeddings are not centred), Zipf cluster sizes, and per-point noise with a decaying spectrum
    in a random rotation (anisotropic, like the PCA spectrum of CLIP features)."""

    def __init__(self, seed: int, n_clusters: int):
        rng = np.random.default_rng([seed, 1])
        self.n_clusters = n_clusters
        mean_dir = _normalize(rng.standard_normal((1, D)).astype(np.float32))
        self.centers = _normalize(_normalize(rng.standard_normal((n_clusters, D)).astype(np.float32))
                                  + 0.6 * mean_dir)
        weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.8
        self.p = rng.permutation(weights / weights.sum())
        spectrum = 1.0 / np.arange(1, D + 1) ** 0.6
        self.spectrum = (spectrum / np.linalg.norm(spectrum)).astype(np.float32)  # noise norm ~1
        self.rotation = np.linalg.qr(rng.standard_normal((D, D)))[0].astype(np.float32)
        self.radius = rng.uniform(0.5, 1.0, n_clusters).astype(np.float32)  # cos to centre 0.7-0.9

    def noise(self, rng: np.random.Generator, m: int) -> np.ndarray:
        return (rng.standard_normal((m, D)).astype(np.float32) * self.spectrum) @ self.rotation

    def sample(self, rng: np.random.Generator, m: int) -> np.ndarray:
        labels = rng.choice(self.n_clusters, size=m, p=self.p)
        x = self.centers[labels] + self.radius[labels, None] * self.noise(rng, m)
        return _normalize(x)


def make_data(kind: str, n: int, seed: int = 0) -> np.ndarray:
    """(n, D) float32 unit rows, generated in chunks with a seeded RNG per chunk."""
    out = np.empty((n, D), dtype=np.float32)
    gen = Clustered(seed, min(2000, max(10, n // 20))) if kind == "clustered" else None
    for ci, start in enumerate(range(0, n, CHUNK)):
        m = min(CHUNK, n - start)
        rng = np.random.default_rng([seed, 2, ci])
        if gen is None:
            out[start:start + m] = _normalize(rng.standard_normal((m, D)).astype(np.float32))
        else:
            out[start:start + m] = gen.sample(rng, m)
    return out


def make_queries(kind: str, data: np.ndarray, nq: int, seed: int = 0) -> np.ndarray:
    """Uniform: independent random unit vectors. Clustered: a data point plus noise (cos ~0.9 to
    it), which is where real queries land."""
    rng = np.random.default_rng([seed, 3])
    if kind == "uniform":
        return _normalize(rng.standard_normal((nq, D)).astype(np.float32))
    picks = data[rng.choice(len(data), size=nq, replace=False)]
    noise = _normalize(rng.standard_normal((nq, D)).astype(np.float32)) * 0.45
    return _normalize(picks + noise)


def exact_topk(data: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Ground truth (nq, k) row indices by inner product, scanning ``data`` in chunks."""
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(data), CHUNK):
        s = queries @ data[start:start + CHUNK].T
        cand = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        all_s = np.concatenate([best_s, np.take_along_axis(s, cand, 1)], axis=1)
        all_i = np.concatenate([best_i, cand + start], axis=1)
        top = np.argsort(-all_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)
    return best_i


def recall_at_k(got: list | np.ndarray, truth: np.ndarray) -> float:
    """Mean |got_i ∩ truth_i| / k over the queries that were run."""
    n = len(got)
    return float(np.mean([len(set(np.asarray(g).tolist()) & set(t.tolist())) / truth.shape[1]
                          for g, t in zip(got, truth[:n])])) if n else float("nan")


# -- timing ----------------------------------------------------------------------------------------
def time_queries(fn: Callable[[np.ndarray, int], object], queries: np.ndarray, budget_s: float,
                 min_n: int) -> tuple[np.ndarray, list]:
    """Run ``fn(query, i)`` one query at a time after one warm-up call; stop after ``budget_s``
    once ``min_n`` queries ran. -> (latencies in ms, results)."""
    fn(queries[0], 0)
    lat, out = [], []
    t_start = time.perf_counter()
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        out.append(fn(q, i))
        lat.append((time.perf_counter() - t0) * 1e3)
        if i + 1 >= min_n and time.perf_counter() - t_start > budget_s:
            break
    return np.asarray(lat), out


def _pct(lat: np.ndarray, p: float) -> float:
    return float(np.percentile(lat, p)) if len(lat) else float("nan")


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def memory_bandwidth_gbs(threads: int, mib: int = 512) -> float:
    """Streaming read bandwidth: ``threads`` numpy sums over disjoint slices (sum releases the GIL)."""
    a = np.ones(mib * 2**20 // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(5):
            t0 = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = min(best, time.perf_counter() - t0)
    return a.nbytes / best / 1e9


# -- the store under test --------------------------------------------------------------------------
def _bench_encoder(data: np.ndarray, queries: np.ndarray):
    """An Encoder whose texts "v<i>" / "q<i>" / "x<i>" are data rows, queries, or fresh random
    vectors; no model runs."""
    from aimemory.encoders.base import Encoder

    class BenchEncoder(Encoder):
        model_id, dim, modalities = "bench-precomputed", D, frozenset({"text"})

        def embed_texts(self, texts):
            idx = [int(t[1:]) for t in texts]
            head = texts[0][0] if texts else "v"
            if all(t[0] == "v" for t in texts):
                return data[idx]
            if all(t[0] == "q" for t in texts):
                return queries[idx]
            if head == "x":
                rng = np.random.default_rng(idx)
                return _normalize(rng.standard_normal((len(texts), D)).astype(np.float32))
            raise ValueError("bench encoder texts must all share one prefix")

    return BenchEncoder()


class Result(dict):
    """One row of the results table."""


def _row(dataset, n, method, lat=None, recall=float("nan"), build_s=float("nan"), note=""):
    lat = np.asarray([] if lat is None else lat)
    return Result(dataset=dataset, n=n, method=method, build_s=round(build_s, 2),
                  recall10=round(recall, 3), min_ms=round(float(lat.min()) if len(lat) else float("nan"), 3),
                  p50_ms=round(_pct(lat, 50), 3),
                  p99_ms=round(_pct(lat, 99), 3), queries=len(lat), note=note)


def bench_size(kind: str, n: int, args, results: list, ingest: list, log) -> None:
    """Everything for one (data set, size); appends to ``results`` / ``ingest`` as it goes so a
    partial run still reports what it measured."""
    import faiss

    from aimemory import MemoryStore

    t0 = time.perf_counter()
    data = make_data(kind, n, args.seed)
    queries = make_queries(kind, data, args.queries, args.seed)
    truth = exact_topk(data, queries)
    log(f"[{kind} {n:,}] data + ground truth in {time.perf_counter() - t0:.1f}s")
    budget, min_n = args.budget, min(args.queries, args.min_queries)

    def add(row):
        results.append(row)
        build = "-" if row["build_s"] != row["build_s"] else f"{row['build_s']}s"
        log(f"  {row['method']:<34} build {build:>8}  recall@10 {row['recall10']:<6}"
            f" p50 {row['p50_ms']:>9} ms  p99 {row['p99_ms']:>9} ms  (n={row['queries']}) {row['note']}")

    # numpy brute force: one matvec + argpartition per query
    def np_search(q, i):
        s = data @ q
        top = np.argpartition(-s, K)[:K]
        return top[np.argsort(-s[top])]

    lat, got = time_queries(np_search, queries, budget, min_n)
    add(_row(kind, n, "numpy matvec+argpartition", lat, recall_at_k(got, truth)))
    if n >= 500_000:
        gb = data.nbytes / 1e9
        bound = gb / args.bandwidth_gbs * 1e3
        add(_row(kind, n, f"(bound: {gb:.2f} GB @ {args.bandwidth_gbs:.1f} GB/s measured)",
                 [bound], note=f"{gb / BANDWIDTH_GBS_ASSUMED * 1e3:.0f} ms @ 25 GB/s"))

    # FAISS defaults: IndexFlatIP, then HNSW32 (efSearch 64 / 128)
    t = time.perf_counter()
    flat = faiss.IndexFlatIP(D)
    flat.add(data)
    build = time.perf_counter() - t
    lat, got = time_queries(lambda q, i, flat=flat: flat.search(q[None], K)[1][0], queries, budget, min_n)
    add(_row(kind, n, "faiss IndexFlatIP (1 query/call)", lat, recall_at_k(got, truth), build))
    t = time.perf_counter()
    _, batch = flat.search(queries, K)
    per_q = (time.perf_counter() - t) * 1e3 / len(queries)
    add(_row(kind, n, f"faiss IndexFlatIP (batch of {len(queries)})", [per_q],
             recall_at_k(batch, truth), note="per-query amortised"))
    del flat
    gc.collect()
    if n <= args.hnsw_max and "hnsw" not in args.skip:
        t = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(D, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.add(data)
        build = time.perf_counter() - t
        for ef in (64, 128):
            params = faiss.SearchParametersHNSW(efSearch=ef)
            lat, got = time_queries(lambda q, i, params=params: hnsw.search(q[None], K, params=params)[1][0],
                                    queries, budget, min_n)
            add(_row(kind, n, f"faiss HNSW32 efSearch={ef}", lat, recall_at_k(got, truth), build))
        del hnsw
        gc.collect()
    else:
        add(_row(kind, n, "faiss HNSW32", note=f"skipped (--skip, or n > --hnsw-max {args.hnsw_max:,})"))

    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)  # a new folder named on the command line
    work = Path(tempfile.mkdtemp(prefix="bench_store_", dir=args.workdir))
    try:
        if "lance" not in args.skip:
            _bench_lance(kind, n, data, queries, truth, args, work, add)
        _bench_store(kind, n, data, queries, truth, args, work, add, ingest, log, MemoryStore)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bench_lance(kind, n, data, queries, truth, args, work, add) -> None:
    """LanceDB on a bare (id, vector) table: un-indexed search, then IVF_PQ and IVF_HNSW_SQ built
    with defaults (metric l2, which ranks unit vectors like cosine)."""
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(str(work / "lance_ref"))

    def batches():
        for start in range(0, n, CHUNK):
            block = data[start:start + CHUNK]
            yield pa.record_batch([pa.array(np.arange(start, start + len(block), dtype=np.int64)),
                                   pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), D)],
                                  names=["id", "vector"])

    schema = pa.schema([pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32(), D))])
    tbl = db.create_table("ref", data=pa.RecordBatchReader.from_batches(schema, batches()))

    def lance_search(q, i):
        return tbl.search(q).limit(K).select(["id"]).to_arrow().column("id").to_numpy()

    budget, min_n = args.budget, min(args.queries, args.min_queries)
    lat, got = time_queries(lance_search, queries, budget, min(min_n, 20))
    add(_row(kind, n, "lancedb search, no index", lat, recall_at_k(got, truth)))
    if n > args.lance_index_max:
        add(_row(kind, n, "lancedb IVF_PQ / IVF_HNSW_SQ",
                 note=f"skipped: n > --lance-index-max {args.lance_index_max:,}"))
        return
    for index_type in ("IVF_PQ", "IVF_HNSW_SQ"):
        t = time.perf_counter()
        try:
            tbl.create_index(vector_column_name="vector", index_type=index_type, replace=True)
        except Exception as exc:  # e.g. too few rows to train PQ at tiny sizes
            add(_row(kind, n, f"lancedb {index_type} (defaults)", note=f"failed: {exc}"[:80]))
            continue
        build = time.perf_counter() - t
        lat, got = time_queries(lance_search, queries, budget, min_n)
        add(_row(kind, n, f"lancedb {index_type} (defaults)", lat, recall_at_k(got, truth), build))


def _bench_store(kind, n, data, queries, truth, args, work, add, ingest, log, MemoryStore) -> None:
    """Ingest through ``remember_many``, then recall exact (flat) and ANN (IVF after a rebuild)."""
    enc = _bench_encoder(data, queries)
    path = work / "store"
    store = MemoryStore(path, model=enc)
    texts = [f"v{i}" for i in range(n)]
    marks = [(0, 0.0)]  # (rows done, seconds): rows/s per tenth shows costs that grow with n

    def progress(done):
        if done * 10 // n > marks[-1][0] * 10 // n or done == n:
            marks.append((done, time.perf_counter() - t))
            a, b = marks[-2], marks[-1]
            if n >= 100_000:
                log(f"    ingested {done:,}: {(b[0] - a[0]) / max(b[1] - a[1], 1e-9):,.0f} rows/s "
                    f"over the last {b[0] - a[0]:,}")

    t = time.perf_counter()
    store.remember_many(texts, batch_size=args.batch_size, progress=progress)
    ingest_s = time.perf_counter() - t
    del texts
    first, last = marks[:2], marks[-2:]
    tenth_rates = [(b[0] - a[0]) / max(b[1] - a[1], 1e-9) for a, b in (first, last)]
    table_b, index_b = dir_bytes(path / "tables"), dir_bytes(path / "index")
    row = dict(dataset=kind, n=n, batch_size=args.batch_size, seconds=round(ingest_s, 1),
               rows_per_s=round(n / ingest_s), table_mib=round(table_b / 2**20, 1),
               index_mib=round(index_b / 2**20, 1), raw_mib=round(data.nbytes / 2**20, 1),
               first_tenth_rows_per_s=round(tenth_rates[0]), last_tenth_rows_per_s=round(tenth_rates[1]))
    ingest.append(row)
    log(f"  ingest remember_many(batch_size={args.batch_size}): {n / ingest_s:,.0f} rows/s "
        f"({ingest_s:.1f}s); table {table_b / 2**20:,.1f} MiB, index {index_b / 2**20:,.1f} MiB "
        f"(raw vectors {data.nbytes / 2**20:,.1f} MiB)")

    # reopen: catalog rebuilt from the table, saved index verified (what every process start pays)
    store.close()
    t = time.perf_counter()
    store = MemoryStore(path, model=enc)
    row["open_s"] = round(time.perf_counter() - t, 2)
    log(f"  reopen (catalog + index load): {row['open_s']}s; rows/s first tenth "
        f"{tenth_rates[0]:,.0f}, last tenth {tenth_rates[1]:,.0f}")

    # positions in the catalog are data rows: one view per text, appended in order
    pos_of_id = {mid: ps[0] for mid, ps in store.catalog.by_id.items()}
    vkey0 = int(store.catalog.array("vkey")[0])
    budget, min_n = args.budget, min(args.queries, args.min_queries)

    def store_recall(q, i):
        return [h.id for h in store.recall(f"q{i}", k=K)]

    def raw_index(q, i):
        return store.index.search(q[None], K)[1][0] - vkey0

    def measure(label, build=float("nan")):
        lat, got = time_queries(store_recall, queries, budget, min_n)
        rows = [[pos_of_id[m] for m in ids] for ids in got]
        add(_row(kind, n, f"store.recall {label}", lat, recall_at_k(rows, truth), build,
                 note="end to end, k=10"))
        lat, got = time_queries(raw_index, queries, budget, min_n)
        add(_row(kind, n, f"store.index.search {label}", lat, recall_at_k(got, truth), build,
                 note="raw index, k=10"))
        results_breakdown = _recall_breakdown(store, queries[: min(50, args.min_queries, len(queries))])
        log("    breakdown (median ms): " + ", ".join(f"{k} {v:.3f}" for k, v in results_breakdown.items()))
        add(_row(kind, n, f"  breakdown {label}", note=" ".join(
            f"{k}={v:.2f}ms" for k, v in results_breakdown.items())))

    measure("exact (flat)")
    if 1000 <= n <= args.store_ann_max:
        store.ann_threshold = 1  # force IVF at any size: the store's own ANN path
        # drop the flat index first: the rebuild holds ~3 more copies of the vectors at its peak
        store.index = type(store.index)(D, "flat")
        gc.collect()
        t = time.perf_counter()
        store.rebuild_index()
        build = time.perf_counter() - t
        info = store.stats()["index"]
        measure(f"ANN ({info['kind']}, nprobe={info['nprobe']})", build)

    if args.one_by_one:
        m = args.one_by_one
        t = time.perf_counter()
        for j in range(m):
            store.remember(f"x{j}")
        dt = time.perf_counter() - t
        row["one_by_one_rows_per_s"] = round(m / dt, 1)
        log(f"  one-by-one remember() on a {n:,} store: {m / dt:,.1f} rows/s ({m} rows, {dt:.1f}s)")
    store.close()


def _recall_breakdown(store, queries: np.ndarray) -> dict[str, float]:
    """Median ms of the parts of one recall: catalog mask, index search at the overfetch k the
    store uses, the Lance read of the hits' texts, and everything else (to_item, ranking, Hits)."""
    from aimemory.recall import OVERFETCH

    parts: dict[str, list[float]] = {"mask": [], "index_k40": [], "text_read": [], "total": []}
    for i, q in enumerate(queries):
        t = time.perf_counter()
        store.catalog.mask("default")
        parts["mask"].append(time.perf_counter() - t)
        t = time.perf_counter()
        _, keys = store.index.search(q[None], K * OVERFETCH)
        parts["index_k40"].append(time.perf_counter() - t)
        # the Lance read recall makes to attach the hits' texts (a filtered scan on vkey)
        t = time.perf_counter()
        store.table.primary_rows(keys[0][:K].tolist(), ["text"])
        parts["text_read"].append(time.perf_counter() - t)
        t = time.perf_counter()
        store.recall(f"q{i}", k=K)
        parts["total"].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) * 1e3 for k, v in parts.items()}
    med["other"] = med["total"] - med["mask"] - med["index_k40"] - med["text_read"]
    return med


# -- output ----------------------------------------------------------------------------------------
def format_tables(results: list, ingest: list, info: dict, notes: list[str]) -> str:
    lines = ["", "== aimemory store benchmark (d=512, encoder excluded, single queries) ==",
             *machine_lines(info), *notes, ""]
    if ingest:
        lines.append(f"{'data':<10}{'n':>10}  {'batch':>6}{'rows/s':>10}{'secs':>8}{'table MiB':>11}"
                     f"{'index MiB':>11}{'raw MiB':>9}{'1st/last 10% rows/s':>21}{'reopen s':>10}"
                     f"  {'one-by-one rows/s':>18}")
        for r in ingest:
            tenths = f"{r.get('first_tenth_rows_per_s', '-')} / {r.get('last_tenth_rows_per_s', '-')}"
            lines.append(f"{r['dataset']:<10}{r['n']:>10,}  {r['batch_size']:>6}{r['rows_per_s']:>10,}"
                         f"{r['seconds']:>8}{r['table_mib']:>11}{r['index_mib']:>11}{r['raw_mib']:>9}"
                         f"{tenths:>21}"
                         f"{r.get('open_s', '-'):>10}"
                         f"  {r.get('one_by_one_rows_per_s', '-'):>18}")
        lines.append("")
    lines.append(f"{'data':<10}{'n':>10}  {'method':<46}{'build s':>8}{'rec@10':>8}{'min ms':>10}{'p50 ms':>10}"
                 f"{'p99 ms':>10}{'nq':>5}  note")
    def fmt(v):
        return "-" if v != v else str(v)  # NaN -> "-"

    for r in results:
        lines.append(f"{r['dataset']:<10}{r['n']:>10,}  {r['method']:<46}{fmt(r['build_s']):>8}"
                     f"{fmt(r['recall10']):>8}{fmt(r.get('min_ms', float('nan'))):>10}"
                     f"{fmt(r['p50_ms']):>10}{fmt(r['p99_ms']):>10}"
                     f"{r['queries']:>5}  {r['note']}")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated vector counts")
    p.add_argument("--datasets", default="uniform,clustered")
    p.add_argument("--quick", action="store_true", help="10k only (or --sizes if given), smoke test")
    p.add_argument("--threads", type=int, default=2, help="BLAS / OpenMP / FAISS threads")
    p.add_argument("--queries", type=int, default=200, help="single queries per method")
    p.add_argument("--min-queries", type=int, default=200,
                   help="run at least this many queries per method even past --budget")
    p.add_argument("--budget", type=float, default=60.0, help="seconds per method before stopping early")
    p.add_argument("--batch-size", type=int, default=1000, help="remember_many batch size")
    p.add_argument("--one-by-one", type=int, default=None,
                   help="one-by-one remember() calls after the smallest size's bulk ingest (default 200)")
    p.add_argument("--hnsw-max", type=int, default=100_000, help="skip FAISS HNSW above this size")
    p.add_argument("--lance-index-max", type=int, default=100_000,
                   help="skip LanceDB IVF_PQ / IVF_HNSW_SQ builds above this size")
    p.add_argument("--store-ann-max", type=int, default=1_000_000,
                   help="skip the store's IVF rebuild + ANN recall above this size (slow k-means)")
    p.add_argument("--skip", default="", help="comma list of reference groups to skip: hnsw, lance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="where temporary stores go (default: $TMPDIR)")
    p.add_argument("--out", default=None, help="write results as JSON here")
    args = p.parse_args(argv)
    if args.quick and args.sizes == p.get_default("sizes"):
        args.sizes = "10000"
    return args


def main(argv=None, log=print) -> dict:
    """Run the benchmark; returns {"machine", "ingest", "results", "table"} (and prints the table).
    ``--lifecycle``: the store lifecycle benchmark instead (open, recall, filters, remember, CLI; see
    _lifecycle.py); ``--targets``: the 1M targets table (see _targets.py)."""
    if "--lifecycle" in (sys.argv[1:] if argv is None else argv):
        from _lifecycle import main as lifecycle

        return lifecycle(sys.argv[1:] if argv is None else argv)
    if "--targets" in (sys.argv[1:] if argv is None else argv):
        from _targets import main as targets  # the 1M targets table (recall, exact vs bound, RSS, open)

        return targets(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    datasets = [d for d in args.datasets.split(",") if d]
    import faiss

    omp_before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(args.threads)
    results: list = []
    ingest: list = []
    try:
        return _run(args, sizes, datasets, results, ingest, log)
    finally:  # in-process callers (the smoke test) get their thread count back
        faiss.omp_set_num_threads(omp_before)


def _run(args, sizes, datasets, results, ingest, log) -> dict:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.threads):
        args.bandwidth_gbs = memory_bandwidth_gbs(args.threads)
        info = machine_info()
        log("\n".join(machine_lines(info)))
        notes = [f"threads: {args.threads}; read bandwidth measured {args.bandwidth_gbs:.1f} GB/s "
                 f"({args.threads} threads); queries per method: up to {args.queries}, "
                 f"budget {args.budget:.0f}s each",
                 "NOTE: shared 2-core machine with other jobs running; timings are noisy "
                 f"(load avg at start {' '.join(map(str, info['loadavg']))})"]
        t_all = time.perf_counter()
        for i, n in enumerate(sizes):
            for kind in datasets:
                args_n = argparse.Namespace(**vars(args))
                # one-by-one remember() only at the smallest size and first data set (slow)
                args_n.one_by_one = (args.one_by_one if args.one_by_one is not None else 200) \
                    if (i == 0 and kind == datasets[0]) else 0
                bench_size(kind, n, args_n, results, ingest, log)
                gc.collect()
                if args.out:
                    _write(args.out, info, ingest, results, notes)
        notes.append(f"total wall time {time.perf_counter() - t_all:.0f}s; "
                     f"load avg at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    table = format_tables(results, ingest, info, notes)
    log(table)
    if args.out:
        _write(args.out, info, ingest, results, notes)
    return {"machine": info, "ingest": ingest, "results": results, "table": table}


def _write(out: str, info, ingest, results, notes) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"machine": info, "notes": notes, "ingest": ingest,
                                     "results": results}, indent=1))


if __name__ == "__main__":
    main()
