"""Held-out evaluation of aimemory-mini through the public encoder (front end included).

Held out = background styles never seen in training (checker, blobs, grain), espeak voice variants
never seen (m4, m7, f4, klatt3, plus the en-029 accent), and a query template never seen
("a drawing of a cat"). Needs the arrays from training/build_data.py.

    python benchmarks/eval_mini.py                         # print the table
    python benchmarks/eval_mini.py --write                 # + eval.json and tests/data subset
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from aimemory.encoders.mini import MODEL_DIR, MiniEncoder  # noqa: E402
from aimemory.inputs import Audio  # noqa: E402

SEED = 7
SUBSET = 100  # the smaller gallery, concepts drawn once with SEED
TEST_IMAGES, TEST_CLIPS = 64, 32  # the tiny committed subset the default test suite re-scores
TEST_FILE = ROOT / "tests" / "data" / "mini_heldout.npz"


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def recall(q: np.ndarray, g: np.ndarray, k: int) -> float:
    """Query i's match is gallery row i: fraction with the match in the top k by cosine."""
    sims = q @ g.T
    rank = (sims > sims[np.arange(len(q)), np.arange(len(q))][:, None]).sum(1)
    return float((rank < k).mean())


def score(enc: MiniEncoder, images: list, names: list[str], wavs: list[np.ndarray]) -> dict:
    """The card's metrics for one aligned set: image i, name i and clip i (if any) are concept i."""
    from PIL import Image

    img = enc.embed_images([Image.fromarray(a) for a in images])
    txt = enc.embed_texts([f"{article(n)} {n}" for n in names])
    unseen = enc.embed_texts([f"a drawing of {article(n)} {n}" for n in names])
    out = {
        "text->image R@1": recall(txt, img, 1), "text->image R@5": recall(txt, img, 5),
        "text(unseen template)->image R@5": recall(unseen, img, 5),
        "image->text top-1": recall(img, txt, 1),
        "gallery": len(names),
    }
    if wavs:
        n = len(wavs)
        aud = enc.query_vectors("audio", [Audio(w.astype(np.float32) / 32767, 16000) for w in wavs])
        out |= {"speech->image R@5": recall(aud, img[:n], 5), "text->speech R@5": recall(txt[:n], aud, 5),
                "speech->image R@1": recall(aud, img[:n], 1), "audio gallery": n}
    return out


def twemoji_probe(enc: MiniEncoder, concepts: list[dict], ids: list[int]) -> dict | None:
    """Out-of-style probe: the same concepts drawn by another artist (Twemoji, CC-BY 4.0, eval only)
    on held-out backgrounds. Needs ``npm pack emoji-datasource-twitter@16.0.0`` unpacked in data/src."""
    sys.path.insert(0, str(ROOT / "training"))
    from build_data import HELDOUT_BACKGROUNDS, SRC, background, paste
    from PIL import Image

    folder = SRC / "emoji-datasource-twitter" / "package" / "img" / "twitter" / "64"
    ids = [c for c in ids if concepts[c]["kind"] == "emoji" and (folder / concepts[c]["image"]).exists()]
    if not ids:
        return None
    rng = np.random.default_rng(SEED)
    images = []
    for c in ids:
        canvas = background(HELDOUT_BACKGROUNDS[int(rng.integers(3))], rng)
        paste(canvas, Image.open(folder / concepts[c]["image"]).convert("RGBA"), int(rng.integers(36, 56)),
              32, 32, 0, False)
        images.append(np.clip(canvas, 0, 255).astype(np.uint8))
    return score(enc, images, [concepts[c]["name"] for c in ids], [])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT / "training" / "data" / "full")
    ap.add_argument("--model", type=Path, default=MODEL_DIR, help="folder with model.safetensors + config.json")
    ap.add_argument("--write", action="store_true", help="write eval.json next to the weights + the test subset")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    if not (args.data / "meta.json").exists():
        sys.exit(f"no evaluation arrays in {args.data}: build them first with `python training/build_data.py` "
                 "(see training/README.md), or pass --data")
    meta = json.loads((args.data / "meta.json").read_text())
    concepts = meta["concepts"]
    C = len(concepts)
    imgs_all = np.load(args.data / "eval_single_images.npy")
    wav_file = np.load(args.data / "eval_speech_wavs.npz")
    first_img, first_clip = {}, {}
    for k, c in enumerate(meta["eval_single"]):
        first_img.setdefault(c, k)
    for k, c in enumerate(meta["eval_speech_concept"]):
        first_clip.setdefault(c, k)
    enc = MiniEncoder.load(args.model)
    t0 = time.time()
    names = [c["name"] for c in concepts]
    images = [imgs_all[first_img[c]] for c in range(C)]
    wavs = [wav_file[f"arr_{first_clip[c]}"] for c in range(C)]
    results = {f"all {C} concepts": score(enc, images, names, wavs)}
    sub = np.random.default_rng(SEED).choice(C, SUBSET, replace=False)
    results[f"{SUBSET} concepts"] = score(enc, [images[i] for i in sub], [names[i] for i in sub],
                                          [wavs[i] for i in sub])

    # multi-object scenes (held-out backgrounds): caption -> scene image
    from PIL import Image

    scenes = np.load(args.data / "eval_scene_images.npy")
    caps = meta["eval_scene_captions"]
    simg = enc.embed_images([Image.fromarray(a) for a in scenes])
    stxt = enc.embed_texts(caps)
    results[f"{len(caps)} scenes"] = {"text->image R@1": recall(stxt, simg, 1),
                                     "text->image R@5": recall(stxt, simg, 5),
                                     "image->text top-1": recall(simg, stxt, 1), "gallery": len(caps)}

    for label, ids in (("Twemoji style, all emoji", list(range(C))), ("Twemoji style, 100-concept subset", list(sub))):
        probe = twemoji_probe(enc, concepts, ids)
        if probe:
            results[label] = probe

    test_sub = np.random.default_rng(SEED + 1).choice(C, TEST_IMAGES, replace=False)
    t_imgs = np.stack([images[i] for i in test_sub])
    t_names = [names[i] for i in test_sub]
    t_wavs = [wavs[i] for i in test_sub[:TEST_CLIPS]]
    results[f"test subset ({TEST_IMAGES} images, {TEST_CLIPS} clips)"] = score(enc, list(t_imgs), t_names, t_wavs)
    print(f"eval took {time.time() - t0:.1f}s\n")

    keys = ["text->image R@1", "text->image R@5", "text(unseen template)->image R@5", "image->text top-1",
            "speech->image R@1", "speech->image R@5", "text->speech R@5"]
    print("| set | gallery | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for name, r in results.items():
        gal = f"{r['gallery']}" + (f" / {r['audio gallery']} clips" if "audio gallery" in r else "")
        print(f"| {name} | {gal} | " + " | ".join(f"{r[k]:.3f}" if k in r else "-" for k in keys) + " |")
    if args.write:
        (MODEL_DIR / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
        TEST_FILE.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.array([len(w) for w in t_wavs])
        np.savez_compressed(TEST_FILE, images=t_imgs, names=np.array(t_names), wavs=np.concatenate(t_wavs),
                            wav_lengths=lengths)
        print(f"wrote {MODEL_DIR / 'eval.json'} and {TEST_FILE} ({TEST_FILE.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
