"""A sound tower into CLIP image space: a ResNet over log power spectrograms, then an MLP.

This is the wav2clip architecture (Wu et al., 2022, MIT): a ResNet-18 audio encoder distilled
against CLIP ViT-B/32 image embeddings of the same video, with a two-layer MLP (``audio_transform``)
that maps its 512-d output into CLIP's image space. The module is built from the checkpoint's
shapes (stage widths, blocks per stage, MLP widths, FFT size), so narrower test checkpoints load too.

Normalisation: the reference implementation standardises the log spectrogram with the mean and
standard deviation of the *whole batch* tensor, so a clip's embedding depends on which other clips
share its batch. Here each clip (window) is standardised on its own by default, which equals the
reference called with a batch of one; ``normalize="batch"`` reproduces the reference's batch-wide
statistics exactly, for parity checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16_000  # wav2clip was trained on 16 kHz VGGSound audio
HOP_LENGTH = 353  # not recorded in checkpoints; the reference's fixed spectrogram hop
LOG_FLOOR = 1e-7
STD_FLOOR = 1e-9
BN_EPS = 1e-5
NORMALIZE_MODES = ("clip", "batch")


@dataclass(frozen=True)
class SoundDims:
    n_fft: int = 512
    stem_width: int = 64
    stage_widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    head_widths: tuple[int, ...] = (512, 512, 512)  # MLP in -> hidden -> out; () for no head

    @property
    def embed_dim(self) -> int:
        return self.head_widths[-1] if self.head_widths else self.stage_widths[-1]

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "SoundDims":
        """Read the dims from native-named weights (see :mod:`aimemory.weights.sound_formats`)."""
        stages = sorted({int(k.split(".")[1]) for k in state if k.startswith("stages.")})
        blocks = tuple(len({int(k.split(".")[2]) for k in state if k.startswith(f"stages.{s}.")}) for s in stages)
        widths = tuple(int(state[f"stages.{s}.0.conv1.conv.weight"].shape[0]) for s in stages)
        fcs = sorted(k for k in state if k.startswith("head.") and k.endswith(".weight"))
        head = (int(state[fcs[0]].shape[1]),) + tuple(int(state[k].shape[0]) for k in fcs) if fcs else ()
        window = state.get("window")
        return cls(n_fft=int(window.shape[0]) if window is not None else 512,
                   stem_width=int(state["stem.conv.weight"].shape[0]),
                   stage_widths=widths, blocks=blocks, head_widths=head)


def log_spectrogram(wave: torch.Tensor, n_fft: int, window: torch.Tensor) -> torch.Tensor:
    """(batch, samples) float32 -> (batch, 1, n_fft // 2 + 1, frames) natural-log power spectrogram
    (centred frames, reflect padding, periodic Hann window)."""
    spec = torch.stft(wave, n_fft, HOP_LENGTH, n_fft, window, center=True, pad_mode="reflect",
                      return_complex=True)
    return torch.log(spec.abs().pow(2) + LOG_FLOOR).unsqueeze(1)


def standardize(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Zero mean, unit (unbiased) std: per clip (``"clip"``) or over the whole batch (``"batch"``)."""
    if mode == "batch":
        return (x - x.mean()) / (x.std() + STD_FLOOR)
    flat = x.flatten(1)
    mean = flat.mean(1).view(-1, 1, 1, 1)
    std = flat.std(1).view(-1, 1, 1, 1)
    return (x - mean) / (std + STD_FLOOR)


class ConvNorm(nn.Module):
    """Bias-free conv + batch norm (inference statistics); :meth:`fold` merges them into one conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False)
        self.norm = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.folded = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if self.folded else self.norm(self.conv(x))

    @torch.no_grad()
    def fold(self) -> None:
        scale = self.norm.weight / torch.sqrt(self.norm.running_var + self.norm.eps)
        fused = nn.Conv2d(self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size,
                          self.conv.stride, self.conv.padding, bias=True, device="meta")  # no init work
        fused.weight = nn.Parameter(self.conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
        fused.bias = nn.Parameter(self.norm.bias - self.norm.running_mean * scale, requires_grad=False)
        self.conv, self.folded = fused, True
        del self.norm


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual; a strided 1x1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = ConvNorm(c_in, c_out, 3, stride)
        self.conv2 = ConvNorm(c_out, c_out, 3)
        self.down = ConvNorm(c_in, c_out, 1, stride) if (stride != 1 or c_in != c_out) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.down is None else self.down(x)
        return F.relu(self.conv2(F.relu(self.conv1(x))) + shortcut)


class SoundNet(nn.Module):
    """Waveform (batch, samples) at 16 kHz -> (batch, embed_dim) embedding (not normalised)."""

    def __init__(self, dims: SoundDims):
        super().__init__()
        self.dims = dims
        self.register_buffer("window", torch.hann_window(dims.n_fft))  # periodic Hann, as saved by torchaudio
        self.stem = ConvNorm(1, dims.stem_width, 7, stride=2)
        stages, c_in = [], dims.stem_width
        for i, (width, n) in enumerate(zip(dims.stage_widths, dims.blocks)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[BasicBlock(c_in if j == 0 else width, width, stride if j == 0 else 1)
                                          for j in range(n)]))
            c_in = width
        self.stages = nn.ModuleList(stages)
        w = dims.head_widths
        self.head = nn.ModuleList(nn.Linear(a, b) for a, b in zip(w[:-1], w[1:]))

    def forward(self, wave: torch.Tensor, normalize: str = "clip") -> torch.Tensor:
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
        x = standardize(log_spectrogram(wave, self.dims.n_fft, self.window), normalize)  # (B, 1, F, T)
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2, 1)
        for stage in self.stages:
            x = stage(x)
        x = x.mean(dim=(2, 3))  # (B, C) global average pool
        for i, fc in enumerate(self.head):
            x = fc(x) if i == len(self.head) - 1 else F.relu(fc(x))
        return x

    def fold_batchnorm(self) -> "SoundNet":
        """Merge every batch norm into its conv (inference only; the output is unchanged)."""
        for m in list(self.modules()):
            if isinstance(m, ConvNorm) and not m.folded:
                m.fold()
        return self
