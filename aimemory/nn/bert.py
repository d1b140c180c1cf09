"""A BERT encoder (Devlin et al., 2019) with sentence-transformers mean pooling.

Post-LN blocks, unlike the pre-LN core shared by CLIP and Whisper: ``ln_1(x + attn(x))`` then
``ln_2(h + mlp(h))``, exact (erf) GELU, LayerNorm eps from the config (1e-12 for BERT). The attention
and MLP modules are :mod:`aimemory.nn.core`'s (fused qkv, SDPA); only the residual order differs.
Embeddings are word + absolute position + token type (type 0 for single sentences), then LayerNorm.

Sentence vectors (all-MiniLM-L6-v2 and the other sentence-transformers BERTs): the final hidden
states are averaged over the real tokens (``[CLS]`` and ``[SEP]`` included, padding excluded), then
L2-normalised. The module is built from the checkpoint's shapes (:meth:`BertDims.from_state`); heads
do not show in shapes and come from ``config.json`` (default: 64-wide heads, BERT's convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .core import Attention, Mlp, activation, key_padding_mask

LAYER_NORM_EPS = 1e-12  # BERT's; read from config.json when present
HEAD_WIDTH = 64  # BERT-family convention when no config gives the head count
DEFAULT_ACT = "gelu"  # HF "gelu" = exact erf form
NORM_FLOOR = 1e-12  # F.normalize's floor, as sentence-transformers' Normalize layer uses


@dataclass(frozen=True)
class BertDims:
    vocab_size: int = 30522
    width: int = 384
    layers: int = 6
    heads: int = 12
    mlp_hidden: int = 1536
    max_positions: int = 512
    type_vocab_size: int = 2
    eps: float = LAYER_NORM_EPS
    act: str = DEFAULT_ACT
    pooler: bool = False  # the checkpoint carries BERT's [CLS] pooler (unused by mean pooling)

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor], config: Mapping | None = None) -> "BertDims":
        """Read the dims from native-named weights (see :mod:`aimemory.weights.bert_formats`);
        ``config`` (an HF ``config.json`` dict) supplies heads, eps and activation, and is checked
        against the shapes where they overlap."""
        config = config or {}
        vocab, width = (int(s) for s in state["embeddings.token"].shape)
        layers = len({int(k.split(".")[1]) for k in state if k.startswith("blocks.")})
        heads = int(config.get("num_attention_heads") or max(1, width // HEAD_WIDTH))
        dims = cls(
            vocab_size=vocab, width=width, layers=layers, heads=heads,
            mlp_hidden=int(state["blocks.0.mlp.fc1.weight"].shape[0]) if layers else 4 * width,
            max_positions=int(state["embeddings.position"].shape[0]),
            type_vocab_size=int(state["embeddings.token_type"].shape[0]),
            eps=float(config.get("layer_norm_eps", LAYER_NORM_EPS)),
            act=str(config.get("hidden_act", DEFAULT_ACT)),
            pooler="pooler.weight" in state,
        )
        activation(dims.act)  # unknown activations fail here, before any module is built
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type {config['position_embedding_type']!r} is not "
                             "supported; only absolute position embeddings are implemented")
        for key, value in (("hidden_size", dims.width), ("num_hidden_layers", dims.layers),
                           ("vocab_size", dims.vocab_size), ("intermediate_size", dims.mlp_hidden)):
            if key in config and int(config[key]) != value:
                raise ValueError(f"config.json says {key}={config[key]} but the weights have {value}")
        return dims


class Embeddings(nn.Module):
    """ids (b, n) -> LayerNorm(word + position + token type 0) (b, n, d)."""

    def __init__(self, dims: BertDims):
        super().__init__()
        # plain tables, not nn.Embedding: its random init on the meta device costs seconds of imports,
        # and the weights are always assigned from a checkpoint
        self.token = nn.Parameter(torch.empty(dims.vocab_size, dims.width))  # (V, d)
        self.position = nn.Parameter(torch.empty(dims.max_positions, dims.width))  # (P, d)
        self.token_type = nn.Parameter(torch.empty(dims.type_vocab_size, dims.width))  # (T, d)
        self.ln = nn.LayerNorm(dims.width, eps=dims.eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        # position and type 0 rows are added once as a (n, d) table, broadcast over the batch
        fixed = self.position[:n] + self.token_type[0]  # (n, d)
        return self.ln(F.embedding(ids, self.token) + fixed)  # (b, n, d)


class PostLNBlock(nn.Module):
    """BERT's residual block: LayerNorm after each residual sum."""

    def __init__(self, dims: BertDims):
        super().__init__()
        self.attn = Attention(dims.width, dims.heads)
        self.ln_1 = nn.LayerNorm(dims.width, eps=dims.eps)
        self.mlp = Mlp(dims.width, dims.mlp_hidden, dims.act)
        self.ln_2 = nn.LayerNorm(dims.width, eps=dims.eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x + self.attn(x, mask))  # (b, n, d)
        return self.ln_2(h + self.mlp(h))


class BertModel(nn.Module):
    """Token ids -> final hidden states; :meth:`embed` gives unit-norm mean-pooled sentence vectors."""

    def __init__(self, dims: BertDims):
        super().__init__()
        self.dims = dims
        self.embeddings = Embeddings(dims)
        self.blocks = nn.ModuleList(PostLNBlock(dims) for _ in range(dims.layers))
        self.pooler = nn.Linear(dims.width, dims.width) if dims.pooler else None

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids (b, n) int64, mask (b, n) with 1/True on real tokens (None: all real) -> (b, n, d).
        Rows past a sample's length are computed but meaningless."""
        if ids.shape[1] > self.dims.max_positions:
            raise ValueError(f"{ids.shape[1]} tokens exceed the {self.dims.max_positions} positions")
        attn_mask = None
        if mask is not None and not bool(mask.all()):  # no mask at all for unpadded batches: faster SDPA
            attn_mask = key_padding_mask(mask.sum(1), ids.shape[1])  # (b, 1, n, n) bool
        x = self.embeddings(ids)
        for block in self.blocks:
            x = block(x, attn_mask)
        return x

    def embed(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(b, n) ids and mask -> (b, d) L2-normalised mean of the real tokens' final states."""
        hidden = self.forward(ids, mask).float()  # (b, n, d); pooled in fp32 whatever the weights
        return F.normalize(mean_pool(hidden, mask), dim=-1, eps=NORM_FLOOR)

    def pooled_cls(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """BERT's own pooler: tanh(Linear(h_[CLS])) (b, d); only for checkpoints that carry it."""
        if self.pooler is None:
            raise ValueError("this checkpoint has no pooler weights")
        return torch.tanh(self.pooler(self.forward(ids, mask)[:, 0]))


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(b, n, d) states, (b, n) mask -> (b, d) mean over the masked-in tokens."""
    if mask is None:
        return hidden.mean(1)
    w = mask.to(hidden.dtype).unsqueeze(-1)  # (b, n, 1)
    return (hidden * w).sum(1) / w.sum(1).clamp_min(1e-9)
