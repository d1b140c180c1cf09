"""``aimemory demo``: build a memory from the bundled samples and run cross-modal queries offline.

The samples (``aimemory/samples/``) and the queries with their expected answers are listed in
``samples/demo.json``; the demo prints, for each query, the top results and whether the first one
is the expected memory, and returns 0 only when every query is answered right.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

SAMPLES = Path(__file__).parent / "samples"
TOP = 3


def _label(path: str | None) -> str:
    return Path(path).name if path else "?"


def _describe_query(q: dict) -> str:
    if "file" in q:
        return f"[{q['kind']}] {q['file']}"
    return f"[text] {q['text']!r}"


def spec_for(model_id: str) -> dict:
    """The built-in model knows drawings, so its demo uses the emoji samples; pretrained models get
    real photographs, voice notes and recorded sounds."""
    name = "demo.json" if model_id.startswith("aimemory-mini") else "demo-real.json"
    return json.loads((SAMPLES / name).read_text())


def run_demo(store_path: str | None = None, *, model: str = "auto", out=None) -> int:
    """Remember the samples into ``store_path`` (a temp folder when None), run the demo queries,
    print the results; returns the number of wrong answers (0 = all right)."""
    from .encoders.registry import auto_choice
    from .store import MemoryStore

    out = out or sys.stdout
    chosen = auto_choice()[0] if model == "auto" else model
    mini = chosen.startswith("aimemory-mini")
    spec = spec_for(chosen)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aimemory-demo-") as tmp:
        path = Path(store_path) if store_path else Path(tmp) / "memory"
        # the built-in model's demo shows its own audio tower (speech_model=None gives the same answers
        # whether or not a Whisper is installed); pretrained models transcribe voice notes
        with MemoryStore(path, model=model, speech_model=None if mini else "auto") as store:
            files = [SAMPLES / m["file"] for m in spec["memories"]]
            metas = [{"tags": m.get("tags", [])} for m in spec["memories"]]
            store.remember_many(files, metadata=metas)
            counts = store.stats()["views"]
            print(f"aimemory demo — model {store.model_id}, {len(store)} memories "
                  f"({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}) in {path}", file=out)
            wrong = 0
            for q in spec["queries"]:
                query = SAMPLES / q["file"] if "file" in q else q["text"]
                hits = store.recall(query, k=TOP, modality=q.get("modality"))
                ok = bool(hits) and _label(hits[0].memory.source) == q["expect"]
                wrong += not ok
                arrow = f"{q.get('title', '')}".strip()
                print(f"\n{'✓' if ok else '✗'} {arrow}  {_describe_query(q)}  ->  "
                      f"{q.get('modality', 'any')} (expected {q['expect']})", file=out)
                print(f"    {'rank':<5}{'relevance':>10}{'score':>7}  {'modality':<9}{'memory'}", file=out)
                for rank, h in enumerate(hits, 1):
                    rel = "" if h.relevance is None else f"{h.relevance:.4f}"
                    print(f"    {rank:<5}{rel:>10}{h.score:>7.3f}  {h.modality:<9}{_label(h.memory.source)}", file=out)
    took = time.perf_counter() - t0
    total = len(spec["queries"])
    print(f"\n{total - wrong}/{total} queries answered right in {took:.1f} s.", file=out)
    return wrong


def main() -> int:  # pragma: no cover - exercised through the CLI
    return 1 if run_demo() else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
