"""Finding notes by what they are about: text searches over the written note sets and over the
corpus's recorded telephone prompts (benchmarks/data/README.md), ranked by cosine as recall ranks a
store of notes alone.

    python benchmarks/eval_notes.py [--model aimemory-base] [--split test] [--json out.json]

Per set: R@1 and R@5 (a note the search seeks, grade 2, among the first k), R@5 counting on-topic
notes too (grade 1 or 2), nDCG@10 with the grades as gains, over the searches that have an answer;
and for the searches nothing answers, the share whose best note the calibration still calls
relevant at 0.5 (false alarms of ``min_relevance=0.5``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import machine_lines  # noqa: E402
from _notes_data import DATA, NOTES, VOICE_QUERIES, graded, load_set  # noqa: E402

DISCOUNT = 1 / np.log2(np.arange(2, 12))  # nDCG@10


def ranking_metrics(scores: np.ndarray, grades: np.ndarray) -> dict[str, float]:
    """(q, g) cosines and int grades -> R@1, R@5 (grade 2), R@5 (grade >= 1) and nDCG@10, over the
    queries with a grade-2 answer."""
    answered = (grades == 2).any(1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    got = np.take_along_axis(grades, order, 1).astype(np.float64)  # (q, <= 10)
    discount = DISCOUNT[: got.shape[1]]
    ideal = np.sort(grades, axis=1)[:, ::-1][:, :10] @ discount
    ndcg = (got @ discount) / np.maximum(ideal, 1e-9)
    return {"searches": int(answered.sum()),
            "R@1": float((got[answered, :1] == 2).any(1).mean()),
            "R@5": float((got[answered, :5] == 2).any(1).mean()),
            "R@5 on topic": float((got[answered, :5] >= 1).any(1).mean()),
            "nDCG@10": float(ndcg[answered].mean())}


def false_alarms(model: str, queries: np.ndarray, gallery: np.ndarray, grades: np.ndarray, kind: str) -> dict:
    """Searches with no relevant note: how often the best note's relevance is still >= 0.5, the
    gallery standing in for the store's background sample."""
    from aimemory.calibration import load_calibration, standardise

    calibration = load_calibration(model)
    fit, prior = calibration.fit_for("text", kind), calibration.prior("text", kind, gallery.shape[1])
    unanswered = np.flatnonzero(~(grades >= 1).any(1))
    best = []
    for q in unanswered:
        s = gallery @ queries[q]
        top = s.max(keepdims=True)
        best.append(float(fit.relevance(standardise(top, s, prior), top)[0]))
    return {"unanswered": len(unanswered), "best note >= 0.5": float(np.mean(np.asarray(best) >= 0.5)) if best else
            float("nan"), "best note relevance, median": float(np.median(best)) if best else float("nan")}


def run(model: str, split: str) -> dict[str, dict]:
    from aimemory.encoders.registry import load_encoder

    encoder = load_encoder(model)
    out = {}
    notes = load_set(DATA / NOTES[split])
    gallery = np.asarray(encoder.embed_texts([n["text"] for n in notes["notes"]]), np.float32)
    asked = np.asarray(encoder.embed_texts([q["text"] for q in notes["queries"]]), np.float32)
    grades = graded(notes["queries"], [n["id"] for n in notes["notes"]])
    out["written notes"] = ranking_metrics(asked @ gallery.T, grades) | false_alarms(model, asked, gallery, grades,
                                                                                        "text")
    prompts_file = DATA / VOICE_QUERIES[split]
    manifest = Path("~/.cache/aimemory-eval/real/manifest.jsonl").expanduser()
    if manifest.exists():  # the prompts' published transcripts, as a store would hold them once heard
        rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        prompts = [r for r in rows if r["split"] == split and r["id"].startswith("ast-")]
        searches = load_set(prompts_file)["queries"]
        gallery = np.asarray(encoder.embed_texts([r["caption"] for r in prompts]), np.float32)
        asked = np.asarray(encoder.embed_texts([q["text"] for q in searches]), np.float32)
        grades = graded(searches, [r["id"] for r in prompts])
        out["telephone prompts (transcripts)"] = ranking_metrics(asked @ gallery.T, grades) | \
            false_alarms(model, asked, gallery, grades, "audio.speech")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="aimemory-base")
    ap.add_argument("--split", choices=("tune", "test"), default="test")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    res = run(args.model, args.split)
    print("\n".join(machine_lines()))
    print(f"\nmodel {args.model}, {args.split} split")
    keys = ["searches", "R@1", "R@5", "R@5 on topic", "nDCG@10", "unanswered", "best note >= 0.5"]
    print(f"{'set':34}" + "".join(f"{k:>18}" for k in keys))
    for name, r in res.items():
        print(f"{name:34}" + "".join(f"{r[k]:>18.3f}" if isinstance(r[k], float) else f"{r[k]:>18}" for k in keys))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
