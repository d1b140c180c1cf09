"""FAISS searches on the GPU against the same index on the CPU: identical results, and the time.

    .venv/bin/python benchmarks/bench_index_gpu.py --out index_gpu.json
    .venv/bin/python benchmarks/bench_index_gpu.py --n-flat 20000 --n-ivf 40000   # smoke

Needs a GPU build of FAISS in place of faiss-cpu and a CUDA GPU; exits at once without them. For a
flat index (exact) and an IVF index (default margin, and 0.05 so queries probe lists of their own),
near and far queries in batches of 1, 16 and 256 run once on the CPU (``place("cpu")``) and once on
the GPU (``place("cuda")``): the top-10 sets and orders are compared and the median time of 5
searches reported. Then the GPU copy is checked to follow changes (an add and a remove, each one
copy again, timed) while a filtered search stays on the CPU, and a saved, memory-mapped IVF index
is copied and compared too.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _vectors import clustered  # noqa: E402

from aimemory.index.faiss import VectorIndex  # noqa: E402

BATCHES = (1, 16, 256)
K = 10
REPS = 5


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _median_ms(fn) -> float:
    fn()  # warm: the GPU copy, the page cache
    times = []
    for _ in range(REPS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 3)


def _compare(index: VectorIndex, queries: np.ndarray) -> dict:
    index.place("cpu")
    cpu_s, cpu_k = index.search(queries, K)
    cpu_ms = _median_ms(lambda: index.search(queries, K))
    index.place("cuda")
    gpu_s, gpu_k = index.search(queries, K)
    gpu_ms = _median_ms(lambda: index.search(queries, K))
    return {"same_set": float(np.mean([set(a.tolist()) == set(b.tolist()) for a, b in zip(cpu_k, gpu_k)])),
            "same_order": float(np.mean(np.all(cpu_k == gpu_k, axis=1))),
            "max_score_diff": float(np.max(np.abs(cpu_s - gpu_s))), "cpu_ms": cpu_ms, "gpu_ms": gpu_ms,
            "device": index.search_device}


def check(name: str, index: VectorIndex, base: np.ndarray, rng: np.random.Generator,
          batches=BATCHES, margins=(None,)) -> dict:
    dim = base.shape[1]
    near = _unit(base[rng.integers(0, len(base), max(batches))]
                 + rng.standard_normal((max(batches), dim)).astype(np.float32) * 0.05)
    far = _unit(rng.standard_normal((max(batches), dim)))
    out: dict = {"kind": index.kind, "vectors": index.ntotal, "nprobe": index.nprobe, "margin": index.margin}
    for margin in margins:
        if margin is not None:
            index.margin = margin
        for label, queries in (("near", near), ("far", far)):
            for b in batches:
                key = f"{label}_b{b}" + ("" if margin is None else f"_margin{margin}")
                out[key] = _compare(index, queries[:b])
                print(name, key, out[key], flush=True)
    clones = index.gpu_clones
    index.search(near[:4], K, np.arange(1, 500, dtype=np.int64))
    out["filtered_stayed_on_cpu"] = index.gpu_clones == clones
    new = _unit(rng.standard_normal((1, dim)))
    index.add(new, np.array([10**9], np.int64))
    start = time.perf_counter()
    found = index.search(new, 1)[1][0, 0]
    out["copy_after_change_ms"] = round(1000 * (time.perf_counter() - start), 1)
    out["added_found"] = bool(found == 10**9) and index.gpu_clones == clones + 1
    index.remove(np.array([10**9], np.int64))
    out["removed_gone"] = bool(index.search(new, 1)[1][0, 0] != 10**9) and index.gpu_clones == clones + 2
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-flat", type=int, default=150_000)
    parser.add_argument("--n-ivf", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if gpus == 0:
        sys.exit("no GPU build of FAISS, or no GPU: install a faiss GPU build in place of faiss-cpu")
    rng = np.random.default_rng(0)
    report: dict = {"faiss": faiss.__version__, "gpus": gpus}
    base = clustered(args.n_flat, args.dim, seed=1)
    flat = VectorIndex.build(base, np.arange(1, len(base) + 1, dtype=np.int64), ann_threshold=args.n_flat + 1)
    report["flat"] = check("flat", flat, base, rng)
    base = clustered(args.n_ivf, args.dim, seed=2)
    start = time.perf_counter()
    ivf = VectorIndex.build(base, np.arange(1, len(base) + 1, dtype=np.int64), ann_threshold=min(args.n_ivf, 200_000))
    report["ivf_build_s"] = round(time.perf_counter() - start, 1)
    report["ivf"] = check("ivf", ivf, base, rng, margins=(None, 0.05))
    with tempfile.TemporaryDirectory() as folder:
        ivf.save(Path(folder), 1)
        loaded = VectorIndex.load(Path(folder))
        assert loaded is not None
        report["ivf_memory_mapped"] = check("ivf-mapped", loaded[0], base, rng, batches=(64,))
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
