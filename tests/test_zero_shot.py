"""zero_shot with a tiny deterministic encoder: the embedding of an image is its mean colour, the
embedding of a text is keyed on the colour words it contains."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aimemory.encoders.base import Encoder, l2_normalize
from aimemory.encoders.zero_shot import DEFAULT_TEMPLATES, label_embeddings, zero_shot
from aimemory.errors import InputError, UnsupportedInputError

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


class ColourEncoder(Encoder):
    """dim 4: R, G, B and a 'nothing' axis for texts that name no colour."""

    model_id = "test-colour"
    dim = 4
    modalities = frozenset({"image", "text"})
    logit_scale = 10.0

    def __init__(self):
        self.text_calls: list[list[str]] = []

    def embed_images(self, images):
        rows = [[*np.asarray(img, dtype=np.float32).reshape(-1, 3).mean(axis=0) / 255.0, 0.05] for img in images]
        return l2_normalize(np.array(rows))

    def embed_texts(self, texts):
        self.text_calls.append(list(texts))
        rows = []
        for text in texts:
            vec = np.array([0.0, 0.0, 0.0, 0.1])
            for i, word in enumerate(COLOURS):
                if word in text:
                    vec[i] += 1.0
            # a template-dependent wobble, so averaging over templates actually matters
            vec[3] += 0.05 * (len(text) % 3)
            rows.append(vec)
        return l2_normalize(np.array(rows))


def _img(colour: str, size: int = 8) -> Image.Image:
    return Image.new("RGB", (size, size), COLOURS[colour])


def test_right_label_wins_and_probabilities_sum_to_one():
    enc = ColourEncoder()
    labels = ["red", "green", "blue"]
    results = zero_shot(enc, [_img("red"), _img("green"), _img("blue")], labels)
    assert len(results) == 3
    for expected, probs in zip(labels, results):
        assert list(probs) == labels
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-9)
        assert max(probs, key=probs.get) == expected
        assert all(0.0 <= p <= 1.0 for p in probs.values())


def test_single_image_and_one_text_batch_for_all_prompts():
    enc = ColourEncoder()
    [probs] = zero_shot(enc, _img("blue"), ["red", "blue"])
    assert probs["blue"] > probs["red"]
    assert len(enc.text_calls) == 1 and len(enc.text_calls[0]) == 2 * len(DEFAULT_TEMPLATES)
    assert "a photo of a blue." in enc.text_calls[0]


def test_temperature_changes_sharpness():
    enc = ColourEncoder()
    image, labels = _img("green"), ["red", "green", "blue"]
    soft = zero_shot(enc, image, labels, logit_scale=1.0)[0]
    default = zero_shot(enc, image, labels)[0]  # the encoder's 10.0
    sharp = zero_shot(enc, image, labels, logit_scale=100.0)[0]
    assert soft["green"] < default["green"] < sharp["green"]
    assert sharp["green"] > 0.999
    flat = zero_shot(enc, image, labels, logit_scale=0.0)[0]
    assert all(p == pytest.approx(1 / 3) for p in flat.values())


def test_label_embeddings_are_unit_template_averages():
    enc = ColourEncoder()
    templates = ["a {} thing", "the colour {}!"]
    vecs = label_embeddings(enc, ["red", "blue"], templates)
    assert vecs.shape == (2, 4)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-6)
    by_hand = l2_normalize(enc.embed_texts(["a red thing", "the colour red!"]).mean(axis=0, keepdims=True))
    np.testing.assert_allclose(vecs[0], by_hand[0], rtol=1e-6)


def test_custom_templates_and_other_image_inputs():
    enc = ColourEncoder()
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    pixels[..., 0] = 255
    results = zero_shot(enc, [pixels, _img("blue").convert("L")], ["red", "blue"], templates="{}")
    assert max(results[0], key=results[0].get) == "red"
    assert len(results[1]) == 2  # a grey image is converted to RGB, not rejected
    assert zero_shot(enc, [], ["red"]) == []


def test_bad_arguments():
    enc = ColourEncoder()
    with pytest.raises(InputError):
        zero_shot(enc, _img("red"), [])
    with pytest.raises(InputError):
        zero_shot(enc, _img("red"), "red")
    with pytest.raises(InputError):
        zero_shot(enc, _img("red"), ["red", "red"])
    with pytest.raises(InputError, match="exactly one"):
        zero_shot(enc, _img("red"), ["red"], templates=["no placeholder"])
    with pytest.raises(UnsupportedInputError):
        zero_shot(enc, "photo.jpg", ["red"])
