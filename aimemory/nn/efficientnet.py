"""EfficientNet-Lite (Tan & Le, 2019; the Lite variants of the TensorFlow TPU repository, Apache-2.0):
an ImageNet classifier made of inverted-residual (MBConv) blocks, built from a checkpoint's shapes.

Lite differs from EfficientNet-B: no squeeze-excite, ReLU6 instead of swish, and a stem (32) and head
(1280) that are not scaled with the width. Everything the network needs is read from the weights
(stem width, each block's widths, expansion and kernel size, head and class count) except the
strides, which no tensor records: blocks are grouped into stages where their width changes, and the
stages take EfficientNet's fixed strides (:data:`STAGE_STRIDES`).

Padding is TensorFlow's ``SAME`` (the checkpoints were trained in TF): a stride-2 conv on an even
size pads one pixel less at the top/left than at the bottom/right. It is computed per input size,
so any resolution runs as TF would run it. Batch norm (TF's epsilon, 1e-3) is folded into the convs
at load: the inference network has no norm layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError

BN_EPS = 1e-3  # TF's batch_norm_epsilon, which the checkpoints' statistics were computed with
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # EfficientNet's seven MBConv stages (B0..B7 and Lite0..4)
STEM_STRIDE = 2
# (blocks, last block's width) -> (variant, input resolution it was trained at), for Lite0..4
LITE_VARIANTS = {(16, 320): ("lite0", 224), (21, 320): ("lite1", 240), (21, 352): ("lite2", 260),
                 (24, 384): ("lite3", 280), (30, 448): ("lite4", 300)}
DEFAULT_RESOLUTION = 224


@dataclass(frozen=True)
class BlockDims:
    """One MBConv block: 1x1 expand (absent when ``hidden == c_in``), k x k depthwise, 1x1 project."""

    c_in: int
    hidden: int
    c_out: int
    kernel: int
    stride: int

    @property
    def expand_ratio(self) -> float:
        return self.hidden / self.c_in

    @property
    def has_expand(self) -> bool:
        return self.hidden != self.c_in

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out


@dataclass(frozen=True)
class EfficientNetDims:
    in_channels: int = 3
    stem_width: int = 32
    blocks: tuple[BlockDims, ...] = ()
    head_width: int = 1280
    num_classes: int = 1000

    @property
    def feature_dim(self) -> int:
        return self.head_width

    @property
    def variant(self) -> str | None:
        """"lite0".."lite4" when the shapes are a published variant's, else None."""
        known = LITE_VARIANTS.get((len(self.blocks), self.blocks[-1].c_out if self.blocks else 0))
        return known[0] if known else None

    @property
    def resolution(self) -> int:
        """The input size the variant was trained at (224 for shapes of no published variant)."""
        known = LITE_VARIANTS.get((len(self.blocks), self.blocks[-1].c_out if self.blocks else 0))
        return known[1] if known else DEFAULT_RESOLUTION

    @property
    def stages(self) -> tuple[tuple[int, ...], ...]:
        """Block indices per stage: a stage starts at each block that changes the width."""
        return _stages(self.blocks)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "EfficientNetDims":
        """Read the dims from native-named weights (see :mod:`aimemory.weights.efficientnet_formats`)."""
        try:
            stem = state["stem.conv.weight"]  # (stem_width, in_channels, 3, 3)
            head = state["head.conv.weight"]  # (head_width, last_width, 1, 1)
            fc = state["classifier.weight"]  # (num_classes, head_width)
        except KeyError as exc:
            raise CheckpointError(f"not an EfficientNet checkpoint: no {exc.args[0]!r} weight") from None
        ids = sorted({int(k.split(".")[1]) for k in state if k.startswith("blocks.")})
        if ids != list(range(len(ids))) or not ids:
            raise CheckpointError(f"EfficientNet blocks must be numbered 0..n-1, found {ids[:8]}...")
        shapes = []  # (c_in, hidden, c_out, kernel) per block
        for i in ids:
            dw = state[f"blocks.{i}.depthwise.conv.weight"]  # (hidden, 1, k, k)
            proj = state[f"blocks.{i}.project.conv.weight"]  # (c_out, hidden, 1, 1)
            exp = state.get(f"blocks.{i}.expand.conv.weight")  # (hidden, c_in, 1, 1) or absent
            hidden = int(dw.shape[0])
            shapes.append((int(exp.shape[1]) if exp is not None else hidden, hidden, int(proj.shape[0]),
                           int(dw.shape[-1])))
        strides = _strides([(c_in, c_out) for c_in, _, c_out, _ in shapes])
        blocks = tuple(BlockDims(c_in, hidden, c_out, k, s) for (c_in, hidden, c_out, k), s in zip(shapes, strides))
        return cls(in_channels=int(stem.shape[1]), stem_width=int(stem.shape[0]), blocks=blocks,
                   head_width=int(head.shape[0]), num_classes=int(fc.shape[0]))


def _stages(blocks: tuple[BlockDims, ...]) -> tuple[tuple[int, ...], ...]:
    starts = [i for i, b in enumerate(blocks) if i == 0 or b.c_in != b.c_out]
    return tuple(tuple(range(a, b)) for a, b in zip(starts, starts[1:] + [len(blocks)]))


def _strides(widths: list[tuple[int, int]]) -> list[int]:
    """Per-block strides from (c_in, c_out) alone: EfficientNet's stages each open with a block that
    changes the width and repeat it at constant width, so width changes mark the stage starts."""
    starts = [i for i, (c_in, c_out) in enumerate(widths) if i == 0 or c_in != c_out]
    if len(starts) != len(STAGE_STRIDES):
        raise CheckpointError(
            f"the blocks' widths make {len(starts)} stages, not EfficientNet's {len(STAGE_STRIDES)}: "
            "the strides cannot be placed (is this an EfficientNet-Lite checkpoint?)")
    for i in range(1, len(widths)):
        if widths[i][0] != widths[i - 1][1]:
            raise CheckpointError(f"block {i} takes {widths[i][0]} channels but block {i - 1} makes {widths[i - 1][1]}")
    out = [1] * len(widths)
    for start, stride in zip(starts, STAGE_STRIDES):
        out[start] = stride
    return out


def tf_same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) zero padding of TF's ``SAME`` along one axis: output ``ceil(size / stride)``,
    the odd pixel of padding after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvNorm(nn.Module):
    """Bias-free conv + batch norm (inference statistics) with TF ``SAME`` padding; :meth:`fold`
    merges the norm into the conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        # stride 1: SAME is symmetric and the conv pads itself; stride 2 pads per input size
        self.kernel, self.stride = kernel, stride
        padding = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.folded = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            top, bottom = tf_same_pad(x.shape[-2], self.kernel, self.stride)
            left, right = tf_same_pad(x.shape[-1], self.kernel, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        return self.conv(x) if self.folded else self.norm(self.conv(x))

    @torch.no_grad()
    def fold(self) -> None:
        c = self.conv
        scale = self.norm.weight / torch.sqrt(self.norm.running_var + self.norm.eps)  # (c_out,)
        fused = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, groups=c.groups,
                          bias=True, device="meta")  # no init work
        fused.weight = nn.Parameter(c.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
        fused.bias = nn.Parameter(self.norm.bias - self.norm.running_mean * scale, requires_grad=False)
        self.conv, self.folded = fused, True
        del self.norm


class MBConv(nn.Module):
    """Inverted residual: expand (1x1) -> depthwise (k x k) -> project (1x1, linear), plus the input
    when the shape is kept."""

    def __init__(self, d: BlockDims):
        super().__init__()
        self.residual = d.residual
        self.expand = ConvNorm(d.c_in, d.hidden, 1) if d.has_expand else None
        self.depthwise = ConvNorm(d.hidden, d.hidden, d.kernel, d.stride, groups=d.hidden)
        self.project = ConvNorm(d.hidden, d.c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.expand is None else F.relu6(self.expand(x), inplace=True)
        h = F.relu6(self.depthwise(h), inplace=True)  # (n, hidden, H/s, W/s)
        h = self.project(h)  # (n, c_out, H/s, W/s)
        return h.add_(x) if self.residual else h


class EfficientNetLite(nn.Module):
    """Images (n, in_channels, H, W), normalised -> (logits (n, num_classes), features (n, head_width)),
    the features being the pooled activations the classifier reads."""

    def __init__(self, dims: EfficientNetDims):
        super().__init__()
        self.dims = dims
        self.stem = ConvNorm(dims.in_channels, dims.stem_width, 3, STEM_STRIDE)
        self.blocks = nn.Sequential(*[MBConv(b) for b in dims.blocks])
        last = dims.blocks[-1].c_out if dims.blocks else dims.stem_width
        self.head = ConvNorm(last, dims.head_width, 1)
        self.classifier = nn.Linear(dims.head_width, dims.num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu6(self.stem(x), inplace=True)  # (n, stem, H/2, W/2)
        x = self.blocks(x)  # (n, last, H/32, W/32)
        x = F.relu6(self.head(x), inplace=True)  # (n, head_width, H/32, W/32)
        features = x.mean(dim=(2, 3))  # (n, head_width) global average pool
        return self.classifier(features), features

    def fold_batchnorm(self) -> "EfficientNetLite":
        """Merge every batch norm into its conv (inference only; the output is unchanged)."""
        for m in list(self.modules()):
            if isinstance(m, ConvNorm) and not m.folded:
                m.fold()
        return self
