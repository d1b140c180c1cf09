"""Labelled (query, view) score material for calibration, from the real-world corpus
(benchmarks/real_corpus.py), embedded through the product's own encoder and query plans.

Per split, every item is embedded once and cached (``~/.cache/aimemory-eval/calibration-<model>-<split>.npz``);
:func:`pair_scores` then turns the cache into, per modality pair (query modality x view kind), the
queries' cosines against every gallery view of that kind plus a relevance label:

==========================  ====================================  =====================================
pair                        queries -> gallery                     relevant when
==========================  ====================================  =====================================
text x image                photo captions -> photos               same concept or same caption
text x image.drawing        caption (built-in model) -> photos     same concept or same caption
image x image               photo -> other photos                  same coarse label (bird, tool...)
image x image.appearance    photo appearance -> other photos       same coarse label
text x audio.sound          sound captions -> sounds               same concept or same caption
audio x audio.sound         sound -> other sounds                  same coarse label
text x text                 caption -> other captions (as notes)   same concept in other words
image x text                photo -> captions (as notes)           same concept
audio x text                sound -> captions (as notes)           same concept
image x audio.sound         photo -> sounds                        same concept
audio x image               sound -> photos                        same concept
text x audio.speech         prompt text -> voice-note transcripts  the very clip
speech x text               spoken prompt (its transcript) -> prompt texts stored as notes: the very prompt
speech x image              spoken word (its transcript) -> photos same concept
==========================  ====================================  =====================================

"Same concept" is the corpus's concept name; with ``accepted`` (eval_calibration.py --accepted) it
is any concept a person would accept for the query's: the same thing in other words or a kind of it
(benchmarks/_concept_groups.py), and for a photo or sound against notes, a note naming the thing or
a kind it belongs to.

Notes and voice notes are labelled by topic as well, from written sets: benchmarks/_notes_data.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _concept_groups import answers

CACHE = Path("~/.cache/aimemory-eval").expanduser()
BATCH = 32


def _payloads(rows: list[dict], root: Path) -> list:
    from aimemory.inputs import path_item

    return [path_item(root / r["path"]).payload for r in rows]


def _batched(fn, items: list, batch: int = BATCH) -> list:
    out: list = []
    for s in range(0, len(items), batch):
        out.extend(fn(items[s:s + batch]))
    return out


def embed_split(encoder, speech, manifest: Path, split: str, max_speech: int | None = None,
                log=print) -> dict[str, np.ndarray]:
    """Every vector the pairs need for one split -> arrays (see module doc); cached by the caller."""
    from aimemory.inputs import path_item
    from aimemory.views import speech_views_of

    root = manifest.parent
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["split"] == split]
    photos = [r for r in rows if r["modality"] == "image"]
    sounds = [r for r in rows if r["modality"] == "sound"]
    spoken = [r for r in rows if r["modality"] == "speech"]
    if max_speech is not None and len(spoken) > max_speech:
        step = len(spoken) / max_speech
        spoken = [spoken[int(i * step)] for i in range(max_speech)]
    out: dict[str, np.ndarray] = {}
    t0 = time.time()
    views = _batched(lambda b: encoder.views("image", _payloads(b, root)), photos)
    for kind in ("image", "image.appearance", "image.drawing"):
        out[f"photo/{kind}"] = np.stack([next(v.vector for v in vs if v.kind == kind) for vs in views])
    plans = [encoder.query_plans("text", r["caption"]) for r in photos]
    out["photo_caption/text"] = np.stack([p[0].vector for p in plans])
    out["photo_caption/drawing"] = np.stack([p[1].vector for p in plans])
    log(f"  {split}: {len(photos)} photos in {time.time() - t0:.0f}s")
    t0 = time.time()
    sviews = _batched(lambda b: encoder.views("audio", _payloads(b, root)), sounds)
    out["sound/audio.sound"] = np.stack([np.mean([v.vector for v in vs if v.kind == "audio.sound"], 0)
                                         for vs in sviews])
    out["sound_query/audio"] = np.stack([encoder.query_plans("audio", p)[0].vector
                                         for p in _payloads(sounds, root)])
    out["sound_caption/text"] = encoder.embed_texts([r["caption"] for r in sounds])
    log(f"  {split}: {len(sounds)} sounds in {time.time() - t0:.0f}s")
    t0 = time.time()
    items = [path_item(root / r["path"]) for r in spoken]
    per_item = speech_views_of(encoder, speech, items)
    owner, vecs, said = [], [], []
    for i, (vs, item) in enumerate(zip(per_item, items)):
        for v in vs:
            owner.append(i)
            vecs.append(v.vector)
        said.append(getattr(item, "transcript", None) or "")
    dim = out["sound_caption/text"].shape[1]
    out["speech/audio.speech"] = np.stack(vecs) if vecs else np.zeros((0, dim), np.float32)
    out["speech/owner"] = np.asarray(owner, np.int64)
    heard = [i for i, s in enumerate(said) if s]
    out["speech_query/index"] = np.asarray(heard, np.int64)
    out["speech_query/text"] = encoder.embed_texts([said[i] for i in heard]) if heard else \
        np.zeros((0, dim), np.float32)
    out["speech_caption/text"] = encoder.embed_texts([r["caption"] for r in spoken])
    log(f"  {split}: {len(spoken)} speech clips in {time.time() - t0:.0f}s")
    meta = {"photos": photos, "sounds": sounds, "speech": spoken}
    out["meta"] = np.asarray(json.dumps({k: [{f: r[f] for f in ("id", "caption", "concept", "label")}
                                             for r in v] for k, v in meta.items()}))
    return out


def load_or_embed(model: str, manifest: Path, split: str, max_speech: int | None, log=print
                  ) -> dict[str, np.ndarray]:
    path = CACHE / f"calibration-{model.replace('/', '_')}-{split}-{max_speech}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    from aimemory.encoders.registry import load_encoder
    from aimemory.views import load_speech

    encoder = load_encoder(model)
    speech = load_speech("auto")
    if speech is None:
        raise SystemExit("calibration material needs the speech model (Whisper) installed")
    data = embed_split(encoder, speech, manifest, split, max_speech, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)
    return data


@dataclass
class PairScores:
    """One modality pair: (q, g) cosines, (q, g) labels, the gallery vectors (for gap removal) and
    ``valid`` (q, g): pairs that count (a query is never scored against itself)."""

    query_modality: str
    kind: str
    queries: np.ndarray  # (q, dim)
    gallery: np.ndarray  # (g, dim)
    relevant: np.ndarray  # (q, g) bool
    valid: np.ndarray  # (q, g) bool
    owner: np.ndarray | None = None  # (g,) item of each gallery view (several views per item)
    group: str | None = None  # the material, where a pair has more than one (reported apart, fitted together)

    @property
    def name(self) -> str:
        """The pair's name: what one calibration fit covers."""
        return f"{self.query_modality} x {self.kind}"

    @property
    def row(self) -> str:
        """The name it is reported under."""
        return self.name if self.group is None else f"{self.name} ({self.group})"

    def scores(self) -> np.ndarray:
        return self.queries @ self.gallery.T  # (q, g)


def _eq(a: list, b: list) -> np.ndarray:
    return np.asarray(a, object)[:, None] == np.asarray(b, object)[None, :]


def _same_concept(searched: list[dict], found: list[dict]) -> np.ndarray:
    """(s, f) bool: the corpus's own label, the very same concept name."""
    return _eq([r["concept"] for r in searched], [r["concept"] for r in found])


def _accepted(searched: list[dict], found: list[dict]) -> np.ndarray:
    """(s, f) bool: item ``found[j]`` answers a search for ``searched[i]``'s concept as a person would
    judge it: the same thing in other words, or a kind of it (benchmarks/_concept_groups.py)."""
    return np.asarray([[answers(s["concept"], f["concept"]) for f in found] for s in searched], bool).reshape(
        len(searched), len(found))


def pair_scores(data: dict[str, np.ndarray], accepted: bool = False) -> list[PairScores]:
    """The labelled pairs of one split (see the module doc). ``accepted``: a hit of the same concept
    is one a person would accept (:func:`_accepted`) rather than one of the very same concept name."""
    meta = json.loads(str(data["meta"]))
    ph, sn, sp = meta["photos"], meta["sounds"], meta["speech"]
    answered = _accepted if accepted else _same_concept
    same_photo = answered(ph, ph) | _eq([r["caption"] for r in ph], [r["caption"] for r in ph])
    label_photo = _eq([r["label"] for r in ph], [r["label"] for r in ph])
    not_self_p = ~np.eye(len(ph), dtype=bool)
    all_p = np.ones_like(not_self_p)
    same_sound = answered(sn, sn) | _eq([r["caption"] for r in sn], [r["caption"] for r in sn])
    label_sound = _eq([r["label"] for r in sn], [r["label"] for r in sn])
    not_self_s = ~np.eye(len(sn), dtype=bool)
    out = [
        PairScores("text", "image", data["photo_caption/text"], data["photo/image"], same_photo, all_p),
        PairScores("text", "image.drawing", data["photo_caption/drawing"], data["photo/image.drawing"],
                   same_photo, all_p),
        PairScores("image", "image", data["photo/image"], data["photo/image"], label_photo, not_self_p),
        PairScores("image", "image.appearance", data["photo/image.appearance"], data["photo/image.appearance"],
                   label_photo, not_self_p),
        PairScores("text", "audio.sound", data["sound_caption/text"], data["sound/audio.sound"], same_sound,
                   np.ones_like(not_self_s)),
        PairScores("audio", "audio.sound", data["sound_query/audio"], data["sound/audio.sound"], label_sound,
                   not_self_s),
    ]
    # text x text: every photo and sound caption is also a note; another item's note with the same
    # concept is relevant, the query's own note does not count
    caps = np.concatenate([data["photo_caption/text"], data["sound_caption/text"]])
    rows = ph + sn
    same = answered(rows, rows)
    # a note with the query's very words is left out: it would teach that only duplicates match
    distinct = ~_eq([r["caption"].lower() for r in rows], [r["caption"].lower() for r in rows])
    out.append(PairScores("text", "text", caps, caps, same, distinct))
    # photos and sounds as queries across modalities: the captions as notes, each other's items
    q_image, q_sound = data["photo/image"], data["sound_query/audio"]
    # a note describes a photo or sound when it names its thing or a kind the thing belongs to
    out.append(PairScores("image", "text", q_image, caps, answered(rows, ph).T, np.ones((len(ph), len(rows)), bool)))
    out.append(PairScores("audio", "text", q_sound, caps, answered(rows, sn).T, np.ones((len(sn), len(rows)), bool)))
    photo_sound = answered(ph, sn) | answered(sn, ph).T  # either is the other, or a kind of it
    out.append(PairScores("image", "audio.sound", q_image, data["sound/audio.sound"], photo_sound,
                          np.ones((len(ph), len(sn)), bool)))
    out.append(PairScores("audio", "image", q_sound, data["photo/image"], photo_sound.T,
                          np.ones((len(sn), len(ph)), bool)))
    # voice notes: views are transcript segments owned by clips
    owner = data["speech/owner"]
    if len(owner):
        n = len(sp)
        own = np.arange(n)[:, None] == owner[None, :]  # (clips, views)
        out.append(PairScores("text", "audio.speech", data["speech_caption/text"], data["speech/audio.speech"],
                              own, np.ones_like(own), owner))
    heard = data["speech_query/index"]
    if len(heard):
        said = data["speech_query/text"]
        own = heard[:, None] == np.arange(len(sp))[None, :]
        out.append(PairScores("speech", "text", said, data["speech_caption/text"], own, np.ones_like(own)))
        named = answered(sp, ph)  # (spoken words, photos)
        words = [j for j, i in enumerate(heard) if named[i].any()]
        if words:
            rel = named[[heard[j] for j in words]]
            out.append(PairScores("speech", "image", said[words], data["photo/image"], rel, np.ones_like(rel)))
    return out
