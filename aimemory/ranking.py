"""How recall ranks the memories its query plans found.

Every hit is calibrated for its pair (query modality x view kind, :mod:`.calibration`); a memory keeps
its best view of each kind per plan (a voice note's transcript is judged as speech even where its
sound view has the higher cosine). A memory's relevance is that of its most relevant view that counts
(:func:`.calibration.counts`), its standing that of its best-standing view, and
:func:`.calibration.order_key` orders memories by them: with a fitted calibration by relevance (one
scale whatever the modality) down to the model's floor, then by standing; without a fit by standing.
A secondary view (another model's view of the same item, such as the built-in model's drawing view
of a photo) counts only where it stands out (:attr:`.calibration.PairFit.min_z`); a memory none of
whose found views counts is judged by its view of the kind the secondary one stands in for, looked
up when it was not among the hits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np

from .calibration import Calibration, PairFit, Relevance, above_floor, background, counts, order_key
from .encoders.base import QueryPlan

if TYPE_CHECKING:  # pragma: no cover
    from .store import MemoryStore


@dataclass(frozen=True)
class PlanRun:
    """One query plan as recall ran it: the views it may match (``allowed`` (n,) bool over catalog
    positions) and its background's mean and spread, which put its cosines on a common standing."""

    plan: QueryPlan
    allowed: np.ndarray
    mean: float = 0.0
    std: float = 1.0
    standardised: bool = False  # several plans: standing is the standardised cosine minus the penalty
    keys: np.ndarray | None = None  # the allowed keys its index search was given (None: every view)

    def standing(self, cosines: np.ndarray) -> np.ndarray:
        if not self.standardised:
            return cosines
        return (cosines - self.mean) / self.std - self.plan.penalty


class RankedView(NamedTuple):
    """A view recall found (or looked up): its standing, relevance, z, cosine, position and fit."""

    standing: float
    relevance: float
    z: float
    cosine: float
    position: int
    fit: PairFit


#: (plan run, kind code) -> the keys of the background sample of that kind among the run's views
SampleKeys = Callable[[int, int], np.ndarray]


class ViewRanking:
    """Collects the hits of each plan run and ranks their memories (see the module doc)."""

    def __init__(self, store: "MemoryStore", calibration: Calibration, query_modality: str,
                 sample_keys: SampleKeys, samples_in_runs: bool = True):
        """``samples_in_runs``: whether ``sample_keys`` draws from each run's own allowed views (not
        for a filtered query, whose hits are judged against the whole namespace)."""
        self.store, self.calibration, self.query_modality = store, calibration, query_modality
        self.sample_keys, self.samples_in_runs = sample_keys, samples_in_runs
        self.kind_codes, self.kind_names = store.catalog.codes_of("kind")
        self.code_of = {name: code for code, name in enumerate(self.kind_names)}
        self.runs: list[PlanRun] = []
        self.views: dict[str, list[RankedView]] = {}  # id -> its best view of each kind, per run
        self._relevance: dict[tuple[int, int], Relevance] = {}

    def relevance(self, run: int, code: int) -> Relevance:
        """The calibration of plan run ``run``'s hits on views of kind ``code`` in this store."""
        if (run, code) not in self._relevance:
            plan_run = self.runs[run]
            plan, keys = plan_run.plan, self.sample_keys(run, code)
            vector = np.asarray(plan.vector, np.float32)
            # a repeated filter's search scored every allowed view, the sample among them
            sims = None if plan_run.keys is None or not self.samples_in_runs else \
                self.store.index.scores_of(vector, plan_run.keys, keys)
            sample = background(self.store, None, keys) if sims is None else None
            self._relevance[(run, code)] = Relevance(self.calibration, plan.modality or self.query_modality,
                                                     self.kind_names[code], vector, sample, plan.penalty, sims)
        return self._relevance[(run, code)]

    def scored(self, run: int, code: int, cosines: np.ndarray, positions: list[int]) -> list[RankedView]:
        """Views of one kind found by one run, (m,) cosines -> their ranked views."""
        rel = self.relevance(run, code)
        (values, zs), standing = rel.judged(cosines), self.runs[run].standing(cosines)  # (m,) each
        fit = rel.fit
        return [RankedView(s, v, z, c, p, fit) for v, z, s, c, p in
                zip(values.tolist(), zs.tolist(), standing.tolist(), cosines.tolist(), positions)]

    def add(self, run: PlanRun, hits: dict[tuple[str, int], tuple[float, int]]) -> None:
        """One plan run's hits: (memory id, kind code) -> (cosine, position)."""
        self.runs.append(run)
        i = len(self.runs) - 1
        found = list(hits.values())
        cosines = np.fromiter((score for score, _ in found), np.float64, len(found))  # (h,)
        positions = [p for _, p in found]
        ids = [mid for mid, _ in hits]
        codes = [code for _, code in hits]
        if len(set(codes)) == 1:  # the usual case: one kind of view
            for mid, view in zip(ids, self.scored(i, codes[0], cosines, positions)):
                self.views.setdefault(mid, []).append(view)
            return
        code_array = np.asarray(codes, np.int64)  # (h,)
        for code in np.unique(code_array).tolist():
            at = np.flatnonzero(code_array == code)
            for j, view in zip(at.tolist(), self.scored(i, code, cosines[at], [positions[j] for j in at])):
                self.views.setdefault(ids[j], []).append(view)

    def ranked(self) -> dict[str, tuple[float, float, int]]:
        """memory id -> (standing, relevance, position), best first: the memory's relevance is that of
        its most relevant view that counts; the view shown (its standing and position) is that one
        where relevance orders the memory, else its best-standing view."""
        lacking = {mid: max(views, key=_standing) for mid, views in self.views.items()
                   if (len(views) > 1 or views[0].fit.secondary_to is not None)
                   and not any(counts(v.fit, v.z) for v in views)}
        if lacking:  # their primary views fell below the hits: looked up, so they are judged by them
            for mid, found in self._look_up(lacking).items():
                self.views[mid].append(found)
        out: list[tuple[tuple[float, ...], str, tuple[float, float, int]]] = []
        for mid, views in self.views.items():
            if len(views) == 1:  # the usual case: its one view is both the judged and the best-standing
                v = views[0]
                out.append((order_key(self.calibration, v.relevance, v.standing, v.cosine), mid,
                            (v.standing, v.relevance, v.position)))
                continue
            judged = max([v for v in views if counts(v.fit, v.z)] or views, key=lambda v: (v.relevance, v.standing))
            standing = max(views, key=_standing)
            order = order_key(self.calibration, judged.relevance, standing.standing, standing.cosine)
            shown = judged if above_floor(order) else standing
            out.append((order, mid, (shown.standing, judged.relevance, shown.position)))
        # exact ties (two memories with the same vector) go by catalog position, oldest first, as the
        # search orders them by key: the order then does not depend on which search path found them
        out.sort(key=lambda t: (t[0], -t[2][2]), reverse=True)
        return {mid: value for _, mid, value in out}

    def _look_up(self, lacking: dict[str, RankedView]) -> dict[str, RankedView]:
        """Memory id -> its best view of the kind its secondary view ``lacking[id]`` stands in for,
        scored by the first run that may match it (one index search among those views per run);
        memories without such a view are left out."""
        catalog = self.store.catalog
        ids, secondaries = list(lacking), list(lacking.values())
        namespaces = catalog.codes_of("namespace")[0]
        positions, which = catalog.live_positions_of(ids)  # (m,) each: every live view of these memories
        want_kind = np.asarray([self.code_of.get(v.fit.secondary_to or "", -1) for v in secondaries], np.int64)
        want_namespace = namespaces[[v.position for v in secondaries]]  # (l,)
        keep = (self.kind_codes[positions] == want_kind[which]) & (namespaces[positions] == want_namespace[which])
        positions, which = positions[keep], which[keep]  # (m',) the wanted views and whose they are
        owner = dict(zip(positions.tolist(), which.tolist()))
        found = np.zeros(len(ids), bool)  # (l,)
        out: dict[str, RankedView] = {}
        for i, run in enumerate(self.runs):
            mine = positions[run.allowed[positions] & ~found[which]]
            if not len(mine):
                continue
            # a search among these views alone: exact, and no vector read (the flat index gathers
            # them, an IVF one scans only the lists holding them: see index/ivf_lists.py)
            vkeys = catalog.array("vkey")[mine]  # (m,)
            order = np.argsort(vkeys)
            scores, keys = self.store.index.search(np.asarray(run.plan.vector, np.float32)[None, :], len(mine),
                                                   vkeys[order])  # (1, m) each, -1 keys pad
            held = keys[0] >= 0
            keys, cosines = keys[0][held], scores[0][held].astype(np.float64)  # (m',)
            at = mine[order][np.searchsorted(vkeys[order], keys)]  # (m',) the position of each key
            codes = self.kind_codes[at]
            for code in np.unique(codes).tolist():
                sel = np.flatnonzero(codes == code)
                for j, view in zip(sel, self.scored(i, code, cosines[sel], at[sel].tolist())):
                    k = owner[int(at[j])]
                    if ids[k] not in out or view.relevance > out[ids[k]].relevance:
                        out[ids[k]] = view
                    found[k] = True
        return out


def _standing(v: RankedView) -> tuple[float, float]:
    return (v.standing, v.cosine)
