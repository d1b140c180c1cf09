"""Native CLIP: a ViT image tower and a causal text tower projected into one embedding space.

Parameter names are our own (see ``aimemory.weights.clip_formats`` for how HF / OpenAI / open_clip names
map onto them). :class:`ClipDims` is read off the checkpoint's tensor shapes, like OpenAI's
``build_model``, so ViT-B/32, B/16, L/14 and L/14-336 all load without a per-model table.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Mapping

import torch
from torch import nn

from .core import LAYER_NORM_EPS, QUICK_GELU_ALPHA, Transformer

HEAD_WIDTH = 64  # every released CLIP uses 64-wide heads; configs override when they say otherwise
#: text pooling conventions: "argmax" = the highest token id is EOT (OpenAI / open_clip / old HF
#: configs with eos_token_id == 2); "eos" = first position of ``eos_token_id`` (newer HF configs)
POOL_ARGMAX = "argmax"
POOL_EOS = "eos"


@dataclass(frozen=True)
class ClipDims:
    """Architecture numbers of one CLIP checkpoint."""

    embed_dim: int  # shared projection width
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_heads: int
    text_mlp: int
    act: str = "quick_gelu"
    eps: float = LAYER_NORM_EPS
    pool: str = POOL_ARGMAX
    eos_token_id: int = 49407

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], *, vision_heads: int | None = None,
                        text_heads: int | None = None, act: str = "quick_gelu", eps: float = LAYER_NORM_EPS,
                        pool: str = POOL_ARGMAX, eos_token_id: int = 49407) -> "ClipDims":
        """Native-named state dict -> dims. Heads do not show in shapes: take them from a config when
        there is one, else the 64-wide-head convention."""

        def layers(prefix: str) -> int:
            pat = re.compile(re.escape(prefix) + r"\.transformer\.blocks\.(\d+)\.")
            found = {int(m.group(1)) for k in state for m in [pat.match(k)] if m}
            return max(found) + 1 if found else 0

        patch = state["visual.patch_embed.weight"]  # (width, 3, p, p)
        pos = state["visual.pos_embed"]  # (1 + grid^2, width)
        grid = math.isqrt(pos.shape[0] - 1)
        if grid * grid != pos.shape[0] - 1:
            raise ValueError(f"visual.pos_embed has {pos.shape[0]} rows, not 1 + a square grid")
        v_width, t_width = patch.shape[0], state["text.token_embed.weight"].shape[1]
        return cls(
            embed_dim=state["text.proj.weight"].shape[0],
            image_size=grid * patch.shape[-1],
            patch_size=patch.shape[-1],
            vision_width=v_width,
            vision_layers=layers("visual"),
            vision_heads=vision_heads or max(1, v_width // HEAD_WIDTH),
            vision_mlp=state["visual.transformer.blocks.0.mlp.fc1.weight"].shape[0],
            context_length=state["text.pos_embed"].shape[0],
            vocab_size=state["text.token_embed.weight"].shape[0],
            text_width=t_width,
            text_layers=layers("text"),
            text_heads=text_heads or max(1, t_width // HEAD_WIDTH),
            text_mlp=state["text.transformer.blocks.0.mlp.fc1.weight"].shape[0],
            act=act,
            eps=eps,
            pool=pool,
            eos_token_id=eos_token_id,
        )


def fold_quick_gelu(state: dict[str, torch.Tensor], dims: ClipDims) -> tuple[dict[str, torch.Tensor], ClipDims]:
    """Rewrite a quick_gelu checkpoint for a SiLU MLP computing the same function.

    ``fc2(h * sigmoid(a h))`` with ``h = fc1(x)`` equals ``(fc2 / a)(silu(a fc1(x)))``: scaling fc1 by
    ``a`` and fc2's weight by ``1 / a`` turns three elementwise passes (mul, sigmoid, mul) over the
    widest activation into one fused ``silu``. Done once at conversion; outputs agree to float
    rounding."""
    if dims.act != "quick_gelu":
        return state, dims
    out = dict(state)
    for key, t in state.items():
        if key.endswith(".mlp.fc1.weight") or key.endswith(".mlp.fc1.bias"):
            out[key] = t * QUICK_GELU_ALPHA
        elif key.endswith(".mlp.fc2.weight"):
            out[key] = t / QUICK_GELU_ALPHA
    return out, replace(dims, act="silu")


class VisionTower(nn.Module):
    """Patchify -> [CLS] + patches + positions -> ln_pre -> blocks -> ln_post(CLS) -> projection."""

    def __init__(self, d: ClipDims):
        super().__init__()
        w = d.vision_width
        self.patch_embed = nn.Conv2d(3, w, kernel_size=d.patch_size, stride=d.patch_size, bias=False)
        self.class_embed = nn.Parameter(torch.zeros(w))
        self.pos_embed = nn.Parameter(torch.zeros(d.grid * d.grid + 1, w))
        self.ln_pre = nn.LayerNorm(w, eps=d.eps)
        self.transformer = Transformer(w, d.vision_layers, d.vision_heads, d.vision_mlp, d.act, d.eps)
        self.ln_post = nn.LayerNorm(w, eps=d.eps)
        self.proj = nn.Linear(w, d.embed_dim, bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(b, 3, S, S) normalised pixels -> (b, embed_dim) unnormalised features."""
        x = self.patch_embed(pixels.to(self.patch_embed.weight.dtype))  # (b, w, g, g)
        x = x.flatten(2).transpose(1, 2)  # (b, g*g, w)
        cls = self.class_embed.to(x.dtype).expand(x.shape[0], 1, -1)  # (b, 1, w)
        x = torch.cat([cls, x], dim=1) + self.pos_embed  # (b, 1+g*g, w)
        cls_rows = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)  # (b,) pool the CLS token
        x = self.transformer.forward_pooled(self.ln_pre(x), cls_rows)  # (b, w)
        return self.proj(self.ln_post(x))  # (b, e)


class TextTower(nn.Module):
    """Tokens + positions -> causal blocks -> ln_final -> EOT token -> projection."""

    def __init__(self, d: ClipDims):
        super().__init__()
        w = d.text_width
        self.pool, self.eos_token_id = d.pool, d.eos_token_id
        # an explicit (uninitialised) weight: normal_() init, even on the meta device, costs ~70 MB RSS
        self.token_embed = nn.Embedding(d.vocab_size, w, _weight=torch.empty(d.vocab_size, w))
        self.pos_embed = nn.Parameter(torch.zeros(d.context_length, w))
        self.transformer = Transformer(w, d.text_layers, d.text_heads, d.text_mlp, d.act, d.eps)
        self.ln_final = nn.LayerNorm(w, eps=d.eps)
        self.proj = nn.Linear(w, d.embed_dim, bias=False)

    def eot_positions(self, ids: torch.Tensor) -> torch.Tensor:
        """(b, L) ids -> (b,) index of the token whose state is pooled (first max / first EOS)."""
        if self.pool == POOL_EOS:
            return (ids == self.eos_token_id).int().argmax(dim=-1)
        return ids.argmax(dim=-1)  # torch returns the first maximal index, so trailing EOT pads are fine

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(b, L) token ids, L <= context_length, padding only AFTER each EOT -> (b, embed_dim).

        Causal attention alone is exact here: the pooled EOT position only sees tokens at or before
        it, which are all real, so trailing padding needs no key-padding mask and can be any id."""
        n = ids.shape[1]
        x = self.token_embed(ids) + self.pos_embed[:n]  # (b, L, w)
        eot = self.eot_positions(ids)  # (b,)
        # LayerNorm is per token, so normalising only the pooled rows is the same and cheaper
        x = self.transformer.forward_pooled(x, eot, causal=True)  # (b, w)
        return self.proj(self.ln_final(x))  # (b, e)


class ClipModel(nn.Module):
    """Both towers plus the learned temperature (stored as its log, like every checkpoint)."""

    def __init__(self, dims: ClipDims):
        super().__init__()
        self.dims = dims
        self.visual = VisionTower(dims)
        self.text = TextTower(dims)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text(ids)
