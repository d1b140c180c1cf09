"""Run the long reliability suites and print the figures: trials run, faults injected, state-machine
steps, corpus size, fuzz examples, failures found.

    python benchmarks/reliability_report.py            # the long runs (about an hour on 2 cores)
    python benchmarks/reliability_report.py --quick    # the CI sizes, to check the script itself
    python benchmarks/reliability_report.py --only state,crash --json out.json

Each suite is a pytest run; the tests append their figures to a JSON-lines file named by
AIMEMORY_RELIABILITY_REPORT, which this script reads back.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (pytest targets, env for the long run, env for --quick: CI tests use their own sizes)
SUITES = {
    "crash": (["tests/test_crash.py"], {"AIMEMORY_CRASH_TRIALS": "1000", "AIMEMORY_KILL_POINT_SEEDS": "20"},
              {}),
    "torn": (["tests/test_reliability_torn.py"], {}, {}),
    "state": (["tests/test_reliability_state.py"],
              {"AIMEMORY_STATE_EXAMPLES": "250", "AIMEMORY_STATE_STEPS": "60"},
              {}),
    "concurrency": (["tests/test_reliability_concurrency.py"],
                    {"AIMEMORY_CONC_OPS": "100", "AIMEMORY_CONC_ROUNDS": "5"}, {}),
    "faults": (["tests/test_reliability_faults.py"], {"AIMEMORY_FD_REMEMBERS": "5000"}, {}),
    "inputs": (["tests/test_reliability_inputs.py"], {"AIMEMORY_FUZZ_EXAMPLES": "5000"}, {}),
}


def run_suite(name: str, quick: bool) -> dict:
    nodes, long_env, quick_env = SUITES[name]
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as fh:
        report = fh.name
    env = {**os.environ, **(quick_env if quick else long_env), "AIMEMORY_RELIABILITY_REPORT": report}
    # long runs: only the slow tests where they repeat the CI ones; all where CI tests add figures
    marks = "not slow" if quick else ("slow or not slow" if name in ("torn", "faults", "inputs") else "slow")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marks,
                           *nodes], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.time() - t0
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    figures: dict = {}
    for line in Path(report).read_text().splitlines():
        rec = json.loads(line)
        for key, value in rec.items():
            if key == "suite":
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key in figures \
                    and key not in ("ann_recall_at_10", "max_seconds", "fds", "corpus_items", "evil_filters"):
                figures[key] += value
            else:
                figures[key] = value
    os.unlink(report)
    e = quick_env if quick else long_env
    if name == "crash":
        figures["random_kill_trials"] = int(e.get("AIMEMORY_CRASH_TRIALS", "12"))
        figures["kill_point_trials"] = 6 * int(e.get("AIMEMORY_KILL_POINT_SEEDS", "3"))
        figures["faults_injected"] = figures["random_kill_trials"] + figures["kill_point_trials"]
    if name == "torn":
        figures["faults_injected"] = counts.get("passed", 0) + counts.get("failed", 0)
    return {"suite": name, "seconds": round(seconds, 1), "tests": counts,
            "failures": counts.get("failed", 0) + counts.get("error", 0), "figures": figures,
            "tail": proc.stdout[-3000:] if proc.returncode not in (0, 5) else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI sizes instead of the long runs")
    ap.add_argument("--only", default=",".join(SUITES), help="comma-separated suites")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    results = []
    for name in args.only.split(","):
        print(f"running {name} ({'quick' if args.quick else 'long'}) ...", flush=True)
        res = run_suite(name, args.quick)
        results.append(res)
        figs = ", ".join(f"{k}={v}" for k, v in res["figures"].items())
        print(f"  {name:12s} {res['seconds']:8.1f} s  tests {res['tests']}  failures {res['failures']}"
              f"{'  ' + figs if figs else ''}", flush=True)
        if res["tail"]:
            print(res["tail"])
    total = sum(r["failures"] for r in results)
    print(f"\n{len(results)} suites, {sum(r['seconds'] for r in results):.0f} s, failures found: {total}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
