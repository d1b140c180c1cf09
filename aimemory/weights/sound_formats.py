"""Renaming table for sound-tower checkpoints (wav2clip) onto :class:`aimemory.nn.sound.SoundNet`.

The public ``Wav2CLIP.pt`` is a flat state dict: ``audio_encoder.*`` (a torchvision-style ResNet with
a torchaudio ``Spectrogram`` whose Hann window is saved as a buffer) and ``audio_transform.*`` (the
MLP into CLIP image space). Other keys (an ``image_transform``) are not part of the audio path.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ..errors import CheckpointError
from .rename import rename

WAV2CLIP = "wav2clip"
IGNORED = re.compile(r"(image_transform\..*|.*num_batches_tracked)$")


def _stage(m: re.Match) -> str:
    return f"stages.{int(m[1]) - 1}.{m[2]}"  # torchvision's layer1..4 -> stages 0..3


def _head(index: int, param: str) -> str:
    # any other index holds no Linear: a name the shape check then reports as unexpected
    return f"head.{index // 3}.{param}" if index % 3 == 0 else f"head.unexpected{index}.{param}"


# (reference name pattern, native name): a string template or a function of the match
RULES = [
    (r"audio_encoder\.conv1\.weight", "stem.conv.weight"),
    (r"audio_encoder\.bn1\.(\w+)", r"stem.norm.\1"),
    (r"audio_encoder\.spectrogram\.window", "window"),
    (r"audio_encoder\.layer(\d+)\.(\d+)\.conv(\d)\.weight", lambda m: f"{_stage(m)}.conv{m[3]}.conv.weight"),
    (r"audio_encoder\.layer(\d+)\.(\d+)\.bn(\d)\.(\w+)", lambda m: f"{_stage(m)}.conv{m[3]}.norm.{m[4]}"),
    (r"audio_encoder\.layer(\d+)\.(\d+)\.downsample\.0\.weight", lambda m: f"{_stage(m)}.down.conv.weight"),
    (r"audio_encoder\.layer(\d+)\.(\d+)\.downsample\.1\.(\w+)", lambda m: f"{_stage(m)}.down.norm.{m[3]}"),
    # the reference MLP is Sequential(Linear, ReLU, Dropout, Linear, ...): Linear i sits at index 3 * i
    (r"audio_transform\.sequential\.(\d+)\.(weight|bias)", lambda m: _head(int(m[1]), m[2])),
]


def detect_sound_format(state: Mapping[str, torch.Tensor]) -> str:
    if any(k.startswith("audio_encoder.") for k in state):
        return WAV2CLIP
    raise CheckpointError("not a sound-tower checkpoint: expected wav2clip keys (audio_encoder.*, "
                          "audio_transform.*)")


def wav2clip_to_native(state: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """wav2clip names -> SoundNet names; any key that maps nowhere is an error, not silently dropped."""
    return rename(state, RULES, ignored=IGNORED, model="the sound tower", source=source)
