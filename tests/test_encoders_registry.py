"""Model resolution end to end: a MemoryStore on native CLIP from a local checkpoint folder and from
the hub cache, what "auto" picks, and what the store records."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from test_nn_clip import _write_small_vocab, make_hf, tiny_config

from aimemory import MemoryStore, ModelMismatchError, ModelNotAvailableError
from aimemory.encoders.registry import load_encoder

transformers = pytest.importorskip("transformers")


@pytest.fixture
def clip_folder(tmp_path):
    config = tiny_config()
    config.text_config.vocab_size = 600
    config.text_config.max_position_embeddings = 77
    _, folder = make_hf(tmp_path, config, name="tiny-clip")
    _write_small_vocab(folder)
    return folder


@pytest.mark.heavy
def test_store_runs_on_native_clip_from_a_folder(tmp_path, clip_folder, monkeypatch):
    monkeypatch.setenv("AIMEMORY_WEIGHTS_CACHE", str(tmp_path / "wcache"))
    from PIL import Image

    rng = np.random.default_rng(0)
    pics = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(4)]
    with MemoryStore(tmp_path / "m", model=str(clip_folder)) as s:
        mems = s.remember_many(pics + ["a photo of the cat", "the dog on the beach"])
        assert s.stats()["dim"] == 24
        for m, pic in zip(mems, pics):  # exact self-recall through the whole native path
            hit = s.recall(pic, k=1)[0]
            assert hit.id == m.id and hit.score == pytest.approx(1.0, abs=1e-4)
        assert s.recall("the dog on the beach", k=1)[0].id == mems[-1].id
        probs = s.classify(pics[0], ["cat", "dog"])
        assert set(probs) == {"cat", "dog"} and sum(probs.values()) == pytest.approx(1.0)
    with MemoryStore(tmp_path / "m") as s:  # "auto" reopens with the model the store recorded
        assert len(s) == 6 and s.recall(pics[2], k=1)[0].id == mems[2].id


def test_other_checkpoint_is_a_mismatch(tmp_path, clip_folder, monkeypatch):
    monkeypatch.setenv("AIMEMORY_WEIGHTS_CACHE", str(tmp_path / "wcache"))
    with MemoryStore(tmp_path / "m", model=str(clip_folder)) as s:
        s.remember("a photo of the cat")
    other = tmp_path / "other-clip"
    shutil.copytree(clip_folder, other)
    with pytest.raises(ModelMismatchError):
        MemoryStore(tmp_path / "m", model=str(other))


def _fake_hub_cache(hf_home, repo_id, folder):
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / ("0" * 40)
    shutil.copytree(folder, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)


def test_auto_prefers_cached_pretrained_clip(tmp_path, clip_folder, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("AIMEMORY_WEIGHTS_CACHE", str(tmp_path / "wcache"))
    monkeypatch.setenv("AIMEMORY_MODEL", "acme/tiny-clip")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    _fake_hub_cache(tmp_path / "hf", "acme/tiny-clip", clip_folder)
    enc = load_encoder("auto")
    assert enc.model_id == "acme/tiny-clip" and enc.dim == 24
    with MemoryStore(tmp_path / "m", model="auto", speech_model=None) as s:
        assert s.model_id == "acme/tiny-clip"
        s.remember("the cat")
    with MemoryStore(tmp_path / "m", speech_model=None) as s:
        assert s.model_id == "acme/tiny-clip" and len(s) == 1


def test_unknown_or_uncached_models_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(ModelNotAvailableError, match="aimemory models download"):
        load_encoder("openai/clip-vit-base-patch32")
    with pytest.raises(ModelNotAvailableError):
        load_encoder("no-such-model")


def test_auto_picks_the_offline_tier_then_the_built_in_model(tmp_path, monkeypatch, capsys):
    """No cached CLIP: the pretrained offline tier when its weight packages are installed, else the
    built-in model; announced once, with the reason."""
    import aimemory.encoders.registry as registry

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr(registry, "_announced", False)
    if registry.offline_tier_missing() is None:
        assert registry.auto_choice()[0] == "aimemory-base"
        enc = load_encoder("auto")
        assert enc.model_id == "aimemory-base"
        err = capsys.readouterr().err
        assert "aimemory-base" in err and "not cached" in err
        load_encoder("auto")
        assert capsys.readouterr().err == ""  # announced once
    monkeypatch.setattr(registry, "offline_tier_missing", lambda: "the all-MiniLM-L6-v2 weights are not installed")
    monkeypatch.setattr(registry, "_announced", False)
    choice, reason = registry.auto_choice()
    assert choice == "aimemory-mini" and "MiniLM" in reason
    enc = load_encoder("auto")
    assert enc.model_id.startswith("aimemory-mini")
    assert "aimemory-mini" in capsys.readouterr().err
