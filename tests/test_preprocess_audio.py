"""The log-mel front end matches Whisper's feature extractor (transformers is test-only)."""

import numpy as np
import pytest
import torch

from aimemory.preprocess.audio import HOP_LENGTH, log_mel_spectrogram, mel_filters

WHISPER_SAMPLES = 480_000  # the extractor always pads to 30 s


def _reference(x: np.ndarray, n_mels: int) -> np.ndarray:
    transformers = pytest.importorskip("transformers")
    fe = transformers.WhisperFeatureExtractor(feature_size=n_mels)
    return fe(x, sampling_rate=16000, return_tensors="np").input_features[0]


@pytest.mark.parametrize("n_mels", [80, 128])
def test_matches_whisper_feature_extractor(n_mels):
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    ref = _reference(x, n_mels)  # (n_mels, 3000)
    padded = np.zeros(WHISPER_SAMPLES, np.float32)
    padded[: x.size] = x
    ours = log_mel_spectrogram(padded, n_mels=n_mels).numpy()
    assert ours.shape == ref.shape == (n_mels, WHISPER_SAMPLES // HOP_LENGTH)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_shapes_dtypes_and_inputs():
    x = np.zeros(16000, np.float32)
    x[4000:8000] = 0.5
    a = log_mel_spectrogram(x)
    b = log_mel_spectrogram(torch.from_numpy(x))
    assert a.shape == (80, 100) and a.dtype == torch.float32
    assert torch.equal(a, b)
    # dynamic range is clamped to 8 log10 units -> 2.0 after the (x + 4) / 4 scaling
    assert float(a.max() - a.min()) <= 2.0 + 1e-6
    assert log_mel_spectrogram(np.zeros(10, np.float32)).shape[0] == 80  # tiny input does not crash


def test_filterbank_cached_and_validated():
    assert mel_filters(80) is mel_filters(80)
    assert tuple(mel_filters(128).shape) == (128, 201)
    with pytest.raises(ValueError):
        mel_filters(64)
    with pytest.raises(ValueError):
        log_mel_spectrogram(np.zeros((2, 100), np.float32))
