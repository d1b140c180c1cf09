"""The wav2clip reference package, importable without torchaudio, and random-weight checkpoints
in its published format (``Wav2CLIP.pt``: a flat state dict of ``audio_encoder.*`` and
``audio_transform.*``).

The reference (``pip install --no-deps wav2clip==0.1.0``) needs torchaudio only for its
``Spectrogram`` layer, and torchaudio has no build for this torch; this module supplies that one
layer, computed with librosa's STFT (an implementation independent of the native ``torch.stft``
path). Everything else (ResNet, MLP, key names, the batch-wide normalisation) is the reference's own.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import librosa
import numpy as np
import torch


class _LibrosaSpectrogram(torch.nn.Module):
    """torchaudio.transforms.Spectrogram(n_fft, hop_length) defaults: power 2, centred, reflect."""

    def __init__(self, n_fft: int = 400, hop_length: int | None = None, **_):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop_length or n_fft // 2
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = librosa.stft(x.detach().numpy().astype(np.float64), n_fft=self.n_fft, hop_length=self.hop,
                            window="hann", center=True, pad_mode="reflect")
        return torch.from_numpy(np.abs(spec) ** 2).float()


def reference():
    """The ``wav2clip.model.encoder`` module."""
    if "wav2clip.model.encoder" in sys.modules or "torchaudio" in sys.modules:
        import wav2clip.model.encoder as module

        return module
    fake = types.ModuleType("torchaudio")
    fake.transforms = types.SimpleNamespace(Spectrogram=_LibrosaSpectrogram)
    sys.modules["torchaudio"] = fake
    try:
        import wav2clip.model.encoder as module
    finally:  # the reference keeps its handle; other packages (transformers) must not see a fake
        del sys.modules["torchaudio"]
    return module


def _randomize_batchnorm(model: torch.nn.Module, seed: int) -> None:
    """Fresh BN layers are identities; give them real statistics so folding is exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def make_checkpoint(path: Path, *, head: tuple[int, ...] = (512, 512, 512), seed: int = 0) -> Path:
    """Save a random-weight checkpoint built with the reference's own modules at ``path``."""
    ref = reference()
    torch.manual_seed(seed)
    encoder = ref.ResNetExtractor(scenario="supervise").encoder
    _randomize_batchnorm(encoder, seed + 1)
    state = {f"audio_encoder.{k}": v for k, v in encoder.state_dict().items()}
    state |= {f"audio_transform.{k}": v for k, v in ref.MLPLayers(units=list(head)).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def load_reference(path: Path):
    """The reference extractor as ``wav2clip.get_model()`` builds it from a checkpoint."""
    ref = reference()
    return ref.ResNetExtractor(checkpoint=torch.load(path, weights_only=True), scenario="frozen",
                               transform=True).eval()
