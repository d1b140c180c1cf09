"""The hits benchmarks/eval_calibration.py calibrates: per modality pair, each query's top ``TOP``
views with their cosine, standing (z) and label, and the tune material each pair is fitted on (the
corpus's labelled pairs, with the topical notes and searches of benchmarks/_notes_data.py joined as
``TOPICAL_FIT`` says)."""

from __future__ import annotations

import dataclasses

import numpy as np
from _calibration_data import PairScores

from aimemory.calibration import BACKGROUND_SAMPLE, standardise

TOP = 10  # hits per query and pair that are calibrated (what a recall list shows)
#: how the topical material (benchmarks/_notes_data.py) joins a pair's fit: beside the corpus's
#: labels where those mark every same-concept item relevant (caption notes), instead of them where
#: they mark only the very clip or prompt (so every other one on the query's topic counts against it)
TOPICAL_FIT = {"text x text": "add", "text x audio.speech": "replace", "speech x text": "replace"}


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def background_idx(n: int) -> np.ndarray:
    """The fixed spread recall samples: at most BACKGROUND_SAMPLE evenly spaced views."""
    return np.linspace(0, n - 1, min(n, BACKGROUND_SAMPLE)).astype(int)


class Candidates:
    """One pair's hits: per query its top TOP valid views, with cosine, z, gap-removed cosine, label.
    With ``small``, each query sees only that many random views (its background too)."""

    def __init__(self, pair: PairScores, prior: tuple | None, means: dict | None, small: int | None = None,
                 matches: int = 0):
        s = pair.scores()  # (q, g)
        valid = pair.valid
        if small is not None:  # ``matches``: up to that many of the query's relevant views are among them
            rng = np.random.default_rng(0)
            seen = np.zeros_like(valid)
            for q in range(len(s)):
                mine = np.flatnonzero(pair.relevant[q] & valid[q])
                mine = rng.choice(mine, min(matches, len(mine)), replace=False) if matches else mine[:0]
                rest = np.setdiff1d(np.arange(s.shape[1]), mine)
                seen[q, mine] = True
                seen[q, rng.choice(rest, max(0, min(small - len(mine), len(rest))), replace=False)] = True
            valid = valid & seen
        masked = np.where(valid, s, -np.inf)
        top = np.argsort(-masked, axis=1, kind="stable")[:, :TOP]  # (q, TOP)
        rows = np.repeat(np.arange(len(s)), top.shape[1])
        cols = top.ravel()
        keep = np.isfinite(masked[rows, cols])
        rows, cols = rows[keep], cols[keep]
        self.pair = pair
        self.name, self.row = pair.name, pair.row
        self.cosine = s[rows, cols]
        self.label = pair.relevant[rows, cols].astype(np.float64)
        self.query = rows  # (n,) which query each hit answers
        self.n_queries = len(s)
        if small is None:  # (q, m): the query's cosines with the sample recall would draw
            bg = list(s[:, background_idx(s.shape[1])])
        else:
            bg = [s[q, valid[q]] for q in range(len(s))]
        self.centres, self.spreads = np.asarray([b.mean() for b in bg]), np.asarray([b.std() for b in bg])
        self.stats = background_stats(self.centres, self.spreads)
        prior = prior or self.stats[:2]
        self.z = np.concatenate([standardise(s[q, cols[rows == q]], bg[q], prior) for q in range(len(s))])
        if means is not None and small is None:
            qm = l2(pair.queries - means[("query", pair.query_modality, pair.kind)])
            gm = l2(pair.gallery - means[("view", pair.kind)])
            self.gap = np.einsum("ij,ij->i", qm[rows], gm[cols])


def background_stats(centres: np.ndarray, spreads: np.ndarray) -> tuple[float, float, float]:
    """A pair's prior background from its queries' (q,) background means and spreads: the typical
    mean and spread, and how much the mean moves per query."""
    return float(centres.mean()), float(spreads.mean()), float(centres.std())


def merge_by_name(cands: list[Candidates]) -> list[Candidates]:
    """One Candidates per pair name: a pair's materials (PairScores.group) are fitted together, each
    query keeping its own background."""
    out: dict[str, Candidates] = {}
    for c in cands:
        if c.name not in out:
            out[c.name] = c
            continue
        a = out[c.name]
        m = Candidates.__new__(Candidates)
        m.__dict__.update(a.__dict__)
        m.row = a.name
        for field in ("cosine", "label", "z", "centres", "spreads") + (("gap",) if hasattr(a, "gap") else ()):
            setattr(m, field, np.concatenate([getattr(a, field), getattr(c, field)]))
        m.query = np.concatenate([a.query, c.query + a.n_queries])
        m.n_queries = a.n_queries + c.n_queries
        m.stats = background_stats(m.centres, m.spreads)
        out[c.name] = m
    return list(out.values())


def fit_material(corpus: list[PairScores], topical: list[PairScores], how: str | dict[str, str],
                 means: dict) -> tuple[list[Candidates], dict[str, tuple[float, float]]]:
    """The tune candidates each pair is fitted on, and each pair's prior background (mean, std).
    ``how`` the topical material joins a pair's fit: "per pair" (TOPICAL_FIT), "replace", "add",
    "none", or a pair -> one of those."""
    table = TOPICAL_FIT if how == "per pair" else how if isinstance(how, dict) else None

    def mode(name: str) -> str:
        return table.get(name, "none") if table is not None else str(how)

    notes = [p for p in topical if p.name == "text x text"]
    # a voice note is searched by its transcript, and a spoken search by what it said: the written
    # notes teach those fits too
    if mode("text x audio.speech") == "replace":
        topical = topical + [dataclasses.replace(p, kind="audio.speech") for p in notes]
    if mode("speech x text") == "replace":
        topical = topical + [dataclasses.replace(p, query_modality="speech") for p in notes]
    topical = [p for p in topical if mode(p.name) != "none"]
    replaced = {p.name for p in topical if mode(p.name) == "replace"}
    tune = merge_by_name([Candidates(p, None, means) for p in corpus if p.name not in replaced] +
                         [Candidates(p, None, means) for p in topical])
    # where topical material is fitted, the prior background is its own: written notes and searches
    # are what a user's store holds, the captions are not
    prior = {c.name: c.stats[:2] for c in tune} | \
        {c.name: c.stats[:2] for c in merge_by_name([Candidates(p, None, None) for p in topical])}
    return tune, prior


def modality_means(pairs: list[PairScores]) -> dict:
    """Mean query vector per (query modality, kind) and mean view vector per kind, from tune."""
    out = {}
    for p in pairs:
        out[("query", p.query_modality, p.kind)] = p.queries.mean(0)
        out.setdefault(("view", p.kind), p.gallery.mean(0))
    return out
