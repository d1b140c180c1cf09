"""aimemory's store beside the stores a user would pick instead, on the same vectors, machine and run.

    .venv/bin/python benchmarks/bench_peers.py --n 100000 --out peers.json
    .venv/bin/python benchmarks/bench_peers.py --n 2000 --stores faiss-flat,lancedb,aimemory   # smoke

Data: clustered unit vectors (d = 384, ~sqrt(n) topics, cosine ~0.9 to the topic centre), queries
near stored points, and per row ``{"bucket": i % 100, "parity": ...}``; the filtered query keeps
``bucket == 7`` (1% of rows). The model is excluded: aimemory gets the vectors through a
precomputed-vector encoder. Each store is built in one subprocess and reopened cold (fresh process,
warm page cache) in another, which runs the queries, the filtered queries and the one-row inserts,
so RSS is per store. Recall@10 is against exact search (FAISS IndexFlatIP over all rows, or over
the 1% for filtered queries). Chroma may run from another virtual environment (``--peer-python``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _machine import machine_info, machine_lines  # noqa: E402
from _peer_stores import BUCKETS, DISTRIBUTIONS, FILTER_BUCKET, K  # noqa: E402

DIM = 384
CHUNK = 50_000  # rows generated at a time
STORES = ("faiss-flat", "faiss-hnsw", "faiss-ivf", "lancedb", "lancedb-ivfpq", "chroma", "qdrant-local",
          "aimemory", "aimemory-ivf")  # aimemory-ivf: after rebuild_index(), which picks IVF past 200k rows
REFERENCE, OURS = "faiss-flat", "aimemory"
WORKER_TIMEOUT_S = 3600
# Stores left out above a size, and why (override with --max-rows STORE=N)
MAX_ROWS = {"qdrant-local": (20_000, "local mode commits SQLite once per point (35-345 rows/s measured on this "
                                     "disk, fsync-bound); Qdrant itself advises a server past 20,000 points")}


# -- data ------------------------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def write_data(work: Path, n: int, nq: int, single: int, seed: int = 0) -> dict:
    """vectors.npy (n, DIM), queries.npy (nq, DIM), inserts.npy (single, DIM), buckets.npy (n,);
    written in chunks so 1M rows never need more than one chunk of temporaries."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((max(8, int(np.sqrt(n))), DIM)))
    vectors = np.lib.format.open_memmap(work / "vectors.npy", "w+", np.float32, (n, DIM))
    for ci, start in enumerate(range(0, n, CHUNK)):
        m = min(CHUNK, n - start)
        r = np.random.default_rng([seed, ci])
        noise = r.standard_normal((m, DIM)).astype(np.float32) * (0.5 / np.sqrt(DIM))
        vectors[start:start + m] = _unit(centres[r.integers(0, len(centres), m)] + noise)
    vectors.flush()
    picks = np.asarray(vectors[np.sort(rng.choice(n, nq, replace=False))])
    queries = _unit(picks + _unit(rng.standard_normal((nq, DIM))) * 0.45)
    np.save(work / "queries.npy", queries)
    np.save(work / "inserts.npy", _unit(centres[rng.integers(0, len(centres), single)]
                                        + rng.standard_normal((single, DIM)) * (0.5 / np.sqrt(DIM))))
    buckets = (np.arange(n) % BUCKETS).astype(np.int16)
    np.save(work / "buckets.npy", buckets)
    return {"vectors": vectors, "queries": queries, "buckets": buckets}


def ground_truth(vectors: np.ndarray, queries: np.ndarray, buckets: np.ndarray, nf: int) -> tuple:
    """Exact top-10 row ids over all rows, and over the filtered 1% for the first ``nf`` queries."""
    import faiss

    flat = faiss.IndexFlatIP(DIM)
    for start in range(0, len(vectors), CHUNK):
        flat.add(np.ascontiguousarray(vectors[start:start + CHUNK]))
    truth = flat.search(queries, K)[1]
    rows = np.flatnonzero(buckets == FILTER_BUCKET)
    sub = faiss.IndexFlatIP(DIM)
    sub.add(np.ascontiguousarray(vectors[rows]))
    ftruth = rows[sub.search(queries[:nf], K)[1]]
    return truth, ftruth


def recall(got: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(t.tolist())) / truth.shape[1] for g, t in zip(got, truth)]))


# -- running one store -----------------------------------------------------------------------------
def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _worker(python: str, cfg: dict, nice: int, timeout: float) -> dict:
    cmd = [python, str(HERE / "_peer_stores.py"), json.dumps(cfg)]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    env = {**os.environ, "AIMEMORY_SPEECH": "0", "TOKENIZERS_PARALLELISM": "false",
           "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    raise RuntimeError(f"exit {proc.returncode}: {' | '.join(tail)}"[:300])


def _dist_version(store: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTIONS.get(store, store))
    except metadata.PackageNotFoundError:
        return "-"


def _ratio(x: float) -> str:
    return f"{x:,.0f}x" if x >= 100 else f"{x:.1f}x" if x >= 10 else f"{x:.2f}x" if x >= 0.1 else f"{x:.2g}x"


def _base(name: str, work: Path, args) -> dict:
    return {"store": name, "work": str(work), "path": str(work / f"store-{name}"), "n": args.n, "batch": args.batch,
            "single": args.single, "filtered_queries": args.filtered_queries, "aimemory_root": str(ROOT),
            "profile_dir": None}


def build_store(name: str, work: Path, args, log) -> dict:
    """Build ``name``'s store in its own process -> its row (with "error" when skipped or failed)."""
    python = args.peer_python.get(name.split("-")[0], sys.executable)
    row: dict = {"store": name, "version": _dist_version(name)}
    limit = args.max_rows.get(name, MAX_ROWS.get(name, (None, ""))[0])
    if limit is not None and args.n > limit:
        row["error"] = f"skipped above {limit:,} rows: {MAX_ROWS.get(name, (0, 'limit set by --max-rows'))[1]}"
        log(f"  {name}: {row['error']}")
        return row
    try:
        t = time.perf_counter()
        built = _worker(python, {**_base(name, work, args), "phase": "build"}, args.nice, args.timeout)
        row.update(version=built["version"], ingest_s=built["ingest_s"], rows_per_s=args.n / built["ingest_s"],
                   index_s=built.get("index_s", built.get("train_s")), build_peak=built["rss_peak"],
                   disk=dir_bytes(work / f"store-{name}"), load=(built["load_start"], None))
        log(f"  {name}: built in {time.perf_counter() - t:.1f}s ({row['rows_per_s']:,.0f} rows/s)")
    except (RuntimeError, subprocess.TimeoutExpired, KeyError) as exc:
        row["error"] = str(exc)[:200]
        log(f"  {name}: FAILED {row['error']}")
    return row


#: figures a query phase measures that are the median over --rounds; the others (open, first query,
#: memory) are the first round's, on the store as built: a copy's first open checks its saved files
ROUND_FIGURES = ("p50", "p99", "fp50", "single_per_s")


def query_store(name: str, row: dict, work: Path, args, truth: np.ndarray, ftruth: np.ndarray, log) -> dict:
    """Reopen ``name``'s store cold in a fresh process and run the queries and inserts -> the figures."""
    python = args.peer_python.get(name.split("-")[0], sys.executable)
    base = _base(name, work, args)
    try:
        q = _worker(python, {**base, "phase": "query"}, args.nice, args.timeout)
        lat, flat, single = (np.asarray(q[k]) for k in ("query_ms", "filtered_ms", "single_ms"))
        got = dict(import_s=q["import_s"], open_s=q["open_s"], first_ms=q["first_query_s"] * 1e3,
                   p50=float(np.percentile(lat, 50)), p99=float(np.percentile(lat, 99)),
                   recall=recall(q["query_ids"], truth), fp50=float(np.percentile(flat, 50)),
                   frecall=recall(q["filtered_ids"], ftruth), single_per_s=len(single) / (single.sum() / 1e3),
                   durable=q["durable_insert"], rss_base=q["rss_base"], rss_open=q["rss_open"],
                   rss_queries=q["rss_queries"], rss_peak=q["rss_peak"], python=q["python"],
                   disk_after_inserts=dir_bytes(Path(base["path"])), load=(row["load"][0], q["load_end"]))
        log(f"  {name}: open {got['open_s']:.2f}s p50 {got['p50']:.2f} ms recall {got['recall']:.3f} "
            f"filtered p50 {got['fp50']:.2f} ms single {got['single_per_s']:.0f}/s")
        if name == OURS and args.profile:  # a second, profiled pass: cProfile slows what it watches
            _worker(python, {**base, "phase": "query", "single": 50, "insert_offset": args.single,
                             "profile_dir": args.profile}, args.nice, args.timeout)
        return got
    except (RuntimeError, subprocess.TimeoutExpired, KeyError) as exc:
        log(f"  {name}: FAILED {str(exc)[:200]}")
        return {"error": str(exc)[:200]}


def bench_stores(names: list[str], work: Path, args, truth: np.ndarray, ftruth: np.ndarray, log) -> list[dict]:
    """Build every store, then run their query phases in turn, ``args.rounds`` times (A B A B: a
    noisy machine's slow spells fall on every store alike), each round on the store as built (a
    copy, so the inserts of one round do not change the next); query and insert figures over several
    rounds are medians (:data:`ROUND_FIGURES`), open and memory figures the first round's, and the
    row keeps each round's in ``rounds``."""
    rows = [build_store(name, work, args, log) for name in names]
    try:
        for r in range(args.rounds):
            for row in rows:
                if "error" in row:
                    continue
                path = work / f"store-{row['store']}"
                pristine = path.with_name(path.name + ".built")
                if args.rounds > 1 and r == 0:  # every round starts from the built store, before its inserts
                    shutil.copytree(path, pristine)
                elif r > 0:
                    shutil.rmtree(path)
                    shutil.copytree(pristine, path)
                    python = args.peer_python.get(row["store"].split("-")[0], sys.executable)
                    _worker(python, {**_base(row["store"], work, args), "phase": "open"}, args.nice, args.timeout)
                got = query_store(row["store"], row, work, args, truth, ftruth, log)
                if "error" in got:
                    row["error"] = got["error"]
                    continue
                row.setdefault("rounds", []).append({k: got[k] for k in (*ROUND_FIGURES, "open_s", "first_ms")})
                row.update(got if r == 0 else {k: got[k] for k in ROUND_FIGURES})
        for row in rows:
            if row.get("rounds") and "error" not in row:
                row.update({k: float(np.median([g[k] for g in row["rounds"]])) for k in ROUND_FIGURES})
    finally:
        for name in names:
            shutil.rmtree(work / f"store-{name}.built", ignore_errors=True)
            if not args.keep:
                shutil.rmtree(work / f"store-{name}", ignore_errors=True)
    return rows


# -- the table -------------------------------------------------------------------------------------
COLUMNS = [  # (title, key, format, better) ; better: "hi" / "lo" for the ratio section, None for none
    ("rows/s", "rows_per_s", "{:,.0f}", "hi"), ("index s", "index_s", "{:.1f}", None),
    ("import s", "import_s", "{:.2f}", "lo"), ("open s", "open_s", "{:.2f}", "lo"),
    ("1st q ms", "first_ms", "{:.1f}", "lo"),
    ("ins/s", "single_per_s", "{:,.0f}", "hi"), ("p50 ms", "p50", "{:.2f}", "lo"),
    ("p99 ms", "p99", "{:.2f}", "lo"), ("rec@10", "recall", "{:.3f}", None),
    ("filt p50", "fp50", "{:.2f}", "lo"), ("filt rec", "frecall", "{:.3f}", None),
    ("disk MiB", "disk", "mib", "lo"), ("RSS MiB", "rss_queries", "mib", "lo"),
    ("+store MiB", "rss_store", "mib", "lo"), ("bld pk MiB", "build_peak", "mib", "lo"),
]


W = 11  # column width
LEGEND = [
    "rows/s: bulk ingest, index build included ('index s' is its share). import s: importing the library in a",
    "fresh process (aimemory: with the lancedb and faiss it imports on open). open s: cold reopen in a fresh",
    "process (page cache warm); 1st q: the first query after it. ins/s: one row per call (faiss: in memory, not",
    "persisted). filt: filtered to bucket == 7 (1% of rows), recall vs exact over those rows. RSS: after the",
    "queries, in the query process; +store: minus the RSS right after imports. build pk: peak RSS of the build",
    "process (the input vectors are memory-mapped and count once read). Ratios: >1 means better than the",
    "reference, for speeds and sizes alike.",
]


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value / 2**20:,.0f}" if fmt == "mib" else fmt.format(value)


def format_table(rows: list[dict], info: dict, notes: list[str], n: int) -> str:
    for r in rows:
        if "rss_queries" in r:
            r["rss_store"] = r["rss_queries"] - r["rss_base"]
    out = [f"== vector stores side by side: n={n:,} x {DIM} float32, k={K}, filter keeps 1% ==",
           *machine_lines(info), *notes, ""]
    head = f"{'store':<14}{'version':>9}" + "".join(f"{t:>{W}}" for t, *_ in COLUMNS)
    out.append(head)
    for r in rows:
        if "error" in r:
            word = "" if r["error"].startswith("skipped") else "FAILED: "
            out.append(f"{r['store']:<14}{r.get('version', '-'):>9}  {word}{r['error']}")
            continue
        cells = "".join(f"{_cell(r.get(k), f):>{W}}" for _, k, f, _ in COLUMNS)
        out.append(f"{r['store']:<14}{r['version']:>9}{cells}")
    by = {r["store"]: r for r in rows if "error" not in r}
    ratio_cols = [c for c in COLUMNS if c[3]]
    for ref in (REFERENCE, OURS):
        if ref not in by:
            continue
        out += ["", f"ratios against {ref}",
                f"{'store':<23}" + "".join(f"{t:>{W}}" for t, *_ in ratio_cols)]
        for r in by.values():
            cells = []
            for _, k, _, better in ratio_cols:
                a, b = r.get(k), by[ref].get(k)
                if not a or not b:
                    cells.append("-")
                    continue
                cells.append(_ratio(a / b if better == "hi" else b / a))
            out.append(f"{r['store']:<23}" + "".join(f"{c:>{W}}" for c in cells))
    from _targets import peer_target_lines  # measure / aimemory / best peer / met?

    out += ["", *LEGEND, "", *peer_target_lines(rows)]
    return "\n".join(out)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--filtered-queries", type=int, default=100)
    p.add_argument("--single", type=int, default=200, help="one-row insert calls")
    p.add_argument("--rounds", type=int, default=1, help="query phases per store, taken in turn across the "
                   "stores; each figure is the median over them")
    p.add_argument("--batch", type=int, default=1000, help="rows per bulk call (per commit for aimemory)")
    p.add_argument("--stores", default=",".join(STORES[:-1]))
    p.add_argument("--peer-python", action="append", default=[], metavar="STORE=PYTHON",
                   help="run a store's workers with another interpreter, e.g. chroma=/path/venv/bin/python")
    p.add_argument("--max-rows", action="append", default=[], metavar="STORE=N",
                   help="skip a store above N rows (default: qdrant-local above 20,000)")
    p.add_argument("--nice", type=int, default=0, help="run workers under nice -n N")
    p.add_argument("--timeout", type=float, default=WORKER_TIMEOUT_S, help="seconds per worker")
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true", help="keep the built stores")
    p.add_argument("--profile", default=None, help="folder for cProfile text of aimemory's open, "
                   "filtered query and single insert")
    p.add_argument("--out", default=None, help="JSON results")
    p.add_argument("--rows-from", default=None, help="JSON of an earlier run at the same --n: its rows for "
                   "stores not in --stores join the table (marked in the notes)")
    args = p.parse_args(argv)
    args.peer_python = dict(s.split("=", 1) for s in args.peer_python)
    args.max_rows = {k: int(v) for k, v in (s.split("=", 1) for s in args.max_rows)}
    args.stores = [s for s in args.stores.split(",") if s]
    return args


def main(argv=None, log=print) -> dict:
    args = parse_args(argv)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)  # a new folder named on the command line
    work = Path(tempfile.mkdtemp(prefix="bench_peers_", dir=args.workdir))
    info = machine_info()
    try:
        t = time.perf_counter()
        data = write_data(work, args.n, args.queries, args.single)
        truth, ftruth = ground_truth(data["vectors"], data["queries"], data["buckets"], args.filtered_queries)
        del data
        log(f"data + exact ground truth: {time.perf_counter() - t:.1f}s in {work}")
        rows = bench_stores(args.stores, work, args, truth, ftruth, log)
        if args.out:
            Path(args.out).write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    finally:
        if not args.keep:  # the data and the stores stay together, for a rerun by hand
            shutil.rmtree(work, ignore_errors=True)
    notes = []
    if args.rows_from:
        earlier = json.loads(Path(args.rows_from).read_text())["rows"]
        ran = {r["store"] for r in rows}
        kept = [r for r in earlier if r["store"] not in ran]
        rows = sorted(kept + rows, key=lambda r: STORES.index(r["store"]) if r["store"] in STORES else 99)
        notes.append(f"rows of {', '.join(r['store'] for r in kept)} come from an earlier run on the same data "
                     f"({args.rows_from})")
    versions = {r["store"]: r.get("version", "-") for r in rows}
    info["versions"].update({DISTRIBUTIONS.get(s, s): v for s, v in versions.items()})
    notes += [f"load avg at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; batch {args.batch}; "
              f"{args.queries} queries, {args.filtered_queries} filtered, {args.single} single inserts"
              + (f"; {args.rounds} rounds of queries per store, in turn: medians" if args.rounds > 1 else "")]
    notes += ["1-min load average during each store (build start / query end): " + ", ".join(
        f"{r['store']} {r['load'][0]:.0f}/{r['load'][1]:.0f}" for r in rows if "load" in r)]
    notes += [f"{r['store']} ran with {r['python']}" for r in rows if r.get("python", sys.executable) != sys.executable]
    table = format_table(rows, info, notes, args.n)
    log(table)
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": info, "rows": rows, "table": table}, indent=1))
    return {"machine": info, "rows": rows, "table": table}


if __name__ == "__main__":
    main()
