"""aimemory-mini's text tower in numpy, for text queries in a process that has not imported torch.

Same weights (the shipped ``model.safetensors``, read with ``safetensors.numpy``: only the
``text.*`` tensors) and the same computation as :class:`aimemory.nn.mini.TextTower` followed by
``MiniModel.embed_text``: hashed feature embeddings, softmax attention pooling, LayerNorm -> Linear
-> exact GELU -> Linear, L2 norm. Parity with the torch tower is tested (cosine >= 0.9999).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..preprocess.hashed_text import text_features
from .bert_numpy import gelu, layer_norm, linear

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which the torch tower uses
NORM_FLOOR = 1e-12  # F.normalize's floor
TEXT_KEYS = ("text.embed.weight", "text.score.weight", "text.score.bias", "text.mlp.0.weight",
             "text.mlp.0.bias", "text.mlp.1.weight", "text.mlp.1.bias", "text.mlp.3.weight",
             "text.mlp.3.bias")


@dataclass(frozen=True)
class MiniTextDims:
    buckets: int  # hashed feature vocabulary
    width: int  # feature embedding width
    hidden: int
    dim: int  # output (the shared space)


class MiniTextNumpy:
    """float32 ``text.*`` weights -> unit (dim,) vectors of captions and queries."""

    def __init__(self, weights: dict[str, np.ndarray]):
        missing = [k for k in TEXT_KEYS if k not in weights]
        if missing:
            raise KeyError(f"aimemory-mini weights lack {missing}")
        embed = weights["text.embed.weight"]  # (buckets, width)
        up, down = weights["text.mlp.1.weight"], weights["text.mlp.3.weight"]  # (hidden, width), (dim, hidden)
        self.dims = MiniTextDims(buckets=embed.shape[0], width=embed.shape[1], hidden=up.shape[0], dim=down.shape[0])
        d = self.dims
        shapes = {"text.score.weight": (1, d.width), "text.score.bias": (1,), "text.mlp.0.weight": (d.width,),
                  "text.mlp.0.bias": (d.width,), "text.mlp.1.weight": (d.hidden, d.width),
                  "text.mlp.1.bias": (d.hidden,), "text.mlp.3.weight": (d.dim, d.hidden), "text.mlp.3.bias": (d.dim,)}
        for key, shape in shapes.items():
            if tuple(weights[key].shape) != shape:
                raise ValueError(f"{key} has shape {tuple(weights[key].shape)}, expected {shape}")
        f32 = {k: np.ascontiguousarray(weights[k], np.float32) for k in TEXT_KEYS}
        self.features = f32["text.embed.weight"]  # (buckets, width)
        self.score_w, self.score_b = f32["text.score.weight"][0], f32["text.score.bias"][0]  # (width,), ()
        self.norm_w, self.norm_b = f32["text.mlp.0.weight"], f32["text.mlp.0.bias"]
        self.up_t = np.ascontiguousarray(f32["text.mlp.1.weight"].T)  # (width, hidden)
        self.up_b = f32["text.mlp.1.bias"]
        self.down_t, self.down_b = np.ascontiguousarray(f32["text.mlp.3.weight"].T), f32["text.mlp.3.bias"]

    @classmethod
    def from_safetensors(cls, path: str | os.PathLike) -> "MiniTextNumpy":
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="np") as f:
            return cls({k: f.get_tensor(k) for k in TEXT_KEYS})

    def embed(self, text: str) -> np.ndarray:
        """One caption -> (dim,) float32 unit vector."""
        e = self.features[np.asarray(text_features(text, self.dims.buckets), np.int64)]  # (L, width)
        logits = e @ self.score_w + self.score_b  # (L,)
        weights = np.exp(logits - logits.max())
        pooled = (weights / weights.sum()) @ e  # (width,)
        h = gelu(linear(layer_norm(pooled, self.norm_w, self.norm_b, LAYER_NORM_EPS), self.up_t, self.up_b))
        out = linear(h, self.down_t, self.down_b)  # (dim,)
        return (out / max(float(np.linalg.norm(out)), NORM_FLOOR)).astype(np.float32)
