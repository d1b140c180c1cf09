"""Scale benchmark: ingest throughput (one process vs Ray with 2 workers), recall latency of a
store on S3 (moto's S3 server on 127.0.0.1) vs a local one, and Lance ANN vs FAISS recall@10 and
latency on clustered, embedding-shaped vectors.

    .venv/bin/python benchmarks/bench_scale.py --ann-n 100000 --dim 512
    .venv/bin/python benchmarks/bench_scale.py --skip-ray --skip-remote   # ANN only

Each section prints one table row per measurement; the header states the machine."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import machine_lines  # noqa: E402
from _vectors import LookupEncoder, clustered, exact_top, view_rows  # noqa: E402

os.environ.setdefault("AIMEMORY_SPEECH", "0")


def row(*cells) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def _files(folder: Path, n_text: int, n_images: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    words = "cat dog guitar pizza beach mountain city car river forest night market".split()
    out = []
    for i in range(n_text):
        p = folder / f"t{i:05d}.txt"
        p.write_text(" ".join(rng.choice(words, 12)) + f" #{i}")
        out.append(p)
    for i in range(n_images):
        p = folder / f"i{i:05d}.png"
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def bench_ingest(model: str, n_text: int, n_images: int, workers: int) -> None:
    from aimemory import MemoryStore

    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    files = _files(tmp / "files", n_text, n_images)
    t = time.perf_counter()
    with MemoryStore(tmp / "single", model=model, speech_model=None) as s:
        s.remember_many(files, batch_size=64)
    single = time.perf_counter() - t
    row("ingest", f"single process, {model}", len(files), f"{len(files) / single:.1f} items/s", f"{single:.1f} s")
    try:
        import ray

        from aimemory.distributed import ingest
    except ImportError as exc:
        row("ingest", "ray", "-", f"skipped: {exc}", "-")
        return
    ray.init(num_cpus=max(2, workers), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                                       "AIMEMORY_SPEECH": "0"}})
    t0 = time.perf_counter()
    ray.data.from_items([1]).map(lambda r: r).take_all()  # start-up, reported apart
    startup = time.perf_counter() - t0
    t = time.perf_counter()
    report = ingest(tmp / "files", str(tmp / "ray"), model=model, num_workers=workers, block_items=64)
    took = time.perf_counter() - t
    row("ingest", f"Ray Data, {workers} encoder actors, {model}", report.stored,
        f"{report.stored / took:.1f} items/s", f"{took:.1f} s (+{startup:.1f} s Ray start-up)")
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


def _moto():
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x",
                 aws_secret_access_key="x").create_bucket(Bucket="bench")
    options = {"aws_endpoint": endpoint, "allow_http": "true", "aws_region": "us-east-1",
               "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    return server, options


def _latency(store, queries: int = 50) -> tuple[float, float]:
    times = []
    for i in range(queries):
        t = time.perf_counter()
        store.recall(f"v{i * 7}", k=10)
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


def bench_remote(n: int, dim: int) -> None:
    from aimemory import MemoryStore

    tmp = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    os.environ["AIMEMORY_CACHE_DIR"] = str(tmp / "cache")
    vectors = clustered(n, dim, seed=5)
    enc = LookupEncoder(vectors)
    server, options = _moto()
    try:
        for where, uri, opts, index in [("local", str(tmp / "local"), None, "auto"),
                                        ("local", str(tmp / "local-lance"), None, "lance"),
                                        ("S3 (moto, 127.0.0.1)", "s3://bench/mem", options, "auto")]:
            t = time.perf_counter()
            store = MemoryStore(uri, model=enc, storage_options=opts, index=index, speech_model=None)
            store.table.add(view_rows(vectors))  # the fast way in; then reopen to load it
            store.close()
            store = MemoryStore(uri, model=enc, storage_options=opts, index=index, speech_model=None)
            store.rebuild_index()
            load = time.perf_counter() - t
            p50, p99 = _latency(store)
            row("recall latency", f"{where}, index {store.index.kind}", n, f"p50 {p50:.1f} ms",
                f"p99 {p99:.1f} ms (load+index {load:.0f} s)")
            store.close()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def bench_ann(n: int, dim: int, types: list[str], queries: int = 200, faiss_rows: bool = True) -> None:
    from aimemory.index import VectorIndex, recall_at_k
    from aimemory.index.lance import AnnParams, LanceIndex
    from aimemory.storage import VectorTable

    allv = clustered(n + queries, dim, seed=7)
    base, q = allv[:n], allv[n:]
    truth = exact_top(base, q, 10) + 1
    keys = np.arange(1, n + 1, dtype=np.int64)
    for threshold in (n + 1, 0) if faiss_rows else ():  # exact, then IVF with nprobe tuned at build
        t = time.perf_counter()
        index = VectorIndex.build(base, keys, ann_threshold=threshold)
        build = time.perf_counter() - t
        t = time.perf_counter()
        got = np.concatenate([index.search(q[i:i + 1], 10)[1] for i in range(len(q))])
        lat = (time.perf_counter() - t) / len(q) * 1000
        row("ANN", f"FAISS {index.kind} nprobe={index.nprobe}", n, f"recall@10 {recall_at_k(got, truth):.3f}",
            f"{lat:.2f} ms/query, build {build:.0f} s")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ann-"))
    table = VectorTable(tmp, dim)
    for start in range(0, n, 100_000):
        table.add(view_rows(base[start:start + 100_000], start_vkey=start + 1))
    for itype in types:
        params = AnnParams.for_size(n, dim, itype)
        lance = LanceIndex(table, dim, n, itype)
        t = time.perf_counter()
        lance.build(params, tune=False)
        build = time.perf_counter() - t
        t = time.perf_counter()
        lance.tune()  # what the store does after every build: walk the search ladder to the target
        row("ANN", f"Lance {itype} auto-tuning ({len(q)} held-out queries not used)", n,
            f"{time.perf_counter() - t:.0f} s", "one streamed exact pass + ladder steps")
        variants = [("size-based defaults", params), ("auto-tuned", lance.params)]
        if itype == "IVF_PQ":
            variants.append(("Lance defaults (nprobes 20, no refine)",
                             AnnParams(itype, params.num_partitions, params.num_sub_vectors, 20, 0)))
        for label, p in variants:
            lance.params = p
            t = time.perf_counter()
            _, got = lance.search(q, 10)
            lat = (time.perf_counter() - t) / len(q) * 1000
            row("ANN", f"Lance {itype} {label}: partitions={p.num_partitions} m={p.num_sub_vectors} "
                f"nprobes={p.nprobes} refine={p.refine_factor} ef={p.ef}", n,
                f"recall@10 {recall_at_k(got, truth):.3f}", f"{lat:.2f} ms/query, build {build:.0f} s")
    table.close()
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="aimemory-mini")
    ap.add_argument("--texts", type=int, default=400)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--remote-n", type=int, default=20_000)
    ap.add_argument("--ann-n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--types", default="IVF_PQ,IVF_HNSW_SQ")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-remote", action="store_true")
    ap.add_argument("--skip-ann", action="store_true")
    ap.add_argument("--skip-faiss-ann", action="store_true", help="ANN section: Lance rows only")
    args = ap.parse_args()
    for line in machine_lines():
        print(line)
    row("section", "what", "n", "result", "detail")
    row("---", "---", "---", "---", "---")
    if not args.skip_ray:
        bench_ingest(args.model, args.texts, args.images, args.workers)
    if not args.skip_remote:
        bench_remote(args.remote_n, args.dim)
    if not args.skip_ann:
        bench_ann(args.ann_n, args.dim, args.types.split(","), faiss_rows=not args.skip_faiss_ann)


if __name__ == "__main__":
    main()
