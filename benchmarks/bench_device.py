"""Every tower on a device, in its compute precision, against the same tower in fp32 on the CPU:

    .venv/bin/python benchmarks/bench_device.py [--device auto] [--compute fp16] [--images 256]

Per tower: cosine of the device's vectors against CPU fp32 (min over the inputs; the contract is
>= 0.999), throughput (images/s, texts/s, clips/s), time to the first vector after loading, and
peak accelerator memory. On a CPU-only machine it measures CPU autocast (bf16 / fp16) instead, which
tells how each tower tolerates half precision but not GPU speed. Towers: aimemory-base's sentence
model and ImageNet classifier (with its drawing tower, aimemory-mini), and Whisper when installed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import machine_lines  # noqa: E402

PHOTOS = ROOT / "aimemory" / "samples" / "real"
TEXTS = ["a cat asleep on a sofa", "the sound of rain on a tin roof", "meeting notes about the budget",
         "a red bicycle leaning on a brick wall", "children playing football in a park"]


def _images(n: int) -> list:
    from aimemory.inputs import path_item

    files = sorted(PHOTOS.glob("*.jpg"))
    return [path_item(files[i % len(files)]).payload for i in range(n)]


def _sync(placement) -> None:
    import torch

    if placement.kind == "cuda":
        torch.cuda.synchronize(placement.torch_device)


def _timed(fn, items, placement) -> tuple[float, np.ndarray]:
    fn(items[:2])  # warm-up: lazy loading, kernel selection
    _sync(placement)
    t = time.perf_counter()
    out = fn(items)
    _sync(placement)
    return len(items) / (time.perf_counter() - t), out


def _peak_mb(placement) -> str:
    import torch

    if placement.kind != "cuda":
        return "-"
    return f"{torch.cuda.max_memory_allocated(placement.torch_device) / 2**20:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compute", default=None, help="fp32 / fp16 / bf16 (default: fp16 on a GPU, bf16 on CPU)")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--texts", type=int, default=256)
    args = ap.parse_args()

    import torch

    from aimemory.device import CPU, describe, resolve_placement
    from aimemory.encoders.offline import OfflineEncoder

    placement = resolve_placement(args.device, args.compute or (None if args.device != "cpu" else "bf16"))
    if placement.is_cpu and placement.compute == "fp32" and args.compute is None:
        placement = resolve_placement("cpu", "bf16")  # CPU-only machine: measure half precision there
    print(f"device: {describe(placement)}, compute {placement.compute} ({placement.why})")
    for line in machine_lines():
        print(line)

    t = time.perf_counter()
    reference = OfflineEncoder.load()
    moved = reference.to(placement)
    _ = moved.embed_texts(TEXTS[:1])
    first_text = time.perf_counter() - t
    images = _images(args.images)
    texts = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(args.texts)]

    rows = []
    rate, out = _timed(moved.embed_texts, texts, placement)
    cos = float((out * reference.embed_texts(texts)).sum(1).min())
    rows.append(("sentence (MiniLM-L6)", f"{rate:.0f} texts/s", cos, f"{first_text:.2f}"))

    t = time.perf_counter()
    moved.views("image", images[:1])
    first_image = time.perf_counter() - t
    rate, out = _timed(lambda xs: moved.views("image", xs), images, placement)
    ref = reference.views("image", images)
    for k, name in enumerate(("image label view (EfficientNet-Lite0)", "image appearance view",
                              "image drawing view (mini)")):
        a = np.stack([v[k].vector for v in out])
        b = np.stack([v[k].vector for v in ref])
        rows.append((name, f"{rate:.1f} images/s" if k == 0 else "(same pass)",
                     float((a * b).sum(1).min()), f"{first_image:.2f}" if k == 0 else ""))

    from aimemory.speech import SpeechRecognizer, find_local_speech_model

    found = find_local_speech_model()
    if found is not None:
        from aimemory.inputs import Audio

        rec = SpeechRecognizer.from_pretrained(found)
        mel = torch.randn(1, rec.model.dims.n_mels, 3000)
        with torch.inference_mode():
            a = rec.model.encoder(mel)[0].mean(0)
            dev = rec.to(placement)
            with dev._autocast():
                b = placement.back(dev.model.encoder(placement.put(mel))[0].mean(0))
        cos = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        wave = Audio(np.random.default_rng(0).standard_normal(16000 * 30).astype(np.float32) * 0.1, 16000)
        _sync(placement)
        t = time.perf_counter()
        dev.transcribe(wave)
        _sync(placement)
        rows.append(("whisper-base encoder (30 s window)", f"{30 / (time.perf_counter() - t):.1f}x real time",
                     cos, ""))

    print()
    print(f"| tower | throughput on {placement.device} | min cosine vs CPU fp32 | first vector s |")
    print("|---|---|---|---|")
    for name, rate, cos, first in rows:
        print(f"| {name} | {rate} | {cos:.5f} | {first} |")
    print(f"\npeak accelerator memory MB: {_peak_mb(placement)}; contract: cosine >= 0.999 "
          f"({'met' if min(r[2] for r in rows) >= 0.999 else 'MISSED'}); reference is {CPU.device} fp32")


if __name__ == "__main__":
    main()
