"""Whisper's log-mel front end (16 kHz, 25 ms Hann window, 10 ms hop), in torch.

Shared by the built-in ``aimemory-mini`` audio tower and native Whisper, so it must match
``transformers.WhisperFeatureExtractor`` numerically (see tests/test_preprocess_audio.py).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms -> 100 frames per second
SUPPORTED_N_MELS = (80, 128)  # Whisper v1-v2 / v3
LOG_FLOOR = 1e-10
DYNAMIC_RANGE = 8.0  # log10 units kept below the loudest bin


@cache
def mel_filters(n_mels: int = 80) -> torch.Tensor:
    """(n_mels, N_FFT // 2 + 1) Slaney-style mel filterbank, built once per size (librosa)."""
    if n_mels not in SUPPORTED_N_MELS:
        raise ValueError(f"n_mels must be one of {SUPPORTED_N_MELS}; got {n_mels}")
    from ..notebook import import_quietly

    librosa = import_quietly("librosa")
    fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels)  # htk=False, norm="slaney"
    return torch.from_numpy(np.asarray(fb, dtype=np.float32))


@cache
def _hann() -> torch.Tensor:
    return torch.hann_window(N_FFT, periodic=True)


def log_mel_spectrogram(samples: np.ndarray | torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """16 kHz mono waveform (n,) -> (n_mels, n // HOP_LENGTH) float32 log-mel, Whisper-scaled.

    Like Whisper, the last STFT frame is dropped, power spectra are floored at 1e-10, clamped to
    8 log10-units below the clip's maximum and mapped by (x + 4) / 4.
    """
    audio = torch.as_tensor(samples, dtype=torch.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected a 1-D waveform; got shape {tuple(audio.shape)}")
    if audio.numel() < N_FFT // 2 + 1:  # reflect padding needs a few samples; pad silence
        audio = torch.nn.functional.pad(audio, (0, N_FFT // 2 + 1 - audio.numel()))
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=_hann(), return_complex=True)  # (201, frames+1)
    power = stft[..., :-1].abs() ** 2  # (201, frames)
    mel = mel_filters(n_mels) @ power  # (n_mels, frames)
    log_spec = torch.clamp(mel, min=LOG_FLOOR).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - DYNAMIC_RANGE)
    return (log_spec + 4.0) / 4.0
