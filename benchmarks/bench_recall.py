"""Recall's per-query cost outside the encoder, A/B: this checkout against another one (``--before``,
e.g. a worktree of main), on the same store, in alternating worker processes so both see the same
machine load. Cases: unfiltered, ``where=`` on metadata matching 1% and 10% of memories, a
``modality=`` filter, and ``since=``; with ``--writes N``, also an unfiltered recall right after each
of N single ``remember`` calls (an agent's pattern: the recall sees a catalog just changed); with
``--reopens N``, N rounds of opening the store, remembering one thing and closing it (a CLI
``remember``, or an agent process started per task), each step timed.

    python benchmarks/bench_recall.py --n 100000 --work /tmp/bench-recall --before /work/main
    python benchmarks/bench_recall.py --store /path/to/targets-1000000 --before /work/main

The store is the one ``bench_store.py --targets`` builds (_targets.py: aimemory-base's layout, 384-d
stand-in vectors, ``{"group": i % 100}`` metadata); queries are near stored rows, encoded by lookup.
A store given with ``--store`` is opened, never written unless ``--writes`` is given (the empty
write-ahead segment and lock file that opening creates are removed again when the run created them);
the memories ``--writes`` and ``--reopens`` remember are forgotten again at the end of each worker.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASES = {"unfiltered": {}, "where 1%": {"where": {"group": 7}},
         "where 10%": {"where": {"group": list(range(10))}},
         "modality=image": {"modality": "image"}, "since (95%)": {"since": 1_700_000_000.05}}
OPEN_LEFTOVERS = ("segment.wal", ".write.lock")  # what opening a store creates
TEXT_FORWARDS = ("numpy", "torch")  # text query cases: before and after torch is imported


def worker(store_path: str, queries: int, seed: int, text: int = 0, writes: int = 0, reopens: int = 0) -> dict:
    """One process: open the store, time each case -> case -> latencies (s). ``text``: also that
    many real text queries through aimemory-base (its plans search several view kinds), timed
    end to end and for the encode alone: first as a process that never imported torch (the numpy
    query forward), then again after importing torch (the torch network, as in a process that
    also remembers)."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    import _targets

    from aimemory import MemoryStore

    path = Path(store_path)
    vectors = np.load(path / "vectors.npy", mmap_mode="r")
    qv = _targets.near_queries(vectors, queries, seed=seed)
    store = MemoryStore(path, model=_targets._encoder(path, qv))
    out: dict = {"index": store.stats()["index"]["kind"]}
    for name, kw in CASES.items():
        for i in range(min(5, queries)):  # warm: first-touch pages, first mask builds
            store.recall(f"q{i}", k=10, **kw)
        lat = []
        for i in range(queries):
            t = time.perf_counter()
            store.recall(f"q{i}", k=10, **kw)
            lat.append(time.perf_counter() - t)
        out[name] = lat
    if writes:
        written, lat = [], []
        for i in range(writes):
            written.append(store.remember(f"written {seed}.{i}").id)  # a stand-in vector: no encoder cost
            t = time.perf_counter()
            store.recall(f"q{i % queries}", k=10)
            lat.append(time.perf_counter() - t)
        out["after a write"] = lat
        store.forget(written)
    store.close()
    if reopens:
        steps: dict[str, list[float]] = {"reopen: open": [], "reopen: 1 write": [], "reopen: close": []}
        written = []
        for i in range(reopens):
            t0 = time.perf_counter()
            again = MemoryStore(path, model=_targets._encoder(path, qv))
            t1 = time.perf_counter()
            written.append(again.remember(f"reopened {seed}.{i}").id)
            t2 = time.perf_counter()
            again.close()
            for step, took in zip(steps, (t1 - t0, t2 - t1, time.perf_counter() - t2)):
                steps[step].append(took)
        out.update(steps)
        with MemoryStore(path, model=_targets._encoder(path, qv)) as again:
            again.forget(written)
    if text:
        from aimemory.inputs import to_item
        from aimemory.recall import query_plans

        real = MemoryStore(path, model=_targets.MODEL)
        for forward in TEXT_FORWARDS:
            if forward == "torch":
                import torch  # noqa: F401  (from now on queries run the torch network)
            for warm in _targets.TEXT_QUERIES[:3]:  # loads the towers and makes the CPU trace (not measured)
                real.recall(warm, k=10)
            e2e, enc = [], []
            for i in range(text):
                q = f"{_targets.TEXT_QUERIES[i % len(_targets.TEXT_QUERIES)]} {forward} {i}"
                t = time.perf_counter()
                query_plans(real, to_item(q, purpose="recall"))
                enc.append(time.perf_counter() - t)
                t = time.perf_counter()
                real.recall(q, k=10)
                e2e.append(time.perf_counter() - t)
            out[f"text/{forward}, encode"], out[f"text/{forward}, e2e"] = enc, e2e
        real.close()
    return out


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return 1000 * s[min(len(s) - 1, int(p * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="rows of the store built under --work")
    ap.add_argument("--work", default="/tmp/aimemory-bench-recall")
    ap.add_argument("--store", help="an existing _targets store (not built, not written)")
    ap.add_argument("--before", help="another checkout of aimemory to compare with")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2, help="alternating worker runs per checkout")
    ap.add_argument("--text", type=int, default=0, help="real text queries through aimemory-base")
    ap.add_argument("--writes", type=int, default=0, help="single remember calls, each followed by a timed "
                    "recall (the store is written; they are forgotten again)")
    ap.add_argument("--reopens", type=int, default=0, help="rounds of open, one remember, close (the store is "
                    "written; they are forgotten again)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], *map(int, args.worker[1:]))))
        return
    sys.path.insert(0, str(HERE))
    from _machine import machine_lines

    if args.store:
        path = Path(args.store)
    else:
        path = Path(args.work) / f"targets-{args.n}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(HERE)!r}); import _targets; "
                        f"from pathlib import Path; _targets.build(Path({str(path)!r}), {args.n}, print)"],
                       check=True, env=env)
    leftovers = [path / name for name in OPEN_LEFTOVERS if not (path / name).exists()]
    checkouts = {"after": ROOT} if not args.before else {"before": Path(args.before), "after": ROOT}
    samples: dict[str, dict[str, list[float]]] = {label: {} for label in checkouts}
    load = [os.getloadavg()]
    try:
        for r in range(args.rounds):
            for label, checkout in checkouts.items():
                env = {**os.environ, "PYTHONPATH": str(checkout)}  # threads as a user gets them
                run = subprocess.run([sys.executable, str(HERE / "bench_recall.py"), "--worker", str(path),
                                      str(args.queries), str(r + 1), str(args.text), str(args.writes),
                                      str(args.reopens)],
                                     env=env, capture_output=True, text=True)
                if run.returncode:
                    sys.exit(f"{label} worker failed:\n{run.stderr[-3000:]}")
                got = json.loads(run.stdout.strip().splitlines()[-1])
                samples[label]["index"] = got.pop("index")
                for case, lat in got.items():
                    samples[label].setdefault(case, []).extend(lat)
    finally:
        if args.store:
            for leftover in leftovers:  # only what this run created
                leftover.unlink(missing_ok=True)
    load.append(os.getloadavg())
    print("\n".join(machine_lines()))
    print(f"store: {path} ({samples['after']['index']} index); load average start {load[0][0]:.2f}, "
          f"end {load[1][0]:.2f}; {args.rounds} x {args.queries} queries per case and checkout, k=10")
    head = f"{'case':16s}" + "".join(f"{label + ' p50':>13s}{label + ' p99':>13s}" for label in checkouts)
    print(head)
    table = {}
    text_cases = [f"text/{forward}, {what}" for forward in TEXT_FORWARDS for what in ("encode", "e2e")]
    reopen_cases = ["reopen: open", "reopen: 1 write", "reopen: close"] if args.reopens else []
    write_cases = ["after a write"] if args.writes else []
    for case in [*CASES, *write_cases, *reopen_cases, *(text_cases if args.text else [])]:
        row = {label: (_pct(samples[label][case], 0.5), _pct(samples[label][case], 0.99)) for label in checkouts}
        table[case] = row
        print(f"{case:16s}" + "".join(f"{p50:10.2f} ms{p99:10.2f} ms" for p50, p99 in row.values()))
    if args.json:
        Path(args.json).write_text(json.dumps({"load": load, "table": table, "median_ms": {
            label: {c: 1000 * statistics.median(v) for c, v in s.items() if c != "index"}
            for label, s in samples.items()}}, indent=1))


if __name__ == "__main__":
    main()
