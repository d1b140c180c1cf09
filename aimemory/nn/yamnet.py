"""YAMNet: a MobileNetV1 over 0.96 s log-mel patches that scores the 521 AudioSet classes.

The architecture of Google's YAMNet (Plakal & Ellis, Apache-2.0): a 3x3 stride-2 convolution, then
13 depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each followed by ReLU), global
average pooling and one linear layer. Batch norm is already folded into every convolution's weight
and bias in the checkpoint, so each layer here is a biased conv + ReLU. Padding is TensorFlow's
"SAME" (for a stride-2 layer on an even size, one row/column of zeros after, none before), which
the original model uses and its ONNX export keeps. Widths and class count come from the
checkpoint's shapes; only the strides, which weights do not record, are fixed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PATCH_FRAMES = 96  # 0.96 s of 10 ms log-mel frames
MEL_BANDS = 64
STEM_STRIDE = 2
# stride of each depthwise conv, block by block (YAMNet's layer table; pointwise convs are stride 1)
BLOCK_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
KERNEL = 3


@dataclass(frozen=True)
class YamNetDims:
    stem_width: int = 32
    widths: tuple[int, ...] = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    num_classes: int = 521

    @property
    def embed_dim(self) -> int:
        return self.widths[-1]

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "YamNetDims":
        """Read the dims from native-named weights (see :mod:`aimemory.weights.yamnet_formats`)."""
        blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("blocks.")})
        if blocks != list(range(len(BLOCK_STRIDES))):
            raise ValueError(f"YAMNet has {len(BLOCK_STRIDES)} separable blocks; the weights have {len(blocks)}")
        return cls(stem_width=int(state["stem.weight"].shape[0]),
                   widths=tuple(int(state[f"blocks.{b}.pointwise.weight"].shape[0]) for b in blocks),
                   num_classes=int(state["classifier.weight"].shape[0]))


def same_pad(x: torch.Tensor, stride: int, kernel: int = KERNEL) -> torch.Tensor:
    """Zero-pad (batch, c, h, w) as TensorFlow's ``padding="SAME"``: the extra row/column goes after."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad lists the last dimension first
        total = max(kernel - (size % stride or stride), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class YamNet(nn.Module):
    """(batch, 1, 96, 64) log-mel patches -> (batch, num_classes) logits (sigmoid gives scores)."""

    def __init__(self, dims: YamNetDims = YamNetDims()):
        super().__init__()
        self.dims = dims
        self.stem = nn.Conv2d(1, dims.stem_width, KERNEL, STEM_STRIDE)
        blocks, c_in = [], dims.stem_width
        for width, stride in zip(dims.widths, BLOCK_STRIDES):
            block = nn.Module()
            block.depthwise = nn.Conv2d(c_in, c_in, KERNEL, stride, groups=c_in)
            block.pointwise = nn.Conv2d(c_in, width, 1)
            blocks.append(block)
            c_in = width
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Linear(dims.embed_dim, dims.num_classes)

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """(batch, 1, 96, 64) -> (batch, embed_dim) pooled features (YAMNet's 1024-d embedding)."""
        x = F.relu(self.stem(same_pad(patches, STEM_STRIDE)))  # (b, 32, 48, 32)
        for block, stride in zip(self.blocks, BLOCK_STRIDES):
            x = F.relu(block.depthwise(same_pad(x, stride)))
            x = F.relu(block.pointwise(x))
        return x.mean(dim=(2, 3))  # (b, 1024): global average over the (3, 2) map

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(patches))

