"""The native sound tower against the wav2clip reference package (see ``tests/_wav2clip.py``),
with random weights: forward parity, the batch-normalisation quirk, loading and refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _wav2clip import load_reference, make_checkpoint, reference

from aimemory.encoders.sound import SoundTower
from aimemory.errors import CheckpointError
from aimemory.nn.sound import SoundDims, SoundNet
from aimemory.weights.sound_formats import wav2clip_to_native

SR = 16_000


@pytest.fixture(scope="module")
def wav2clip():
    return reference()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A hub-style ``Wav2CLIP.pt`` with random weights, and the reference model loaded from it."""
    path = make_checkpoint(tmp_path_factory.mktemp("w2c") / "Wav2CLIP.pt")
    return path, load_reference(path)


def _waves(n: int, seconds: float, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    rows = [0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t) + 0.05 * rng.standard_normal(t.size)
            for _ in range(n)]
    return torch.from_numpy(np.stack(rows).astype(np.float32))


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


@pytest.mark.heavy
def test_parity_one_clip_at_a_time(checkpoint):
    path, reference = checkpoint
    tower = SoundTower.from_pretrained(path)
    assert tower.model_id == "wav2clip" and tower.dim == 512
    waves = _waves(3, 2.0)
    with torch.no_grad():
        ref = torch.cat([reference(w[None]) for w in waves])
    ours = torch.from_numpy(tower.embed_waves(waves))
    assert _cos(ours, ref).min() >= 0.9999


@pytest.mark.heavy
def test_batch_normalisation_quirk_reproduced_and_avoided(checkpoint):
    """The reference standardises with the whole batch's statistics: a loud neighbour changes a
    clip's embedding. ``normalize="batch"`` reproduces it; the default per-clip mode does not."""
    path, reference = checkpoint
    tower = SoundTower.from_pretrained(path)
    waves = _waves(2, 1.5, seed=3)
    waves[1] *= 20.0  # a loud clip in the same batch
    with torch.no_grad():
        ref_batch = reference(waves)
        ref_alone = reference(waves[:1])
        ours_batch = tower.net(waves, normalize="batch")
        ours_clip = tower.net(waves, normalize="clip")
    assert _cos(ours_batch, ref_batch).min() >= 0.9999
    assert _cos(ours_clip[:1], ref_alone).min() >= 0.9999
    assert _cos(ref_batch[:1], ref_alone).item() < 0.9999  # the quirk is real on this input


@pytest.mark.heavy
def test_batchnorm_folding_keeps_outputs(checkpoint):
    path, _ = checkpoint
    native = wav2clip_to_native(torch.load(path, weights_only=True))
    net = SoundNet(SoundDims.from_state(native))
    net.load_state_dict(native)
    net.eval()
    waves = _waves(2, 1.0, seed=5)
    with torch.no_grad():
        before = net(waves)
        after = net.fold_batchnorm()(waves)
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-4)


def test_dims_read_from_checkpoint_shapes(wav2clip, tmp_path):
    """A narrower checkpoint (fewer, thinner stages) builds the matching network, not ResNet-18."""
    from torch import nn

    torch.manual_seed(1)
    ref = wav2clip.ResNetExtractor(scenario="supervise")
    ref.encoder.layer4 = nn.Sequential(*list(ref.encoder.layer4)[:1])  # one block in the last stage
    state = {f"audio_encoder.{k}": v for k, v in ref.encoder.state_dict().items()}
    state |= {f"audio_transform.{k}": v for k, v in wav2clip.MLPLayers(units=[512, 256, 128]).state_dict().items()}
    native = wav2clip_to_native(state)
    dims = SoundDims.from_state(native)
    assert dims.blocks == (2, 2, 2, 1) and dims.head_widths == (512, 256, 128) and dims.embed_dim == 128
    path = tmp_path / "narrow.pt"
    torch.save(state, path)
    assert SoundTower.from_pretrained(path).dim == 128


@pytest.mark.heavy
def test_safetensors_export_loads_the_same(checkpoint, tmp_path):
    from safetensors.torch import save_file

    path, _ = checkpoint
    state = torch.load(path, weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    waves = _waves(1, 1.0)
    a = SoundTower.from_pretrained(path).embed_waves(waves)
    b = SoundTower.from_pretrained(tmp_path).embed_waves(waves)  # a folder holding model.safetensors
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_bad_checkpoints_refused(checkpoint, tmp_path):
    path, _ = checkpoint
    state = torch.load(path, weights_only=True)
    wrong = dict(state)
    wrong["audio_transform.sequential.3.weight"] = torch.zeros(512, 100)
    torch.save(wrong, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="shape|audio_transform"):
        SoundTower.from_pretrained(tmp_path / "shape.pt")
    extra = dict(state) | {"audio_encoder.fc.weight": torch.zeros(309, 512)}
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match="audio_encoder.fc.weight"):
        SoundTower.from_pretrained(tmp_path / "extra.pt")
    torch.save({"visual.proj": torch.zeros(2, 2)}, tmp_path / "clip.pt")
    with pytest.raises(CheckpointError, match="wav2clip"):
        SoundTower.from_pretrained(tmp_path / "clip.pt")
    (tmp_path / "torn.pt").write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError):
        SoundTower.from_pretrained(tmp_path / "torn.pt")


def test_pickle_payload_never_runs(tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"audio_encoder.conv1.weight": Payload()}))
    with pytest.raises(CheckpointError):
        SoundTower.from_pretrained(tmp_path / "evil.pt")
    assert not marker.exists()
