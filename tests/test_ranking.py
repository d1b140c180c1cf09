"""Recall's order: by calibrated relevance for a model with a fitted calibration (a mixed list on one
scale, ties by standing; below the model's floor by standing), by standing for one without; a
secondary view (another model's view of the same item) orders its memory only where it stands out."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import ColourEncoder, mixed_items

from aimemory import MemoryStore
from aimemory.calibration import (
    Calibration,
    PairFit,
    counts,
    load_calibration,
    order_key,
    pair_key,
    register_calibration,
    save_calibration,
)
from aimemory.encoders.base import Encoder, QueryPlan, View, l2_normalize

DIM = 8
#: a text query's pairs, biased so that relevance disagrees with the cosine across modalities
BIASED = {pair_key("text", "text"): PairFit(1.0, -7.0), pair_key("text", "image"): PairFit(1.0, 1.0),
          pair_key("text", "audio.sound"): PairFit(1.0, -3.0)}


@pytest.fixture
def mixed(store):
    store.remember_many(mixed_items())
    yield store
    register_calibration(Calibration(ColourEncoder.model_id))


def test_a_fitted_model_orders_a_mixed_list_by_relevance(mixed):
    register_calibration(Calibration(ColourEncoder.model_id, BIASED, fitted=True))
    hits = mixed.recall("red", k=10)
    relevance = [h.relevance for h in hits]
    assert relevance == sorted(relevance, reverse=True)
    assert hits[0].modality == "image"  # the image pair's fit calls it likeliest, whatever the cosine
    scores = [h.score for h in hits]
    assert scores != sorted(scores, reverse=True)  # so the cosine alone would order differently
    for modality in ("text", "image", "audio"):  # within one pair the cosine's order stands
        same = [h.score for h in hits if h.modality == modality]
        assert same == sorted(same, reverse=True)


def test_a_model_without_a_fit_keeps_the_cosine_order(mixed):
    register_calibration(Calibration(ColourEncoder.model_id, BIASED, fitted=False))
    hits = mixed.recall("red", k=10)
    assert [h.score for h in hits] == sorted([h.score for h in hits], reverse=True)
    assert hits[0].modality != "image"  # its pair's fit is only a guess here


def test_ties_in_relevance_go_by_standing(mixed):
    flat = {k: PairFit(0.0, 0.0) for k in BIASED}  # relevance 0.5 for every hit
    register_calibration(Calibration(ColourEncoder.model_id, flat, fitted=True))
    hits = mixed.recall("red", k=10)
    assert {h.relevance for h in hits} == {0.5}
    assert [h.score for h in hits] == sorted([h.score for h in hits], reverse=True)


def _axis(i: int, seed: int) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[i % DIM] = 1.0
    v += np.random.default_rng(seed).normal(0, 0.05, DIM).astype(np.float32)
    return l2_normalize(v[None])[0]


class TwoViewEncoder(Encoder):
    """A text 'L:D' has a label view on axis L and a private drawing view on axis D; a query 'q:L:D'
    searches the label views on axis L and the drawing views on axis D (two plans)."""

    model_id = "test-two-view"
    dim = DIM
    modalities = frozenset({"text"})
    private_kinds = frozenset({"text.drawing"})

    def embed_texts(self, texts):
        return np.stack([_axis(int(t.split(":")[0]), hash(t) % 997) for t in texts])

    def views(self, modality, payloads):
        return [[View("text", _axis(int(t.split(":")[0]), hash(t) % 997)),
                 View("text.drawing", _axis(int(t.split(":")[1]), hash(t) % 991))] for t in payloads]

    def query_plans(self, modality, payload):
        _, label, drawing = payload.split(":")
        return [QueryPlan(_axis(int(label), 0)), QueryPlan(_axis(int(drawing), 1), frozenset({"text.drawing"}))]


def _fit(min_z: float | None, floor: float = 0.0) -> Calibration:
    return Calibration(TwoViewEncoder.model_id, {
        pair_key("text", "text"): PairFit(1.0, -4.0),
        # the drawing view's fit calls its matches very likely: only its threshold keeps it in check
        pair_key("text", "text.drawing"): PairFit(1.0, 3.0, secondary_to="text", min_z=min_z)},
        fitted=True, order_floor=floor)


@pytest.fixture
def two_views(tmp_path):
    with MemoryStore(tmp_path / "m", model=TwoViewEncoder(), speech_model=None) as s:
        # six memories whose label matches axis 0 (drawings elsewhere), one whose drawing matches
        # axis 1 but whose label is on axis 3: a label view the first plan's few fetches miss
        ids = [s.remember(f"0:{5 + i % 2}:{i}").id for i in range(6)]
        odd = s.remember("3:1:odd").id
        yield s, ids, odd
    register_calibration(Calibration(TwoViewEncoder.model_id))


def test_a_secondary_view_orders_its_memory_only_where_it_stands_out(two_views):
    store, ids, odd = two_views
    register_calibration(_fit(0.0))  # the drawing match stands out: its relevance orders the memory
    first = store.recall("q:0:1", k=1)
    assert first[0].id == odd and first[0].kind == "text.drawing" and first[0].relevance > 0.9
    register_calibration(_fit(10.0))  # it does not: the memory is judged by its label view, looked up
    first = store.recall("q:0:1", k=1)
    assert first[0].id in ids and first[0].kind == "text"
    hits = store.recall("q:0:1", k=7)
    by_id = {h.id: h for h in hits}
    assert by_id[odd].kind == "text" and by_id[odd].relevance < 0.05 and hits[-1].id == odd
    assert [h.relevance for h in hits] == sorted([h.relevance for h in hits], reverse=True)


def test_a_secondary_view_that_never_counts_leaves_the_label_order(two_views):
    store, ids, odd = two_views
    register_calibration(_fit(None))
    hits = store.recall("q:0:1", k=7)
    assert hits[-1].id == odd and all(h.kind == "text" for h in hits)


def test_below_the_floor_memories_follow_by_standing(mixed):
    register_calibration(Calibration(ColourEncoder.model_id, BIASED, fitted=True, order_floor=0.2))
    hits = mixed.recall("red", k=10)
    above = [h for h in hits if h.relevance >= 0.2]
    assert 0 < len(above) < len(hits) and hits[:len(above)] == above
    assert [h.relevance for h in above] == sorted([h.relevance for h in above], reverse=True)
    below = [h.score for h in hits[len(above):]]  # one plan: standing is the cosine
    assert below == sorted(below, reverse=True)


def test_counts_and_order_keys():
    primary, secondary = PairFit(), PairFit(secondary_to="image", min_z=2.0)
    assert counts(primary, -5.0) and counts(secondary, 2.0) and not counts(secondary, 1.9)
    assert not counts(replace(secondary, min_z=None), 9.0)
    fitted = Calibration("m", fitted=True, order_floor=0.1)
    assert order_key(fitted, 0.5, 1.0, 0.3) > order_key(fitted, 0.2, 9.0, 0.9)  # relevance first
    assert order_key(fitted, 0.05, 1.0, 0.3) < order_key(fitted, 0.11, 0.0, 0.1)  # the floor
    assert order_key(fitted, 0.01, 2.0, 0.3) > order_key(fitted, 0.09, 1.0, 0.3)  # below it, standing
    assert order_key(Calibration("m"), 0.9, 1.0, 0.3) < order_key(Calibration("m"), 0.1, 2.0, 0.3)


def test_the_floor_and_thresholds_are_stored(tmp_path, monkeypatch):
    from aimemory import calibration as cal

    monkeypatch.setattr(cal, "MODELS_DIR", tmp_path)
    (tmp_path / "m").mkdir()
    fitted = Calibration("m", {pair_key("text", "image.drawing"): PairFit(secondary_to="image", min_z=2.5)},
                         fitted=True, order_floor=0.01)
    save_calibration(fitted)
    assert load_calibration("m") == fitted
    register_calibration(Calibration("m"))


def test_recency_weights_the_relevance_of_a_fitted_model(mixed):
    register_calibration(Calibration(ColourEncoder.model_id, BIASED, fitted=True))
    plain = mixed.recall("red", k=10)
    weighted = mixed.recall("red", k=10, half_life=1e9)  # every weight about 1: the same order
    assert [h.id for h in weighted] == [h.id for h in plain]
    assert all(h.recency is not None and h.relevance == pytest.approx(p.relevance) for h, p in zip(weighted, plain))
