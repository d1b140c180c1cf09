"""Sound towers in the store: ``sound_model=`` (explicit, "auto", off), time-coded ``audio.sound``
views over windows, recall by sound, width checks, and finding a local checkpoint without network."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from _wav2clip import make_checkpoint
from conftest import DIM, ColourEncoder, solid

from aimemory import Audio, MemoryStore
from aimemory.encoders.sound import (
    WINDOW_S,
    SoundTower,
    WithSoundTower,
    attach_sound,
    find_local_sound_model,
    resolve_sound_checkpoint,
)
from aimemory.errors import ModelMismatchError, ModelNotAvailableError

SR = 16_000


class B32Colour(ColourEncoder):
    """The fixture encoder under the id of the CLIP that wav2clip belongs to (for "auto")."""

    model_id = "openai/clip-vit-base-patch32"


@pytest.fixture(scope="module")
def narrow_checkpoint(tmp_path_factory):
    """A wav2clip-format checkpoint whose MLP ends at the fixture encoder's width."""
    return make_checkpoint(tmp_path_factory.mktemp("w2c") / "narrow" / "model.pt", head=(512, 64, DIM))


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("AIMEMORY_SOUND", raising=False)
    return home


def _scene(parts: list[tuple[str, float]]) -> Audio:
    """Concatenated sounds: ("noise" | "chirp" | "tone", seconds)."""
    rng = np.random.default_rng(0)
    out = []
    for kind, seconds in parts:
        t = np.arange(int(seconds * SR)) / SR
        if kind == "noise":
            out.append(0.3 * rng.standard_normal(t.size))
        elif kind == "chirp":
            out.append(0.4 * np.sin(2 * np.pi * (200 + 1500 * t) * t))
        else:
            out.append(0.4 * np.sin(2 * np.pi * 440 * t))
    return Audio(np.concatenate(out).astype(np.float32), SR)


@pytest.mark.heavy
def test_long_recording_gets_time_coded_windows_and_recall_finds_the_span(tmp_path, narrow_checkpoint):
    scene = _scene([("tone", 5.0), ("noise", 5.0), ("chirp", 5.0)])
    with MemoryStore(tmp_path / "m", model=ColourEncoder(), sound_model=narrow_checkpoint) as store:
        assert isinstance(store.encoder, WithSoundTower)
        assert store.stats()["sound_model"] == "narrow"  # model.pt names itself by its folder
        mem = store.remember(scene)
        store.remember(solid("red"))
        views = store.table.scan(["id", "kind", "start", "end"]).to_pylist()
        spans = sorted((r["start"], r["end"]) for r in views if r["id"] == mem.id)
        assert [r["kind"] for r in views if r["id"] == mem.id] == ["audio.sound"] * 3
        assert spans == [(0.0, 5.0), (5.0, 10.0), (10.0, 15.0)]
        # the noise part alone, as a query, lands on the middle window
        noise = Audio(scene.samples[5 * SR: 10 * SR], SR)
        hit = store.recall(noise, k=1, modality="audio")[0]
        assert hit.id == mem.id and (hit.start, hit.end) == (5.0, 10.0)


@pytest.mark.heavy
def test_window_count_follows_duration(narrow_checkpoint):
    tower = SoundTower.from_pretrained(narrow_checkpoint)
    for seconds, n in [(0.02, 1), (3.0, 1), (7.4, 1), (7.6, 2), (12.0, 2), (61.0, 12)]:
        audio = Audio(np.random.default_rng(1).standard_normal(int(seconds * SR)).astype(np.float32) * 0.1, SR)
        views = tower.views([audio])[0]
        assert len(views) == n, seconds
        assert views[0].start == 0.0 and views[-1].end == pytest.approx(seconds, abs=1e-3)
        assert all(np.isfinite(v.vector).all() and abs(np.linalg.norm(v.vector) - 1) < 1e-5 for v in views)
    assert WINDOW_S == 5.0


@pytest.mark.heavy
def test_windows_do_not_depend_on_batch_mates(narrow_checkpoint):
    """Per-window normalisation: the same window embeds the same alone or inside a long recording."""
    tower = SoundTower.from_pretrained(narrow_checkpoint)
    scene = _scene([("tone", 5.0), ("noise", 5.0)])
    whole = tower.views([scene])[0]
    alone = tower.views([Audio(scene.samples[5 * SR:], SR)])[0]
    np.testing.assert_allclose(whole[1].vector, alone[0].vector, atol=1e-5)


@pytest.mark.heavy
def test_resampled_input_is_accepted(narrow_checkpoint):
    tower = SoundTower.from_pretrained(narrow_checkpoint)
    t = np.arange(44_100 * 2) / 44_100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32)
    views = tower.views([Audio(stereo, 44_100)])[0]
    assert len(views) == 1 and views[0].end == pytest.approx(2.0, abs=1e-3)


def test_width_mismatch_is_a_typed_error(tmp_path):
    wide = make_checkpoint(tmp_path / "Wav2CLIP.pt")  # 512-d: the real wav2clip's width
    with pytest.raises(ModelMismatchError, match="512-d.*16-d|openai/clip-vit-base-patch32"):
        attach_sound(ColourEncoder(), wide)


def test_wrong_space_warns(narrow_checkpoint, tmp_path, caplog):
    named = tmp_path / "Wav2CLIP.pt"  # a checkpoint under wav2clip's own name
    named.write_bytes(narrow_checkpoint.read_bytes())
    with caplog.at_level(logging.WARNING, logger="aimemory.encoders"):
        attach_sound(ColourEncoder(), named)
    assert "ViT-B/32" in caplog.text


@pytest.mark.heavy
def test_auto_uses_a_local_wav2clip_only_for_its_clip(torch_home, narrow_checkpoint, tmp_path, monkeypatch):
    assert find_local_sound_model() is None
    assert attach_sound(B32Colour(), "auto").__class__ is B32Colour  # nothing cached: unchanged
    cached = torch_home / "hub" / "checkpoints" / "Wav2CLIP.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(narrow_checkpoint.read_bytes())
    assert find_local_sound_model() == str(cached)
    assert resolve_sound_checkpoint("wav2clip") == cached  # found: no download attempted
    with MemoryStore(tmp_path / "m", model=B32Colour()) as store:
        assert store.stats()["sound_model"] == "wav2clip"
        mem = store.remember(_scene([("chirp", 2.0)]))
        hit = store.recall(_scene([("chirp", 2.0)]), k=1)[0]
        assert (hit.id, hit.kind, hit.start, hit.end) == (mem.id, "audio.sound", 0.0, 2.0)
    plain = ColourEncoder()  # another model's space: auto leaves it alone
    assert attach_sound(plain, "auto") is plain
    monkeypatch.setenv("AIMEMORY_SOUND", "0")
    b32 = B32Colour()
    assert attach_sound(b32, "auto") is b32
    assert attach_sound(b32, None) is b32


def test_unknown_specs_say_what_to_pass(tmp_path, torch_home, monkeypatch):
    with pytest.raises(ModelNotAvailableError, match="wav2clip"):
        attach_sound(ColourEncoder(), "no-such-sound-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="Wav2CLIP.pt"):
        attach_sound(ColourEncoder(), tmp_path / "empty")
    monkeypatch.setenv("AIMEMORY_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="downloads are off"):
        resolve_sound_checkpoint("wav2clip")
