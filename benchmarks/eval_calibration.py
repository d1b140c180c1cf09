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
- ``z + cosine, per pair``: Platt on (z, cosine) per pair;
- ``z + cosine, shrunk``: the same, each pair's weights pulled towards the pooled fit with a Gaussian
  prior (empirical-Bayes / hierarchical Platt) whose strength is chosen by 2-fold cross-validation
  on tune (macro log loss over pairs), so a pair with few labelled hits stays near the pooled fit;
- ``gap removed, pooled`` / ``gap removed, per pair``: per-modality mean vectors (from tune) subtracted
  from queries and views before the cosine, then a pooled / per-pair logistic.

z is the cosine standardised against the query's cosines with a background sample of the pair's
views (a hit in the sample left out of it), shrunk towards the pair's prior background
(aimemory.calibration.standardise).

Notes and voice notes are also labelled by topic (benchmarks/_notes_data.py: searches and notes
written for this, graded per note; tune and test sets by different authors). That material joins
the text x text fit beside the captions-as-notes, and replaces the "very clip" labels in the text x
audio.speech fit and the "very prompt" labels in the speech x text fit, together with the written
notes (_calibration_candidates.TOPICAL_FIT; ``--topical`` compares); it sets those pairs' prior
background, and its held-out rows are reported beside the corpus's.

Metrics (benchmarks/_calibration_metrics.py) per pair and pooled: expected calibration error (10
equal-width bins), Brier score, and at relevance thresholds the precision per pair with its Wilson 95%
interval and the spread across pairs with enough hits; "small stores": pooled ECE when each query sees
only ``SMALL_STORE`` random views of the pair (the background is then mostly the prior); "matches":
the same in small stores where ``STORE_MATCHES`` of those views are the query's matches (a store
holding several notes or photos of one subject), with the share of matches ``min_relevance=0.5``
keeps there; nDCG@10 of
mixed lists (text queries over photos, sounds, notes and voice notes in one store) as recall ranked
before calibration, by each method's relevance, and in the shipped recall order (aimemory.ranking:
relevance, a secondary view counting from a z threshold and a relevance floor below which memories
follow by standing, both chosen on tune and written with ``--write``), with text -> photo R@5.
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
from _calibration_candidates import (  # noqa: E402
    TOP,
    Candidates,
    background_idx,
    fit_material,
    l2,
    modality_means,
)
from _calibration_data import PairScores, load_or_embed, pair_scores  # noqa: E402
from _calibration_metrics import ece, fmt, method_metrics, print_pairs, print_spreads  # noqa: E402
from _concept_groups import answers  # noqa: E402
from _machine import machine_lines  # noqa: E402
from _notes_data import notes_pair, voice_pair  # noqa: E402

from aimemory.calibration import (  # noqa: E402
    Calibration,
    PairFit,
    fit_logistic,
    pair_key,
    save_calibration,
    standardise,
)

SWEEP = (0.5, 0.7, 0.8, 0.9)  # relevance thresholds whose precision per pair is reported
MAX_SPEECH = {"tune": 160, "test": 120}  # spoken clips transcribed per split (a spread sample)
METHODS = ("cosine, pooled", "z, pooled", "cosine, per pair", "z, per pair", "z + cosine, per pair",
           "z + cosine, shrunk", "gap removed, pooled", "gap removed, per pair")
CHOSEN = "z + cosine, shrunk"
STRENGTHS = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0)  # prior precisions tried for the shrunk fit
SMALL_STORE = 12  # views per pair a query sees in the small-store check (the demo holds 6-13)
STORE_MATCHES = 3  # of which this many are the query's matches in the "small store of matches" check
DRAWING_PENALTY = 0.5  # as aimemory.encoders.offline ranks the drawing plan today
TAIL = "tail precision (of shrunk)"  # a reported alternative meaning of the threshold, not shipped
TAIL_LEAD = 20  # the top hits of a pair whose precision is too noisy to map on its own
#: secondary view kinds (another model's view of an item, noise on the tune photos) -> the kind they
#: stand in for; a secondary view orders its memory only from a z (its standing above its
#: background) chosen on tune from MIN_Z, in rising strictness (None: never, the memory is ordered
#: by its primary view): the strictest within FLOOR_SLACK of the best tune nDCG
SECONDARY = {"image.drawing": "image"}
MIN_Z = (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, None)
#: relevance floors below which recall orders by standing: the highest whose tune nDCG is within
#: FLOOR_SLACK of the best is shipped (below it, relevance mostly tells the pairs' base rates apart)
FLOORS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
FLOOR_SLACK = 0.001


def feature(c: Candidates, method: str) -> np.ndarray:
    if method.startswith("z + cosine"):
        return np.stack([c.z, c.cosine], 1)  # (n, 2)
    return c.cosine if method.startswith("cosine") else c.z if method.startswith("z") else c.gap


def _pooled(tune: list[Candidates], method: str) -> tuple[float, ...]:
    return fit_logistic(np.concatenate([feature(c, method) for c in tune]), np.concatenate([c.label for c in tune]))


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def choose_strength(tune: list[Candidates], method: str) -> tuple[float, dict[float, float]]:
    """The prior precision of the shrunk fit: 2-fold cross-validation on tune (each pair's queries
    split into halves in id order, so a concept's items mostly stay together), scored by the macro
    mean over pairs of the held-out log loss, so thin pairs weigh as much as thick ones."""
    losses = {}
    for strength in STRENGTHS:
        per_pair = []
        for c in tune:
            half = c.query < c.n_queries // 2
            loss = []
            for train in (half, ~half):
                if not train.any() or train.all():
                    continue
                sub = [_subset(o, train) if o is c else o for o in tune]
                pooled = _pooled(sub, method)
                w = fit_logistic(feature(c, method)[train], c.label[train], prior=pooled, strength=strength)
                loss.append(_log_loss(_apply(feature(c, method)[~train], w), c.label[~train]))
            if loss:
                per_pair.append(np.mean(loss))
        losses[strength] = float(np.mean(per_pair))
    return min(losses, key=losses.get), losses


def _subset(c: Candidates, keep: np.ndarray) -> Candidates:
    out = Candidates.__new__(Candidates)
    out.__dict__.update(c.__dict__)
    out.z, out.cosine, out.label, out.query = c.z[keep], c.cosine[keep], c.label[keep], c.query[keep]
    return out


def _apply(x: np.ndarray, w: tuple[float, ...]) -> np.ndarray:
    x = x[:, None] if x.ndim == 1 else x
    return 1 / (1 + np.exp(-(x @ np.asarray(w[:-1]) + w[-1])))


def fit(tune: list[Candidates], method: str, strength: float = 0.0) -> dict[str, tuple[float, ...]]:
    """Method -> pair name -> (a, [c,] b); pooled methods give every pair the same numbers, the
    shrunk one pulls each pair towards the pooled fit with prior precision ``strength``."""
    pooled = _pooled(tune, method)
    if method.endswith("pooled"):
        return {c.name: pooled for c in tune} | {"*": pooled}
    prior = pooled if method.endswith("shrunk") else None
    out = {c.name: fit_logistic(feature(c, method), c.label, prior=prior, strength=strength) for c in tune}
    out["*"] = pooled
    return out


def borrow_for_penalised(params: dict) -> dict:
    """``--drawing borrow``: the drawing plan (penalised, DRAWING_PENALTY) calibrated like text x image
    on z shifted by its penalty, as shipped before. On real photos its hits over 0.5 were all wrong
    (the built-in model's drawing vector of a photo is noise), so the default fits the pair itself."""
    a, _, b = params["text x image"]
    return {**params, "text x image.drawing": (a, 0.0, b - a * DRAWING_PENALTY)}


def tail_map(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A pair's map from relevance to the precision of the tune hits scoring at least that (so a
    threshold t would keep hits whose precision is t in every pair, if tune carried over): scores
    ascending, and their tail precision made to rise with the score (the pessimistic running
    minimum from the top); the top ``TAIL_LEAD`` hits share the precision of the top TAIL_LEAD."""
    order = np.argsort(-p, kind="stable")
    prec = np.cumsum(y[order]) / np.arange(1, len(p) + 1)  # (n,) precision of the top i
    lead = min(TAIL_LEAD, len(prec) - 1)
    prec[:lead] = prec[lead]
    return p[order][::-1], np.minimum.accumulate(prec)[::-1]


def predict(c: Candidates, method: str, params: dict) -> np.ndarray:
    return _apply(feature(c, method), params.get(c.name, params["*"]))


def ndcg_mixed(data: dict, params: dict[str, dict], prior: dict, means: dict,
               base: dict[str, float] | None = None, min_z: dict[str, float | None] | None = None,
               floor: float = 0.0, accepted: bool = False) -> dict[str, float]:
    """nDCG@10 of text queries (photo and sound captions) over one mixed store: photos (label and
    drawing views), sounds, every caption as a note (the query's own excluded) and voice notes.
    'today' ranks as recall does without calibration; each method ranks by relevance, a memory
    taking its best view's. With ``base`` (pair -> tune base rate), CHOSEN is also ranked with its
    views' evidence combined ("combined"): the best view's log-odds plus, for each other view kind,
    its log-odds minus its pair's base-rate log-odds (naive Bayes), so a view whose calibration is
    flat (the drawing view of a photo) neither lifts nor sinks a memory. "recall order" ranks as
    recall does with a fitted calibration (aimemory.calibration.order_key, counts): by CHOSEN's
    relevance, ties by today's standing, a secondary view counting only from z >= ``min_z`` (its
    kind -> threshold; None: never), memories below ``floor`` after, by standing; "recall order,
    z>=t" / "recall order, floor f": the same for each threshold in MIN_Z (no floor) / each floor in
    FLOORS (with ``min_z``), how tune chooses them. ``accepted``: gain for every item a person would
    accept (_calibration_data.pair_scores), not only those of the query's very concept."""
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
    gain = np.asarray([[answers(q, c) for c in concepts] for q in q_concept], bool) if accepted else \
        np.asarray(q_concept, object)[:, None] == np.asarray(concepts, object)[None, :]  # (q, items)
    own_note = off_n + np.arange(len(notes))
    gain[np.arange(len(notes)), own_note] = False
    rankers = ["today"] + list(params)
    values = {r: np.full((len(notes), n_items), -np.inf) for r in rankers}
    per_kind: dict[str, np.ndarray] = {}  # kind -> (q, items) best log-odds of CHOSEN
    standing: dict[str, np.ndarray] = {}  # kind -> (q, items) best standing today
    zs: dict[str, np.ndarray] = {}  # kind -> (q, items) z of the memory's best view of the kind
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
        standing[kind] = np.full((len(notes), n_items), -np.inf)
        np.maximum.at(standing[kind].T, owner, np.where(np.isfinite(s), today, -np.inf).T)
        own_bg = s[:, background_idx(s.shape[1])]
        own_bg = np.where(np.isfinite(own_bg), own_bg, 0.0)
        pr = prior.get(f"text x {kind}")
        z = np.stack([standardise(s[i], own_bg[i], pr or (own_bg[i].mean(), own_bg[i].std())) for i in range(len(s))])
        zs[kind] = np.full((len(notes), n_items), -np.inf)
        np.maximum.at(zs[kind].T, owner, np.where(np.isfinite(s), z, -np.inf).T)
        qm = l2(q - means.get(("query", "text", kind), 0))
        gm = l2(vecs - means.get(("view", kind), 0))
        gap = qm @ gm.T
        for method, ps in params.items():
            *a, b = ps.get(f"text x {kind}", ps["*"])
            xs = [z, s] if method.startswith("z + cosine") else \
                [s] if method.startswith("cosine") else [z] if method.startswith("z") else [gap]
            logit = sum(w * np.where(np.isfinite(x), x, 0.0) for w, x in zip(a, xs)) + b
            rel = 1 / (1 + np.exp(-logit))
            rel = np.where(np.isfinite(s), rel, -np.inf)
            np.maximum.at(values[method].T, owner, rel.T)
            if method == CHOSEN:
                best = per_kind.setdefault(kind, np.full((len(notes), n_items), -np.inf))
                np.maximum.at(best.T, owner, np.where(np.isfinite(s), logit, -np.inf).T)
    if base is not None:
        rankers.append("combined")
        stack = np.stack(list(per_kind.values()))  # (kinds, q, items)
        prior_logit = np.asarray([np.log(base[f"text x {k}"] / (1 - base[f"text x {k}"])) for k in per_kind])
        evidence = np.where(np.isfinite(stack), stack - prior_logit[:, None, None], 0.0)
        top = stack.max(0)
        best_evidence = np.take_along_axis(evidence, stack.argmax(0)[None], 0)[0]
        values["combined"] = np.where(np.isfinite(top), top + evidence.sum(0) - best_evidence, -np.inf)
    variants = {"recall order": (min_z or {}, floor)}
    variants |= {f"recall order, z>={t}": ({k: t for k in SECONDARY}, 0.0) for t in MIN_Z}
    variants |= {f"recall order, floor {f}": (min_z or {}, f) for f in FLOORS}
    for name, (gate, f) in variants.items():
        rankers.append(name)
        values[name] = recall_order(per_kind, standing, zs, gate, float(np.log(f / (1 - f))) if f else -np.inf)
    out = photo_recall(meta, gain, values["today"], values["recall order"])
    discount = 1 / np.log2(np.arange(2, 12))
    for r in rankers:
        top = np.argsort(-values[r], axis=1, kind="stable")[:, :10]
        dcg = (np.take_along_axis(gain, top, 1) * discount).sum(1)
        ideal = np.sort(gain, axis=1)[:, ::-1][:, :10] @ discount
        ok = ideal > 0
        out[r] = float((dcg[ok] / ideal[ok]).mean())
    return out


def photo_recall(meta: dict, gain: np.ndarray, today: np.ndarray, ordered: np.ndarray) -> dict[str, float]:
    """Text -> photo R@5 of photo captions over the photos alone (as ``recall(modality="image")``),
    today's order and the recall order: any photo of the concept, and the caption's own photo."""
    n = len(meta["photos"])  # the first n queries are photo captions, the first n items photos
    out = {}
    for name, values in (("today", today), ("recall order", ordered)):
        top = np.argsort(-values[:n, :n], axis=1, kind="stable")[:, :5]
        out[f"text->photo R@5 concept, {name}"] = float(np.take_along_axis(gain[:n, :n], top, 1).any(1).mean())
        out[f"text->photo R@5 strict, {name}"] = float((top == np.arange(n)[:, None]).any(1).mean())
    return out


def recall_order(logits: dict[str, np.ndarray], standing: dict[str, np.ndarray], zs: dict[str, np.ndarray],
                 min_z: dict[str, float | None], floor_logit: float = -np.inf) -> np.ndarray:
    """(q, items) values whose descending order is recall's with a fitted calibration: per memory its
    most relevant counting view (a SECONDARY view counts from z >= min_z[its kind]; every memory of
    the mixed lists has a primary view), ties by today's standing; memories whose relevance is under
    the floor after those above it, by their best standing over all views (as recall orders them)."""
    rel = np.full(next(iter(logits.values())).shape, -np.inf)
    key = rel.copy()
    for kind, logit in logits.items():
        if kind in SECONDARY:
            t = min_z.get(kind, -np.inf)
            logit = np.where(zs[kind] >= t, logit, -np.inf) if t is not None else np.full_like(logit, -np.inf)
        better = logit > rel
        rel, key = np.where(better, logit, rel), np.where(better, standing[kind], key)
    best = np.max(np.stack(list(standing.values())), 0)  # (q, items) best standing of any view
    above = rel >= floor_logit
    first = np.where(above, rel, best)  # above the floor by relevance, below by standing
    key = np.where(above, key, best)
    out = np.empty_like(rel)
    for i in range(len(rel)):  # lexicographic: above the floor, then relevance or standing, then standing
        order = np.lexsort((-np.nan_to_num(key[i], neginf=-1e9), -np.nan_to_num(first[i], neginf=-1e9),
                            -above[i].astype(np.int64)))
        out[i, order] = -np.arange(len(order), dtype=np.float64)
    return out


def print_report(res: dict, method_order: list[str]) -> None:
    print("\n".join(machine_lines()))
    print(f"\nmodel {res['model']}: fitted on tune ({res['tune pairs']} labelled hits), "
          f"reported on test ({res['test pairs']}); top {TOP} hits per query and pair; "
          f"shrinkage strength {res['strength']} (CV log loss {res['strength CV']})")
    keys = ["pooled ECE", "macro ECE", "pooled Brier", "small-store ECE", "matches ECE", "nDCG@10 mixed"]
    print(f"nDCG@10 mixed, {CHOSEN}, views combined: {fmt(res['methods'][CHOSEN]['nDCG@10 mixed, views combined'])}")
    print("\n" + "method".ljust(26) + "".join(k.rjust(17) for k in keys))
    for m in method_order:
        r = res["methods"][m]
        print(m.ljust(26) + "".join(fmt(r.get(k)).rjust(17) for k in keys))
    print(f"{'before calibration':26}" + "".rjust(17 * 5) + fmt(res["nDCG today"]).rjust(17))
    print(f"{'recall order (shipped)':26}" + "".rjust(17 * 5) + fmt(res["nDCG recall order"]).rjust(17))
    print(f"  small stores of matches ({SMALL_STORE} views, {STORE_MATCHES} of them matches where the query has "
          f"them), {CHOSEN}: {res['matches store']}")
    print(f"  secondary views order their memory from z >= {res['secondary min z']} "
          f"(chosen on tune, recall order nDCG@10 per threshold: {res['recall order nDCG tune']})")
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in res["text->photo R@5"].items()))
    print(f"  below relevance {res['order floor']} by standing (the highest floor within {FLOOR_SLACK} of the "
          f"best on tune: {res['recall order floor nDCG tune']})")
    print_spreads(res["methods"], method_order, SWEEP)
    for m in method_order:
        print_pairs(m, res["methods"][m], SWEEP)


def run(model: str, manifest: Path, log=print, drawing: str = "own", strength: float | None = None,
        max_speech: dict | None = None, secondary_min_z: float | None = None,
        topical_fit: str | dict[str, str] = "per pair", accepted: bool = False) -> tuple[dict, dict]:
    max_speech = max_speech or MAX_SPEECH
    tune_data = load_or_embed(model, manifest, "tune", max_speech["tune"], log)
    test_data = load_or_embed(model, manifest, "test", max_speech["test"], log)
    # fitted on the corpus's own labels; reported on them or (``accepted``) on what a person would accept
    tune_pairs, test_pairs = pair_scores(tune_data), pair_scores(test_data, accepted)
    topical = {split: [p for p in (notes_pair(model, split, PairScores), voice_pair(model, split, data, PairScores))
                       if p is not None] for split, data in (("tune", tune_data), ("test", test_data))}
    test_pairs += topical["test"]
    means = modality_means(tune_pairs)
    tune, prior = fit_material(tune_pairs, topical["tune"], topical_fit, means)
    test = [Candidates(p, prior.get(p.name), means) for p in test_pairs]
    small = [Candidates(p, prior.get(p.name), None, SMALL_STORE) for p in test_pairs]
    # a user's small store often holds several memories on one subject: the others raise the
    # background each match is judged against, and the store's share of matches is far above the
    # tune material's
    clustered = {split: [Candidates(p, prior.get(p.name), None, SMALL_STORE, STORE_MATCHES) for p in pairs]
                 for split, pairs in (("tune", tune_pairs + topical["tune"]), ("test", test_pairs))}
    chosen, losses = choose_strength(tune, CHOSEN) if strength is None else (strength, {})
    params = {m: fit(tune, m, chosen) for m in METHODS}
    if drawing == "borrow":
        for m in ("z + cosine, per pair", CHOSEN):
            params[m] = borrow_for_penalised(params[m])
    table = {}
    for m in METHODS:
        table[m] = method_metrics([c.row for c in test], [predict(c, m, params[m]) for c in test],
                                  [c.label for c in test], SWEEP)
        if not m.startswith("gap"):
            table[m]["small-store ECE"] = ece(np.concatenate([predict(c, m, params[m]) for c in small]),
                                              np.concatenate([c.label for c in small]))
            table[m]["matches ECE"] = ece(np.concatenate([predict(c, m, params[m]) for c in clustered["test"]]),
                                          np.concatenate([c.label for c in clustered["test"]]))
    # the secondary views' threshold: the recall order's nDCG on tune
    on_tune = ndcg_mixed(tune_data, params, prior, means)
    scores = {t: on_tune[f"recall order, z>={t}"] for t in MIN_Z}
    # the strictest threshold within FLOOR_SLACK of the best: where tune cannot tell them apart, a
    # view that is noise on real photos counts only where it stands out most
    near = [t for t in MIN_Z if scores[t] >= max(scores.values()) - FLOOR_SLACK]
    best_t = near[-1] if secondary_min_z is None else secondary_min_z
    min_z = {k: best_t for k in SECONDARY}
    on_tune = ndcg_mixed(tune_data, params, prior, means, min_z=min_z)
    floors = {f: on_tune[f"recall order, floor {f}"] for f in FLOORS}
    floor = max(f for f in FLOORS if floors[f] >= max(floors.values()) - FLOOR_SLACK)
    ndcg = ndcg_mixed(test_data, params, prior, means, {c.name: float(c.label.mean()) for c in tune}, min_z,
                      floor, accepted)
    for m in METHODS:
        table[m]["nDCG@10 mixed"] = ndcg[m]
    table[CHOSEN]["nDCG@10 mixed, views combined"] = ndcg["combined"]
    maps = {c.name: tail_map(predict(c, CHOSEN, params[CHOSEN]), c.label) for c in tune}
    table[TAIL] = method_metrics([c.row for c in test], [np.interp(predict(c, CHOSEN, params[CHOSEN]), *maps[c.name])
                                                          for c in test], [c.label for c in test], SWEEP)
    res = {"model": model, "tune pairs": sum(len(c.label) for c in tune), "strength": chosen,
           "matches store": {split: _store_figures(cands, params[CHOSEN]) for split, cands in clustered.items()},
           "strength CV": {str(k): round(v, 4) for k, v in losses.items()},
           "test pairs": sum(len(c.label) for c in test), "methods": table, "nDCG today": ndcg["today"],
           "secondary min z": best_t, "order floor": floor,
           "recall order floor nDCG tune": {str(f): round(v, 4) for f, v in floors.items()},
           "recall order nDCG test": {k: round(v, 4) for k, v in ndcg.items() if k.startswith("recall order")},
           "recall order nDCG tune": {str(t): round(v, 4) for t, v in scores.items()},
           "nDCG recall order": ndcg["recall order"],
           "text->photo R@5": {k: round(v, 4) for k, v in ndcg.items() if k.startswith("text->photo")},
           "params": {m: {k: list(v) for k, v in p.items()} for m, p in params.items()},
           "tune hits": {c.name: [len(c.label), int(c.label.sum())] for c in tune}}
    return res, {"prior": prior, "params": params, "min_z": min_z, "floor": floor}


def _store_figures(cands: list[Candidates], ps: dict) -> dict:
    """Pooled ECE and Brier of the chosen fit over small stores of matches, and how many of the
    matches ``min_relevance=0.5`` keeps there (recall) at what precision."""
    rel = np.concatenate([predict(c, CHOSEN, ps) for c in cands])
    label = np.concatenate([c.label for c in cands])
    kept = rel >= 0.5
    return {"ECE": round(float(ece(rel, label)), 4), "Brier": round(float(np.mean((rel - label) ** 2)), 4),
            "recall@0.5": round(float(kept[label > 0].mean()), 3) if (label > 0).any() else None,
            "precision@0.5": round(float(label[kept].mean()), 3) if kept.any() else None}


def calibration_of(model: str, fitted: dict) -> Calibration:
    """The chosen method's numbers as the file recall reads."""
    ps, prior = fitted["params"][CHOSEN], fitted["prior"]
    pairs = {}
    for name, (a, c, b) in ps.items():
        if name == "*":
            continue
        qm, kind = name.split(" x ")
        mean, std = prior[name]
        pairs[pair_key(qm, kind)] = PairFit(round(a, 4), round(b, 4), round(mean, 4), round(std, 4), round(c, 4),
                                            SECONDARY.get(kind), fitted["min_z"].get(kind))
    a, b = fitted["params"]["z, pooled"]["*"]
    return Calibration(model, pairs, PairFit(round(a, 4), round(b, 4)), True, fitted["floor"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="aimemory-base")
    ap.add_argument("--manifest", type=Path, default=None, help="default: the real corpus's cache, built if missing")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--write", action="store_true", help=f"write the {CHOSEN!r} fit to models/<model>/calibration.json")
    ap.add_argument("--drawing", choices=("own", "borrow"), default="own",
                    help="the drawing view: calibrated like text x photo on its penalised z, or fitted itself")
    ap.add_argument("--strength", type=float, default=None, help="shrinkage prior precision (default: chosen by CV)")
    ap.add_argument("--secondary-min-z", type=float, default=None,
                    help="the z from which a secondary view orders its memory (default: chosen on tune)")
    ap.add_argument("--max-speech", type=int, nargs=2, default=None, metavar=("TUNE", "TEST"),
                    help="spoken clips per split (a spread sample; default all)")
    ap.add_argument("--topical", choices=("per pair", "replace", "add", "none"), default="per pair",
                    help="the topical notes and searches in the fit of the pairs they cover: as TOPICAL_FIT says, "
                         "instead of the corpus's labels, beside them, or not at all (always reported on test)")
    ap.add_argument("--accepted", action="store_true",
                    help="report on test counting every hit a person would accept (the same thing in other words, "
                         "or a kind of it: _concept_groups.py), not only the very concept; the fit is unchanged")
    args = ap.parse_args(argv)
    import torch
    from real_corpus import build, default_cache

    torch.set_num_threads(args.threads)
    manifest = args.manifest or build(default_cache())
    t0 = time.time()
    res, fitted = run(args.model, manifest, drawing=args.drawing, strength=args.strength,
                      max_speech=None if args.max_speech is None else dict(zip(("tune", "test"), args.max_speech)),
                      secondary_min_z=args.secondary_min_z, topical_fit=args.topical, accepted=args.accepted)
    res["seconds"] = round(time.time() - t0, 1)
    print_report(res, [*METHODS, TAIL])
    print(f"\nchosen: {CHOSEN}; {res['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if args.write:
        print("wrote", save_calibration(calibration_of(args.model, fitted)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
