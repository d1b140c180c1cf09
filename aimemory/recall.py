"""Recall: rank views by cosine inside the allowed set, collapse them to memories, optionally fuse
with full-text ranks. Namespaces are enforced twice: inside FAISS (an id selector) and again on the
way out, so a bug in one layer cannot leak another tenant's memory."""

from __future__ import annotations

import re
import weakref
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .encoders.base import QueryPlan
from .inputs import Item
from .records import Hit, Hits

if TYPE_CHECKING:  # pragma: no cover
    from .store import MemoryStore

OVERFETCH = 4  # views fetched per wanted memory: memories with several views need more
SNIPPET_CHARS = 160
_WORD = re.compile(r"\w+")
RRF_K = 60  # reciprocal-rank fusion constant (Cormack, Clarke & Buettcher, SIGIR 2009)
BACKGROUND_SAMPLE = 256  # stored views per plan that give a query's typical cosine and its spread
#: store -> (table version, {hash of sampled keys: (m, dim) vectors}); only the newest version is kept
_BACKGROUND: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def run_recall(store: "MemoryStore", item: Item, k: int, namespace: str,
               modalities: Sequence[str] | None, where: Mapping[str, Any] | None,
               since: float | None, until: float | None, hybrid: bool) -> Hits:
    catalog = store.catalog
    mask = catalog.mask(namespace, modalities, since, until, where)
    n_allowed = int(mask.sum())
    if n_allowed == 0:
        return Hits()
    plans = query_plans(store, item)
    query = np.asarray(plans[0].vector, np.float32)[None, :]  # (1, dim): scores keyword-only hits
    best = _planned_ranking(store, plans, mask, k if not hybrid else max(k, 20))
    if not best:
        return Hits()
    if store.encoder.private_kinds:  # keyword hits are scored against shared views only
        mask = mask & ~catalog.is_in("kind", store.encoder.private_kinds)
    fusion: dict[str, float] = {}
    if hybrid and item.modality == "text":
        fused = _fuse_with_full_text(store, item.payload, namespace, mask, best)  # type: ignore[arg-type]
        fusion = {mid: value for mid, (value, _) in fused.items()}
        cosines = _best_cosines(store, query, [m for m in list(fused)[:k] if m not in best], namespace, mask)
        best = {mid: (best[mid][0] if mid in best else cosines[mid], p) for mid, (_, p) in fused.items()}
    hits = Hits()
    for memory_id, (score, position) in list(best.items())[:k]:
        row = catalog.row(position)
        if row.namespace != namespace:  # defence in depth; the mask already excluded it
            continue
        hits.append(Hit(id=memory_id, score=float(score), modality=row.modality,
                        memory=store._memory(memory_id, namespace), kind=row.kind,
                        start=_nan_to_none(row.start), end=_nan_to_none(row.end), snippet=row.snippet,
                        fusion=fusion.get(memory_id)))
    attach_texts(store, hits)
    return hits


def query_plans(store: "MemoryStore", item: Item) -> list[QueryPlan]:
    """The encoder's searches for ``item``, plus, for a spoken query, its transcript searched as text
    (a question asked aloud is found by what it says, not only by how it sounds)."""
    encoder = store.encoder
    plans = encoder.query_plans(item.modality, item.payload) if item.modality in encoder.modalities else []
    if item.modality == "audio" and store.speech is not None:
        said = store.speech.transcribe(item.payload).text.strip()
        if said:
            plans.insert(0, QueryPlan(encoder.embed_texts([said])[0]))
    if not plans:
        from .errors import UnsupportedInputError

        raise UnsupportedInputError(f"model {encoder.model_id!r} cannot search by {item.modality}: "
                                    "no speech was heard and the model has no tower for it")
    return plans


def _plan_mask(store: "MemoryStore", plan: QueryPlan, mask: np.ndarray) -> np.ndarray:
    if plan.kinds is not None:
        return mask & store.catalog.is_in("kind", plan.kinds)
    if store.encoder.private_kinds:
        return mask & ~store.catalog.is_in("kind", store.encoder.private_kinds)
    return mask


def _planned_ranking(store: "MemoryStore", plans: list[QueryPlan], mask: np.ndarray, k: int
                     ) -> dict[str, tuple[float, int]]:
    """Run each plan over its allowed views -> memory id -> (score, position), best first.

    One plan ranks by cosine. Several rank by cosine standardised per plan (see QueryPlan), and a
    hit's score is its standardised value put back on the first plan's scale: the raw cosine for a
    hit of the first plan, and for others the cosine the first plan would need to rank the same, so
    shown scores always fall with rank."""
    merged: dict[str, tuple[float, int]] = {}  # id -> (rank value, position)
    scale: tuple[float, float] | None = None  # the first plan that ran sets the shown scale
    for plan in plans:
        plan_mask = _plan_mask(store, plan, mask)
        n_allowed = int(plan_mask.sum())
        if n_allowed == 0:
            continue
        vector = np.asarray(plan.vector, np.float32)
        allowed = None if n_allowed == store.index.ntotal else store.catalog.array("vkey")[plan_mask]
        ranked = _vector_ranking(store, vector[None, :], k, allowed, n_allowed)
        mean, std = _background(store, plan_mask, vector) if len(plans) > 1 else (0.0, 1.0)
        if scale is None:
            scale = (mean, std)
        for mid, (score, p) in ranked.items():
            value = (score - mean) / std - plan.penalty
            if mid not in merged or value > merged[mid][0]:
                merged[mid] = (value, p)
    order = sorted(merged.items(), key=lambda kv: -kv[1][0])
    mean, std = scale or (0.0, 1.0)
    return {mid: (mean + std * value, p) for mid, (value, p) in order}


def _background(store: "MemoryStore", plan_mask: np.ndarray, vector: np.ndarray) -> tuple[float, float]:
    """Mean and spread of ``vector``'s cosine with a fixed spread of the views it may match."""
    keys = store.catalog.array("vkey")[plan_mask]
    if len(keys) > BACKGROUND_SAMPLE:
        keys = keys[np.linspace(0, len(keys) - 1, BACKGROUND_SAMPLE).astype(int)]
    version, key = store.table.version, hash(keys.tobytes())
    cached = _BACKGROUND.get(store)
    if cached is None or cached[0] != version:  # a new table version: older samples are dropped
        cached = (version, {})
        _BACKGROUND[store] = cached
    sample = cached[1].get(key)
    if sample is None:
        sample = cached[1][key] = store.table.vectors_for(keys)[1]
    sims = sample @ vector
    return float(sims.mean()), float(max(sims.std(), 1e-3))


def attach_texts(store: "MemoryStore", hits: Hits) -> None:
    """Texts and transcripts of all hits, from the catalog (no table read): text memories get their
    content (no read later), audio memories their transcript, and every hit a snippet."""
    wanted = [h for h in hits if h.modality in ("text", "audio")]
    catalog = store.catalog
    for h in wanted:
        positions = catalog.positions(h.id, None)
        text = catalog.get(positions[0], "text") if positions else None
        if text is None:
            continue
        if h.modality == "text":
            h.memory._content, h.memory._loader = text, None
        else:
            h.memory.transcript = text
        if h.snippet is None:
            h.snippet = text
    for h in hits:
        if h.snippet is not None and len(h.snippet) > SNIPPET_CHARS:
            h.snippet = h.snippet[:SNIPPET_CHARS - 1] + "…"


def _nan_to_none(x):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else x


def _vector_ranking(store: "MemoryStore", query: np.ndarray, k: int, allowed: np.ndarray | None,
                    n_allowed: int) -> dict[str, tuple[float, int]]:
    """memory id -> (best cosine, catalog position of the best view), best first, >= k memories
    when that many are allowed."""
    catalog = store.catalog
    fetch = min(n_allowed, k * OVERFETCH)
    while True:
        scores, keys = store.index.search(query, fetch, allowed)
        valid = keys[0] >= 0
        positions = catalog.position_of_vkeys(keys[0][valid])
        best: dict[str, tuple[float, int]] = {}
        live = catalog.alive[positions]
        scores_live, positions = scores[0][valid][live], positions[live]
        for score, p, mid in zip(scores_live, positions, catalog.take("id", positions)):
            if mid not in best:
                best[mid] = (float(score), int(p))
        if len(best) >= k or fetch >= n_allowed:
            return best
        fetch = min(n_allowed, fetch * 4)


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


def _wordiest_view(catalog, memory_id: str, namespace: str, position: int, words: set[str]) -> int:
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
