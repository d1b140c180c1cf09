"""The README's retrieval figures measured through ``MemoryStore.recall`` itself (index, catalog,
query plans, background standardisation and whatever order recall ships), not a numpy replica.

    python benchmarks/eval_recall_path.py                      # builds the store once, prints R@k
    python benchmarks/eval_recall_path.py --latency-only       # recall latency on the ~1k store

The store (``~/.cache/aimemory-eval/recall-path-<model>``) holds the real corpus's ``test`` photos and
recorded sounds (default namespace) and a spread of its human voice notes (namespace ``voice``);
after the R@k queries, the transcripts of every speech clip are added as text notes so that the
default namespace holds about 1,100 memories, and text queries are timed on it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import machine_lines  # noqa: E402
from real_corpus import build, default_cache, load_manifest  # noqa: E402

VOICE = "voice"
MAX_VOICE = 120  # voice notes: eval_real.py's default spread
LATENCY_QUERIES = 60
LATENCY_K = 10


def _sample(rows: list[dict], limit: int) -> list[dict]:
    if len(rows) <= limit:
        return rows
    step = len(rows) / limit
    return [rows[int(i * step)] for i in range(limit)]


def corpus(manifest: Path) -> dict[str, list[dict]]:
    rows = load_manifest(manifest, "test")
    photos = [r for r in rows if r["modality"] == "image"]
    sounds = [r for r in rows if r["modality"] == "sound"]
    speech = [r for r in rows if r["modality"] == "speech"]
    concepts = {p["concept"] for p in photos}
    spoken = [r for r in speech if r["concept"] in concepts]
    voice = _sample([r for r in speech if r not in spoken], MAX_VOICE)
    return {"photos": photos, "sounds": sounds, "spoken": spoken, "voice": voice,
            "notes": load_manifest(manifest, None)}


def build_store(path: Path, model: str, rows: dict[str, list[dict]], log=print):
    from aimemory import MemoryStore

    store = MemoryStore(path, model=model, speech_model="auto")
    if len(store) == 0:
        t0 = time.time()
        items = rows["photos"] + rows["sounds"]
        store.remember_many([Path(r["path"]) for r in items], metadata=[{"cid": r["id"]} for r in items])
        store.remember_many([Path(r["path"]) for r in rows["voice"]], namespace=VOICE,
                            metadata=[{"cid": r["id"]} for r in rows["voice"]])
        log(f"built {path} in {time.time() - t0:.0f} s")
    return store


def _ids(hits) -> list[str]:
    return [h.memory.metadata.get("cid") for h in hits]


def measure(store, rows: dict[str, list[dict]]) -> dict[str, float]:
    """R@k of each figure, every query through ``store.recall``."""
    photos, sounds = rows["photos"], rows["sounds"]
    by_id = {r["id"]: r for r in photos + sounds + rows["voice"]}
    out: dict[str, float] = {}

    def same(q: dict, cid: str | None) -> bool:
        g = by_id.get(cid)
        return g is not None and (g["concept"] == q["concept"] or g["caption"] == q["caption"])

    strict1, strict5, concept5 = [], [], []
    for r in photos:
        got = _ids(store.recall(r["caption"], k=5, modality="image"))
        strict1.append(got[:1] == [r["id"]])
        strict5.append(r["id"] in got)
        concept5.append(any(same(r, c) for c in got))
    out |= {"text->photo R@1 strict": np.mean(strict1), "text->photo R@5 strict": np.mean(strict5),
            "text->photo R@5 same concept": np.mean(concept5)}
    labels = [r["label"] for r in photos]
    loo = []
    for r in photos:
        if labels.count(r["label"]) < 2:
            continue
        got = [c for c in _ids(store.recall(Path(r["path"]), k=6, modality="image")) if c != r["id"]][:5]
        loo.append(any(by_id[c]["label"] == r["label"] for c in got))
    out["photo->photo R@5 same label"] = np.mean(loo)
    out["text->sound R@5 strict"] = np.mean([r["id"] in _ids(store.recall(r["caption"], k=5, modality="audio"))
                                             for r in sounds])
    mixed = []
    for r in photos + sounds:
        got = store.recall(r["caption"], k=5, modality=["image", "audio"])
        mixed.append(any(same(r, h.memory.metadata.get("cid")) and by_id[h.memory.metadata["cid"]]["modality"]
                         == r["modality"] for h in got))
    out["mixed photos+sounds R@5 same concept"] = np.mean(mixed)
    spoken = [any(same(r, c) for c in _ids(store.recall(Path(r["path"]), k=5, modality="image")))
              for r in rows["spoken"]]
    out["speech->photo R@5 same concept"] = np.mean(spoken) if spoken else float("nan")
    out["speech->photo queries"] = len(spoken)
    out["text->voice note R@5 strict"] = np.mean([r["id"] in _ids(store.recall(r["caption"], k=5, namespace=VOICE))
                                                  for r in rows["voice"]])
    out["voice notes"] = len(rows["voice"])
    half = _sample(rows["voice"], MAX_VOICE // 2)  # the README's 60: a gallery of every other note
    only = {"cid": [r["id"] for r in half]}
    out["text->voice note R@5 strict, 60 notes"] = np.mean(
        [r["id"] in _ids(store.recall(r["caption"], k=5, namespace=VOICE, where=only)) for r in half])
    return {k: float(v) for k, v in out.items()}


def latency(store, rows: dict[str, list[dict]], log=print) -> dict[str, float]:
    """Median and p90 wall time of text recalls (k=10, no filter) on the store with its notes."""
    if not any(m.modality == "text" for m in store.recent(5)):
        store.remember_many([r["caption"] for r in rows["notes"] if r["modality"] == "speech"])
    queries = [r["caption"] for r in _sample(rows["photos"] + rows["sounds"], LATENCY_QUERIES)]
    store.recall(queries[0], k=LATENCY_K)  # warm: models loaded, background samples cached
    index, search = store.index, store.index.search
    calls, in_search = [0], [0.0]

    def counted(*args, **kwargs):  # how many index searches one recall runs, and their share of it
        calls[0] += 1
        t0 = time.perf_counter()
        try:
            return search(*args, **kwargs)
        finally:
            in_search[0] += time.perf_counter() - t0

    index.search = counted
    times, embed = [], []
    try:
        for q in queries:
            t0 = time.perf_counter()
            store.embed(q)
            embed.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            store.recall(q, k=LATENCY_K)
            times.append(time.perf_counter() - t0)
    finally:
        del index.search
    times.sort()
    return {"memories": len(store), "median ms": 1000 * statistics.median(times),
            "p90 ms": 1000 * times[int(0.9 * (len(times) - 1))], "queries": len(times),
            "index searches per recall": calls[0] / len(times),
            "ms in index search per recall": 1000 * in_search[0] / len(times),
            "ms to embed the query (median)": 1000 * statistics.median(embed),
            "load avg": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="aimemory-base")
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--latency-only", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("AIMEMORY_SPEECH", "1")
    rows = corpus(build(default_cache()))
    path = args.store or Path("~/.cache/aimemory-eval").expanduser() / f"recall-path-{args.model}"
    store = build_store(path, args.model, rows)
    print("\n".join(machine_lines()))
    res: dict = {}
    if not args.latency_only:
        t0 = time.time()
        res["recall"] = measure(store, rows)
        res["recall"]["seconds"] = round(time.time() - t0, 1)
    res["latency"] = latency(store, rows)
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
