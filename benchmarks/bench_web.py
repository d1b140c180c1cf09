"""HTTP API load test on loopback: recall requests/s and p50/p99 latency with concurrent clients
against a store of synthetic memories, no errors allowed, server RSS before/after (memory flat).

    .venv/bin/python benchmarks/bench_web.py                         # 10k memories, 8 clients
    .venv/bin/python benchmarks/bench_web.py --memories 1000 --requests 200 --duration 10   # smoke

The encoder is excluded: a benchmark encoder maps texts "v<i>" to precomputed unit vectors
(512-d, seeded), so a recall for "v<i>" must return memory i first, which every response is checked
for. What is measured is everything else: HTTP parsing, the worker-thread hop, catalog mask, FAISS
search, hydrating hits (one Lance read for texts) and JSON. The server runs in its own process
(uvicorn, one worker, as `aimemory serve` runs it), so client and server do not share a GIL; they
do share this machine's cores, which the header reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_info, machine_lines  # noqa: E402

D = 512
SEED = 1234
K = 10


def bench_encoder(n: int):
    """Texts "v<i>" -> the i-th of n seeded unit vectors; other texts -> a hashed random vector."""
    from aimemory.encoders.base import Encoder

    data = np.random.default_rng(SEED).standard_normal((n, D)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)

    class BenchEncoder(Encoder):
        model_id, dim, modalities = "bench-web-precomputed", D, frozenset({"text"})

        def embed_texts(self, texts):
            rows = []
            for t in texts:
                if t[:1] == "v" and t[1:].isdigit() and int(t[1:]) < n:
                    rows.append(data[int(t[1:])])
                else:
                    v = np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(D).astype(np.float32)
                    rows.append(v / np.linalg.norm(v))
            return np.stack(rows)

    return BenchEncoder()


def build_store(path: Path, n: int) -> dict[int, str]:
    """n text memories "v0".."v<n-1>"; returns i -> memory id."""
    from aimemory import MemoryStore

    with MemoryStore(path, model=bench_encoder(n), speech_model=None) as store:
        memories = store.remember_many([f"v{i}" for i in range(n)], batch_size=2000)
        return {i: m.id for i, m in enumerate(memories)}


def _summary(seconds: list[float], wall: float, errors: int = 0) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"requests": len(ms), "errors": errors, "wall_s": round(wall, 2), "rps": round(len(ms) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "max_ms": round(float(ms.max()), 2)}


def interleaved(store_path: Path, n: int, base: str, ids: dict[int, str], count: int) -> tuple[dict, dict]:
    """The HTTP cost over the store's own: the same recall in-process and over HTTP (one client),
    alternating, so both see the same machine load at the same moments."""
    import httpx

    from aimemory import MemoryStore

    direct, http, errors = [], [], 0
    picks = np.random.default_rng(3).integers(0, n, count + 5)
    with MemoryStore(store_path, model=bench_encoder(n), speech_model=None) as store, \
            httpx.Client(base_url=base, timeout=30) as client:
        for j, i in enumerate(picks):
            t = time.perf_counter()
            store.recall(f"v{i}", k=K)
            d = time.perf_counter() - t
            t = time.perf_counter()
            r = client.get(f"/api/recall?q=v{i}&k={K}")
            h = time.perf_counter() - t
            errors += r.status_code != 200 or r.json()["hits"][0]["id"] != ids[int(i)]
            if j >= 5:  # the first few warm both up
                direct.append(d)
                http.append(h)
    return _summary(direct, sum(direct)), _summary(http, sum(http), errors)


def serve_child(store: str, n: int) -> None:
    """Child process: open the store and serve it on a free loopback port (printed first)."""
    import socket

    import uvicorn

    from aimemory import MemoryStore
    from aimemory.web import create_app

    mem = MemoryStore(store, model=bench_encoder(n), speech_model=None)
    sock = socket.socket()
    # as `aimemory serve` gets from uvicorn's own bind: without it every request after a
    # connection's first waited 40 ms on a delayed ACK (Nagle), and the table measured that
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(create_app(mem), log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        mem.close()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def load(base: str, path_of, count: int, clients: int, seconds: float, check) -> dict:
    """``count`` requests (or ``seconds``, whichever ends first) from ``clients`` concurrent clients."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    issued = 0
    deadline = time.perf_counter() + seconds

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < count and time.perf_counter() < deadline:
            i = issued
            issued += 1
            t = time.perf_counter()
            try:
                r = await c.get(path_of(i))
                ok = r.status_code == 200 and check(i, r)
            except Exception as exc:  # counted, reported; the run goes on
                ok, r = False, exc
            latencies.append(time.perf_counter() - t)
            if not ok:
                errors.append(f"#{i}: {getattr(r, 'status_code', r)}")

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {**_summary(latencies, wall, len(errors)), "error_examples": errors[:5]}


def main(argv: list[str] | None = None, log=print) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--memories", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=3000, help="per round")
    ap.add_argument("--duration", type=float, default=45.0, help="seconds per round, at most")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="recall rounds (RSS is read after each)")
    ap.add_argument("--reference", type=int, default=50,
                    help="recalls in-process and over HTTP, alternating (1 client)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--serve", nargs=2, metavar=("STORE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve_child(args.serve[0], int(args.serve[1]))
        return {}

    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)  # a new folder named on the command line
    work = Path(tempfile.mkdtemp(prefix="bench_web_", dir=args.workdir))
    proc = None
    try:
        t = time.perf_counter()
        ids = build_store(work / "store", args.memories)
        build_s = time.perf_counter() - t
        proc = subprocess.Popen([sys.executable, __file__, "--serve", str(work / "store"), str(args.memories)],
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "AIMEMORY_SPEECH": "0"})
        port = int(proc.stdout.readline())
        base = f"http://127.0.0.1:{port}"
        rng = np.random.default_rng(7)
        picks = rng.integers(0, args.memories, size=max(args.requests, 1) * (args.rounds + 1))

        def recall_path(i: int) -> str:
            return f"/api/recall?q=v{picks[i]}&k={K}"

        def recall_ok(i: int, r) -> bool:
            hits = r.json()["hits"]
            return len(hits) == K and hits[0]["id"] == ids[int(picks[i])]

        def run(path_of, check, count) -> dict:
            return asyncio.run(load(base, path_of, count, args.clients, args.duration, check))

        deadline = time.monotonic() + 60
        while True:
            try:
                import httpx

                if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                    break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the benchmark server did not start") from None
                time.sleep(0.2)
        run(recall_path, recall_ok, 100)  # warm-up: threads, index pages, Lance caches
        rss = [round(rss_mib(proc.pid), 1)]
        direct, http_one = interleaved(work / "store", args.memories, base, ids, args.reference)
        rows = [("store.recall in-process", direct), ("HTTP recall, 1 client", http_one),
                ("health (HTTP floor)", run(lambda i: "/api/health", lambda i, r: True, args.requests))]
        for n in range(args.rounds):
            offset = (n + 1) * args.requests
            rows.append((f"recall k={K}, round {n + 1}",
                         run(lambda i, o=offset: recall_path(o + i % args.requests),
                             lambda i, r, o=offset: recall_ok(o + i % args.requests, r), args.requests)))
            rss.append(round(rss_mib(proc.pid), 1))
        info = machine_info()
        lines = [*machine_lines(info),
                 f"store: {args.memories:,} text memories, {D}-d synthetic vectors (encoder excluded), "
                 f"built in {build_s:.1f} s; server: uvicorn, 1 process; {args.clients} concurrent clients (httpx);",
                 "the first two rows alternate the same queries in-process and over HTTP (same load, same moments);",
                 "the store serialises recalls on its lock, so 8-client req/s is bounded by 1 / (recall time)",
                 "",
                 f"{'load':<24}{'requests':>9}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"]
        for name, r in rows:
            lines.append(f"{name:<24}{r['requests']:>9}{r['errors']:>8}{r['rps']:>9.1f}{r['p50_ms']:>9.2f}"
                         f"{r['p99_ms']:>9.2f}{r['max_ms']:>9.2f}")
        growth = rss[-1] - rss[0]
        lines += ["", f"server RSS MiB: after warm-up {rss[0]}, after each recall round "
                  f"{', '.join(map(str, rss[1:]))} (growth {growth:+.1f} MiB)"]
        table = "\n".join(lines)
        log(table)
        out = {"machine": info, "memories": args.memories, "clients": args.clients, "build_s": round(build_s, 2),
               "results": {name: r for name, r in rows}, "rss_mib": rss, "table": table}
        if args.out:
            args.out.write_text(json.dumps(out, indent=1))
        return out
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    result = main()
    errors = sum(r["errors"] for r in result.get("results", {}).values())
    sys.exit(1 if errors else 0)
