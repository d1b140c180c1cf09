"""The EfficientNet-Lite ImageNet classifier: native vs the reference implementation, same run.

    .venv/bin/python benchmarks/bench_image.py [--threads 2,1] [--repeat 5] [--variants lite0,lite1,lite2]

Images/s for one batch of 32 (real photos from scikit-image's wheel when installed, else synthetic
images, cycled to the batch), with the network alone (pixels preprocessed beforehand) and with
preprocessing included (PIL decode-free: the images are already open). The reference
(``efficientnet-lite-pytorch``, installed by the test extra with --no-deps) runs the same pixels in
one 32-image pass, eval mode, ``torch.inference_mode``; it ships no preprocessing, so its "included"
row uses ours. Runs alternate native/reference; each figure is the median of ``--repeat`` runs after
a warm-up. Parity columns compare the two on that batch (fp32). Variants whose weight package is not
installed are left out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

BATCH = 32
PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "astronaut.png")
TARGETS = "lite0 at 2 threads: native >= 1.5x the reference and >= 30 images/s (network only)"


def _images(n: int) -> tuple[list, str]:
    import importlib.util

    import numpy as np
    from PIL import Image

    spec = importlib.util.find_spec("skimage")
    folder = Path(spec.origin).parent / "data" if spec and spec.origin else None
    photos = [Image.open(folder / p).convert("RGB") for p in PHOTOS if folder and (folder / p).is_file()]
    for im in photos:
        im.load()
    if photos:
        sizes = sorted({f"{im.width}x{im.height}" for im in photos})
        return [photos[i % len(photos)] for i in range(n)], f"{len(photos)} scikit-image photos ({', '.join(sizes)})"
    rng = np.random.default_rng(0)
    return ([Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) for _ in range(n)],
            "synthetic 640x480 noise images")


def _reference(variant: str, path: Path):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(f"efficientnet-{variant}")
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def _medians(fns: dict, repeat: int) -> dict[str, float]:
    """Warm each up, then alternate them ``repeat`` times; median seconds per function."""
    for fn in fns.values():
        fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            runs[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in runs.items()}


def variant_rows(variant: str, threads_list: list[int], repeat: int, images: list) -> list[dict]:
    import torch

    from aimemory.encoders.imagenet import ImageClassifier, find_local_classifier

    path = find_local_classifier(variant)
    if path is None:
        return []
    clf = ImageClassifier.from_pretrained(variant)
    ref = _reference(variant, path)
    pixels = clf.preprocess(images)  # (32, 3, S, S), channels-last
    plain = pixels.contiguous()

    def ref_net():
        with torch.inference_mode():
            return ref(plain)

    def ref_full():
        with torch.inference_mode():
            return ref(clf.preprocess(images).contiguous())

    logits, features = clf.classify_pixels(pixels)
    with torch.inference_mode():
        ref_features = ref._avg_pooling(ref.extract_features(plain)).flatten(1)
        ref_logits = ref._fc(ref_features)
    cos = torch.nn.functional.cosine_similarity
    parity = (cos(torch.from_numpy(logits), ref_logits).min().item(),
              cos(torch.from_numpy(features), ref_features).min().item(),
              int((torch.from_numpy(logits).argmax(1) == ref_logits.argmax(1)).sum()))
    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        t = _medians({"net": lambda: clf.classify_pixels(pixels), "ref_net": ref_net,
                      "full": lambda: clf.classify(images), "ref_full": ref_full}, repeat)
        rows.append({"variant": variant, "size": clf.resolution, "threads": threads, "parity": parity,
                     **{k: len(images) / v for k, v in t.items()}})
    return rows


def print_table(rows: list[dict], repeat: int, source: str) -> None:
    print(f"\nEfficientNet-Lite ImageNet classifier, batch {BATCH}, fp32, median of {repeat}; images: {source}\n")
    print("| variant | threads | native net | reference net | ratio | native + preproc | reference + preproc "
          "| ratio | cos logits | cos features | top-1 agree |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c_logits, c_feat, agree = r["parity"]
        print(f"| {r['variant']} ({r['size']} px) | {r['threads']} | {r['net']:.1f} img/s | {r['ref_net']:.1f} img/s "
              f"| {r['net'] / r['ref_net']:.2f}x | {r['full']:.1f} img/s | {r['ref_full']:.1f} img/s "
              f"| {r['full'] / r['ref_full']:.2f}x | {c_logits:.7f} | {c_feat:.7f} | {agree}/{BATCH} |")
    print(f"(ratio = native / reference throughput; target: {TARGETS})")


def main(argv: list[str] | None = None) -> list[dict]:
    import os

    from _machine import machine_lines

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="2,1", help="comma-separated torch thread counts")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--variants", default="lite0,lite1,lite2")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    images, source = _images(BATCH)
    print("\n".join(machine_lines()))
    rows = []
    for variant in args.variants.split(","):
        rows += variant_rows(variant, threads, args.repeat, images)
    print_table(rows, args.repeat, source)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at the end: {load}")
    return rows


if __name__ == "__main__":
    main()
