"""How recall ranks the memories its query plans found.

Every hit is calibrated for its pair (query modality x view kind, :mod:`.calibration`), and a memory
keeps its best view of each kind (a voice note's transcript is judged as speech even where its sound
view has the higher cosine). The view that ranks the memory is its best by
:func:`.calibration.order_key` among the views that count (:func:`.calibration.counts`): with a fitted
calibration the most relevant one, so a mixed list is ordered by one scale whatever the modality;
without a fit the one that stands out most. A secondary view (another model's view of the same item,
such as the built-in model's drawing view of a photo) counts only where the memory's backing view
agrees; when that view was not among the hits it is looked up, so the memory is judged by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np

from .calibration import Calibration, PairFit, Relevance, background, counts, order_key
from .encoders.base import QueryPlan
from .write_ahead import vectors_for

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

    def standing(self, cosines: np.ndarray) -> np.ndarray:
        if not self.standardised:
            return cosines
        return (cosines - self.mean) / self.std - self.plan.penalty


class RankedView(NamedTuple):
    """A memory's best view of one kind: how it orders, its standing, relevance, z and position."""

    order: tuple[float, ...]
    standing: float
    relevance: float
    z: float
    position: int
    fit: PairFit


#: (plan run, kind code) -> the keys of the background sample of that kind among the run's views
SampleKeys = Callable[[int, int], np.ndarray]


class ViewRanking:
    """Collects the hits of each plan run and ranks their memories (see the module doc)."""

    def __init__(self, store: "MemoryStore", calibration: Calibration, query_modality: str,
                 sample_keys: SampleKeys):
        self.store, self.calibration, self.query_modality = store, calibration, query_modality
        self.sample_keys = sample_keys
        self.kind_codes, self.kind_names = store.catalog.codes_of("kind")
        self.runs: list[PlanRun] = []
        self.views: dict[str, dict[int, RankedView]] = {}  # id -> kind code -> best view of that kind
        self._relevance: dict[tuple[int, int], Relevance] = {}

    def relevance(self, run: int, code: int) -> Relevance:
        """The calibration of plan run ``run``'s hits on views of kind ``code`` in this store."""
        if (run, code) not in self._relevance:
            plan = self.runs[run].plan
            sample = background(self.store, None, self.sample_keys(run, code))
            self._relevance[(run, code)] = Relevance(self.calibration, plan.modality or self.query_modality,
                                                     self.kind_names[code], np.asarray(plan.vector, np.float32),
                                                     sample, plan.penalty)
        return self._relevance[(run, code)]

    def scored(self, run: int, code: int, cosines: np.ndarray, positions: list[int]) -> list[RankedView]:
        """Views of one kind found by one run, (m,) cosines -> their ranked views."""
        rel = self.relevance(run, code)
        values, zs, standing = rel.of(cosines), rel.z(cosines), self.runs[run].standing(cosines)  # (m,) each
        return [RankedView(order_key(self.calibration, float(v), float(s), float(c)), float(s), float(v),
                           float(z), p, rel.fit)
                for v, z, s, c, p in zip(values, zs, standing, cosines, positions)]

    def add(self, run: PlanRun, hits: dict[tuple[str, int], tuple[float, int]]) -> None:
        """One plan run's hits: (memory id, kind code) -> (cosine, position)."""
        self.runs.append(run)
        i = len(self.runs) - 1
        codes = np.asarray([code for _, code in hits], np.int64)  # (h,)
        cosines = np.asarray([score for score, _ in hits.values()], np.float64)  # (h,)
        ids = [mid for mid, _ in hits]
        positions = [p for _, p in hits.values()]
        for code in np.unique(codes).tolist():
            at = np.flatnonzero(codes == code)
            for j, found in zip(at, self.scored(i, code, cosines[at], [positions[j] for j in at])):
                kept = self.views.setdefault(ids[j], {}).get(code)
                if kept is None or found.order > kept.order:
                    self.views[ids[j]][code] = found

    def ranked(self) -> dict[str, tuple[float, float, int]]:
        """memory id -> (standing, relevance, position) of the view that ranks it, best first."""
        best = {mid: self._ranking_view(of_kind) for mid, of_kind in self.views.items()}
        return {mid: (v.standing, v.relevance, v.position)
                for mid, v in sorted(best.items(), key=lambda kv: kv[1].order, reverse=True)}

    def _ranking_view(self, of_kind: dict[int, RankedView]) -> RankedView:
        names = {name: code for code, name in enumerate(self.kind_names)}

        def backing(v: RankedView) -> int | None:
            return None if v.fit.secondary_to is None else names.get(v.fit.secondary_to)

        for v in list(of_kind.values()):
            code = backing(v)
            if code is not None and code not in of_kind:
                found = self._look_up(v.position, code)
                if found is not None:
                    of_kind[code] = found
        counted = [v for v in of_kind.values()
                   if counts(v.fit, None if (c := backing(v)) is None or c not in of_kind else of_kind[c].z)]
        return max(counted or of_kind.values(), key=lambda v: v.order)

    def _look_up(self, position: int, code: int) -> RankedView | None:
        """The best view of kind ``code`` of the memory at ``position``, scored by the first run that
        may match it; None when none may (the memory's secondary view then counts on its own)."""
        catalog = self.store.catalog
        namespace = catalog.get(position, "namespace")
        siblings = [p for p in catalog.live_positions(catalog.get(position, "id"))
                    if self.kind_codes[p] == code and catalog.get(p, "namespace") == namespace]
        for i, run in enumerate(self.runs):
            mine = [p for p in siblings if run.allowed[p]]
            if not mine:
                continue
            vkeys = catalog.array("vkey")[mine]  # (m,)
            keys, vectors = vectors_for(self.store, vkeys)  # (m',), (m', dim)
            if not len(keys):
                return None
            cosines = vectors @ np.asarray(run.plan.vector, np.float32)  # (m',)
            best = int(np.argmax(cosines))
            at = mine[int(np.flatnonzero(vkeys == keys[best])[0])]
            return self.scored(i, code, cosines[best:best + 1].astype(np.float64), [at])[0]
        return None
