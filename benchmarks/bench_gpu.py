"""CLIP ViT-B/32 on an accelerator: the native tower against ``transformers`` on the same device, and
``aimemory remember <folder of photos>`` end to end as a whole process.

    python benchmarks/bench_gpu.py --work /tmp/gpu [--device auto] [--photos 1500] [--sizes 1600x1200,4032x3024]

The checkpoint is ViT-B/32's exact architecture with random weights (built with ``transformers``
and saved as safetensors), unless ``--checkpoint`` names a real one: speed does not depend on the
weights, and parity is checked on the same weights in both implementations. Photos are made from the
bundled real photographs, resized to camera sizes with a little noise, so every file is distinct and
decodes like a camera JPEG. Prints four tables: parity, model throughput, time to the first vector,
and end to end (with the decoding threads on and off, and as ``transformers`` users write it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import machine_lines  # noqa: E402

SAMPLES = ROOT / "aimemory" / "samples" / "real"
MODEL_BATCH = 256  # images per forward in the model-only table
FP32_PARITY = 0.9999  # native vs transformers, same weights, same device, fp32
HALF_CONTRACT = 0.999  # a half-precision forward against fp32


def make_checkpoint(folder: Path, seed: int = 0) -> Path:
    """ViT-B/32 (transformers' CLIPConfig defaults) with random weights, saved as safetensors."""
    import torch
    import transformers

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(seed)
    model = transformers.CLIPModel(transformers.CLIPConfig()).eval()
    with torch.no_grad():  # random init leaves norms at 1 and biases at 0: perturb so all weights matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def _one_photo(job: tuple[int, str, int, int, str]) -> None:
    from PIL import Image

    i, src, w, h, out = job
    rng = np.random.default_rng(i)
    img = Image.open(src).convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-6, 7, (h, w, 3), dtype=np.int16)  # sensor-like noise
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(out, quality=90)


def make_photos(folder: Path, n: int, width: int, height: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.jpg"))) >= n:
        return folder
    sources = sorted(str(p) for p in SAMPLES.glob("*.jpg"))
    jobs = [(i, sources[i % len(sources)], width, height, str(folder / f"IMG_{i:05d}.jpg")) for i in range(n)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_one_photo, jobs, chunksize=8))
    return folder


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_rate(fn, n_items: int, device: str, repeats: int = 10) -> float:
    fn()
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return n_items / float(np.median(times))


def _cos(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def tower_tables(ckpt: Path, placement, photos: list[Path], model_batch: int = MODEL_BATCH) -> list[str]:
    """Parity, model-only throughput and time to first vector, native against transformers."""
    import torch
    from PIL import Image

    from aimemory.device import resolve_placement
    from aimemory.encoders.clip import ClipEncoder

    dev = placement.device
    lines = []
    images = [Image.open(p).convert("RGB") for p in photos[:64]]
    cache = ckpt.parent / "arrow-cache"

    torch.cuda.reset_peak_memory_stats() if dev.startswith("cuda") else None
    t = time.perf_counter()
    native = ClipEncoder.from_pretrained(ckpt, cache_dir=cache).to(placement)
    native.embed_images(images[:1])
    _sync(dev)
    first_native = time.perf_counter() - t
    t = time.perf_counter()
    native = ClipEncoder.from_pretrained(ckpt, cache_dir=cache).to(placement)
    native.embed_images(images[:1])
    _sync(dev)
    first_native_cached = time.perf_counter() - t
    fp32 = ClipEncoder.from_pretrained(ckpt, cache_dir=cache).to(resolve_placement(dev, "fp32"))

    try:
        import transformers
    except ImportError:
        transformers = None
    rows = []
    pixels = native.preprocess(images)  # (64, 3, 224, 224), the same input for both
    ours_fp32 = fp32.embed_images(images)
    ours_half = native.embed_images(images)
    rows.append(("native fp32 vs native " + placement.compute, _cos(ours_fp32, ours_half), HALF_CONTRACT))
    first_hf = float("nan")
    hf = None
    if transformers is not None:
        t = time.perf_counter()
        hf = transformers.CLIPModel.from_pretrained(ckpt).eval().to(dev)
        with torch.inference_mode():
            hf.get_image_features(pixel_values=pixels[:1].to(dev))
        _sync(dev)
        first_hf = time.perf_counter() - t
        with torch.inference_mode():
            ref = _features(hf.get_image_features(pixel_values=pixels.to(dev)))
        rows.append(("native fp32 vs transformers fp32 (images)", _cos(ours_fp32, ref), FP32_PARITY))
        ids = _random_ids(32, hf.config.text_config)
        with torch.inference_mode():
            ref_t = _features(hf.get_text_features(input_ids=ids.to(dev)))
        rows.append(("native fp32 vs transformers fp32 (texts)", _cos(fp32.embed_token_ids(ids), ref_t),
                     FP32_PARITY))
    lines += ["", f"| parity on {dev} | min cosine | contract |", "|---|---|---|"]
    lines += [f"| {name} | {c:.6f} | >= {want} {'met' if c >= want else 'MISSED'} |" for name, c, want in rows]

    batch = pixels.repeat(model_batch // len(pixels) + 1, 1, 1, 1)[:model_batch].to(dev)
    tput = []
    with torch.inference_mode():
        model = native.model
        with placement.autocast():
            tput.append((f"native, {placement.compute} autocast",
                         _median_rate(lambda: model.encode_image(batch), model_batch, dev)))
        if hf is not None:
            with torch.autocast(placement.kind, dtype=placement.dtype, enabled=placement.compute != "fp32"):
                tput.append((f"transformers, {placement.compute} autocast",
                             _median_rate(lambda: hf.get_image_features(pixel_values=batch), model_batch, dev)))
            half = transformers.CLIPModel.from_pretrained(ckpt, dtype=placement.dtype).eval().to(dev)
            tput.append((f"transformers, {placement.compute} weights",
                         _median_rate(lambda: half.get_image_features(pixel_values=batch.to(placement.dtype)),
                                      model_batch, dev)))
        tput.append(("native encoder incl. preprocessing of 64 decoded photos",
                     _median_rate(lambda: native.embed_images(images), len(images), dev, repeats=3)))
    lines += ["", f"| ViT-B/32 images/s on {dev}, batch {model_batch} | images/s |", "|---|---|"]
    lines += [f"| {name} | {rate:,.0f} |" for name, rate in tput]
    peak = f"{torch.cuda.max_memory_allocated() / 2**20:,.0f} MB" if dev.startswith("cuda") else "-"
    lines += ["", "| time to first vector (load + 1 image) | s |", "|---|---|",
              f"| native, first load (converts to the Arrow weight cache) | {first_native:.2f} |",
              f"| native, cached weights (memory-mapped) | {first_native_cached:.2f} |",
              f"| transformers from_pretrained | {first_hf:.2f} |",
              "", f"peak accelerator memory in these tables: {peak}"]
    return lines


def _features(out):
    """transformers 4.x returns a tensor, 5.x may return a model output holding it."""
    import torch

    return (out if torch.is_tensor(out) else out.pooler_output).float().cpu().numpy()


def _random_ids(n: int, cfg):
    import torch

    g = torch.Generator().manual_seed(1)
    ctx, vocab = cfg.max_position_embeddings, cfg.vocab_size
    ids = torch.zeros(n, ctx, dtype=torch.long)
    for r in range(n):
        k = int(torch.randint(1, ctx - 2, (1,), generator=g))
        ids[r, 0] = vocab - 2
        ids[r, 1:k + 1] = torch.randint(1, vocab - 2, (k,), generator=g)
        ids[r, k + 1] = vocab - 1  # end of text: the largest id
    return ids


def end_to_end(ckpt: Path, folder: Path, work: Path, *, threads: int | None, batch: int | None, tag: str) -> tuple:
    """``aimemory remember folder --model ckpt`` as a whole process; -> (label, files, seconds)."""
    store = work / f"store-{tag}"
    shutil.rmtree(store, ignore_errors=True)  # a store that holds the photos would skip them
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("AIMEMORY_DECODE_THREADS", None)
    env["AIMEMORY_WEIGHTS_CACHE"] = str(ckpt.parent / "arrow-cache")  # converted by the tower tables
    if threads is not None:
        env["AIMEMORY_DECODE_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "aimemory", "remember", str(folder), "--model", str(ckpt), "--store", str(store),
           "--json", "--no-ocr", "--speech", "none", "--sound", "none"]
    if batch:
        cmd += ["--batch-size", str(batch)]
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"remember failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    stored = int(report["new"])
    return stored, seconds


def _subset(folder: Path, n: int) -> Path:
    """A folder of links to the first ``n`` photos of ``folder``."""
    few = folder.with_name(folder.name + f"-first{n}")
    few.mkdir(exist_ok=True)
    for f in sorted(folder.glob("*.jpg"))[:n]:
        if not (few / f.name).exists():
            (few / f.name).symlink_to(f)
    return few


def hf_loop(ckpt: Path, folder: Path, device: str, batch: int = 32) -> tuple[int, float]:
    """What a transformers user writes: PIL decode, CLIPImageProcessor, get_image_features, per batch."""
    import torch
    import transformers
    from PIL import Image

    files = sorted(folder.glob("*.jpg"))
    t = time.perf_counter()
    model = transformers.CLIPModel.from_pretrained(ckpt).eval().to(device)
    proc = transformers.CLIPImageProcessor()
    with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=torch.float16,
                                                enabled=device.startswith("cuda")):
        for i in range(0, len(files), batch):
            images = [Image.open(f).convert("RGB") for f in files[i:i + batch]]
            pixels = proc(images=images, return_tensors="pt")["pixel_values"].to(device)
            _features(model.get_image_features(pixel_values=pixels))
    return len(files), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--photos", type=int, default=1500)
    ap.add_argument("--sizes", default="1600x1200,4032x3024")
    ap.add_argument("--slow-photos", type=int, default=250, help="photos for the single-thread runs")
    ap.add_argument("--model-batch", type=int, default=MODEL_BATCH)
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--skip-towers", action="store_true", help="end to end only")
    ap.add_argument("--skip-slow", action="store_true", help="no single-thread and transformers-loop runs")
    ap.add_argument("--allow-cpu", action="store_true",
                    help="run on the CPU when there is no accelerator (the CPU figures live in bench_clip.py)")
    args = ap.parse_args()

    from aimemory.device import describe, resolve_placement

    placement = resolve_placement(args.device)
    print(f"device: {describe(placement)}, compute {placement.compute} ({placement.why})")
    if placement.is_cpu and not args.allow_cpu:  # it would run for an hour on 2 cores and measure nothing new
        sys.exit("no CUDA or Apple GPU here: this benchmark is for an accelerator (bench_clip.py measures the "
                 "CPU); pass --allow-cpu to run it anyway")
    for line in machine_lines():
        print(line)
    args.work.mkdir(parents=True, exist_ok=True)
    ckpt = args.checkpoint or make_checkpoint(args.work / "clip-vit-b-32-random")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",") if s]
    t = time.perf_counter()
    folders = [make_photos(args.work / f"photos-{w}x{h}", args.photos, w, h) for w, h in sizes]
    print(f"photos made in {time.perf_counter() - t:.1f} s")
    if args.skip_towers:  # the tower tables convert the weights once; do it here instead
        from aimemory.encoders.clip import ClipEncoder

        ClipEncoder.from_pretrained(ckpt, cache_dir=ckpt.parent / "arrow-cache")
    lines = [] if args.skip_towers else tower_tables(ckpt, placement, sorted(folders[0].glob("*.jpg")),
                                                     args.model_batch)
    if not args.skip_e2e:
        lines += ["", "| end to end, whole process | photo size | photos | s | images/s |", "|---|---|---|---|---|"]
        for (w, h), folder in zip(sizes, folders):
            few = _subset(folder, args.slow_photos)  # the slow variants on fewer photos
            runs = [("`aimemory remember DIR` (defaults)", None, None, "default", folder),
                    ("same, --batch-size 256", None, 256, "b256", folder),
                    ("same, decoding threads off ($AIMEMORY_DECODE_THREADS=1)", 1, None, "t1", few)]
            runs = runs[:2] if args.skip_slow else runs
            for label, threads, batch, tag, where in runs:
                n, s = end_to_end(ckpt, where, args.work, threads=threads, batch=batch, tag=f"{tag}-{w}")
                lines.append(f"| {label} | {w}x{h} | {n} | {s:.1f} | {n / s:,.1f} |")
                print(lines[-1], flush=True)
            try:
                if args.skip_slow:
                    continue
                n, s = hf_loop(ckpt, few, placement.device)
                lines.append(f"| transformers loop (decode, processor, model; no store) | {w}x{h} | {n} | {s:.1f} "
                             f"| {n / s:,.1f} |")
            except ImportError:
                pass
    print("\n".join(lines))


if __name__ == "__main__":
    main()
