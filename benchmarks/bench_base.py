"""The pretrained offline model (``aimemory-base``) end to end, beside the built-in ``aimemory-mini``:

    .venv/bin/python benchmarks/bench_base.py [--images 64] [--threads 2] [--runs 5]

- images/s through ``Encoder.views`` (decode excluded; every view: the label placement over two crops,
  the appearance view, the drawing view), and the classifier alone on one crop;
- one text query (all of its query plans), median of 50 after warm-up;
- whole process: ``aimemory recall "a cat"`` on a small store of each model, cold, A/B interleaved,
  median wall and CPU seconds (imports and model loading included).
The images are the bundled real photographs, repeated. Machine info is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import machine_lines  # noqa: E402

PHOTOS = ROOT / "aimemory" / "samples" / "real"


def _images(n: int) -> list:
    from aimemory.inputs import path_item

    files = sorted(PHOTOS.glob("*.jpg"))
    return [path_item(files[i % len(files)]).payload for i in range(n)]


def _rate(fn, items, repeats: int = 2) -> float:
    fn(items[:4])  # warm-up: lazy loading and first-call allocations
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        fn(items)
        best = max(best, len(items) / (time.perf_counter() - t))
    return best


def _query_ms(encoder, text: str = "a cup of coffee on a table", n: int = 50) -> float:
    def encode() -> None:
        for plan in encoder.query_plans("text", text):
            np.asarray(plan.vector)  # plans may compute their vectors on first use

    for _ in range(5):
        encode()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        encode()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def _process(cmd: list[str], env: dict) -> tuple[float, float]:
    t = time.perf_counter()
    before = os.times()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return time.perf_counter() - t, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5, help="whole-process runs per model")
    args = ap.parse_args()
    import torch

    from aimemory.encoders.registry import load_encoder

    torch.set_num_threads(args.threads)
    images = _images(args.images)
    rows = []
    for model in ("aimemory-base", "aimemory-mini"):
        enc = load_encoder(model)
        rate = _rate(lambda xs, e=enc: e.views("image", xs), images)
        rows.append((model, "images/s, all views", f"{rate:.1f}"))
        if model == "aimemory-base":
            classifier = enc.image_tower[0]
            rows.append((model, "images/s, classifier on one crop", f"{_rate(classifier.classify, images):.1f}"))
        rows.append((model, "one text query, ms (median of 50)", f"{_query_ms(enc):.2f}"))
    env = {**os.environ, "AIMEMORY_SPEECH": "0"}
    exe = str(Path(sys.executable).with_name("aimemory"))
    walls: dict[str, list[float]] = {"aimemory-base": [], "aimemory-mini": []}
    cpus: dict[str, list[float]] = {"aimemory-base": [], "aimemory-mini": []}
    with tempfile.TemporaryDirectory() as tmp:
        for model in walls:
            subprocess.run([exe, "remember", str(PHOTOS / "cat.jpg"), str(PHOTOS / "coffee.jpg"),
                            "--store", f"{tmp}/{model}", "--model", model], env=env, check=True, capture_output=True)
        for _ in range(args.runs):
            for model in walls:  # A/B interleaved: drift in the machine's speed hits both alike
                wall, cpu = _process([exe, "recall", "a cat", "--store", f"{tmp}/{model}"], env)
                walls[model].append(wall)
                cpus[model].append(cpu)
    for model in walls:
        rows.append((model, "process: recall 'a cat', wall s (median)", f"{statistics.median(walls[model]):.2f}"))
        rows.append((model, "process: recall 'a cat', CPU s (median)", f"{statistics.median(cpus[model]):.2f}"))
    ratio = statistics.median(b / m for b, m in zip(cpus["aimemory-base"], cpus["aimemory-mini"]))
    rows.append(("base / mini", "process CPU s ratio (median of pairs)", f"{ratio:.2f}"))
    print("\n".join(machine_lines()))
    print(f"threads: {args.threads}, images: {args.images} (bundled real photographs, repeated)\n")
    width = max(len(r[1]) for r in rows)
    print(f"{'model':<15}{'measure':<{width + 2}}value")
    for model, what, value in rows:
        print(f"{model:<15}{what:<{width + 2}}{value}")


if __name__ == "__main__":
    main()
