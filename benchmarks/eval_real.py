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

from aimemory.encoders.base import QueryPlan  # noqa: E402

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
    """Decoded through the library's own input path (orientation, transparency onto white)."""
    from aimemory.inputs import path_item

    return [path_item(Path(r["path"])).payload for r in rows]


def _audio(rows: list[dict]) -> list:
    from aimemory.inputs import path_item

    return [path_item(Path(r["path"])).payload for r in rows]


class Gallery:
    """Every view of every item, as the store keeps them: (views, dim) vectors with owner and kind."""

    def __init__(self, per_item: list[list[Any]]):
        self.n = len(per_item)
        self.vectors = np.stack([np.asarray(v.vector, np.float32) for views in per_item for v in views])
        self.owner = np.repeat(np.arange(self.n), [len(views) for views in per_item])
        self.kind = np.asarray([v.kind for views in per_item for v in views], object)

    def scores(self, plans: list[list[Any]], private: frozenset) -> np.ndarray:
        """Per query, its plans (``aimemory.encoders.base.QueryPlan``) -> (q, n) ranking values per
        item, as recall ranks: a plan with kinds sees only those kinds, one without sees all but
        ``private``; one plan ranks by cosine, several by cosine standardised against a spread of
        256 allowed views, minus the plan's penalty."""
        out = np.full((len(plans), self.n), -np.inf, np.float32)
        for q, query_plans in enumerate(plans):
            for plan in query_plans:
                vector, kinds = plan[0], plan[1]
                penalty = plan[2] if len(plan) > 2 else 0.0
                allowed = np.isin(self.kind, list(kinds)) if kinds is not None else ~np.isin(self.kind, list(private))
                if not allowed.any():
                    continue
                sims = self.vectors @ np.asarray(vector, np.float32)
                if len(query_plans) > 1:
                    idx = np.flatnonzero(allowed)
                    idx = idx[np.linspace(0, len(idx) - 1, min(len(idx), 256)).astype(int)]
                    sims = (sims - sims[idx].mean()) / max(float(sims[idx].std()), 1e-3) - penalty
                sims = np.where(allowed, sims, -np.inf)
                np.maximum.at(out[q], self.owner, sims.astype(np.float32))
        return out


def _views(encoder: Any, modality: str, rows: list[dict], load) -> list[list[Any]]:
    out: list[list[Any]] = []
    for s in range(0, len(rows), BATCH):
        out.extend(encoder.views(modality, load(rows[s: s + BATCH])))
    return out


def _text_plans(encoder: Any, texts: list[str]) -> list[list[Any]]:
    return [encoder.query_plans("text", t) for t in texts]


def _spoken_plans(encoder: Any, speech: Any, rows: list[dict]) -> list[list[Any]] | None:
    """A spoken query as recall runs it: its transcript as text (when speech is on), plus the
    encoder's own audio plans (when it has an audio tower)."""
    plans = []
    for clip in _audio(rows):
        mine = []
        if speech is not None:
            said = speech.transcribe(clip).text.strip()
            if said:
                mine.append(QueryPlan(np.asarray(encoder.embed_texts([said])[0], np.float32)))
        if "audio" in getattr(encoder, "modalities", ()):
            mine.extend(encoder.query_plans("audio", clip))
        plans.append(mine)
    return plans if any(plans) else None


def _mixed(encoder: Any, photos: list[dict], sounds: list[dict], gallery: "Gallery", snd: "Gallery",
           private: frozenset) -> dict:
    """Photos and sounds in one store, queried by every caption: does each caption still find its
    own modality's item (scores comparable across modalities), and does any memory come first for
    many unrelated queries (hubness: the top-1 share of the most frequent winner, and the skewness
    of how often each memory is in a top 5; Radovanovic et al., JMLR 2010)."""
    rows = photos + sounds
    both = Gallery.__new__(Gallery)
    both.n = gallery.n + snd.n
    both.vectors = np.concatenate([gallery.vectors, snd.vectors])
    both.owner = np.concatenate([gallery.owner, snd.owner + gallery.n])
    both.kind = np.concatenate([gallery.kind, snd.kind])
    sims = both.scores(_text_plans(encoder, [r["caption"] for r in rows]), private)
    rel = same_concept(rows, rows) & (np.asarray([r["modality"] for r in rows])[:, None] ==
                                      np.asarray([r["modality"] for r in rows])[None, :])
    top5 = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    n5 = np.bincount(top5.ravel(), minlength=len(rows)).astype(np.float64)
    skew = float(((n5 - n5.mean()) ** 3).mean() / max(n5.std() ** 3, 1e-12))
    return {"mixed photos+sounds R@5 same concept": relevant_recall(sims, rel, 5),
            "hub: top-1 share of the most frequent": float(np.bincount(top5[:, 0]).max() / len(rows)),
            "hub: N5 skewness": skew}


SCENE_SOURCES = ("tuxpaint-data", "mate-backgrounds", "lomiri-wallpapers", "plasma-workspace-wallpapers")
SCENE_SET, SCENE_DRAWS = 12, 200


def _scenes(photos: list[dict], sims: np.ndarray) -> dict:
    """Everyday scenes described in a few words (wallpaper and template photographs): how many of 12
    scenes have their photo in the top 3 among the 12, averaged over random draws of 12 scenes."""
    idx = np.array([i for i, r in enumerate(photos) if r["source"].startswith(SCENE_SOURCES)])
    if len(idx) < SCENE_SET:
        return {}
    rng = np.random.default_rng(0)
    found = []
    for _ in range(SCENE_DRAWS):
        pick = rng.choice(idx, SCENE_SET, replace=False)
        sub = sims[np.ix_(pick, pick)]
        found.append(strict_recall(sub, np.arange(SCENE_SET), 3) * SCENE_SET)
    return {"scenes: of 12 in the top 3 (mean of draws)": float(np.mean(found)),
            "scenes: of 12 in the top 3 (worst draw)": float(np.min(found)), "scene photos": len(idx)}


def _sample(rows: list[dict], limit: int | None) -> list[dict]:
    """A deterministic spread of at most ``limit`` rows (every k-th)."""
    if limit is None or len(rows) <= limit:
        return rows
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def evaluate(encoder: Any, manifest: "str | Path | list[dict]", split: str = "test", *, speech: Any = None,
             max_speech: int | None = 120) -> dict:
    """All metrics for one encoder on one split of a manifest (a path or its loaded rows), through
    the product's search path: each item's views, each query's plans (``Encoder.query_plans``), and,
    with a ``speech`` recognizer, spoken queries and voice notes by their transcripts."""
    rows = load_manifest(manifest, split) if isinstance(manifest, (str, Path)) else \
        [r for r in manifest if split in (None, "all") or r["split"] == split]
    photos = [r for r in rows if r["modality"] == "image"]
    sounds = [r for r in rows if r["modality"] == "sound"]
    speech_rows = [r for r in rows if r["modality"] == "speech"]
    private = frozenset(getattr(encoder, "private_kinds", frozenset()))
    out: dict[str, float | int] = {"photos": len(photos), "sounds": len(sounds), "speech clips": len(speech_rows)}
    gallery = None
    if photos:
        gallery = Gallery(_views(encoder, "image", photos, _images))
        sims = gallery.scores(_text_plans(encoder, [r["caption"] for r in photos]), private)
        rel = same_concept(photos, photos)
        for k in KS:
            out[f"text->photo R@{k} strict"] = strict_recall(sims, np.arange(len(photos)), k)
            out[f"text->photo R@{k} same concept"] = relevant_recall(sims, rel, k)
        out["chance R@5 same concept (photos)"] = random_recall(rel, 5)
        labels = [r["label"] for r in photos]
        counts = {lab: labels.count(lab) for lab in set(labels)}
        keep = np.array([counts[lab] > 1 for lab in labels])
        if keep.any():
            images = _images(photos)
            pp = gallery.scores([encoder.query_plans("image", im) for im in images], private)
            out["photo->photo R@5 same label"] = _subset_loo(pp, labels, keep)
            out["photo->photo queries"] = int(keep.sum())
            others = np.array([counts[lab] - 1 for lab in labels])[keep]  # same-label neighbours
            out["chance photo->photo R@5 same label"] = random_recall_counts(others, len(photos) - 1, 5)
        out["chance R@5 (photos)"] = min(1.0, 5 / len(photos))
        out.update(_scenes(photos, sims))
    snd = None
    if sounds and "audio" in getattr(encoder, "modalities", ()):
        snd = Gallery(_views(encoder, "audio", sounds, _audio))
        sims = snd.scores(_text_plans(encoder, [r["caption"] for r in sounds]), private)
        for k in KS:
            out[f"text->sound R@{k} strict"] = strict_recall(sims, np.arange(len(sounds)), k)
        out["text->sound R@5 same concept"] = relevant_recall(sims, same_concept(sounds, sounds), 5)
        out["chance R@5 (sounds)"] = min(1.0, 5 / len(sounds))
    if gallery is not None and snd is not None:
        out.update(_mixed(encoder, photos, sounds, gallery, snd, private))
    pairs = [r for r in speech_rows if gallery is not None and r["concept"] in {p["concept"] for p in photos}]
    plans = _spoken_plans(encoder, speech, pairs) if pairs else None
    if plans is not None and gallery is not None:
        sims = gallery.scores(plans, private)
        rel = same_concept(pairs, photos)
        for k in KS:
            out[f"speech->photo R@{k} same concept"] = relevant_recall(sims, rel, k)
        out["speech->photo queries"] = len(pairs)
    notes = _sample([r for r in speech_rows if r not in pairs], max_speech)
    if notes and speech is not None:
        from aimemory.inputs import path_item
        from aimemory.views import speech_views_of

        items = [path_item(Path(r["path"])) for r in notes]
        per_item = speech_views_of(encoder, speech, items)
        if "audio" in getattr(encoder, "modalities", ()):
            per_item = [a + b for a, b in zip(per_item, encoder.views("audio", [it.payload for it in items]))]
        if all(per_item):
            voice = Gallery(per_item)
            sims = voice.scores(_text_plans(encoder, [r["caption"] for r in notes]), private)
            for k in KS:
                out[f"text->voice note R@{k} strict"] = strict_recall(sims, np.arange(len(notes)), k)
            out["voice notes"] = len(notes)
            out["chance R@5 (voice notes)"] = min(1.0, 5 / len(notes))
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
    ap.add_argument("--speech", default="auto", help="speech model for spoken queries and voice notes "
                    "('auto': the installed Whisper; 'none': off)")
    ap.add_argument("--max-speech", type=int, default=120, help="voice notes transcribed (a spread sample)")
    args = ap.parse_args(argv)
    import torch

    from aimemory.encoders.registry import load_encoder

    torch.set_num_threads(args.threads)
    manifest = args.manifest or build(default_cache(args.small), small=args.small)
    t0 = time.time()
    encoder = load_encoder(args.model)
    from aimemory.views import load_speech

    speech = None if args.speech == "none" else load_speech(args.speech)
    res = evaluate(encoder, manifest, args.split, speech=speech, max_speech=args.max_speech)
    res["seconds"] = round(time.time() - t0, 1)
    print(table({args.model: res}, f"real-world corpus, split={args.split}: {manifest}"))
    if args.json:
        args.json.write_text(json.dumps({args.model: res}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
