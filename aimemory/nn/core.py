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
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_tanh", "silu")
LAYER_NORM_EPS = 1e-5


def activation(name: str):
    """A config activation name -> a tensor function; unknown names fail loudly."""
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(QUICK_GELU_ALPHA * x)
    if name == "gelu":
        return F.gelu  # exact erf form, what HF "gelu" and nn.GELU() compute
    if name in ("gelu_tanh", "gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "silu":  # also quick_gelu with 1.702 folded into the weights: one fused op, not three
        return F.silu
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

    def forward_rows(self, x: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention output for ONE query row per sample (``rows`` (b,)), keys/values from all of
        ``x`` (b, n, d) -> (b, d). Used by the last block of pooled models: the other rows' outputs
        would be thrown away, so their q, out-projection and MLP are never computed."""
        b, n, d = x.shape
        picked = x[torch.arange(b, device=x.device), rows]  # (b, d)
        w, bias = self.qkv.weight, self.qkv.bias  # (3d, d), (3d,)
        if callable(w):  # a swapped-in module (e.g. dynamically quantized Linear): no weight slicing
            q, kv = self.qkv(picked)[:, :d], self.qkv(x)[..., d:]  # (b, d), (b, n, 2d)
        else:  # q for the kept rows only, k and v for all
            q, kv = F.linear(picked, w[:d], bias[:d]), F.linear(x, w[d:], bias[d:])
        kv = kv.reshape(b, n, 2, self.heads, d // self.heads)  # (b, n, 2, h, hd)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (b, h, n, hd)
        q = q.view(b, self.heads, 1, d // self.heads)  # (b, h, 1, hd)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (b, h, 1, hd)
        return self.out(o.reshape(b, d))  # (b, d)


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

    def forward_rows(self, x: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(b, n, d) -> (b, d): the block's output at ``rows`` only (see :meth:`Attention.forward_rows`)."""
        y = x[torch.arange(x.shape[0], device=x.device), rows]  # (b, d) residual of the kept rows
        y = y + self.attn.forward_rows(self.ln_1(x), rows, mask)
        return y + self.mlp(self.ln_2(y))


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

    def forward_pooled(self, x: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor | None = None,
                       causal: bool = False) -> torch.Tensor:
        """(b, n, d) -> (b, d): the final hidden state of one token per sample (CLS, EOT), exactly
        as ``forward(x)[arange(b), rows]`` but without the last block's work on the other tokens."""
        for block in self.blocks[:-1]:
            x = block(x, mask, causal)
        n = x.shape[1]
        row_mask = None
        if mask is not None:  # (b|1, 1, q, k) -> the kept queries' rows (b, 1, 1, k)
            row_mask = mask.expand(x.shape[0], -1, n, -1)[torch.arange(x.shape[0]), :, rows].unsqueeze(2)
        if causal:  # the kept query sees keys up to its own position
            seen = (torch.arange(n, device=x.device)[None, :] <= rows[:, None])[:, None, None, :]  # (b, 1, 1, k)
            row_mask = seen if row_mask is None else row_mask & seen
        return self.blocks[-1].forward_rows(x, rows, row_mask)
