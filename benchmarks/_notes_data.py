"""Topical relevance material for text queries over notes and voice notes
(benchmarks/eval_calibration.py): what a person or an agent searches for in its own memory.

The real-world corpus labels text -> note as "same concept" (a caption against other captions) and
text -> voice note as "the very clip" (a prompt's full text against its recording). Both teach that
only near-duplicates match, so "buy groceries" would not call a shopping note relevant. These sets
label by topic instead, graded per (query, note): 2 answers the query, 1 on its topic, 0 not; a hit
counts as relevant from grade 1. Files (``benchmarks/data/``, written for this evaluation, see
``benchmarks/data/README.md``):

==================================  =========================================  =====================
file                                 queries -> gallery                         split
==================================  =========================================  =====================
notes_tune.json                      ~150 searches -> ~300 notes (one persona)  tune
notes_test.json                      ~150 searches -> ~300 notes (another)      test
voice_note_queries_{tune,test}.json  topical searches -> the corpus's recorded   tune / test
                                     telephone prompts (transcribed by Whisper)
==================================  =========================================  =====================

Each set's text vectors are cached beside the corpus's (keyed by the file's digest and the model).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
CACHE = Path("~/.cache/aimemory-eval").expanduser()
NOTES = {"tune": "notes_tune.json", "test": "notes_test.json"}
VOICE_QUERIES = {"tune": "voice_note_queries_tune.json", "test": "voice_note_queries_test.json"}
RELEVANT_FROM = 2  # the lowest grade that counts as relevant
NOTES_GROUP, VOICE_GROUP = "written notes", "topical searches"


def _embed_cached(model: str, path: Path, texts: list[str]) -> np.ndarray:
    """(n, dim) text vectors of ``texts`` through the model's text tower, cached per file digest."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cache = CACHE / f"notes-{model.replace('/', '_')}-{path.stem}-{digest}.npy"
    if cache.exists():
        return np.load(cache)
    from aimemory.encoders.registry import load_encoder

    vectors = np.asarray(load_encoder(model).embed_texts(texts), np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def load_set(path: Path) -> dict:
    """A labelled set, checked: unique ids, every graded id known, grades 1 or 2."""
    data = json.loads(path.read_text())
    known = {n["id"] for n in data.get("notes", [])} | set(data.get("gallery", []))
    ids = [q["id"] for q in data["queries"]]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: repeated query ids")
    for q in data["queries"]:
        for nid, grade in q["relevant"].items():
            if known and nid not in known:
                raise ValueError(f"{path}: query {q['id']} grades unknown id {nid}")
            if grade not in (1, 2):
                raise ValueError(f"{path}: query {q['id']} gives {nid} grade {grade}")
    return data


def graded(queries: list[dict], gallery_ids: list[str]) -> np.ndarray:
    """(q, g) int grades of each query against each gallery id (0 where not graded)."""
    col = {g: j for j, g in enumerate(gallery_ids)}
    out = np.zeros((len(queries), len(gallery_ids)), np.int8)
    for i, q in enumerate(queries):
        for nid, grade in q["relevant"].items():
            if nid in col:
                out[i, col[nid]] = grade
    return out


def notes_pair(model: str, split: str, pair_type: type) -> object | None:
    """text x text: written searches against written notes, labelled by topic (None: no file)."""
    path = DATA / NOTES[split]
    if not path.exists():
        return None
    data = load_set(path)
    notes, queries = data["notes"], data["queries"]
    vectors = _embed_cached(model, path, [n["text"] for n in notes] + [q["text"] for q in queries])
    gallery, asked = vectors[: len(notes)], vectors[len(notes):]
    relevant = graded(queries, [n["id"] for n in notes]) >= RELEVANT_FROM
    return pair_type("text", "text", asked, gallery, relevant, np.ones_like(relevant), group=NOTES_GROUP)


def voice_pair(model: str, split: str, data: dict[str, np.ndarray], pair_type: type) -> object | None:
    """text x audio.speech: topical searches against the split's transcribed voice notes (each
    clip's transcript segments are its views), labelled by topic (None: no file or no speech)."""
    path = DATA / VOICE_QUERIES[split]
    owner = data["speech/owner"]
    if not path.exists() or not len(owner):
        return None
    queries = load_set(path)["queries"]
    clips = [r["id"] for r in json.loads(str(data["meta"]))["speech"]]
    asked = _embed_cached(model, path, [q["text"] for q in queries])
    per_clip = graded(queries, clips) >= RELEVANT_FROM  # (q, clips)
    relevant = per_clip[:, owner]  # (q, views)
    return pair_type("text", "audio.speech", asked, data["speech/audio.speech"], relevant,
                     np.ones_like(relevant), owner, group=VOICE_GROUP)
