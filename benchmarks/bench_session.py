"""A long-lived process that never imports torch itself (an agent's loop, a script, a server): the
latency of single ``remember(text)`` and text ``recall`` calls over its life, on a 100k store.

    .venv/bin/python benchmarks/bench_session.py --runs 3
    .venv/bin/python benchmarks/bench_session.py --runs 3 --baseline /path/to/older/checkout

Each run is a fresh ``python`` process that opens the store with ``model="aimemory-base"`` and calls
``remember`` (or ``recall``) ``--calls`` times back to back, a new short note (or query) each time.
Reported per phase of its life, medians over the runs of each phase's median: the first call (it
loads the text tower), calls 2-8, 9-50, 51-150 and 151 onwards; the worst call after the first; the
whole loop's calls per second, and from call 151 on (the sum of those calls' times, folds of the
write-ahead segment into Lance included); and whether the process ended with torch imported. With
``--baseline`` (another checkout, same Python) the two alternate run by run (ABBA), and ``new/base`` is the
median of per-run ratios of the steady phase (151 onwards).

The store is bench_cold.py's (``--n`` text memories with random 384-d vectors under the
aimemory-base id, built once into ``--work``); each run writes into its own full copy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_lines  # noqa: E402
from bench_cold import build_store, env_for, package_of  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHASES = ((0, 1), (1, 8), (8, 50), (50, 150), (150, None))  # call index ranges, end exclusive
STEADY = PHASES[-1]
WORKER = """
import json, sys, time
from aimemory import MemoryStore
store_path, op, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
tag = str(time.time_ns())
lat = []
with MemoryStore(store_path, model="aimemory-base", speech_model=None, sound_model=None, ocr=False) as s:
    t0 = time.perf_counter()
    for i in range(calls):
        t = time.perf_counter()
        if op == "remember":
            s.remember(f"{tag} note {i}: the user prefers green tea in the morning")
        else:
            s.recall(f"what does the user drink in the morning {i}", k=10)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
print("RESULT " + json.dumps({"lat": lat, "wall": wall, "torch": "torch" in sys.modules}))
"""


def one_run(checkout: Path, store: Path, op: str, calls: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", WORKER, str(store), op, str(calls)], env=env_for(checkout),
                          cwd=checkout, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{op} run failed in {checkout}: {proc.stderr[-2000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def phase_ms(lat: list[float], phase: tuple[int, int | None]) -> float:
    a, b = phase
    part = lat[a:b]
    return statistics.median(part) * 1e3 if part else float("nan")


def summarise(runs: list[dict]) -> dict:
    out = {f"calls {a + 1}-{b if b else 'end'} ms": statistics.median(phase_ms(r["lat"], (a, b)) for r in runs)
           for a, b in PHASES}
    out["worst after the first ms"] = statistics.median(max(r["lat"][1:]) * 1e3 for r in runs)
    out["calls/s"] = statistics.median(len(r["lat"]) / r["wall"] for r in runs)
    late = [r["lat"][STEADY[0]:] for r in runs if len(r["lat"]) > STEADY[0]]
    late_rate = statistics.median(len(x) / sum(x) for x in late) if late else float("nan")
    out[f"calls/s from call {STEADY[0] + 1}"] = late_rate
    out["torch imported"] = sum(r["torch"] for r in runs)
    return out


def table(results: dict[str, dict[str, dict]], ratios: dict[str, float]) -> str:
    labels = list(next(iter(results.values())))
    keys = list(next(iter(next(iter(results.values())).values())))
    lines = []
    for op, by_label in results.items():
        lines.append(f"\n{op}".ljust(30) + "".join(f"{label:>12}" for label in labels))
        for k in keys:
            lines.append(f"  {k:<28}" + "".join(f"{by_label[label][k]:>12.2f}" if isinstance(by_label[label][k], float)
                                                  else f"{by_label[label][k]:>12}" for label in labels))
        if op in ratios:
            lines.append(f"  {'steady new/base':<28}{ratios[op]:>12.2f}")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="processes per operation and checkout")
    p.add_argument("--calls", type=int, default=400, help="calls per process")
    p.add_argument("--n", type=int, default=100_000, help="memories in the store")
    p.add_argument("--work", default="/tmp/aimemory-bench-cold", help="folder for the store (bench_cold's, reused)")
    p.add_argument("--baseline", default=None, help="another aimemory checkout to compare against")
    p.add_argument("--ops", default="remember,recall")
    return p.parse_args(argv)


def main(argv=None, log=print) -> dict:
    args = parse_args(argv)
    work = Path(args.work)
    store = work / f"store-{args.n}"
    if not (store / "catalog").is_dir():
        shutil.rmtree(store, ignore_errors=True)
        log(f"building a {args.n:,}-memory store in {store} ...")
        build_store(store, args.n)
    checkouts = {"new": ROOT}
    if args.baseline:
        checkouts["base"] = Path(args.baseline).resolve()
    for label, checkout in checkouts.items():
        if not Path(package_of(checkout)).resolve().is_relative_to(checkout):
            raise SystemExit(f"{label}: aimemory does not import from {checkout}")
    raw: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        for op in args.ops.split(","):
            raw[op] = {label: [] for label in checkouts}
            for r in range(args.runs):
                order = list(checkouts.items())
                for label, checkout in order if r % 2 == 0 else order[::-1]:  # alternated, ABBA
                    copy = Path(scratch) / f"{label}-{op}-{r}"
                    subprocess.run(["cp", "-a", str(store), str(copy)], check=True)
                    raw[op][label].append(one_run(checkout, copy, op, args.calls))
                    shutil.rmtree(copy)
                log(f"  {op} run {r + 1}/{args.runs} done")
    results = {op: {label: summarise(runs) for label, runs in by.items()} for op, by in raw.items()}
    ratios = {}
    if args.baseline:
        for op, by in raw.items():
            ratios[op] = statistics.median(phase_ms(a["lat"], STEADY) / phase_ms(b["lat"], STEADY)
                                           for a, b in zip(by["new"], by["base"]))
    log("\n".join(machine_lines()))
    log(f"{args.n:,}-memory store, {args.calls} calls per process, {args.runs} processes per checkout; "
        "medians; the caller never imports torch")
    log(table(results, ratios))
    return {"results": results, "ratios": ratios}


if __name__ == "__main__":
    main()
