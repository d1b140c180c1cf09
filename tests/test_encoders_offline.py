"""The pretrained offline tier (``aimemory-base``): the label placement, the shipped class vectors,
the views it makes, and real photographs found by a few words through the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aimemory.encoders import labels
from aimemory.encoders.registry import offline_tier_missing

MISSING = offline_tier_missing()
needs_tier = pytest.mark.skipif(MISSING is not None, reason=f"{MISSING} (aimemory models install aimemory-base)")
SKIMAGE_DATA = None
try:  # public-domain / CC0 photographs that scikit-image ships (test extra)
    import skimage.data as _sk

    SKIMAGE_DATA = Path(_sk.__file__).parent
except ImportError:  # pragma: no cover
    pass


def test_conse_mixes_the_top_classes_by_probability():
    vecs = np.eye(4, dtype=np.float32)  # class i -> axis i
    logits = np.log(np.array([[0.6, 0.3, 0.1, 1e-9]], np.float64))
    out = labels.conse(logits, vecs, top=2, temperature=1.0)
    assert out.shape == (1, 4) and np.isclose(np.linalg.norm(out), 1.0)
    assert out[0, 0] > out[0, 1] > 0 and out[0, 2] == 0 and out[0, 3] == 0  # only the top 2, 2:1
    assert np.isclose(out[0, 0] / out[0, 1], 2.0, rtol=1e-5)
    sharp = labels.conse(logits, vecs, top=1)
    assert np.allclose(sharp, [[1, 0, 0, 0]])


def test_class_texts_name_the_everyday_category():
    classes = labels.read_class_texts(Path(labels.__file__).parent.parent / "models" / "aimemory-base" / "labels.json")
    assert len(classes) == 1000 and [c.index for c in classes] == list(range(1000))
    by_name = {c.name: c for c in classes}
    assert by_name["Golden Retriever"].category == "dog"
    assert by_name["Egyptian Mau"].category == "cat"
    assert by_name["espresso"].category == "coffee"
    assert any("dog" in s for s in by_name["Chihuahua"].sentences())


@needs_tier
def test_shipped_class_vectors_are_what_the_text_tower_makes():
    from aimemory.encoders.offline import MODEL_DIR
    from aimemory.encoders.sentence import SentenceEncoder

    shipped = labels.read_shipped_vectors()
    sentences = labels.imagenet_sentences(labels.read_class_texts(MODEL_DIR / "labels.json"))
    digest, vecs = shipped["imagenet"]
    assert digest == labels.sentences_digest(sentences), "rebuild: python training/build_class_vectors.py"
    text = SentenceEncoder.from_pretrained("auto")
    pick = [0, 207, 281, 504, 967, 999]
    fresh = labels.embed_classes([sentences[i] for i in pick], text.embed)
    assert (np.sum(fresh * vecs[pick], axis=1) > 0.9999).all()


@pytest.fixture(scope="module")
def tier():
    if MISSING is not None:
        pytest.skip(MISSING)
    from aimemory.encoders.offline import OfflineEncoder

    return OfflineEncoder.load()


def test_image_views_are_placed_and_appearance(tier):
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8))
    (views,) = tier.views("image", [img])
    assert [v.kind for v in views] == ["image", "image.appearance", "image.drawing"]
    for v in views:
        assert v.vector.shape == (tier.dim,) and np.isclose(np.linalg.norm(v.vector), 1.0, atol=1e-5)
    plans = tier.query_plans("image", img)
    assert plans[0].kinds is None and plans[1].kinds == frozenset({"image.appearance"})
    assert np.allclose(plans[0].vector, views[0].vector, atol=1e-5)  # a query is embedded like a memory
    text_plans = tier.query_plans("text", "a cat")
    assert [p.kinds for p in text_plans] == [None, frozenset({"image.drawing"})]
    assert text_plans[1].penalty > 0 and not text_plans[1].vector[256:].any()  # mini's 256-d, padded


def test_meaning_not_words(tier):
    q, right, wrong = tier.embed_texts(["dentist appointment", "Remember to call the dentist on Tuesday",
                                        "the apartment has a new front door"])
    assert q @ right > q @ wrong + 0.2


def test_a_note_on_the_query_topic_is_relevant_not_only_a_copy_of_it(tmp_path, tier):
    """Relevance of a note means "what the search is after", learnt from written notes and searches
    (benchmarks/eval_calibration.py): a note that shares no words with the search still passes a
    low threshold in a small store; the others, and a search nothing answers, do not."""
    from aimemory import MemoryStore

    notes = {"shopping": "Pick up rice, onions, milk and dog food after work.",
             "boiler": "The boiler engineer comes Thursday between 8 and noon.",
             "birthday": "Maya turns 7 on the 14th; she wants a telescope.",
             "passport": "Passport expires in March, renew it before the Lisbon trip.",
             "tyre": "Front tyre on the bike keeps going flat, buy a new inner tube."}
    with MemoryStore(tmp_path / "m", model=tier, speech_model=None) as store:
        ids = {name: store.remember(text).id for name, text in notes.items()}
        for query, name in [("groceries to buy", "shopping"), ("when is the heating repair visit?", "boiler"),
                            ("present for my daughter", "birthday"), ("travel documents", "passport"),
                            ("fix my bicycle", "tyre")]:
            hits = store.recall(query, k=5)
            assert hits[0].id == ids[name] and hits[0].relevance > 5 * hits[1].relevance, query
        for query, name in [("groceries to buy", "shopping"), ("when is the heating repair visit?", "boiler"),
                            ("fix my bicycle", "tyre")]:
            kept = store.recall(query, k=5, min_relevance=0.1)
            assert [h.id for h in kept] == [ids[name]], (query, [(h.memory.text, h.relevance) for h in kept])
        assert store.recall("quarterly tax return", k=5, min_relevance=0.01) == []


@pytest.mark.skipif(SKIMAGE_DATA is None, reason="scikit-image (test extra) ships the photographs")
def test_real_photographs_found_by_a_few_words(tmp_path, tier):
    from aimemory import MemoryStore

    photos = {"cat": "chelsea.png", "coffee": "coffee.png", "astronaut": "astronaut.png", "rocket": "rocket.jpg",
              "motorcycle": "motorcycle_left.png", "horse": "horse.png"}
    with MemoryStore(tmp_path / "m", model=tier, speech_model=None) as store:
        ids = {name: store.remember(SKIMAGE_DATA / file).id for name, file in photos.items()
               if (SKIMAGE_DATA / file).is_file()}
        note = store.remember("Remember to call the dentist on Tuesday").id
        assert len(ids) >= 5
        for query, name in [("a cat", "cat"), ("a cup of coffee", "coffee"), ("an astronaut", "astronaut"),
                            ("a rocket launch", "rocket"), ("a motorbike", "motorcycle")]:
            if name in ids:
                hits = store.recall(query, k=3)
                assert ids[name] in [h.id for h in hits], (query, [h.memory.source for h in hits])
        assert store.recall("dentist appointment", k=1)[0].id == note
        # a text query never lands on an appearance view; an image query finds the same photo first
        assert all(h.kind != "image.appearance" for h in store.recall("a cat", k=10))
        # the built-in model's emoji are found too (an ImageNet classifier does not know drawings)
        emoji = Path(__file__).parent.parent / "aimemory" / "samples" / "images"
        drawn = {p.stem: store.remember(p).id for p in sorted(emoji.glob("*.png"))}
        for word in ("cat", "guitar", "pizza", "umbrella"):
            assert drawn[word] in [h.id for h in store.recall(f"a {word}", k=3)], word
        same = store.recall(SKIMAGE_DATA / photos["cat"], k=1)[0]
        assert same.id == ids["cat"] and same.score > 0.99
