"""benchmarks/eval_calibration.py's topical material (benchmarks/_notes_data.py, benchmarks/data/): the
labelled sets are well formed and kept apart, and each pair's materials are fitted together but
reported apart."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _calibration_candidates as candidates  # noqa: E402
import _notes_data  # noqa: E402
from _calibration_data import PairScores  # noqa: E402


@pytest.mark.parametrize("split", ["tune", "test"])
def test_written_note_sets_are_well_formed(split):
    data = _notes_data.load_set(_notes_data.DATA / _notes_data.NOTES[split])
    notes, queries = data["notes"], data["queries"]
    assert len(notes) >= 250 and len(queries) >= 120
    assert len({n["id"] for n in notes}) == len(notes)
    unanswered = sum(not q["relevant"] for q in queries)
    assert 0.1 * len(queries) <= unanswered <= 0.3 * len(queries)  # searches nothing answers
    assert sum(2 in q["relevant"].values() for q in queries) >= 100


def test_tune_and_test_sets_share_no_note_and_no_search():
    tune, test = (_notes_data.load_set(_notes_data.DATA / _notes_data.NOTES[s]) for s in ("tune", "test"))
    assert not {n["text"].lower() for n in tune["notes"]} & {n["text"].lower() for n in test["notes"]}
    # two writers, each with their own persona: a short search may coincide ("knitting pattern")
    assert len({q["text"].lower() for q in tune["queries"]} & {q["text"].lower() for q in test["queries"]}) <= 2


@pytest.mark.parametrize("split", ["tune", "test"])
def test_voice_note_searches_grade_only_prompts_of_their_split(split):
    queries = _notes_data.load_set(_notes_data.DATA / _notes_data.VOICE_QUERIES[split])["queries"]
    graded_ids = {i for q in queries for i in q["relevant"]}
    assert graded_ids and all(i.startswith("ast-") for i in graded_ids)
    manifest = Path("~/.cache/aimemory-eval/real/manifest.jsonl").expanduser()
    if manifest.exists():  # the corpus keeps every prompt in one split (its own group)
        rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        assert graded_ids <= {r["id"] for r in rows if r["split"] == split}


def test_load_set_refuses_unknown_ids_and_grades(tmp_path):
    bad = tmp_path / "set.json"
    bad.write_text(json.dumps({"notes": [{"id": "n1", "text": "x"}],
                               "queries": [{"id": "q1", "text": "y", "relevant": {"n2": 2}}]}))
    with pytest.raises(ValueError, match="unknown id n2"):
        _notes_data.load_set(bad)
    bad.write_text(json.dumps({"notes": [{"id": "n1", "text": "x"}],
                               "queries": [{"id": "q1", "text": "y", "relevant": {"n1": 3}}]}))
    with pytest.raises(ValueError, match="grade 3"):
        _notes_data.load_set(bad)


def test_graded_places_each_grade_at_its_query_and_note():
    grades = _notes_data.graded([{"relevant": {"b": 2}}, {"relevant": {"a": 1, "zz": 2}}], ["a", "b", "c"])
    assert grades.tolist() == [[0, 2, 0], [1, 0, 0]]  # an id outside the gallery is ignored


def _pair(kind: str, group: str | None, seed: int, queries: int = 6, views: int = 40) -> PairScores:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(queries, 8)).astype(np.float32)
    g = rng.normal(size=(views, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    relevant = (q @ g.T) > 0.5
    return PairScores("text", kind, q, g, relevant, np.ones_like(relevant), group=group)


def test_a_pairs_materials_are_fitted_together_and_reported_apart():
    corpus, notes = _pair("text", None, 0), _pair("text", "written notes", 1)
    assert corpus.name == notes.name == "text x text" and notes.row == "text x text (written notes)"
    parts = [candidates.Candidates(p, None, None) for p in (corpus, notes)]
    (merged,) = candidates.merge_by_name(parts)
    assert len(merged.label) == sum(len(c.label) for c in parts)
    assert merged.n_queries == 12 and set(merged.query) == set(range(12))  # queries keep their own ids
    assert merged.row == "text x text"


def test_topical_material_replaces_or_joins_the_corpus_as_asked():
    corpus = [_pair("text", None, 0), _pair("audio.speech", None, 2), _pair("image", None, 3)]
    topical = [_pair("text", "written notes", 1), _pair("audio.speech", "topical searches", 4)]
    sizes = {}
    for how in ("none", "add", "replace", "per pair"):
        tune, prior = candidates.fit_material(corpus, topical, how, None)
        sizes[how] = {c.name: len(c.label) for c in tune}
        spoken = {"speech x text"} if how in ("replace", "per pair") else set()  # written searches as if spoken
        assert set(prior) == {"text x text", "text x audio.speech", "text x image"} | spoken
    one = len(candidates.Candidates(corpus[0], None, None).label)
    assert sizes["add"]["text x text"] == sizes["none"]["text x text"] + one
    assert sizes["replace"]["text x text"] == one and sizes["add"]["text x image"] == sizes["none"]["text x image"]
    # per pair: notes join the captions; voice notes drop the very-clip labels and learn from the
    # topical searches and the written notes
    assert sizes["per pair"]["text x text"] == sizes["add"]["text x text"]
    assert sizes["per pair"]["text x audio.speech"] == 2 * one and sizes["none"]["text x audio.speech"] == one
    tune, _ = candidates.fit_material(corpus, topical, "per pair", None)
    speech = next(c for c in tune if c.name == "text x audio.speech")
    searches = candidates.Candidates(topical[1], None, None)
    as_notes = candidates.Candidates(topical[0], None, None)
    assert np.array_equal(speech.cosine, np.concatenate([searches.cosine, as_notes.cosine]))
    spoken = next(c for c in tune if c.name == "speech x text")
    assert np.array_equal(spoken.cosine, as_notes.cosine)


def test_note_ranking_metrics_count_only_answered_searches():
    import eval_notes

    grades = np.array([[2, 0, 1], [0, 0, 0], [0, 1, 2]], np.int8)  # the middle search has no answer
    scores = np.array([[0.9, 0.1, 0.5], [0.3, 0.2, 0.1], [0.9, 0.8, 0.1]])
    m = eval_notes.ranking_metrics(scores, grades)
    assert m["searches"] == 2 and m["R@1"] == 0.5 and m["R@5"] == 1.0 and m["R@5 on topic"] == 1.0
    assert m["nDCG@10"] < 1.0 and eval_notes.ranking_metrics(grades.astype(float), grades)["nDCG@10"] == 1.0


def test_a_small_store_of_matches_holds_the_querys_matches_and_random_others():
    pair = _pair("text", None, 2, queries=8, views=60)
    small, store = 12, 3
    plain = candidates.Candidates(pair, (0.0, 0.3), None, small)
    of_matches = candidates.Candidates(pair, (0.0, 0.3), None, small, store)
    for q in range(pair.relevant.shape[0]):
        hits = plain.query == q
        assert hits.sum() == min(candidates.TOP, small)
        found = of_matches.label[of_matches.query == q]
        # every hit is one of the query's 12 views: at least min(3, its matches) of them are matches
        assert found.sum() >= min(store, int(pair.relevant[q].sum()))
    assert of_matches.label.mean() > plain.label.mean()  # matches are the point of the check


def test_a_kind_of_thing_is_answered_by_its_sub_kinds_and_synonyms_only():
    from _concept_groups import KIND_OF, SAME_THING, answers

    assert answers("tombstone", "grave marker") and answers("grave marker", "another tombstone")  # one thing
    assert answers("penguin", "little penguin") and not answers("little penguin", "penguin")  # a kind of it
    assert answers("flowers", "rose") and answers("building", "berlin cathedral")  # through groups and chains
    assert not answers("lion", "sea lion") and not answers("duck", "rubber duck")  # a shared word only
    named = [c for group in SAME_THING for c in group] + [c for pair in KIND_OF for c in pair]
    assert len({c for group in SAME_THING for c in group}) == sum(len(g) for g in SAME_THING)  # one group each
    manifest = Path("~/.cache/aimemory-eval/real/manifest.jsonl").expanduser()
    if manifest.exists():  # every name is one of the corpus's concepts (a typo would silently match nothing)
        concepts = {json.loads(line)["concept"] for line in manifest.read_text().splitlines() if line.strip()}
        assert set(named) <= concepts


def test_accepted_labels_keep_every_same_concept_hit_and_add_synonyms_and_kinds():
    from _calibration_data import pair_scores

    rows = {"photos": [{"id": f"p{i}", "caption": f"a {c}", "concept": c, "label": "x"}
                       for i, c in enumerate(["penguin", "little penguin", "tombstone", "grave marker", "lion"])],
            "sounds": [{"id": "s0", "caption": "a sea lion", "concept": "sea lion", "label": "x"}], "speech": []}
    rng = np.random.default_rng(0)
    data = {"meta": np.asarray(json.dumps(rows)), "speech/owner": np.zeros(0, np.int64),
            "speech_query/index": np.zeros(0, np.int64)}
    for key, n in (("photo_caption/text", 5), ("photo_caption/drawing", 5), ("photo/image", 5),
                   ("photo/image.drawing", 5), ("photo/image.appearance", 5), ("sound_caption/text", 1),
                   ("sound/audio.sound", 1), ("sound_query/audio", 1)):
        data[key] = rng.normal(size=(n, 4)).astype(np.float32)
    strict = {p.name: p.relevant for p in pair_scores(data)}
    accepted = {p.name: p.relevant for p in pair_scores(data, accepted=True)}
    for name in strict:
        assert (accepted[name] >= strict[name]).all(), name
    text_image = accepted["text x image"]
    assert text_image[0, 1] and not text_image[1, 0]  # "a penguin" -> the little penguin, not back
    assert text_image[2, 3] and text_image[3, 2] and not strict["text x image"][2, 3]  # tombstone = grave marker
    assert not text_image[4, :4].any() and not accepted["image x audio.sound"][4, 0]  # a lion is not a sea lion
