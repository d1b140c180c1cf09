"""The shipped aimemory-mini weights: loading, the card's numbers on a committed held-out subset,
and semantics on the bundled samples."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aimemory.encoders.base import Encoder, View
from aimemory.encoders.mini import MODEL_DIR, MiniEncoder, load_model
from aimemory.inputs import Audio
from aimemory.nn.mini import MiniDims
from aimemory.preprocess.hashed_text import text_features

SAMPLES = Path(__file__).resolve().parent.parent / "aimemory" / "samples"
HELDOUT = Path(__file__).resolve().parent / "data" / "mini_heldout.npz"
TOLERANCE = 0.02  # the subset is fixed and inference deterministic; allow BLAS-order noise only
SAMPLE_LABELS = ["cat", "dog", "car", "pizza", "tree", "guitar", "bicycle", "umbrella"]


def _article(w: str) -> str:
    return "an" if w[0] in "aeiou" else "a"


def _recall(q: np.ndarray, g: np.ndarray, k: int) -> float:
    sims = q @ g.T
    rank = (sims > np.diag(sims)[:, None]).sum(1)
    return float((rank < k).mean())


def _wav(path: Path) -> Audio:
    with wave.open(str(path)) as w:
        y = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        return Audio(y, w.getframerate())


@pytest.fixture(scope="module")
def enc() -> MiniEncoder:
    torch.set_num_threads(2)
    return MiniEncoder.load()


def test_weights_load_and_fit(enc):
    assert isinstance(enc, Encoder)
    assert enc.model_id == "aimemory-mini-v1"
    assert enc.modalities == frozenset({"image", "text", "audio"})
    assert (MODEL_DIR / "model.safetensors").stat().st_size <= 25 * 2**20
    cfg = json.loads((MODEL_DIR / "config.json").read_text())
    assert enc.dim == cfg["dim"] == enc.model.dims.dim
    assert enc.model.dims == MiniDims.from_checkpoint(enc.model.state_dict(), cfg)
    assert 1.0 < enc.logit_scale <= 100.0
    assert load_model() is enc.model  # cached


def test_embeddings_are_unit_rows(enc):
    img = enc.embed_images([Image.new("RGB", (100, 80), (200, 10, 10)), Image.new("RGBA", (64, 64))])
    txt = enc.embed_texts(["a cat", "", "Two DOGS!"])
    assert enc.embed_images([]).shape == enc.embed_texts([]).shape == (0, enc.dim)
    assert enc.embed_audio([]) == []
    for x, n in ((img, 2), (txt, 3)):
        assert x.shape == (n, enc.dim) and x.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


@pytest.mark.heavy
def test_audio_views_are_windowed(enc):
    short = Audio(np.zeros(8000, np.float32), 16000)
    long = Audio(np.random.default_rng(0).normal(0, 0.1, 44100 * 7).astype(np.float32), 44100)
    views = enc.embed_audio([short, long])
    assert len(views[0]) == 1 and views[0][0].kind == "audio.sound"
    assert isinstance(views[1][0], View) and len(views[1]) == 3  # 7 s -> windows at 0, 2, 4 s
    assert views[1][0].start == 0.0 and views[1][-1].end == pytest.approx(7.0)
    np.testing.assert_allclose(np.linalg.norm(views[1][1].vector), 1.0, atol=1e-5)


def test_text_features_generalise_plurals():
    assert set(text_features("dogs", 1000)) == set(text_features("dog", 1000))
    assert text_features("2 cats", 1000)[0] == text_features("two cat", 1000)[0]


@pytest.mark.heavy
def test_heldout_subset_matches_card(enc):
    """Re-score the committed held-out subset (unseen backgrounds and voices) against eval.json."""
    data = np.load(HELDOUT)
    names = [str(n) for n in data["names"]]
    img = enc.embed_images([Image.fromarray(a) for a in data["images"]])
    txt = enc.embed_texts([f"{_article(n)} {n}" for n in names])
    splits = np.cumsum(data["wav_lengths"])[:-1]
    clips = [Audio(w.astype(np.float32) / 32767, 16000) for w in np.split(data["wavs"], splits)]
    aud = enc.query_vectors("audio", clips)
    card = next(v for k, v in json.loads((MODEL_DIR / "eval.json").read_text()).items() if k.startswith("test subset"))
    got = {"text->image R@5": _recall(txt, img, 5), "image->text top-1": _recall(img, txt, 1),
           "speech->image R@5": _recall(aud, img[: len(clips)], 5)}
    for key, value in got.items():
        assert value == pytest.approx(card[key], abs=TOLERANCE), key


@pytest.fixture(scope="module")
def sample_images(enc):
    return enc.embed_images([Image.open(SAMPLES / "images" / f"{s}.png") for s in SAMPLE_LABELS])


@pytest.mark.parametrize("label", SAMPLE_LABELS)
def test_text_finds_its_sample_image(enc, sample_images, label):
    q = enc.embed_texts([f"{_article(label)} {label}"])[0]
    assert SAMPLE_LABELS[int(np.argmax(sample_images @ q))] == label


def test_image_zero_shot_picks_its_label(enc, sample_images):
    labels = enc.embed_texts([f"a photo of {_article(s)} {s}" for s in SAMPLE_LABELS])
    assert [SAMPLE_LABELS[i] for i in (sample_images @ labels.T).argmax(1)] == SAMPLE_LABELS


@pytest.mark.parametrize("clip", sorted(p.stem for p in (SAMPLES / "audio").glob("*.wav")))
def test_spoken_clip_finds_its_image(enc, sample_images, clip):
    q = enc.query_vectors("audio", [_wav(SAMPLES / "audio" / f"{clip}.wav")])[0]
    assert SAMPLE_LABELS[int(np.argmax(sample_images @ q))] == clip
