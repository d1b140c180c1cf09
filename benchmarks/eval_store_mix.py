"""Calibration fitted on a mix of store sizes, against the shipped fit on large stores alone: the
experiment behind the model card's "small stores of matches" paragraph (not shipped).

    python benchmarks/eval_store_mix.py

The shipped fit (benchmarks/eval_calibration.py, ``z + cosine, shrunk``) sees each tune query's top
hits in the whole corpus. The mixed fits also see them in small stores: 12 random views, 12 views of
which 3 are the query's matches, 24 and 48 views with 3 matches. Each is reported on test in large
stores, small random stores and small stores of matches (pooled ECE and Brier), with the mixed-list
nDCG@10 and the share of matches that ``min_relevance=0.5`` keeps in the stores of matches.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_calibration as ev  # noqa: E402
from _calibration_candidates import Candidates, fit_material, merge_by_name, modality_means  # noqa: E402
from _calibration_data import PairScores, load_or_embed, pair_scores  # noqa: E402
from _calibration_metrics import ece  # noqa: E402
from _machine import machine_lines  # noqa: E402
from _notes_data import notes_pair, voice_pair  # noqa: E402

MODEL = "aimemory-base"
MIXES = {"large stores (shipped)": [], "+ 12 random, 12 with 3 matches": [(12, 0), (12, 3)],
         "+ 12 with 3 matches": [(12, 3)], "+ 12 random, 24 and 48 with 3 matches": [(12, 0), (24, 3), (48, 3)]}


def _without_gap(c: Candidates) -> Candidates:
    """A copy without the gap-removed cosine (small-store candidates have none, and merging needs alike)."""
    c = copy.copy(c)
    if hasattr(c, "gap"):
        del c.gap
    return c


def main() -> int:
    from real_corpus import build, default_cache

    print("\n".join(machine_lines()))
    manifest = build(default_cache())
    data = {s: load_or_embed(MODEL, manifest, s, ev.MAX_SPEECH[s], print) for s in ("tune", "test")}
    pairs = {s: pair_scores(d) for s, d in data.items()}
    topical = {s: [p for p in (notes_pair(MODEL, s, PairScores), voice_pair(MODEL, s, d, PairScores)) if p is not None]
               for s, d in data.items()}
    means = modality_means(pairs["tune"])
    tune, prior = fit_material(pairs["tune"], topical["tune"], "per pair", means)
    fitted = {c.name for c in tune}
    tests = pairs["test"] + topical["test"]
    stores = {"large": [Candidates(p, prior.get(p.name), means) for p in tests],
              "small": [Candidates(p, prior.get(p.name), None, ev.SMALL_STORE) for p in tests],
              "matches": [Candidates(p, prior.get(p.name), None, ev.SMALL_STORE, ev.STORE_MATCHES) for p in tests]}
    print(f"\n{'fit':40} {'large ECE':>10} {'small ECE':>10} {'matches ECE':>12} {'nDCG@10':>8} {'matches kept':>13}")
    for label, mix in MIXES.items():
        extra = [Candidates(p, prior.get(p.name), None, n, m) for n, m in mix
                 for p in pairs["tune"] + topical["tune"] if p.name in fitted]
        material = merge_by_name([_without_gap(c) for c in tune] + extra) if extra else tune
        strength, _ = ev.choose_strength(material, ev.CHOSEN)
        ps = ev.fit(material, ev.CHOSEN, strength)
        figures = {}
        for name, cands in stores.items():
            rel = np.concatenate([ev.predict(c, ev.CHOSEN, ps) for c in cands])
            figures[name] = (rel, np.concatenate([c.label for c in cands]))
        params = {m: ev.fit(tune, m, strength) for m in ev.METHODS} | {ev.CHOSEN: ps}
        ndcg = ev.ndcg_mixed(data["test"], params, prior, means)[ev.CHOSEN]
        rel, label_ = figures["matches"]
        kept = float((rel >= 0.5)[label_ > 0].mean())
        print(f"{label:40} " + " ".join(f"{ece(*figures[n]):{w}.3f}" for n, w in (("large", 10), ("small", 10),
                                                                                ("matches", 12)))
              + f" {ndcg:8.3f} {kept:13.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
