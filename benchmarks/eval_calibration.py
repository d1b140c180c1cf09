"""Calibration of hit relevance across modality pairs, on the real-world corpus: methods are FITTED on
the ``tune`` split and REPORTED on the held-out ``test`` split.

    python benchmarks/eval_calibration.py                  # aimemory-base, prints tables
    python benchmarks/eval_calibration.py --write          # also writes models/<model>/calibration.json
    python benchmarks/eval_calibration.py --json out.json

Material (benchmarks/_calibration_data.py): per modality pair (query modality x view kind), labelled
queries against a gallery; each query's top ``TOP`` views of the pair are the hits a recall would
show, and those are what is calibrated and scored. Methods:

- ``cosine, pooled``: one logistic on the raw cosine for every pair (what a single ``min_score`` does);
- ``z, pooled``: cosine standardised per query against a background sample of the pair's views, one
  logistic for every pair;
- ``cosine, per pair`` / ``z, per pair``: Platt scaling fitted per pair on the cosine / on z;
- ``gap removed, pooled`` / ``gap removed, per pair``: per-modality mean vectors (from tune) subtracted
  from queries and views before the cosine, then a pooled / per-pair logistic.

Metrics per pair and pooled: expected calibration error (10 equal-width bins), Brier score, and at one
relevance threshold the precision and recall with their spread across pairs; nDCG@10 of mixed lists
(text queries over photos, sounds, notes and voice notes in one store) as recall ranks today and by
each method's relevance.
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
sys.path.insert(0, str(ROOT / "benchmarks"))
from _calibration_data import PairScores, load_or_embed, pair_scores  # noqa: E402
from _machine import machine_lines  # noqa: E402

from aimemory.calibration import (  # noqa: E402
    BACKGROUND_SAMPLE,
    Calibration,
    PairFit,
    fit_logistic,
    pair_key,
    save_calibration,
    standardise,
)

TOP = 10  # hits per query and pair that are calibrated (what a recall list shows)
BINS = 10
THRESHOLD = 0.5
SWEEP = (0.3, 0.5, 0.7, 0.8, 0.9)  # thresholds whose precision spread across pairs is also reported
MAX_SPEECH = {"tune": 160, "test": 120}  # spoken clips transcribed per split (a spread sample)
METHODS = ("cosine, pooled", "z, pooled", "cosine, per pair", "z, per pair", "z + cosine, per pair",
           "gap removed, pooled", "gap removed, per pair")
CHOSEN = "z + cosine, per pair"
DRAWING_PENALTY = 0.5  # as aimemory.encoders.offline ranks the drawing plan today


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def background_idx(n: int) -> np.ndarray:
    """The fixed spread recall samples: at most BACKGROUND_SAMPLE evenly spaced views."""
    return np.linspace(0, n - 1, min(n, BACKGROUND_SAMPLE)).astype(int)


class Candidates:
    """One pair's hits: per query its top TOP valid views, with cosine, z, gap-removed cosine, label."""

    def __init__(self, pair: PairScores, prior: tuple[float, float] | None, means: dict | None):
        s = pair.scores()  # (q, g)
        masked = np.where(pair.valid, s, -np.inf)
        top = np.argsort(-masked, axis=1, kind="stable")[:, :TOP]  # (q, TOP)
        rows = np.repeat(np.arange(len(s)), top.shape[1])
        cols = top.ravel()
        keep = np.isfinite(masked[rows, cols])
        rows, cols = rows[keep], cols[keep]
        self.pair = pair
        self.name = pair.name
        self.cosine = s[rows, cols]
        self.label = pair.relevant[rows, cols].astype(np.float64)
        bg = s[:, background_idx(s.shape[1])]  # (q, m): the query's cosines with the sample
        self.bg_mean, self.bg_std = float(bg.mean()), float(bg.std(axis=1).mean())
        prior = prior or (self.bg_mean, self.bg_std)
        self.z = np.concatenate([standardise(s[q, cols[rows == q]], bg[q], prior) for q in range(len(s))])
        if means is not None:
            qm = _l2(pair.queries - means[("query", pair.query_modality, pair.kind)])
            gm = _l2(pair.gallery - means[("view", pair.kind)])
            self.gap = np.einsum("ij,ij->i", qm[rows], gm[cols])


def modality_means(pairs: list[PairScores]) -> dict:
    """Mean query vector per (query modality, kind) and mean view vector per kind, from tune."""
    out = {}
    for p in pairs:
        out[("query", p.query_modality, p.kind)] = p.queries.mean(0)
        out.setdefault(("view", p.kind), p.gallery.mean(0))
    return out


def feature(c: Candidates, method: str) -> np.ndarray:
    if method.startswith("z + cosine"):
        return np.stack([c.z, c.cosine], 1)  # (n, 2)
    return c.cosine if method.startswith("cosine") else c.z if method.startswith("z") else c.gap


def fit(tune: list[Candidates], method: str) -> dict[str, tuple[float, ...]]:
    """Method -> pair name -> (a, b); pooled methods give every pair the same numbers."""
    if method.endswith("pooled"):
        ab = fit_logistic(np.concatenate([feature(c, method) for c in tune]), np.concatenate([c.label for c in tune]))
        return {c.name: ab for c in tune} | {"*": ab}
    out = {c.name: fit_logistic(feature(c, method), c.label) for c in tune}
    out["*"] = fit_logistic(np.concatenate([feature(c, method) for c in tune]), np.concatenate([c.label for c in tune]))
    return out


def borrow_for_penalised(params: dict) -> dict:
    """The drawing plan (penalised, DRAWING_PENALTY) is calibrated like text x image on z shifted by
    its penalty: fitted on its own, on photos where the built-in model's drawing view is noise, it
    gives every drawing hit about the base rate and buries the emoji it exists for."""
    a, _, b = params["text x image"]
    return {**params, "text x image.drawing": (a, 0.0, b - a * DRAWING_PENALTY)}


def predict(c: Candidates, method: str, params: dict) -> np.ndarray:
    *a, b = params.get(c.name, params["*"])
    x = feature(c, method)
    x = x[:, None] if x.ndim == 1 else x
    return 1 / (1 + np.exp(-(x @ np.asarray(a) + b)))


def ece(p: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.sum() * abs(p[sel].mean() - y[sel].mean())
    return float(total / max(len(p), 1))


def pr_at(p: np.ndarray, y: np.ndarray, t: float) -> tuple[float, float, int]:
    """Precision and recall (of the relevant hits among the candidates) at threshold t, and how many pass."""
    sel = p >= t
    precision = float(y[sel].mean()) if sel.any() else float("nan")
    recall = float(y[sel].sum() / y.sum()) if y.sum() else float("nan")
    return precision, recall, int(sel.sum())


def scores_table(test: list[Candidates], preds: dict[str, dict[str, np.ndarray]], t: float) -> dict:
    """Method -> metrics dict (per pair and pooled)."""
    out = {}
    for method, by_pair in preds.items():
        rows = {}
        for c in test:
            p = by_pair[c.name]
            prec, rec, n = pr_at(p, c.label, t)
            rows[c.name] = {"n": len(p), "base rate": float(c.label.mean()), "ECE": ece(p, c.label),
                            "Brier": float(((p - c.label) ** 2).mean()), "precision": prec, "recall": rec,
                            "passed": n}
        p_all = np.concatenate([by_pair[c.name] for c in test])
        y_all = np.concatenate([c.label for c in test])
        precs = [r["precision"] for r in rows.values() if not np.isnan(r["precision"])]
        recs = [r["recall"] for r in rows.values() if not np.isnan(r["recall"])]
        pooled_p, pooled_r, _ = pr_at(p_all, y_all, t)
        out[method] = {"pairs": rows, "pooled ECE": ece(p_all, y_all),
                       "macro ECE": float(np.mean([r["ECE"] for r in rows.values()])),
                       "pooled Brier": float(((p_all - y_all) ** 2).mean()), "pooled precision": pooled_p,
                       "pooled recall": pooled_r,
                       "precision spread": float(max(precs) - min(precs)) if precs else float("nan"),
                       "pairs with no hit over t": len(rows) - len(precs),
                       "recall spread": float(max(recs) - min(recs)) if recs else float("nan")}
        for u in SWEEP:
            per = [pr_at(by_pair[c.name], c.label, u) for c in test]
            ps = [x[0] for x in per if not np.isnan(x[0])]
            out[method][f"sweep {u}"] = {
                "precision min": min(ps) if ps else float("nan"), "precision max": max(ps) if ps else float("nan"),
                "spread": max(ps) - min(ps) if ps else float("nan"), "pairs with hits": len(ps),
                "recall mean": float(np.nanmean([x[1] for x in per]))}
    return out


def ndcg_mixed(data: dict, params: dict[str, dict], prior: dict, means: dict) -> dict[str, float]:
    """nDCG@10 of text queries (photo and sound captions) over one mixed store: photos (label and
    drawing views), sounds, every caption as a note (the query's own excluded) and voice notes.
    'today' ranks as recall does without calibration; each method ranks by relevance."""
    meta = json.loads(str(data["meta"]))
    ph, sn, sp = meta["photos"], meta["sounds"], meta["speech"]
    notes = ph + sn
    concepts = [r["concept"] for r in ph] + [r["concept"] for r in sn] + [r["concept"] for r in notes] + \
        [r["concept"] for r in sp]
    n_items = len(concepts)
    q_text = np.concatenate([data["photo_caption/text"], data["sound_caption/text"]])
    q_draw = np.concatenate([data["photo_caption/drawing"], np.zeros_like(data["sound_caption/text"])])
    q_concept = [r["concept"] for r in notes]
    # gallery views: (vectors, owner item, kind, query vectors that search them)
    off_s, off_n, off_v = len(ph), len(ph) + len(sn), len(ph) + len(sn) + len(notes)
    views = [("image", data["photo/image"], np.arange(len(ph))),
             ("image.drawing", data["photo/image.drawing"], np.arange(len(ph))),
             ("audio.sound", data["sound/audio.sound"], off_s + np.arange(len(sn))),
             ("text", q_text, off_n + np.arange(len(notes))),
             ("audio.speech", data["speech/audio.speech"], off_v + data["speech/owner"])]
    gain = np.asarray(q_concept, object)[:, None] == np.asarray(concepts, object)[None, :]  # (q, items)
    own_note = off_n + np.arange(len(notes))
    gain[np.arange(len(notes)), own_note] = False
    rankers = ["today"] + list(params)
    values = {r: np.full((len(notes), n_items), -np.inf) for r in rankers}
    shared = np.concatenate([v for k, v, _ in views if k != "image.drawing"])
    for kind, vecs, owner in views:
        q = q_draw if kind == "image.drawing" else q_text
        s = q @ vecs.T  # (q, views)
        if kind == "text":  # the query's own caption, stored as a note, is not a hit
            s[np.arange(len(notes))[:, None] == (owner[None, :] - off_n)] = -np.inf
        # today: two plans, each standardised against 256 of its allowed views, drawing penalised
        bgv = vecs if kind == "image.drawing" else shared
        bg = q @ bgv[background_idx(len(bgv))].T
        today = (s - bg.mean(1, keepdims=True)) / np.maximum(bg.std(1, keepdims=True), 1e-3)
        if kind == "image.drawing":
            today = today - DRAWING_PENALTY
        np.maximum.at(values["today"].T, owner, today.T)
        own_bg = s[:, background_idx(s.shape[1])]
        own_bg = np.where(np.isfinite(own_bg), own_bg, 0.0)
        pr = prior.get(f"text x {kind}")
        z = np.stack([standardise(s[i], own_bg[i], pr or (own_bg[i].mean(), own_bg[i].std())) for i in range(len(s))])
        qm = _l2(q - means.get(("query", "text", kind), 0))
        gm = _l2(vecs - means.get(("view", kind), 0))
        gap = qm @ gm.T
        for method, ps in params.items():
            *a, b = ps.get(f"text x {kind}", ps["*"])
            xs = [z, s] if method.startswith("z + cosine") else \
                [s] if method.startswith("cosine") else [z] if method.startswith("z") else [gap]
            logit = sum(w * np.where(np.isfinite(x), x, 0.0) for w, x in zip(a, xs)) + b
            rel = 1 / (1 + np.exp(-logit))
            rel = np.where(np.isfinite(s), rel, -np.inf)
            np.maximum.at(values[method].T, owner, rel.T)
    out = {}
    discount = 1 / np.log2(np.arange(2, 12))
    for r in rankers:
        top = np.argsort(-values[r], axis=1, kind="stable")[:, :10]
        dcg = (np.take_along_axis(gain, top, 1) * discount).sum(1)
        ideal = np.sort(gain, axis=1)[:, ::-1][:, :10] @ discount
        ok = ideal > 0
        out[r] = float((dcg[ok] / ideal[ok]).mean())
    return out


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def print_report(res: dict, method_order: list[str]) -> None:
    print("\n".join(machine_lines()))
    print(f"\nmodel {res['model']}: fitted on tune ({res['tune pairs']} labelled hits), "
          f"reported on test ({res['test pairs']}); top {TOP} hits per query and pair; threshold {THRESHOLD}")
    keys = ["pooled ECE", "macro ECE", "pooled Brier", "pooled precision", "pooled recall",
            "precision spread", "recall spread", "pairs with no hit over t", "nDCG@10 mixed"]
    print("\n" + "method".ljust(24) + "".join(k[:16].rjust(17) for k in keys))
    for m in method_order:
        r = res["methods"][m]
        print(m.ljust(24) + "".join(_fmt(r.get(k)).rjust(17) for k in keys))
    print(f"{'today (no calibration)':24}" + "".rjust(17 * 8) + _fmt(res["nDCG today"]).rjust(17))
    print("\nprecision across pairs at one threshold (test): min / max / spread (pairs with a hit) / mean recall")
    print("method".ljust(24) + "".join(f"t={u}".rjust(30) for u in SWEEP))
    for m in method_order:
        cells = []
        for u in SWEEP:
            r = res["methods"][m][f"sweep {u}"]
            cells.append(f"{_fmt(r['precision min'])}/{_fmt(r['precision max'])}/{_fmt(r['spread'])}"
                         f"({r['pairs with hits']})/{_fmt(r['recall mean'])}".rjust(30))
        print(m.ljust(24) + "".join(cells))
    for m in method_order:
        print(f"\n{m}: per pair (test)")
        cols = ["n", "base rate", "ECE", "Brier", "precision", "recall", "passed"]
        print("pair".ljust(28) + "".join(c.rjust(11) for c in cols))
        for name, r in res["methods"][m]["pairs"].items():
            print(name.ljust(28) + "".join(_fmt(r[c]).rjust(11) for c in cols))


def run(model: str, manifest: Path, log=print) -> tuple[dict, dict]:
    tune_data = load_or_embed(model, manifest, "tune", MAX_SPEECH["tune"], log)
    test_data = load_or_embed(model, manifest, "test", MAX_SPEECH["test"], log)
    tune_pairs, test_pairs = pair_scores(tune_data), pair_scores(test_data)
    means = modality_means(tune_pairs)
    tune = [Candidates(p, None, means) for p in tune_pairs]
    prior = {c.name: (c.bg_mean, c.bg_std) for c in tune}  # the model's typical background per pair
    test = [Candidates(p, prior.get(p.name), means) for p in test_pairs]
    params = {m: fit(tune, m) for m in METHODS}
    params[CHOSEN] = borrow_for_penalised(params[CHOSEN])
    preds = {m: {c.name: predict(c, m, params[m]) for c in test} for m in METHODS}
    table = scores_table(test, preds, THRESHOLD)
    ndcg = ndcg_mixed(test_data, params, prior, means)
    for m in METHODS:
        table[m]["nDCG@10 mixed"] = ndcg[m]
    res = {"model": model, "tune pairs": sum(len(c.label) for c in tune),
           "test pairs": sum(len(c.label) for c in test), "methods": table, "nDCG today": ndcg["today"],
           "params": {m: {k: list(v) for k, v in p.items()} for m, p in params.items()}}
    return res, {"prior": prior, "params": params}


def calibration_of(model: str, fitted: dict) -> Calibration:
    """The chosen method's numbers as the file recall reads."""
    ps, prior = fitted["params"][CHOSEN], fitted["prior"]
    pairs = {}
    for name, (a, c, b) in ps.items():
        if name == "*":
            continue
        qm, kind = name.split(" x ")
        mean, std = prior[name]
        pairs[pair_key(qm, kind)] = PairFit(round(a, 4), round(b, 4), round(mean, 4), round(std, 4), round(c, 4))
    a, b = fitted["params"]["z, pooled"]["*"]
    return Calibration(model, pairs, PairFit(round(a, 4), round(b, 4)), True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="aimemory-base")
    ap.add_argument("--manifest", type=Path, default=None, help="default: the real corpus's cache, built if missing")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--write", action="store_true", help=f"write the {CHOSEN!r} fit to models/<model>/calibration.json")
    args = ap.parse_args(argv)
    import torch
    from real_corpus import build, default_cache

    torch.set_num_threads(args.threads)
    manifest = args.manifest or build(default_cache())
    t0 = time.time()
    res, fitted = run(args.model, manifest)
    res["seconds"] = round(time.time() - t0, 1)
    print_report(res, list(METHODS))
    print(f"\nchosen: {CHOSEN}; {res['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if args.write:
        print("wrote", save_calibration(calibration_of(args.model, fitted)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
