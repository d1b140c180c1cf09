"""Recall: rank views by cosine inside the allowed set, collapse them to memories, optionally fuse
with full-text ranks. Namespaces are enforced twice: inside FAISS (an id selector) and again on the
way out, so a bug in one layer cannot leak another tenant's memory."""

from __future__ import annotations

import json
import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

import numpy as np

from .calibration import Relevance, background, load_calibration, sample_keys
from .device import one_torch_thread
from .encoders.base import QueryPlan
from .image_text import attach_ocr
from .inputs import Item
from .lookup import memories_at, memory_at
from .ranking import PlanRun, ViewRanking
from .records import Hit, Hits
from .semantics import check_half_life, recency_ranking, reweigh
from .storage.catalog import Catalog

if TYPE_CHECKING:  # pragma: no cover
    from .store import MemoryStore

OVERFETCH = 4  # views fetched per wanted memory: memories with several views need more
HIT_COLUMNS = ("namespace", "modality", "kind", "start", "end", "snippet")  # a hit's fields from its view
SNIPPET_CHARS = 160
_WORD = re.compile(r"\w+")
RRF_K = 60  # reciprocal-rank fusion constant (Cormack, Clarke & Buettcher, SIGIR 2009)
FEW_ALLOWED = 8  # allowed views under 1/this of the rows are handled by position, more by mask
PLAN_THREADS = 2  # threads that run a query's further plans while the calling thread runs its first
_THREADS_LOCK = threading.Lock()
_plan_pool: list[ThreadPoolExecutor | None] = [None]
_T = TypeVar("_T")
_R = TypeVar("_R")


def run_recall(store: "MemoryStore", item: Item, k: int, namespace: str,
               modalities: Sequence[str] | None, where: Mapping[str, Any] | None,
               since: float | None, until: float | None, hybrid: bool, half_life: float | None = None,
               min_relevance: float | None = None) -> Hits:
    catalog = store.catalog
    half_life = None if half_life is None else check_half_life(half_life)
    # a query without clock filters sees a mask fixed until the catalog changes: it, and what is
    # derived from it (per plan and kind), is cached under this key (see Catalog.memo)
    where_key = _where_key(where)
    fixed = None if since is not None or until is not None or catalog.expiring or where_key is None else \
        ("recall", namespace, None if modalities is None else tuple(sorted(set(modalities))), where_key)
    if fixed is not None and where:  # rebuilt after a write: it has no cheap way to grow
        mask = catalog.memo((*fixed, "mask"), lambda: _read_only(catalog.mask(namespace, modalities, where=where)))
    else:
        mask = catalog.mask(namespace, modalities, since, until, where)
    n_allowed = int(mask.sum()) if fixed is None else \
        catalog.memo((*fixed, "n"), lambda: int(mask.sum()), lambda start: int(mask[start:].sum()))
    if n_allowed == 0:
        return Hits()
    plans = _plans(store, item)  # vectors not yet computed: the plans' runs compute them side by side
    # relevance is the hit's own, whatever the query's filters: hits are judged against the
    # namespace's views (a filter's few views made the same hit read 0.25 or 0.37)
    filtered = bool(where) or since is not None or until is not None or modalities is not None
    backdrop = (catalog.mask(namespace), None if catalog.expiring else ("recall", namespace, None, "")) \
        if filtered else None
    want = k if not hybrid else max(k, 20)
    cosines_of: dict[str, float] = {}
    relevance: dict[str, float] = {}

    by_relevance = load_calibration(store.encoder.model_id).fitted

    def best_first(n: int) -> dict[str, tuple[float, int]]:
        """The n best memories: id -> (relevance of a fitted model, else cosine; position), best first."""
        ranked = _planned_ranking(store, item.modality, plans, mask, n, fixed, backdrop)
        for mid, (cosine, rel, _) in ranked.items():
            cosines_of[mid], relevance[mid] = cosine, rel
        return {mid: (rel if by_relevance else cosine, p) for mid, (cosine, rel, p) in ranked.items()}

    weights: dict[str, float] = {}
    if half_life is None:
        order = best_first(want)
    else:  # recency: (relevance or cosine) x 0.5 ** (age / half_life), see aimemory.semantics
        order, weights = recency_ranking(best_first, want, n_allowed, catalog, half_life)
    # the shown score is the cosine (times the recency weight)
    best = {mid: (cosines_of[mid] * weights.get(mid, 1.0), p) for mid, (_, p) in order.items()}
    if not best:
        return Hits()
    fusion: dict[str, float] = {}
    if hybrid and item.modality == "text":
        if store.encoder.private_kinds:  # keyword hits are scored against shared views only
            mask = mask & ~catalog.is_in("kind", store.encoder.private_kinds)
        fused = _fuse_with_full_text(store, item.payload, namespace, mask, best)  # type: ignore[arg-type]
        if half_life is not None:
            fused, weights = reweigh(fused, catalog, half_life)
        fusion = {mid: value for mid, (value, _) in fused.items()}
        query = np.asarray(plans[0].vector, np.float32)[None, :]  # (1, dim): scores keyword-only hits
        cosines = _best_cosines(store, query, [m for m in list(fused)[:k] if m not in best], namespace, mask)
        best = {mid: (best[mid][0] if mid in best else cosines[mid] * weights.get(mid, 1.0), p)
                for mid, (_, p) in list(fused.items())[:k]}
        relevance.update(_keyword_relevance(store, item.modality, plans[0], mask if backdrop is None else backdrop[0],
                                            {m: best[m] for m in cosines}))
    shown = [(mid, score, p) for mid, (score, p) in list(best.items())[:k]
             if min_relevance is None or (relevance.get(mid) is not None and relevance[mid] >= min_relevance)]
    at = np.asarray([p for _, _, p in shown], np.int64)
    # the shown views' fields, one read per column; the namespace check is defence in depth (the
    # mask already excluded the rest)
    rows = list(zip(*(catalog.values(name, at) for name in HIT_COLUMNS))) if len(at) else []
    kept = [(mid, score, p, row) for (mid, score, p), row in zip(shown, rows) if row[0] == namespace]
    primaries = catalog.primaries_of([p for _, _, p, _ in kept], [mid for mid, _, _, _ in kept])
    known = {i: p for i, p in enumerate(primaries) if p is not None}  # the others are looked up by id
    memories = dict(zip(known, memories_at(store, [kept[i][0] for i in known], list(known.values()))))
    hits = Hits()
    for i, (memory_id, score, _, (_, modality, kind, start, end, snippet)) in enumerate(kept):
        memory = memories[i] if i in memories else memory_at(store, memory_id, namespace)
        hits.append(Hit(id=memory_id, score=float(score), modality=modality, memory=memory, kind=kind,
                        start=start, end=end, snippet=snippet, fusion=fusion.get(memory_id),
                        recency=weights.get(memory_id), relevance=relevance.get(memory_id)))
    attach_texts(store, hits, primaries)
    if item.modality == "text":
        attach_ocr(hits, item.payload)  # type: ignore[arg-type]
    return hits


def query_plans(store: "MemoryStore", item: Item) -> list[QueryPlan]:
    """The encoder's searches for ``item``, plus, for a spoken query, its transcript searched as text
    (a question asked aloud is found by what it says, not only by how it sounds), with their vectors
    computed: the encode a recall runs."""
    plans = _plans(store, item)
    with one_torch_thread(item.modality == "text"):
        for plan in plans:
            np.asarray(plan.vector)  # a plan may compute its vector on first use
    return plans


def _plans(store: "MemoryStore", item: Item) -> list[QueryPlan]:
    """``query_plans`` without computing the vectors an encoder defers (see DeferredVector)."""
    encoder = store.encoder
    with one_torch_thread(item.modality == "text"):
        plans = encoder.query_plans(item.modality, item.payload) if item.modality in encoder.modalities else []
    if item.modality == "audio" and store.speech is not None:
        said = store.speech.transcribe(item.payload).text.strip()
        if said:
            plans.insert(0, QueryPlan(encoder.embed_texts([said])[0], modality="speech"))
    if not plans:
        from .errors import UnsupportedInputError

        raise UnsupportedInputError(f"model {encoder.model_id!r} cannot search by {item.modality}: "
                                    "no speech was heard and the model has no tower for it")
    return plans


def side_by_side(fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``[fn(item) for item in items]``, the first on this thread and the rest on the plan threads
    at the same time: a text query's sentence forward and FAISS searches release the GIL, so its
    drawing plan is searched while its sentence vector is computed. Waits for every call, then
    raises the first error in item order."""
    if len(items) < 2:
        return [fn(item) for item in items]
    with _THREADS_LOCK:
        pool = _plan_pool[0]
        if pool is None:
            pool = _plan_pool[0] = ThreadPoolExecutor(PLAN_THREADS, thread_name_prefix="aimemory-plan")
    futures: list[Future[_R]] = [pool.submit(fn, item) for item in items[1:]]
    try:
        first = fn(items[0])
    finally:
        wait(futures)  # none outlives the call: the caller may close the store next
    return [first, *(f.result() for f in futures)]


def _forget_plan_pool() -> None:
    _plan_pool[0] = None  # a forked child has the pool's object but not its threads


os.register_at_fork(after_in_child=_forget_plan_pool)


def _derived(catalog: Catalog, fixed: tuple[Any, ...] | None, what: tuple[Any, ...], build: Any,
             tail: Any = None) -> Any:
    """``build()``, cached in the catalog under ``fixed`` + ``what`` when the mask is fixed, and
    grown by ``tail(start)``, its value over the rows appended since (see Catalog.memo)."""
    return build() if fixed is None else catalog.memo((*fixed, *what), build, tail)


def _of_kind(catalog: Catalog, allowed_at: np.ndarray | None, allowed: np.ndarray, code: int,
             start: int = 0) -> np.ndarray:
    """Positions (ascending, from ``start``) of the allowed views of the kind ``code``: from
    ``allowed_at`` (the allowed positions, given when they are few), else from the kind's own
    positions (cached per catalog version) through the mask ``allowed``, so a broad filter gathers
    nothing over 1M rows."""
    kind_codes = catalog.codes_of("kind")[0]
    if allowed_at is not None:
        tail = allowed_at[np.searchsorted(allowed_at, start):]
        at: np.ndarray = tail[kind_codes[tail] == code]
        return at
    of_kind = catalog.memo(("kind positions", code), lambda: np.flatnonzero(kind_codes == code),
                           lambda first: np.flatnonzero(kind_codes[first:] == code) + first)
    tail = of_kind[np.searchsorted(of_kind, start):]
    at = tail[allowed[tail]]
    return at


def _one_kind_of_first_views(catalog: Catalog, fixed: tuple[Any, ...] | None, plan: QueryPlan,
                             allowed: np.ndarray, allowed_at: np.ndarray | None) -> bool:
    """Whether every view ``plan`` may match is its memory's first and all are of one kind (a store
    of short notes, a filter on photos' label views). Then each hit is another memory and, within
    one kind, relevance rises with the cosine, so the k best views are the k best memories and a
    search needs no overfetch. Counted when the mask is cached or the views are few; else False."""
    if fixed is None:
        kinds = None if allowed_at is None else catalog.codes_of("kind")[0][allowed_at]
        return kinds is not None and not catalog.array("view")[allowed_at].any() and len(np.unique(kinds)) <= 1

    def count(code: int | None) -> int:
        """Allowed views that are not their memory's first (``code`` None) or of kind ``code``,
        cached with the mask and grown over appended rows."""
        def over(start: int = 0) -> int:
            column = catalog.array("view") if code is None else catalog.codes_of("kind")[0]
            rows = column[allowed_at] if allowed_at is not None and not start else column[start:][allowed[start:]]
            return int(np.count_nonzero(rows != 0 if code is None else rows == code))

        n: int = _derived(catalog, fixed, (_kinds(plan), "views", code), over, over)
        return n

    if count(None):
        return False
    return sum(count(code) > 0 for code in range(len(catalog.codes_of("kind")[1]))) <= 1


def _allowed(store: "MemoryStore", plan: QueryPlan, mask: np.ndarray, fixed: tuple[Any, ...] | None
             ) -> tuple[np.ndarray, int, np.ndarray | None]:
    """The views ``plan`` may match within ``mask`` -> (mask (n,), how many, their positions (m,)
    ascending when they are few, else None): kinds, keys and samples are then taken from these."""
    catalog = store.catalog
    kinds = None if plan.kinds is None else tuple(sorted(plan.kinds))
    plan_mask = _derived(catalog, fixed, (kinds, "mask"), lambda: _plan_mask(store, plan, mask),
                         lambda start: _plan_mask(store, plan, mask, start))
    n_allowed = _derived(catalog, fixed, (kinds, "n"), lambda: int(np.count_nonzero(plan_mask)),
                         lambda start: int(np.count_nonzero(plan_mask[start:])))
    if n_allowed * FEW_ALLOWED >= catalog.n_rows:
        return plan_mask, n_allowed, None
    return plan_mask, n_allowed, _derived(catalog, fixed, (kinds, "positions"), lambda: np.flatnonzero(plan_mask),
                                          lambda start: np.flatnonzero(plan_mask[start:]) + start)


def _plan_mask(store: "MemoryStore", plan: QueryPlan, mask: np.ndarray, start: int = 0) -> np.ndarray:
    """The views ``plan`` may match within ``mask``, over the rows from ``start``."""
    if plan.kinds is not None:
        kept: np.ndarray = mask[start:] & store.catalog.is_in("kind", plan.kinds)[start:]
        return kept
    if store.encoder.private_kinds:
        shared: np.ndarray = mask[start:] & ~store.catalog.is_in("kind", store.encoder.private_kinds)[start:]
        return shared
    return mask[start:]


def _planned_ranking(store: "MemoryStore", query_modality: str, plans: list[QueryPlan], mask: np.ndarray,
                     k: int, fixed: tuple[Any, ...] | None = None,
                     backdrop: tuple[np.ndarray, tuple[Any, ...] | None] | None = None
                     ) -> dict[str, tuple[float, float, int]]:
    """Run each plan over each view kind it may match -> memory id -> (score, relevance, position),
    best first.

    One search per plan covers every kind it may match; its hits are split by kind, each calibrated
    for its pair, and the memories ranked by :class:`.ranking.ViewRanking`: with a fitted calibration
    by relevance (ties by standing), without one by standing. Standing: one plan's cosine; for
    several, each plan's cosine standardised against a background sample of the views it may match,
    minus the plan's penalty (see QueryPlan). A hit's score is its standing put back on the first
    plan's scale (the raw cosine for the first plan's hits; for others the cosine the first plan
    would need to stand the same).

    ``fixed``: the cache key of ``mask`` when it depends on the catalog alone (see run_recall);
    each plan's allowed views and background samples are then reused until the catalog changes.
    ``backdrop``: (mask, its cache key) of the views the background samples are drawn from, when not
    ``mask`` (a filtered query's hits are judged against the whole namespace)."""
    catalog = store.catalog
    kind_codes = catalog.codes_of("kind")[0]
    vkeys = catalog.array("vkey")
    positions_of: list[np.ndarray | None] = []  # per run: its allowed positions when few

    def kind_sample(run: int, code: int) -> np.ndarray:
        plan = ranking.runs[run].plan
        if backdrop is None:
            allowed, at, back_fixed = ranking.runs[run].allowed, positions_of[run], fixed
        else:
            (allowed, _, at), back_fixed = _allowed(store, plan, *backdrop), backdrop[1]

        def sample() -> np.ndarray:
            of_kind: np.ndarray = _derived(catalog, back_fixed, (_kinds(plan), "of kind", code),
                                           lambda: _of_kind(catalog, at, allowed, code),
                                           lambda start: _of_kind(catalog, at, allowed, code, start))
            picked: np.ndarray = vkeys[sample_keys(of_kind)]  # the spread first: 256 keys gathered, not all
            return picked
        keys: np.ndarray = _derived(catalog, back_fixed, (_kinds(plan), "sample", code), sample)
        return keys

    def keys_of(plan: QueryPlan, allowed_mask: np.ndarray, allowed_at: np.ndarray | None,
                mask_fixed: tuple[Any, ...] | None) -> np.ndarray:  # (m,) ascending: the views' keys
        keys: np.ndarray = _derived(
            catalog, mask_fixed, (_kinds(plan), "vkeys"),
            lambda: _read_only(vkeys[allowed_mask] if allowed_at is None else vkeys[allowed_at]),
            lambda start: vkeys[start:][allowed_mask[start:]])
        return keys

    def run_plan(plan: QueryPlan) -> tuple[PlanRun, np.ndarray | None, dict[tuple[str, int], tuple[float, int]]] | None:
        """One plan's search -> (its run, its allowed positions when few, its hits), or None when
        it may match no view (its vector is then never computed)."""
        allowed_mask, n_allowed, allowed_at = _allowed(store, plan, mask, fixed)  # (n,) bool, m, (m,) | None
        if not n_allowed:
            return None
        vector = np.asarray(plan.vector, np.float32)  # (dim,): a deferred vector is computed here

        allowed = None if n_allowed == store.index.ntotal else keys_of(plan, allowed_mask, allowed_at, fixed)
        run = PlanRun(plan, allowed_mask, keys=allowed)
        if len(plans) > 1:  # plans are compared by how far each stands out from its background
            if backdrop is None:
                back = keys_of(plan, allowed_mask, allowed_at, fixed)
            else:
                back_mask, _, back_at = _allowed(store, plan, *backdrop)
                back = keys_of(plan, back_mask, back_at, backdrop[1])
            sims = background(store, None, sample_keys(back)) @ vector
            run = PlanRun(plan, allowed_mask, float(sims.mean()), float(max(sims.std(), 1e-3)), True, allowed)
        overfetch = 1 if _one_kind_of_first_views(catalog, fixed, plan, allowed_mask, allowed_at) else OVERFETCH
        return run, allowed_at, _vector_ranking(store, vector[None, :], k, allowed, n_allowed, kind_codes, overfetch,
                                                None if allowed is None else allowed_at)

    ranking = ViewRanking(store, load_calibration(store.encoder.model_id), query_modality, kind_sample,
                          samples_in_runs=backdrop is None)
    with one_torch_thread(query_modality == "text"):
        runs = side_by_side(run_plan, plans)
    for found in runs:
        if found is not None:
            run, allowed_at, hits = found
            positions_of.append(allowed_at)
            ranking.add(run, hits)
    first = ranking.runs[0] if ranking.runs else PlanRun(plans[0], mask)  # sets the shown scale
    return {mid: (first.mean + first.std * standing, value, p)
            for mid, (standing, value, p) in ranking.ranked().items()}


def _where_key(where: Mapping[str, Any] | None) -> str | None:
    """A ``where`` filter as a cache key ("" for none); None when it has no exact text form."""
    if not where:
        return ""
    try:
        return json.dumps(where, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array``, frozen: the index reuses its id selector for an array that cannot change."""
    array.flags.writeable = False
    return array


def _kinds(plan: QueryPlan) -> tuple[str, ...] | None:
    """A plan's cache key."""
    return None if plan.kinds is None else tuple(sorted(plan.kinds))


def _keyword_relevance(store: "MemoryStore", query_modality: str, plan: QueryPlan, mask: np.ndarray,
                       found: dict[str, tuple[float, int]]) -> dict[str, float]:
    """Relevance of hits only the keyword side found: their cosine with the first plan, calibrated
    for the kind of the view shown."""
    calibration = load_calibration(store.encoder.model_id)
    catalog = store.catalog
    kind_codes, kind_names = catalog.codes_of("kind")
    vector = np.asarray(plan.vector, np.float32)
    out = {}
    samples: dict[int, np.ndarray] = {}  # kind code -> background sample: one pass per kind, not per hit
    for mid, (score, p) in found.items():
        code = int(kind_codes[p])
        if code not in samples:
            of_kind = _of_kind(catalog, None, mask, code)  # (m,) positions
            samples[code] = background(store, None, sample_keys(catalog.array("vkey")[of_kind]))
        rel = Relevance(calibration, plan.modality or query_modality, kind_names[code], vector, samples[code])
        out[mid] = float(rel.of([score])[0])
    return out


def attach_texts(store: "MemoryStore", hits: Hits, primaries: Sequence[int | None] | None = None) -> None:
    """Texts and transcripts of all hits, from the catalog (no table read): text memories get their
    content (no read later), audio and video memories their transcript, and every hit a snippet.
    ``primaries``: the catalog position of each hit's primary view, where known."""
    catalog = store.catalog
    known = list(primaries) if primaries is not None else [None] * len(hits)
    spoken = [i for i, h in enumerate(hits) if h.modality in ("text", "audio", "video")]
    at: list[int | None] = [None] * len(hits)
    for i in spoken:
        positions = [known[i]] if known[i] is not None else \
            catalog.positions(hits[i].id, hits[i].memory.namespace, expired=True)
        at[i] = positions[0] if positions else None
    read = [i for i in spoken if at[i] is not None]
    texts = dict(zip(read, catalog.values("text", [p for p in at if p is not None]))) if read else {}
    for i in spoken:
        h, text = hits[i], texts.get(i)
        if text is None:
            continue
        if h.modality == "text":
            h.memory.content = text
        else:
            h.memory.transcript = text
        if h.snippet is None:
            h.snippet = text
    for h in hits:
        if h.snippet is not None and len(h.snippet) > SNIPPET_CHARS:
            h.snippet = h.snippet[:SNIPPET_CHARS - 1] + "…"


def _vector_ranking(store: "MemoryStore", query: np.ndarray, k: int, allowed: np.ndarray | None,
                    n_allowed: int, kind_codes: np.ndarray, overfetch: int = OVERFETCH,
                    allowed_at: np.ndarray | None = None) -> dict[tuple[str, int], tuple[float, int]]:
    """(memory id, kind code) -> (best cosine of the memory's views of that kind, catalog position
    of that view), best first, covering >= k memories when that many are allowed. ``kind_codes``:
    the kind code of each catalog position; ``overfetch``: views fetched per memory wanted first;
    ``allowed_at``: the catalog positions of the ``allowed`` keys, when at hand."""
    catalog = store.catalog
    fetch = min(n_allowed, k * overfetch)
    while True:
        scores, keys = store.index.search(query, fetch, allowed)
        valid = keys[0] >= 0
        positions = _positions_of(catalog, keys[0][valid], allowed, allowed_at)
        best: dict[tuple[str, int], tuple[float, int]] = {}
        live = catalog.alive[positions]
        scores_live, positions = scores[0][valid][live], positions[live]
        codes = kind_codes[positions].tolist()
        memories: set[str] = set()
        for score, p, mid, code in zip(scores_live.tolist(), positions.tolist(), catalog.take("id", positions), codes):
            if (mid, code) not in best:
                best[(mid, code)] = (score, p)
                memories.add(mid)
        if len(memories) >= k or fetch >= n_allowed:
            return best
        fetch = min(n_allowed, fetch * 4)


def _positions_of(catalog: Catalog, found: np.ndarray, allowed: np.ndarray | None,
                  allowed_at: np.ndarray | None) -> np.ndarray:
    """Catalog positions of the keys a search ``found``: looked up among the few ``allowed`` keys
    (ascending, positions ``allowed_at``) when given, a bisection of a few thousand keys that stay in
    cache where one over every row's waits on memory (7 us for ten keys at 100k), else the catalog's."""
    if allowed is not None and allowed_at is not None and len(allowed):
        at = np.minimum(np.searchsorted(allowed, found), len(allowed) - 1)
        if np.array_equal(allowed[at], found):
            positions: np.ndarray = allowed_at[at]
            return positions
    return catalog.position_of_vkeys(found)


def _best_cosines(store: "MemoryStore", query: np.ndarray, memory_ids: list[str], namespace: str,
                  mask: np.ndarray) -> dict[str, float]:
    """memory id -> cosine of ``query`` (1, dim) against its best allowed view: the score of a hit
    that only the keyword side found, so every hit shows a comparable cosine."""
    catalog = store.catalog
    owner = {int(catalog.get(p, "vkey")): mid for mid in memory_ids
             for p in catalog.positions(mid, namespace) if mask[p]}
    out = {mid: -1.0 for mid in memory_ids}
    if owner:
        vkeys, vectors = store.table.vectors_for(owner)  # (n,), (n, dim)
        for key, cos in zip(vkeys, vectors @ query[0]):
            mid = owner[int(key)]
            out[mid] = max(out[mid], float(cos))
    return out


def _fuse_with_full_text(store: "MemoryStore", text: str, namespace: str, mask: np.ndarray,
                         vector_best: dict[str, tuple[float, int]]) -> dict[str, tuple[float, int]]:
    """Reciprocal-rank fusion of vector and BM25 rankings: memory id -> (fusion value, position of
    the view to show), best fusion first."""
    catalog = store.catalog
    limit = max(50, 2 * len(vector_best))
    fts = store.table.full_text(text, namespace, limit)
    fused: dict[str, float] = {}
    position_of: dict[str, int] = {}
    for rank, (mid, (_, p)) in enumerate(vector_best.items()):
        fused[mid] = 1.0 / (RRF_K + rank + 1)
        position_of[mid] = p
    keys = np.asarray(fts.column("vkey").to_numpy(), dtype=np.int64)
    positions = catalog.position_of_vkeys(keys)
    rank = 0
    for key, p in zip(keys, positions):
        if p >= len(mask) or catalog.array("vkey")[p] != key or not mask[p]:
            continue  # filtered out, forgotten, or in another namespace
        mid = catalog.get(int(p), "id")
        fused[mid] = fused.get(mid, 0.0) + 1.0 / (RRF_K + rank + 1)
        position_of.setdefault(mid, int(p))
        rank += 1
    order = sorted(fused, key=lambda m: -fused[m])
    words = set(_WORD.findall(text.lower()))
    return {mid: (fused[mid], _wordiest_view(catalog, mid, namespace, position_of[mid], words)) for mid in order}


def _wordiest_view(catalog: Catalog, memory_id: str, namespace: str, position: int, words: set[str]) -> int:
    """The view whose snippet shares the most query words (a transcript segment or text chunk), so
    a keyword hit on a long recording points at the span that was said; else ``position``."""
    def overlap(p: int) -> int:
        snippet = catalog.get(p, "snippet")
        return len(words & set(_WORD.findall(snippet.lower()))) if snippet else 0

    best, best_overlap = position, overlap(position)
    for p in catalog.positions(memory_id, namespace):
        if (n := overlap(p)) > best_overlap:
            best, best_overlap = p, n
    return best
