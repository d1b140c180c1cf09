"""Retrieval quality of an encoder on the real-world corpus (benchmarks/real_corpus.py): real
photographs, recorded sounds and human speech, scored on the ``test`` split by default.

    python benchmarks/eval_real.py --model aimemory-mini            # builds the corpus if missing
    python benchmarks/eval_real.py --model aimemory-mini --small    # the CI subset
    python benchmarks/eval_real.py --model openai/clip-vit-base-patch32 --split tune --json out.json

Any object with ``embed_texts(list[str]) -> (n, d)`` and ``embed_images(list[PIL.Image]) -> (n, d)``
(unit rows) can be scored through :func:`evaluate`; audio metrics need
``query_vectors("audio", [aimemory.Audio])`` too and are left out when it is missing or refuses.

Metrics. "strict": the query's own item must be ranked within k (ties count in the query's favour).
"same concept": any item of the query's concept (all photos captioned "a flower") counts.
"same label": leave-one-out photo->photo search, a hit when a top-k neighbour has the query's
coarse label (bird, tool, building...), scored over photos whose label has another member.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from real_corpus import build, default_cache, load_manifest  # noqa: E402

KS = (1, 5)
BATCH = 32  # images/clips decoded and embedded per call, to bound memory


def strict_recall(sims: np.ndarray, target: np.ndarray, k: int) -> float:
    """sims (q, g), target (q,) gallery index: share of queries with fewer than k items above it."""
    own = sims[np.arange(len(sims)), target][:, None]  # (q, 1)
    return float(((sims > own).sum(1) < k).mean())


def relevant_recall(sims: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """sims, relevant (q, g): share of queries whose top k (stable order) holds a relevant item."""
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # (q, k)
    return float(np.take_along_axis(relevant, top, axis=1).any(axis=1).mean())


def random_recall(relevant: np.ndarray, k: int) -> float:
    """What a random ranking scores on ``relevant_recall``."""
    return random_recall_counts(relevant.sum(1), relevant.shape[1], k)


def random_recall_counts(r: np.ndarray, g: int, k: int) -> float:
    """Mean over queries of 1 - P(none of r relevant items among k drawn from g)."""
    r = np.asarray(r, dtype=np.float64)  # (q,)
    miss = np.ones_like(r)
    for i in range(min(k, g)):
        miss *= np.clip(g - r - i, 0, None) / (g - i)
    return float((1 - miss).mean())


def concept_recall(sims: np.ndarray, q_keys: Sequence[str], g_keys: Sequence[str], k: int) -> float:
    """Share of queries whose top k holds a gallery item with the query's key."""
    return relevant_recall(sims, np.asarray(q_keys, object)[:, None] == np.asarray(g_keys, object)[None, :], k)


def same_concept(queries: list[dict], gallery: list[dict]) -> np.ndarray:
    """(q, g) bool: same concept, or the very same caption."""
    def eq(field: str) -> np.ndarray:
        return np.asarray([r[field] for r in queries], object)[:, None] == \
            np.asarray([r[field] for r in gallery], object)[None, :]
    return eq("concept") | eq("caption")


def _images(rows: list[dict]) -> list:
    from PIL import Image

    out = []
    for r in rows:
        with Image.open(r["path"]) as im:
            out.append(im.convert("RGB"))
    return out


def _audio(rows: list[dict]) -> list:
    import soundfile as sf

    from aimemory.inputs import Audio

    clips = []
    for r in rows:
        y, sr = sf.read(r["path"], dtype="float32")
        clips.append(Audio(y, sr))
    return clips


def _embed(fn, rows: list[dict], load) -> np.ndarray:
    parts = [np.asarray(fn(load(rows[s: s + BATCH])), dtype=np.float32) for s in range(0, len(rows), BATCH)]
    return np.concatenate(parts)


def _audio_vectors(encoder: Any, rows: list[dict]) -> np.ndarray | None:
    if not rows or not hasattr(encoder, "query_vectors"):
        return None
    try:
        return _embed(lambda clips: encoder.query_vectors("audio", clips), rows, _audio)
    except Exception as exc:  # an encoder without an audio tower says so by raising
        print(f"audio metrics skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def evaluate(encoder: Any, manifest: "str | Path | list[dict]", split: str = "test") -> dict:
    """All metrics for one encoder on one split of a manifest (a path or its loaded rows)."""
    rows = load_manifest(manifest, split) if isinstance(manifest, (str, Path)) else \
        [r for r in manifest if split in (None, "all") or r["split"] == split]
    photos = [r for r in rows if r["modality"] == "image"]
    sounds = [r for r in rows if r["modality"] == "sound"]
    speech = [r for r in rows if r["modality"] == "speech"]
    out: dict[str, float | int] = {"photos": len(photos), "sounds": len(sounds), "speech clips": len(speech)}
    img = None
    if photos:
        img = _embed(encoder.embed_images, photos, _images)  # (p, d)
        cap = np.asarray(encoder.embed_texts([r["caption"] for r in photos]), dtype=np.float32)
        sims = cap @ img.T  # (p, p)
        rel = same_concept(photos, photos)
        for k in KS:
            out[f"text->photo R@{k} strict"] = strict_recall(sims, np.arange(len(photos)), k)
            out[f"text->photo R@{k} same concept"] = relevant_recall(sims, rel, k)
        out["chance R@5 same concept (photos)"] = random_recall(rel, 5)
        labels = [r["label"] for r in photos]
        counts = {lab: labels.count(lab) for lab in set(labels)}
        keep = np.array([counts[lab] > 1 for lab in labels])
        if keep.any():
            pp = img @ img.T
            out["photo->photo R@5 same label"] = _subset_loo(pp, labels, keep)
            out["photo->photo queries"] = int(keep.sum())
            others = np.array([counts[lab] - 1 for lab in labels])[keep]  # same-label neighbours
            out["chance photo->photo R@5 same label"] = random_recall_counts(others, len(photos) - 1, 5)
        out["chance R@5 (photos)"] = min(1.0, 5 / len(photos))
    snd = _audio_vectors(encoder, sounds)
    if snd is not None:
        txt = np.asarray(encoder.embed_texts([r["caption"] for r in sounds]), dtype=np.float32)
        sims = txt @ snd.T
        for k in KS:
            out[f"text->sound R@{k} strict"] = strict_recall(sims, np.arange(len(sounds)), k)
        out["text->sound R@5 same concept"] = relevant_recall(sims, same_concept(sounds, sounds), 5)
        out["chance R@5 (sounds)"] = min(1.0, 5 / len(sounds))
    pairs = [r for r in speech if img is not None and r["concept"] in {p["concept"] for p in photos}]
    spk = _audio_vectors(encoder, pairs)
    if spk is not None and img is not None:
        sims = spk @ img.T
        rel = same_concept(pairs, photos)
        for k in KS:
            out[f"speech->photo R@{k} same concept"] = relevant_recall(sims, rel, k)
        out["speech->photo queries"] = len(pairs)
    prompts = [r for r in speech if r not in pairs]
    spv = _audio_vectors(encoder, prompts)
    if spv is not None:
        txt = np.asarray(encoder.embed_texts([r["caption"] for r in prompts]), dtype=np.float32)
        sims = spv @ txt.T
        for k in KS:
            out[f"speech->transcript R@{k} strict"] = strict_recall(sims, np.arange(len(prompts)), k)
        out["chance R@5 (transcripts)"] = min(1.0, 5 / len(prompts))
    return out


def _subset_loo(sims: np.ndarray, labels: list[str], keep: np.ndarray) -> float:
    """Leave-one-out label recall@5 for the queries in ``keep`` against the whole gallery."""
    idx = np.flatnonzero(keep)
    sub = sims[idx].copy()  # (q, g)
    sub[np.arange(len(idx)), idx] = -np.inf  # the query itself is never a neighbour
    return concept_recall(sub, [labels[i] for i in idx], labels, 5)


def table(results: dict[str, dict], title: str = "") -> str:
    """Metrics as rows, one column per model."""
    names = list(results)
    keys = list(dict.fromkeys(k for r in results.values() for k in r))
    width = max(len(k) for k in keys) + 2
    lines = [title] if title else []
    lines.append("metric".ljust(width) + "".join(n[:24].rjust(26) for n in names))
    for k in keys:
        cells = []
        for n in names:
            v = results[n].get(k)
            cells.append(("-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)).rjust(26))
        lines.append(k.ljust(width) + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="aimemory-mini", help="any spec load_encoder accepts")
    ap.add_argument("--manifest", type=Path, default=None, help="default: the cache's manifest, built if missing")
    ap.add_argument("--small", action="store_true", help="use (and build) the small CI corpus")
    ap.add_argument("--split", default="test", choices=("test", "tune", "all"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    args = ap.parse_args(argv)
    import torch

    from aimemory.encoders.registry import load_encoder

    torch.set_num_threads(args.threads)
    manifest = args.manifest or build(default_cache(args.small), small=args.small)
    t0 = time.time()
    encoder = load_encoder(args.model)
    res = evaluate(encoder, manifest, args.split)
    res["seconds"] = round(time.time() - t0, 1)
    print(table({args.model: res}, f"real-world corpus, split={args.split}: {manifest}"))
    if args.json:
        args.json.write_text(json.dumps({args.model: res}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
