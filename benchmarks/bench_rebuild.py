"""Index rebuild: wall time and peak memory of ``MemoryStore.rebuild_index()`` on an existing store,
this checkout against another one (``--before``), each in a fresh process.

    python benchmarks/bench_rebuild.py --store /path/to/targets-1000000 --before /path/to/other/checkout

The store is one ``bench_store.py --targets`` built (its rows carry stand-in vectors, so the
benchmark encoder opens it). Rebuilding rewrites the store's FAISS index, a cache derived from the
table: the last checkout run leaves its own index behind. Peak memory is the process's peak RSS
(``ru_maxrss``), which counts the pages of memory-mapped files the build touches (its own index
file, searched while tuning: the kernel can drop them); "peak anon" is the most anonymous memory
(``RssAnon``) seen, sampled every 0.2 s: what the build itself holds. The raw vectors' bytes are
printed beside them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def worker(root: str, store: str) -> dict:
    """In this process: import aimemory from ``root``, open ``store``, rebuild its index."""
    sys.path[:0] = [root, str(HERE)]
    import _targets

    from aimemory import MemoryStore

    path = Path(store)
    s = MemoryStore(path, model=_targets._encoder(path))
    opened = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    anon, done = [_anon_gib()], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            anon.append(_anon_gib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    s.rebuild_index()
    seconds = time.perf_counter() - t
    done.set()
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    stats = s.stats()["index"]
    s.close()
    return {"seconds": round(seconds, 1), "peak_gib": round(peak, 2), "open_gib": round(opened, 2),
            "anon_gib": round(max(anon), 2), "anon_open_gib": round(anon[0], 2),
            "kind": stats["kind"], "vectors": stats["vectors"], "nprobe": stats.get("nprobe")}


def _anon_gib() -> float:
    """This process's anonymous resident memory (not file pages), GiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="a store bench_store.py --targets built (required)")
    ap.add_argument("--before", help="another checkout of aimemory to compare with")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    if not args.store:
        ap.error("--store is required")
    sys.path.insert(0, str(HERE))
    from _machine import machine_lines

    checkouts = {"before": args.before, "after": str(ROOT)} if args.before else {"this": str(ROOT)}
    rows = {}
    for label, root in checkouts.items():  # the last one run leaves its index in the store
        run = subprocess.run([sys.executable, str(HERE / "bench_rebuild.py"), "--worker", root, args.store],
                             capture_output=True, text=True, check=True, cwd="/")
        rows[label] = json.loads(run.stdout.strip().splitlines()[-1])
    import numpy as np

    raw = np.load(Path(args.store) / "vectors.npy", mmap_mode="r").nbytes / 2**30
    print("\n".join(machine_lines()))
    print(f"store: {args.store}; raw vectors {raw:.2f} GiB")
    print(f"{'checkout':10s} {'rebuild s':>10s} {'peak RSS GiB':>13s} {'x raw':>7s} {'peak anon GiB':>14s} "
          f"{'x raw':>7s} {'anon at open':>13s}  index")
    for label, r in rows.items():
        print(f"{label:10s} {r['seconds']:10.1f} {r['peak_gib']:13.2f} {r['peak_gib'] / raw:7.2f} "
              f"{r['anon_gib']:14.2f} {r['anon_gib'] / raw:7.2f} {r['anon_open_gib']:13.2f}  "
              f"{r['kind']}, {r['vectors']} vectors, nprobe {r['nprobe']}")
    if len(rows) == 2:
        before, after = rows["before"], rows["after"]
        print(f"after / before: time {after['seconds'] / before['seconds']:.2f}x, "
              f"peak RSS {after['peak_gib'] / before['peak_gib']:.2f}x")


if __name__ == "__main__":
    main()
