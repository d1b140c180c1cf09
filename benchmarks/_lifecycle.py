"""Store lifecycle benchmark (``bench_store.py --lifecycle``): open time, recall p50/p99 with and
without the text encode, filtered recall, single ``remember`` rate and a whole-process CLI recall, for
this checkout and for another checkout of aimemory (``--baseline``, e.g. a worktree of main), run
interleaved (A, B, A, B ...) in fresh processes on the same store so the machine's load hits both.

The store holds stand-in 384-d vectors (the width of ``aimemory-base``) under that model's id, so
only the store is measured in-process (texts "v<i>" map to row i), while the CLI and the "with
encode" rows load the real model and embed real text.

    python benchmarks/bench_store.py --lifecycle --n 100000 --baseline /tmp/main-wt
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DIM = 384
MODEL = "aimemory-base"
GROUPS = 100  # metadata {"group": i % GROUPS}: a filter on one group keeps 1% of memories
QUERIES = 200
ENCODE_QUERIES = 30
REMEMBERS = 40
TEXT_QUERIES = ["a cat on a sofa", "the invoice from march", "a red bicycle", "notes about the trip",
                "a photo of the beach", "meeting with the team", "how to bake bread", "a dog in the park"]


# -- worker: runs inside a fresh process with PYTHONPATH at the checkout under test ---------------
def _encoder(n: int):
    sys.path.insert(0, str(HERE))
    from _vectors import LookupEncoder, clustered

    return LookupEncoder(clustered(n, DIM, seed=0), model_id=MODEL)


def _pcts(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return round(1000 * s[len(s) // 2], 2), round(1000 * s[min(len(s) - 1, int(0.99 * len(s)))], 2)


def worker(args) -> dict:
    import random

    import faiss  # noqa: F401  (imports are not what "open" measures)
    import lancedb  # noqa: F401

    from aimemory import MemoryStore

    enc = _encoder(args.n)
    out: dict = {"root": os.environ.get("PYTHONPATH", "")}
    t = time.perf_counter()
    store = MemoryStore(args.store, model=enc)
    store.count()  # an open defers the catalog and index to their first use: timed with it
    out["open_first_s"] = round(time.perf_counter() - t, 3)
    store.close()
    opens = []
    for _ in range(args.opens):
        t = time.perf_counter()
        store = MemoryStore(args.store, model=enc)
        store.count()
        opens.append(time.perf_counter() - t)
        store.close()
    out["open_s"] = round(statistics.median(opens), 3)
    store = MemoryStore(args.store, model=enc)
    rng = random.Random(1)
    lat, flat = [], []
    for _ in range(args.queries):
        q = f"v{rng.randrange(args.n)}"
        t = time.perf_counter()
        store.recall(q, k=10)
        lat.append(time.perf_counter() - t)
    for _ in range(max(1, args.queries // 2)):
        q = f"v{rng.randrange(args.n)}"
        t = time.perf_counter()
        hits = store.recall(q, k=10, where={"group": 7})
        flat.append(time.perf_counter() - t)
    assert all(h.memory.metadata["group"] == 7 for h in hits)
    out["recall_p50_ms"], out["recall_p99_ms"] = _pcts(lat)
    out["filtered_p50_ms"], _ = _pcts(flat)
    store.close()
    if args.store_only:
        return out
    store = MemoryStore(args.store, model=MODEL)  # the real text towers: encode + store
    for warm in TEXT_QUERIES[:3]:  # loads the towers and makes the CPU trace (not measured)
        store.recall(warm, k=10)
    enc_lat = []
    for i in range(ENCODE_QUERIES):
        t = time.perf_counter()
        store.recall(TEXT_QUERIES[i % len(TEXT_QUERIES)] + f" {i}", k=10)
        enc_lat.append(time.perf_counter() - t)
    out["recall_encode_p50_ms"], out["recall_encode_p99_ms"] = _pcts(enc_lat)
    store.close()
    if args.copy:
        store = MemoryStore(args.copy, model=enc)
        t = time.perf_counter()
        for i in range(REMEMBERS):
            store.remember(f"new memory {i} {time.time()}", metadata={"group": i % GROUPS})
        out["remember_per_s"] = round(REMEMBERS / (time.perf_counter() - t), 1)
        store.close()
    return out


# -- orchestration ---------------------------------------------------------------------------------
def build(path: Path, n: int, log) -> None:
    """Fill a store with n text memories "v<i>" (stand-in vectors), metadata group and tags."""
    from aimemory import MemoryStore

    if (path / "aimemory.json").exists():
        return
    t = time.perf_counter()
    with MemoryStore(path, model=_encoder(n)) as store:
        for start in range(0, n, 5000):
            idx = range(start, min(n, start + 5000))
            store.remember_many([f"v{i}" for i in idx], batch_size=5000, dedup=False,
                                metadata=[{"group": i % GROUPS, "tags": [f"t{i % 10}"]} for i in idx])
    log(f"built {path} ({n} memories) in {time.perf_counter() - t:.0f}s")


def build_direct(path: Path, n: int, log, chunk: int = 100_000) -> None:
    """The same store written straight to Lance (no encoder, no per-row Python in remember), for
    sizes where remember_many would take too long; the index is flat (saved on the first open)."""
    import numpy as np
    import pyarrow as pa

    from aimemory import MemoryStore
    from aimemory.records import table_schema
    from aimemory.storage import Manifest, VectorTable

    if (path / "aimemory.json").exists():
        return
    t = time.perf_counter()
    path.mkdir(parents=True, exist_ok=True)
    vectors = _encoder(n).vectors
    table = VectorTable(path, DIM)
    for start in range(0, n, chunk):
        idx = np.arange(start, min(n, start + chunk))
        m = len(idx)
        cols = {
            "vkey": idx + 1, "id": [f"{int(k):024x}" for k in idx + 1], "view": np.zeros(m, np.int32),
            "namespace": ["default"] * m, "modality": ["text"] * m, "kind": ["text"] * m,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors[idx].reshape(-1), pa.float32()), DIM),
            "created_at": pa.array(np.full(m, 1_700_000_000_000_000, np.int64) + idx, pa.timestamp("us", tz="UTC")),
            "text": [f"v{i}" for i in idx], "mime": ["text/plain"] * m,
            "content_hash": [f"{i:064x}" for i in idx],
            "metadata": [json.dumps({"group": int(i) % GROUPS, "tags": [f"t{i % 10}"]}) for i in idx],
            "tags": [[f"t{i % 10}"] for i in idx],
        }
        schema = table_schema(DIM)
        table.add(pa.table([cols[f.name] if f.name in cols else pa.nulls(m, f.type) for f in schema], schema=schema))
    table.compact()
    Manifest(MODEL, DIM, next_vkey=n + 1, extra={"model_source": MODEL}).write(path)
    del vectors
    with MemoryStore(path, model=_encoder(n), ann_threshold=10 * n) as store:
        store.count()  # the first use builds the catalog and index; the close saves them
    log(f"built {path} ({n} memories, written to Lance directly) in {time.perf_counter() - t:.0f}s")


def _run_worker(root: Path, store: Path, n: int, copy: Path | None, store_only: bool = False,
                opens: int = 3, queries: int = QUERIES) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "AIMEMORY_SPEECH": "0"}
    cmd = [sys.executable, str(Path(__file__)), "worker", "--store", str(store), "--n", str(n),
           "--opens", str(opens), "--queries", str(queries)]
    if store_only:
        cmd.append("--store-only")
    if copy is not None:
        cmd += ["--copy", str(copy)]
    got = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(got.stdout.strip().splitlines()[-1])


def cli_seconds(root: Path, store: Path, query: str = "a cat") -> float:
    env = {**os.environ, "PYTHONPATH": str(root), "AIMEMORY_SPEECH": "0"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aimemory", "recall", query, "--store", str(store), "--json"],
                   env=env, capture_output=True, check=True)
    return time.perf_counter() - t


def orchestrate(args, log=print) -> dict:
    sys.path.insert(0, str(HERE))
    from _machine import machine_info, machine_lines

    mine = HERE.parent
    roots = {"this": mine, **({"baseline": Path(args.baseline)} if args.baseline else {})}
    info = machine_info()
    log("\n".join(machine_lines(info)))
    work = Path(args.work)
    store = work / f"store-{args.n}"
    (build_direct if args.n > 200_000 else build)(store, args.n, log)
    runs: dict[str, list[dict]] = {name: [] for name in roots}
    cli: dict[str, list[float]] = {name: [] for name in roots}
    for rep in range(args.reps):
        for name, root in roots.items():  # interleaved: A, B, A, B
            copy = None if args.store_only else work / f"copy-{name}"
            if copy is not None:
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(store, copy)
            runs[name].append(_run_worker(root, store, args.n, copy, args.store_only, args.opens, args.queries))
            if copy is not None:
                shutil.rmtree(copy, ignore_errors=True)
            log(f"rep {rep} {name}: {runs[name][-1]}")
        for _ in range(0 if args.store_only else args.cli_reps):
            for name, root in roots.items():
                cli[name].append(cli_seconds(root, store))
    served = serve_cli(mine, store, args.cli_reps) if args.serve else None
    table = summarise(runs, cli, served)
    log("\n" + "\n".join(table))
    return {"machine": info, "runs": runs, "cli_s": cli, "cli_served_s": served, "table": table}


def serve_cli(root: Path, store: Path, reps: int) -> list[float] | None:
    """Whole-process CLI recalls while ``aimemory serve`` runs on the same store (this checkout)."""
    import socket

    env = {**os.environ, "PYTHONPATH": str(root), "AIMEMORY_SPEECH": "0"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "aimemory", "serve", "--store", str(store), "--port",
                               str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (store / ".serve.json").exists() and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(1.0)
        cli_seconds(root, store)  # the server loads its text towers on the first query
        return [cli_seconds(root, store) for _ in range(reps)]
    finally:
        server.terminate()
        server.wait(timeout=30)


def summarise(runs: dict, cli: dict, served) -> list[str]:
    keys = [("open_first_s", "open, first (s)"), ("open_s", "open (s)"), ("recall_p50_ms", "recall p50 (ms)"),
            ("recall_p99_ms", "recall p99 (ms)"), ("recall_encode_p50_ms", "recall+encode p50 (ms)"),
            ("recall_encode_p99_ms", "recall+encode p99 (ms)"), ("filtered_p50_ms", "filtered 1% p50 (ms)"),
            ("remember_per_s", "remember, single (/s)")]
    names = list(runs)
    lines = [f"{'metric':26}" + "".join(f"{n:>12}" for n in names) + ("   this/baseline" if len(names) > 1 else "")]
    med = {n: {} for n in names}
    for key, label in keys:
        for n in names:
            vals = [r[key] for r in runs[n] if key in r]
            med[n][key] = statistics.median(vals) if vals else float("nan")
        line = f"{label:26}" + "".join(f"{med[n][key]:>12.3f}" for n in names)
        if len(names) > 1 and med["baseline"][key]:
            line += f"   {med['this'][key] / med['baseline'][key]:.3f}"
        lines.append(line)
    if all(cli.values()):
        line = f"{'CLI recall, process (s)':26}" + "".join(f"{statistics.median(cli[n]):>12.3f}" for n in names)
        if len(names) > 1:
            line += f"   {statistics.median(cli['this']) / statistics.median(cli['baseline']):.3f}"
        lines.append(line)
    if served:
        lines.append(f"{'CLI recall via serve (s)':26}{statistics.median(served):>12.3f}")
    return lines


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", default="run", choices=["run", "worker"])
    p.add_argument("--lifecycle", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--store", default="")
    p.add_argument("--copy", default="")
    p.add_argument("--work", default="/tmp/aimemory-bench-lifecycle", help="where stores are built and kept")
    p.add_argument("--baseline", default="", help="another aimemory checkout to compare with")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--cli-reps", type=int, default=3)
    p.add_argument("--serve", action="store_true", help="also time the CLI against a running `aimemory serve`")
    p.add_argument("--opens", type=int, default=3, help="timed reopens per run (median)")
    p.add_argument("--queries", type=int, default=QUERIES, help="recalls per run (half as many filtered)")
    p.add_argument("--store-only", action="store_true",
                   help="only open and recall timings (no model, no remember, no CLI): for 1M")
    p.add_argument("--out", default="")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    if args.mode == "worker":
        args.copy = args.copy or None
        print(json.dumps(worker(args)))
        return {}
    Path(args.work).mkdir(parents=True, exist_ok=True)
    result = orchestrate(args)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
