"""YAMNet's log-mel front end against an independent numpy reading of the reference's definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aimemory.preprocess import yamnet_features as yf


def reference_mel_matrix() -> np.ndarray:
    """tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125, 7500), written band by band."""
    def mel(hz):
        return 1127.0 * math.log(1.0 + hz / 700.0)

    out = np.zeros((257, 64))
    lo, hi = mel(125.0), mel(7500.0)
    step = (hi - lo) / 65
    for j in range(64):
        left, centre, right = lo + j * step, lo + (j + 1) * step, lo + (j + 2) * step
        for k in range(1, 257):  # bin 0 (DC) stays zero
            m = mel(k * 8000.0 / 256)
            if left < m <= centre:
                out[k, j] = (m - left) / (centre - left)
            elif centre < m < right:
                out[k, j] = (right - m) / (right - centre)
    return out


def reference_patches(wave: np.ndarray) -> np.ndarray:
    """Pad, frame, window, |rfft|, mel, log, patch: float64 numpy throughout."""
    n = len(wave)
    need = 15600 if n <= 15600 else 15600 + 7680 * math.ceil((n - 15600) / 7680)
    x = np.concatenate([wave.astype(np.float64), np.zeros(need - n)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    frames = np.stack([x[i: i + 400] * window for i in range(0, len(x) - 400 + 1, 160)])
    spec = np.log(np.abs(np.fft.rfft(frames, 512)) @ reference_mel_matrix() + 0.001)
    return np.stack([spec[i: i + 96] for i in range(0, len(spec) - 96 + 1, 48)])[:, None]


def test_mel_matrix_matches_the_reference_definition():
    ours = yf.mel_matrix().numpy()
    assert ours.shape == (257, 64) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference_mel_matrix(), atol=1e-6)
    assert (ours[0] == 0).all() and (ours.max(0) > 0.5).all()  # every band is populated


@pytest.mark.parametrize("n", [0, 1, 400, 15599, 15600, 15601, 23280, 23281, 16000 * 10 + 123])
def test_padding_gives_whole_patches(n):
    total = yf.padded_length(n)
    assert total >= max(n, yf.MIN_SAMPLES) and (total - yf.MIN_SAMPLES) % yf.PATCH_HOP_SAMPLES == 0
    assert total - n < yf.PATCH_HOP_SAMPLES or n < yf.MIN_SAMPLES
    patches = yf.log_mel_patches(np.zeros(n, np.float32))
    assert patches.shape == (1 + (total - yf.MIN_SAMPLES) // yf.PATCH_HOP_SAMPLES, 1, 96, 64)


def test_patches_match_the_numpy_reference():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2 + 777) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    ours = yf.log_mel_patches(wave).numpy()
    ref = reference_patches(wave)
    assert ours.shape == ref.shape == (4, 1, 96, 64)
    np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_silence_sits_at_the_log_floor_and_tones_land_in_their_band():
    silent = yf.log_mel_patches(np.zeros(16000, np.float32)).numpy()
    np.testing.assert_allclose(silent, np.log(0.001), atol=1e-6)
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    spec = yf.log_mel(tone).numpy()  # (frames, 64)
    band = int(np.argmax(spec.mean(0)))
    centres = 700 * (np.exp(np.linspace(1127 * np.log1p(125 / 700), 1127 * np.log1p(7500 / 700), 66)[1:-1] / 1127) - 1)
    assert abs(centres[band] - 1000) < 60  # the loudest band is the one centred nearest 1 kHz


def test_rejects_multichannel_input():
    with pytest.raises(ValueError, match="1-D"):
        yf.log_mel_patches(np.zeros((2, 16000), np.float32))
