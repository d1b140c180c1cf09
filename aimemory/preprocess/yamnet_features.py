"""YAMNet's front end: 16 kHz waveform -> 0.96 s log-mel patches (96 frames x 64 bands, 0.48 s hop).

It follows the reference (tensorflow/models ``research/audioset/yamnet``: ``features.py`` and
``params.py``): frames of 25 ms every 10 ms, periodic Hann window, 512-point FFT magnitude (not
power), TensorFlow's ``linear_to_mel_weight_matrix`` (HTK mel scale, triangles drawn on the mel
axis, DC bin zeroed, no area normalisation) from 125 to 7500 Hz, ``log(mel + 0.001)``; the waveform
is first zero-padded to one whole patch plus a whole number of patch hops, as ``yamnet.py`` does.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch

SAMPLE_RATE = 16_000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
FFT = 512  # next power of two above the window
MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES = 96  # 0.96 s
PATCH_HOP_FRAMES = 48  # 0.48 s
PATCH_SECONDS = PATCH_FRAMES * HOP / SAMPLE_RATE
PATCH_HOP_SECONDS = PATCH_HOP_FRAMES * HOP / SAMPLE_RATE
MIN_SAMPLES = (PATCH_FRAMES - 1) * HOP + WINDOW  # 15600: exactly one patch
PATCH_HOP_SAMPLES = PATCH_HOP_FRAMES * HOP  # 7680


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(hz / 700.0)


@cache
def mel_matrix() -> torch.Tensor:
    """(FFT // 2 + 1, MEL_BANDS) float32 weights, as TensorFlow's ``linear_to_mel_weight_matrix``."""
    bins = FFT // 2 + 1
    bin_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, bins)[1:])[:, None]  # (256, 1); DC dropped
    edges = np.linspace(_hz_to_mel(np.float64(MEL_MIN_HZ)), _hz_to_mel(np.float64(MEL_MAX_HZ)), MEL_BANDS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel - lower) / (center - lower)
    falling = (upper - bin_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))  # (256, 64)
    return torch.from_numpy(np.vstack([np.zeros((1, MEL_BANDS)), weights]).astype(np.float32))


@cache
def _window() -> torch.Tensor:
    return torch.hann_window(WINDOW, periodic=True)


def padded_length(n: int) -> int:
    """Samples after YAMNet's padding: one full patch, then whole patch hops covering the rest."""
    hops = math.ceil(max(0, n - MIN_SAMPLES) / PATCH_HOP_SAMPLES)
    return MIN_SAMPLES + hops * PATCH_HOP_SAMPLES


def log_mel(wave: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(samples,) float at 16 kHz, at least one window long -> (frames, 64) float32 log-mel."""
    x = torch.as_tensor(wave, dtype=torch.float32)
    frames = x.unfold(0, WINDOW, HOP) * _window()  # (frames, 400), no centring (tf.signal.stft)
    magnitude = torch.fft.rfft(frames, n=FFT).abs()  # (frames, 257); zero-padded to 512 at the end
    return torch.log(magnitude @ mel_matrix() + LOG_OFFSET)


def log_mel_patches(wave: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(samples,) float at 16 kHz -> (patches, 1, 96, 64) float32; patch i starts at i * 0.48 s."""
    x = torch.as_tensor(wave, dtype=torch.float32)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D waveform; got shape {tuple(x.shape)}")
    x = torch.nn.functional.pad(x, (0, padded_length(x.numel()) - x.numel()))
    spec = log_mel(x)  # (96 + 48 k, 64)
    return spec.unfold(0, PATCH_FRAMES, PATCH_HOP_FRAMES).transpose(1, 2).unsqueeze(1).contiguous()
