"""One transformer core shared by every native model (CLIP towers now, Whisper's encoder later).

Pre-LN residual blocks: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``. Attention keeps q, k and v
in ONE ``Linear`` (checkpoints with separate projections are fused at load time) and runs through
``torch.nn.functional.scaled_dot_product_attention`` so PyTorch picks its fused CPU/GPU kernel.
Masks are parameters, not baked in: ``causal`` for text, an optional key-padding mask for ragged
batches, nothing for images / audio frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: activation names as written in checkpoint configs -> callables
QUICK_GELU_ALPHA = 1.702  # OpenAI's sigmoid approximation of GELU: x * sigmoid(1.702 x)
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_tanh")
LAYER_NORM_EPS = 1e-5


def activation(name: str):
    """A config activation name -> a tensor function; unknown names fail loudly."""
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(QUICK_GELU_ALPHA * x)
    if name == "gelu":
        return F.gelu  # exact erf form, what HF "gelu" and nn.GELU() compute
    if name in ("gelu_tanh", "gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    raise ValueError(f"unsupported activation {name!r}; expected one of {ACTIVATIONS}")


def key_padding_mask(lengths: torch.Tensor, size: int, *, causal: bool = False) -> torch.Tensor:
    """(b,) valid lengths -> boolean SDPA mask (b, 1, q=size, k=size): True where attention is allowed.

    Padded queries still attend to at least key 0, so no row is all-False (that would give NaN)."""
    pos = torch.arange(size, device=lengths.device)
    keep = pos[None, :] < lengths[:, None]  # (b, k)
    mask = keep[:, None, None, :].expand(-1, 1, size, -1)  # (b, 1, q, k)
    if causal:
        mask = mask & torch.ones(size, size, dtype=torch.bool, device=lengths.device).tril()
    return mask | (pos == 0)  # key 0 always visible: padded rows stay finite


class Attention(nn.Module):
    """Multi-head self-attention with fused qkv; ``bias=False`` on k for Whisper is handled by
    zero bias rows at load time, so one module fits both."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        b, n, d = x.shape  # (batch, tokens, width)
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads)  # (b, n, 3, h, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (b, h, n, hd)
        # is_causal and attn_mask are exclusive in SDPA: callers fold causality into the mask
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        return self.out(o.transpose(1, 2).reshape(b, n, d))  # (b, n, d)


class Mlp(nn.Module):
    """Linear -> activation -> Linear."""

    def __init__(self, width: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN residual block (no cross-attention)."""

    def __init__(self, width: int, heads: int, mlp_hidden: int, act: str, eps: float = LAYER_NORM_EPS):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.mlp = Mlp(width, mlp_hidden, act)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask, causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of :class:`Block` s sharing one mask."""

    def __init__(self, width: int, layers: int, heads: int, mlp_hidden: int, act: str,
                 eps: float = LAYER_NORM_EPS):
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, mlp_hidden, act, eps) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask, causal)
        return x
