"""Single writes at agent pace: ``store.remember(text)`` one at a time into a 10k and a 100k store,
through the write-ahead segment and straight to Lance, measured A/B in the same run.

    .venv/bin/python benchmarks/bench_writes.py                      # 10k and 100k, 300 writes each
    .venv/bin/python benchmarks/bench_writes.py --sizes 10000 --writes 100 --quick

Per (store size, path, writer threads): writes/s, p50/p99 latency of one acknowledged (durable)
write, the latency of a recall right after a write (it must return the write), the visibility delay
for another handle on the folder (write acknowledged -> a second store, as another process has,
finds it by its reads), and the cost of folding the segment's records into Lance. The disk's
fdatasync latency (an overwrite of a written block: what a segment append waits for) is measured
before and after: one writer thread cannot acknowledge durable writes faster than that.

Two encoders: a benchmark encoder (vectors precomputed, so the store's own cost is measured) and
``aimemory-base`` end to end (its text tower, all-MiniLM-L6-v2, encodes each text; skipped with a
message when its weights are not installed). End-to-end rows run with concurrent writers' texts
sharing encoder calls (``batching`` on, see ``aimemory.encode_batch``) and off, A/B in the same run;
``per_call`` is the mean number of texts per encoder call. Both share the store: it is built once per size with
``commit_views`` (model id ``aimemory-base``, 384 dims) and reused from the cache folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_info, machine_lines  # noqa: E402

MODEL_ID = "aimemory-base"
D = 384
BUILD_BATCH = 5_000
VISIBILITY_PROBES = 20
CACHE = Path(tempfile.gettempdir()) / "aimemory-bench-writes"
TOWERS = dict(speech_model=None, sound_model=None, ocr=False)  # texts only: no Whisper load on the first write
WARMUP = 5  # writes before timing (first-call costs)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, D)).astype(np.float32)  # (n, D)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _bench_encoder():
    """Texts -> a fixed random unit vector per text (seeded by the text): no model runs."""
    from aimemory.encoders.base import Encoder

    class BenchEncoder(Encoder):
        model_id, dim, modalities = MODEL_ID, D, frozenset({"text"})

        def embed_texts(self, texts):
            return np.concatenate([_unit(np.random.default_rng(abs(hash(t)) % 2**32), 1) for t in texts])

    return BenchEncoder()


def build_store(n: int, log) -> Path:
    """A store of ``n`` text memories (random vectors), built once and reused."""
    from aimemory import MemoryStore
    from aimemory.encoders.base import View
    from aimemory.inputs import to_item
    from aimemory.write import commit_views

    path = CACHE / f"store-{n}"
    done = path / "BUILT"
    if done.exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    store = MemoryStore.for_views(path, MODEL_ID, D)
    rng = np.random.default_rng(n)
    for start in range(0, n, BUILD_BATCH):
        count = min(BUILD_BATCH, n - start)
        items = [to_item(f"memory {i}: the user said something worth keeping") for i in range(start, start + count)]
        vectors = _unit(rng, count)
        views = [[View("text", v)] for v in vectors]
        commit_views(store, items, views)
    store.compact()
    store.close()
    done.write_text(str(n))
    log(f"built a {n:,} store in {time.perf_counter() - t0:.0f} s ({path})")
    return path


def _pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if len(values) else float("nan")


def run_writes(path: Path, encoder, write_ahead: bool, n_writes: int, threads: int, tag: str,
               probes: int = VISIBILITY_PROBES, batching: bool = True, parallel: int | None = None) -> dict:
    """``n_writes`` single remembers from ``threads`` threads; then visibility and fold cost."""
    from aimemory import MemoryStore

    store = MemoryStore(path, model=encoder, write_ahead=write_ahead, **TOWERS)
    store.batch_encodes = batching
    if parallel is not None:  # shared encoder calls allowed at once (default: encode_batch.parallel_encodes)
        store.encode_batcher.max_parallel = parallel
    store.flush()
    tag = f"{tag} {time.time_ns()}"  # new texts every run: a repeat would be deduplicated, not written
    size = store.count()
    lat: list[float] = []
    lock = threading.Lock()

    def work(t: int, n: int) -> None:
        mine = []
        for i in range(n):
            t0 = time.perf_counter()
            store.remember(f"{tag} note {t}-{i}: the user prefers green tea in the morning")
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    for i in range(WARMUP):
        store.remember(f"{tag} warm-up {i}")
    batcher = store.encode_batcher
    batcher.calls = batcher.items = 0  # count the timed writes only
    per = [n_writes // threads + (1 if t < n_writes % threads else 0) for t in range(threads)]
    workers = [threading.Thread(target=work, args=(t, n)) for t, n in enumerate(per)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    batcher = store.encode_batcher
    per_call = round(batcher.items / batcher.calls, 2) if batching and batcher.calls else float("nan")
    pending = store.segment.n_records if store.segment is not None else 0
    t1 = time.perf_counter()
    store.flush()
    fold_s = time.perf_counter() - t1
    # visibility: a second handle on the folder (what another process sees), polled by reads
    other = MemoryStore(path, model=encoder, write_ahead=write_ahead, **TOWERS)
    other.count()
    seen, here = [], []
    for i in range(probes):
        m = store.remember(f"{tag} probe {i}: visible yet?")
        t0 = time.perf_counter()
        assert store.recall(m.content, k=1)[0].id == m.id  # this process: at once
        here.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        while True:
            other.count()
            if m.id in other:
                break
            time.sleep(0.001)
        seen.append(time.perf_counter() - t0)
    other.close()
    store.close()
    return dict(size=size, path="segment" if write_ahead else "direct", threads=threads,
                encoder=encoder.model_id if tag.startswith("e2e") else "bench",
                batching=f"on/{store.encode_batcher.max_parallel}" if batching else "off", per_call=per_call,
                writes=n_writes,
                rate=round(n_writes / wall, 1), p50_ms=round(_pct(lat, 50), 2), p99_ms=round(_pct(lat, 99), 2),
                recall_ms=round(_pct(here, 50), 1), other_sees_p50_ms=round(_pct(seen, 50), 1),
                other_sees_max_ms=round(_pct(seen, 100), 1),
                fold_ms=round(fold_s * 1000, 1) if pending else float("nan"), folded=pending)


def encode_cost(encoder, n: int = 40) -> dict:
    texts = [f"the agent noted item {i}: the user prefers green tea in the morning" for i in range(n)]
    encoder.views("text", texts[:1])
    lat = []
    for t in texts:
        t0 = time.perf_counter()
        encoder.views("text", [t])
        lat.append(time.perf_counter() - t0)
    return dict(p50_ms=round(_pct(lat, 50), 2), p99_ms=round(_pct(lat, 99), 2),
                max_rate=round(1000 / _pct(lat, 50), 1))


def batch_encode_cost(encoder, sizes=(1, 4, 8, 16), reps: int = 12) -> dict:
    """Median ms of one encoder call for n short texts (what shared calls save per text)."""
    texts = [f"the agent noted item {i}: the user prefers green tea in the morning" for i in range(16 * reps)]
    encoder.views("text", texts[:2])
    out = {}
    for n in sizes:
        lat = []
        for r in range(reps):
            t0 = time.perf_counter()
            encoder.views("text", texts[r * n:(r + 1) * n])
            lat.append(time.perf_counter() - t0)
        out[n] = round(_pct(lat, 50), 1)
    return out


def datasync_latency(folder: Path, n: int = 200) -> dict:
    """p50/p99 of a 3 KB overwrite + fdatasync in ``folder`` (a record's append on written zeros)."""
    from aimemory.storage.segment import datasync

    path = folder / "datasync-probe.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, bytes(3000 * n))
        os.fsync(fd)
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, b"x" * 3000, 3000 * i)
            datasync(fd)
            lat.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return dict(p50_ms=round(_pct(lat, 50), 2), p99_ms=round(_pct(lat, 99), 2), mean_ms=round(1000 * np.mean(lat), 2))


def _real_encoder(log):
    from aimemory.encoders.registry import load_encoder
    from aimemory.errors import AimemoryError

    try:
        return load_encoder(MODEL_ID)
    except (AimemoryError, OSError) as exc:
        log(f"aimemory-base is not installed ({exc}); the end-to-end rows are skipped")
        return None


def table(rows: list[dict]) -> str:
    cols = ["size", "path", "threads", "encoder", "batching", "per_call", "writes", "rate", "p50_ms", "p99_ms",
            "recall_ms", "other_sees_p50_ms", "other_sees_max_ms", "fold_ms", "folded"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.rjust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).rjust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    global CACHE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--writes", type=int, default=300, help="single remembers per configuration")
    parser.add_argument("--threads", default="1,4", help="writer threads (group commit above 1)")
    parser.add_argument("--e2e-writes", type=int, default=100, help="writes per end-to-end configuration")
    parser.add_argument("--e2e-threads", default="1,4,8", help="writer threads end to end")
    parser.add_argument("--e2e-parallel", default="",
                        help="also batching rows with these max_parallel values (e.g. 1); default rows: the store's")
    parser.add_argument("--e2e-direct", action="store_true", help="also end to end with write_ahead=False")
    parser.add_argument("--no-bench-rows", action="store_true", help="only the end-to-end rows")
    parser.add_argument("--quick", action="store_true", help="no end-to-end rows")
    parser.add_argument("--out", help="write the rows as JSON here")
    parser.add_argument("--probes", type=int, default=VISIBILITY_PROBES, help="visibility probes per row")
    parser.add_argument("--cache", default=str(CACHE), help="where the built stores are kept for reuse")
    args = parser.parse_args(argv)
    CACHE = Path(args.cache)
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "1")))
    info = machine_info()
    print("\n".join(machine_lines(info)))
    print(f"load average before: {os.getloadavg()}")
    bench = _bench_encoder()
    real = None if args.quick else _real_encoder(log)
    rows = []
    if real is not None:
        cost = encode_cost(real)
        print(f"aimemory-base one text encode: p50 {cost['p50_ms']} ms, p99 {cost['p99_ms']} ms "
              f"-> at most {cost['max_rate']} encodes/s on one thread")
        costs = batch_encode_cost(real)
        print("aimemory-base one call for n texts (median ms): "
              + ", ".join(f"n={n}: {ms} ({ms / n:.1f}/text)" for n, ms in costs.items()))
    CACHE.mkdir(parents=True, exist_ok=True)
    sync_before = datasync_latency(CACHE)
    print(f"fdatasync (3 KB overwrite) before: {sync_before}")
    for n in [int(s) for s in args.sizes.split(",")]:
        path = build_store(n, log)
        for threads in [] if args.no_bench_rows else [int(t) for t in args.threads.split(",")]:
            for ahead in (True, False):  # A/B, same store, same run
                rows.append(run_writes(path, bench, ahead, args.writes, threads, "bench", args.probes))
                log(table(rows[-1:]))
        if real is not None:
            for threads in [int(t) for t in args.e2e_threads.split(",")]:
                runs = [(True, True, None)] + [(True, True, int(p)) for p in args.e2e_parallel.split(",") if p]
                runs += [(True, False, None)] + ([(False, True, None)] if args.e2e_direct else [])
                for ahead, batching, parallel in runs:  # shared encodes on and off: A/B, same store, same run
                    rows.append(run_writes(path, real, ahead, args.e2e_writes, threads, "e2e", args.probes,
                                           batching, parallel))
                    log(table(rows[-1:]))
    print(table(rows))
    sync_after = datasync_latency(CACHE)
    print(f"fdatasync (3 KB overwrite) after: {sync_after}")
    print(f"load average after: {os.getloadavg()}")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": info, "rows": rows, "datasync_before": sync_before,
                                              "datasync_after": sync_after}, indent=2))
    return rows


if __name__ == "__main__":
    main()
