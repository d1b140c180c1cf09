"""Calibrated relevance: in [0, 1], monotone in the cosine within a pair, filtered by min_relevance,
mixed-modality results ordered by it, and the statistics stored, reloaded and cached per table version."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ColourEncoder, mixed_items

from aimemory import calibration as cal
from aimemory.calibration import (
    Calibration,
    PairFit,
    Relevance,
    background,
    fit_logistic,
    load_calibration,
    pair_key,
    register_calibration,
    sample_keys,
    save_calibration,
    standardise,
)
from aimemory.errors import InputError


@pytest.fixture
def mixed(store):
    """A tiny store with colour texts, images and tones."""
    store.remember_many(mixed_items())
    return store


@pytest.fixture
def restore_calibration():
    yield
    register_calibration(Calibration(ColourEncoder.model_id))


def test_relevance_is_a_probability_on_every_hit(mixed):
    hits = mixed.recall("red", k=10)
    assert len(hits) == 10
    assert all(h.relevance is not None and 0.0 <= h.relevance <= 1.0 for h in hits)
    assert "relevance=" in repr(hits[0]) and "relevance" in hits.to_arrow().column_names


def test_mixed_results_carry_relevance_of_their_own_pair(mixed, restore_calibration):
    from dataclasses import replace

    register_calibration(replace(load_calibration(ColourEncoder.model_id), fitted=True))
    hits = mixed.recall("red", k=10)
    assert {h.modality for h in hits[:3]} == {"text", "image", "audio"}  # each modality's red first
    assert all("red" in (h.memory.text or "red") for h in hits[:3] if h.modality == "text")
    for modality in ("text", "image", "audio"):  # within one pair, relevance falls with the cosine
        rel = [h.relevance for h in hits if h.modality == modality]
        assert rel == sorted(rel, reverse=True)


def test_a_model_without_a_fit_is_ordered_by_cosine(mixed):
    """Its relevance is only a default guess: the order stays the cosine's, as before calibration."""
    assert not load_calibration(ColourEncoder.model_id).fitted
    hits = mixed.recall("red", k=10)
    assert [h.score for h in hits] == sorted([h.score for h in hits], reverse=True)
    assert all(h.relevance is not None for h in hits)


def test_relevance_rises_with_the_cosine_within_a_pair(mixed):
    vector = mixed.embed("red")
    kinds = mixed.catalog.array("kind")
    sample = background(mixed, kinds == "text")
    rel = Relevance(load_calibration(mixed.encoder.model_id), "text", "text", vector, sample)
    cosines = np.linspace(-1, 1, 41)
    values = rel.of(cosines)
    assert np.all(np.diff(values) >= 0) and values[-1] > values[0]
    assert np.all((values >= 0) & (values <= 1))
    # and among hits of one kind, a higher cosine never has a lower relevance
    hits = [h for h in mixed.recall("green", k=10) if h.kind == "image"]
    assert [h.score for h in hits] == sorted([h.score for h in hits], reverse=True)


def test_min_relevance_filters(mixed):
    every = mixed.recall("blue", k=10)
    cut = (every[2].relevance + every[3].relevance) / 2
    kept = mixed.recall("blue", k=10, min_relevance=cut)
    assert [h.id for h in kept] == [h.id for h in every if h.relevance >= cut]
    assert 0 < len(kept) < len(every)
    assert mixed.recall("blue", k=10, min_relevance=0.0) and len(mixed.recall("blue", k=10, min_relevance=1.0)) <= 1
    with pytest.raises(InputError, match="min_relevance"):
        mixed.recall("blue", min_relevance=1.5)


def test_a_pair_fit_decides_which_modality_passes_one_threshold(mixed, restore_calibration):
    """The same cosines: whichever pair its fit calls relevant passes min_relevance, the other not."""
    model = mixed.encoder.model_id

    def kept(text_b: float, image_b: float) -> set[str]:
        register_calibration(Calibration(model, {pair_key("text", "text"): PairFit(1.0, text_b),
                                                 pair_key("text", "image"): PairFit(1.0, image_b)}, fitted=True))
        hits = mixed.recall("red", k=2, modality=["text", "image"], min_relevance=0.5)
        return {h.modality for h in hits}

    assert kept(-8.0, 8.0) == {"image"}
    assert kept(8.0, -8.0) == {"text"}


def test_calibration_is_stored_and_reloaded(tmp_path, monkeypatch, restore_calibration):
    monkeypatch.setattr(cal, "MODELS_DIR", tmp_path)
    (tmp_path / ColourEncoder.model_id).mkdir()
    fitted = Calibration(ColourEncoder.model_id, {pair_key("text", "image"): PairFit(1.2, -3.0, 0.1, 0.05)},
                         PairFit(1.5, -4.5), True)
    path = save_calibration(fitted)
    assert path == tmp_path / ColourEncoder.model_id / cal.FILE_NAME
    loaded = load_calibration(ColourEncoder.model_id)
    assert loaded == fitted and loaded.fit_for("text", "image").mean == 0.1
    assert loaded.fit_for("text", "text") == loaded.default  # pairs without a fit use the pooled one
    assert loaded.prior("text", "text", 16) == (0.0, 0.25)  # data-free prior: random directions


def test_background_sample_is_cached_by_its_keys_across_writes(mixed):
    kinds = mixed.catalog.array("kind")
    first = background(mixed, kinds == "text")
    images = background(mixed, kinds == "image")
    assert background(mixed, kinds == "text") is first and first.shape == (4, mixed.encoder.dim)
    mixed.remember("a yellow note")
    kinds = mixed.catalog.array("kind")
    again = background(mixed, kinds == "text")
    assert again is not first and len(again) == 5  # the new note joined the sample
    assert background(mixed, kinds == "image") is images  # the write left these keys, so their vectors


def test_background_samples_stay_bounded(mixed):
    for i in range(cal.MAX_SAMPLES_KEPT + 8):  # each write changes the text sample's keys
        mixed.remember(f"note number {i}, red")
        assert background(mixed, mixed.catalog.array("kind") == "text").shape[0] == 5 + i
    assert len(cal._SAMPLES[mixed][1]) <= cal.MAX_SAMPLES_KEPT


def test_the_sample_keeps_its_keys_as_rows_are_appended():
    assert np.array_equal(sample_keys(np.arange(100)), np.arange(100))  # few: all of them
    previous_n = cal.BACKGROUND_SAMPLE
    previous = sample_keys(np.arange(previous_n))
    for n in range(cal.BACKGROUND_SAMPLE + 1, 20 * cal.BACKGROUND_SAMPLE, 7):
        sample = sample_keys(np.arange(n))
        assert cal.BACKGROUND_SAMPLE <= len(sample) <= 2 * cal.BACKGROUND_SAMPLE
        assert sample[0] == 0 and np.all(np.diff(sample) == sample[1] - sample[0])  # an even spread
        assert np.isin(sample[sample < previous_n], previous).all(), n  # no key among the old rows is new
        kept = np.isin(previous, sample).mean()
        assert kept == 1.0 or kept >= 0.49, n  # every old key stays, or (the stride doubling) every other
        previous_n, previous = n, sample


def test_platt_fit_recovers_a_known_logistic():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, 4000)
    y = rng.random(4000) < 1 / (1 + np.exp(-(1.5 * x - 2.0)))
    a, b = fit_logistic(x, y)
    assert a == pytest.approx(1.5, abs=0.2) and b == pytest.approx(-2.0, abs=0.2)
    a, _ = fit_logistic(x, ~y)  # falling evidence is clamped: relevance never falls with the cosine
    assert a > 0


def test_shrunk_fit_keeps_a_thin_pair_near_the_pooled_slopes():
    """Empirical-Bayes Platt: a strong prior holds the slope at the pooled one and leaves the
    intercept (the pair's base rate) free; no prior gives the plain fit."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 60)
    y = rng.random(60) < 1 / (1 + np.exp(-(3.0 * x - 1.0)))
    plain = fit_logistic(x, y)
    assert fit_logistic(x, y, prior=(0.5, -9.0), strength=0.0) == pytest.approx(plain)
    a, b = fit_logistic(x, y, prior=(0.5, -9.0), strength=1e4)
    assert a == pytest.approx(0.5, abs=0.01) and b > -3.0  # the prior's intercept is not imposed
    a_mid, _ = fit_logistic(x, y, prior=(0.5, -9.0), strength=3.0)
    assert 0.5 < a_mid < plain[0]


def _z_against_all(score: float, sims: np.ndarray, prior: tuple[float, float]) -> float:
    """z against every sampled view, the hit's own cosine included."""
    mean = (sims.sum() + cal.PRIOR_WEIGHT * prior[0]) / (len(sims) + cal.PRIOR_WEIGHT)
    var = (((sims - mean) ** 2).sum() + cal.PRIOR_WEIGHT * (prior[1] ** 2 + (prior[0] - mean) ** 2)) / \
        (len(sims) + cal.PRIOR_WEIGHT)
    return float((score - mean) / np.sqrt(var))


def test_a_hit_in_the_sample_is_judged_against_the_other_views():
    prior = (0.1, 0.1)
    others = np.array([0.12, 0.08, 0.10])
    sampled = np.append(others, 0.5)  # three notes and the match
    z = standardise(np.array([0.5, 0.45]), sampled, prior)
    # the match's own cosine does not raise the background it is judged against
    assert z[0] == pytest.approx(_z_against_all(0.5, others, prior))
    assert z[0] > _z_against_all(0.5, sampled, prior) + 0.5
    # a hit outside the sample is standardised against all of it
    assert z[1] == pytest.approx(_z_against_all(0.45, sampled, prior))
    # in a large store leaving one view out hardly moves z
    big = np.random.default_rng(0).normal(0.1, 0.1, 512).astype(np.float32)
    with_itself = _z_against_all(float(big[0]), big.astype(np.float64), prior)
    assert abs(standardise(big[:1], big, prior)[0] - with_itself) < 0.02
    assert standardise(np.array([0.3, 0.5]), np.array([]), prior) == pytest.approx([2.0, 4.0])


def test_a_few_hits_get_the_same_z_as_many(monkeypatch):
    """A recall's few hits are standardised in Python floats, many in numpy: the same bits."""
    import aimemory.calibration as calibration

    rng = np.random.default_rng(0)
    for _ in range(300):
        sims = rng.normal(0.2, 0.1, int(rng.integers(0, 600)))
        n = int(rng.integers(1, 40))
        sampled = rng.choice(sims, min(len(sims), n // 2)) if len(sims) else np.zeros(0)  # hits in the sample
        scores = np.concatenate([sampled, rng.normal(0.3, 0.1, n - len(sampled))]).astype(np.float32)
        background = calibration.Background(sims, (float(rng.random() * 0.3), float(rng.random() * 0.2 + 0.01)))
        few = background.z(scores)
        monkeypatch.setattr(calibration, "FEW_HITS", 0)
        assert np.array_equal(few, background.z(scores))
        monkeypatch.undo()


def test_shipped_calibration_of_the_offline_tier_loads():
    base = load_calibration("aimemory-base")
    if not base.fitted:
        pytest.skip("no calibration shipped for aimemory-base")
    assert pair_key("text", "image") in base.pairs and all(p.a > 0 for p in base.pairs.values())


def test_cli_shows_and_filters_relevance(capsys, monkeypatch, tmp_path):
    import json

    import aimemory.cli.commands as commands
    from aimemory.cli import main

    monkeypatch.setattr(commands, "_TEST_STORE_KWARGS", {"model": ColourEncoder(), "speech_model": None})
    store = tmp_path / "s"

    def run(*argv):
        code = main([str(a) for a in argv])
        return code, capsys.readouterr().out

    for text in ("red memo", "blue memo", "green memo"):
        run("remember", "--text", text, "--store", store)
    code, out = run("recall", "red", "--store", store, "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 3 and all(0 <= h["relevance"] <= 1 for h in hits)
    cut = (hits[0]["relevance"] + hits[1]["relevance"]) / 2
    code, out = run("recall", "red", "--store", store, "--json", "--min-relevance", cut)
    assert code == 0 and [h["id"] for h in json.loads(out)] == [hits[0]["id"]]
    code, out = run("recall", "red", "--store", store)
    assert code == 0 and "relevance" in out


def test_a_hits_relevance_does_not_depend_on_the_querys_filters(store):
    """Hits are judged against the namespace's views, not the few a filter, a time window or a
    modality leaves: the same memory keeps its relevance, so one min_relevance keeps it or not."""
    colours = ["red", "green", "blue", "yellow", "purple", "orange"]
    texts = [f"{colours[i % 6]} note {i}" for i in range(300)]
    store.remember_many(texts, metadata=[{"tags": ["warm" if i % 6 in (0, 3, 5) else "cool"]} for i in range(300)])
    every = {h.id: h.relevance for h in store.recall("red", k=20)}
    for kwargs in ({"where": {"tags": "warm"}}, {"modality": "text"}, {"since": 0.0},
                   {"where": {"tags": "warm"}, "until": 4e9}):
        narrowed = {h.id: h.relevance for h in store.recall("red", k=20, **kwargs)}
        shared = set(narrowed) & set(every)
        assert len(shared) >= 10
        assert all(narrowed[m] == pytest.approx(every[m], abs=1e-6) for m in shared), kwargs
