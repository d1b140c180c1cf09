"""The BERT sentence encoder of :mod:`aimemory.nn.bert` as a numpy forward pass, for text queries in
processes that never import torch: importing torch costs over a second, while a short query runs
about as fast here as on the torch network (~9 ms on one shared core, see benchmarks/bench_cold.py).

It computes what :meth:`aimemory.nn.bert.BertModel.embed` computes, from the same safetensors file
read with ``safetensors.numpy``: word + position + type-0 embeddings and LayerNorm, post-LN blocks
(``ln_1(x + attn(x))`` then ``ln_2(h + mlp(h))``), padded keys masked out, mean pooling over the
real tokens, L2 normalisation. Checkpoint names go through the renaming table of
:mod:`aimemory.weights.bert_formats`, so both paths accept the same layouts.

GELU is the exact erf form. numpy has no erf (and importing scipy for one costs more than the
forward), so erf is Abramowitz & Stegun's rational approximation 7.1.26, whose error is at most
1.5e-7 (about the rounding of the fp32 activations it feeds), evaluated in float64.
Only the erf GELU is implemented: a checkpoint with another activation is refused (ValueError), and
callers keep the torch network for it.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np

from ..errors import CheckpointError
from ..weights.bert_formats import is_bert_state, native_name, strip_prefix

LAYER_NORM_EPS = 1e-12  # BERT's; config.json's layer_norm_eps when present
HEAD_WIDTH = 64  # heads = width / 64 when no config names them (BERT's convention)
NORM_FLOOR = 1e-12  # F.normalize's floor, as the torch path uses
POOL_FLOOR = 1e-9  # the torch path's floor on the count of real tokens
MASKED = np.float32(-1e30)  # attention logit of a padded key: exp() underflows to exactly 0
SUPPORTED_ACT = "gelu"  # HF "gelu" = exact erf form
# Abramowitz & Stegun 7.1.26: erf(z) ~ 1 - t (a1 + t (a2 + ...)) exp(-z^2), t = 1 / (1 + p z), z >= 0
AS_P = 0.3275911
AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
SQRT_HALF = 0.7071067811865476
# BLAS runs one thread inside the forward: a query's matrices are a few rows, and on a busy machine
# the pool's spinning threads cost far more than the work (measured at load 7 on 2 cores: 4 tokens
# took 200 ms with OpenBLAS's 2 threads, 6 ms with one). Counted, so concurrent forwards share it
_blas_lock = threading.Lock()
_blas_users: list = [0, None, None]  # [forwards running, limiter holding the original, controller]


@dataclass(frozen=True)
class NumpyBertDims:
    """Dims read from the checkpoint's shapes; heads, eps and activation from config.json."""

    width: int
    layers: int
    heads: int
    max_positions: int
    eps: float = LAYER_NORM_EPS

    @classmethod
    def from_shapes(cls, shapes: Mapping[str, tuple[int, ...]], config: Mapping | None = None) -> "NumpyBertDims":
        """``shapes``: native name -> shape (see :func:`native_names`); raises ValueError for a
        config this forward does not implement."""
        config = config or {}
        act = str(config.get("hidden_act", SUPPORTED_ACT))
        if act != SUPPORTED_ACT:
            raise ValueError(f"the numpy BERT implements only the erf GELU, not {act!r}")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("the numpy BERT implements only absolute position embeddings")
        width = int(shapes["embeddings.token"][1])
        layers = len({int(k.split(".")[1]) for k in shapes if k.startswith("blocks.")})
        heads = int(config.get("num_attention_heads") or max(1, width // HEAD_WIDTH))
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        seen = {"hidden_size": width, "num_hidden_layers": layers, "vocab_size": int(shapes["embeddings.token"][0]),
                "intermediate_size": int(shapes["blocks.0.mlp.fc1.weight"][0]) if layers else 4 * width}
        for key, value in seen.items():  # the checks BertDims.from_state makes for the torch network
            if key in config and int(config[key]) != value:
                raise CheckpointError(f"config.json says {key}={config[key]} but the weights have {value}")
        return cls(width=width, layers=layers, heads=heads,
                   max_positions=int(shapes["embeddings.position"][0]),
                   eps=float(config.get("layer_norm_eps", LAYER_NORM_EPS)))

    @classmethod
    def from_file(cls, path: str | os.PathLike, config: Mapping | None = None) -> "NumpyBertDims":
        """Dims from a safetensors file's header alone (no tensor is read)."""
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="np") as fh:
            keys = list(fh.keys())
            names = native_names(keys, source=os.fspath(path))
            shapes = {names[k]: tuple(fh.get_slice(k).get_shape()) for k in keys if k in names}
        try:
            return cls.from_shapes(shapes, config)
        except KeyError as exc:
            raise CheckpointError(f"{os.fspath(path)} does not fit a BERT encoder: missing {exc}") from exc


def native_names(keys: Sequence[str], *, source: str = "checkpoint") -> dict[str, str]:
    """Checkpoint key -> native name (:mod:`aimemory.weights.bert_formats`' table; q, k, v stay
    separate, as ``blocks.N.attn.{q,k,v}.*``). Ignored keys are left out; unknown keys raise
    :class:`CheckpointError`."""
    if not is_bert_state(dict.fromkeys(keys)):
        raise CheckpointError(f"{source} is not a BERT checkpoint: no embeddings.word_embeddings.weight")
    out: dict[str, str] = {}
    unknown = []
    for key in keys:
        try:
            name = native_name(key)
        except KeyError:
            unknown.append(strip_prefix(key))
            continue
        if name is not None:
            out[key] = name
    if unknown:
        raise CheckpointError(f"{source}: keys with no place in a BERT encoder: {', '.join(sorted(unknown)[:10])}")
    if len(set(out.values())) != len(out):
        raise CheckpointError(f"{source}: a weight appears twice (with and without a prefix)")
    return out


def erf(z: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), in float64, odd-extended to z < 0."""
    z = np.asarray(z, np.float64)
    a = np.abs(z)
    t = 1.0 / (1.0 + AS_P * a)
    poly = t * (AS_A[0] + t * (AS_A[1] + t * (AS_A[2] + t * (AS_A[3] + t * AS_A[4]))))
    return np.copysign(1.0 - poly * np.exp(-a * a), z)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, x * Phi(x), returned in x's dtype."""
    return (0.5 * x * (1.0 + erf(x * SQRT_HALF))).astype(x.dtype, copy=False)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread while inside (threadpoolctl; unchanged when it is missing)."""
    with _blas_lock:
        if _blas_users[0] == 0:
            controller = _blas_controller()
            _blas_users[1] = None if controller is None else controller.limit(limits=1, user_api="blas")
        _blas_users[0] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users[0] -= 1
            if _blas_users[0] == 0 and _blas_users[1] is not None:
                _blas_users[1].restore_original_limits()
                _blas_users[1] = None


def _blas_controller():
    """threadpoolctl's view of the loaded thread pools, made once: making it scans every loaded
    library (~1 ms, as long as a short query's forward). numpy's BLAS, the only one the forward
    uses, is loaded before the first call. None when threadpoolctl is missing."""
    if _blas_users[2] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a runtime dependency; only slower without
            _blas_users[2] = False
        else:
            _blas_users[2] = ThreadpoolController()
    return _blas_users[2] or None


def linear(x: np.ndarray, weight_t: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x (..., in), weight_t (in, out) contiguous, bias (out,) -> (..., out)."""
    return x @ weight_t + bias


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = np.square(x - mean).mean(-1, keepdims=True)  # biased, as torch's LayerNorm
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class NumpyBert:
    """float32 weights (native names, q/k/v fused) -> unit-norm mean-pooled sentence vectors."""

    def __init__(self, weights: Mapping[str, np.ndarray], dims: NumpyBertDims):
        self.dims = dims
        w = {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}
        self.token, self.position = w["embeddings.token"], w["embeddings.position"]  # (V, d), (P, d)
        self.type0 = w["embeddings.token_type"][0]  # (d,) single sentences are type 0
        self.ln = (w["embeddings.ln.weight"], w["embeddings.ln.bias"])
        self.blocks = []
        for i in range(dims.layers):
            p = f"blocks.{i}."
            # Linear weights transposed once to (in, out), contiguous: x @ W then runs 20-25% faster
            # per query than on torch's (out, in) layout (measured, OpenBLAS, one thread), for
            # ~25 ms of copying at load
            qkv_w = np.ascontiguousarray(np.concatenate([w[p + f"attn.{c}.weight"] for c in "qkv"]).T)  # (d, 3d)
            qkv_b = np.concatenate([w[p + f"attn.{c}.bias"] for c in "qkv"])  # (3d,)
            self.blocks.append((
                qkv_w, qkv_b, w[p + "attn.out.weight"].T.copy(), w[p + "attn.out.bias"],  # (d, d), (d,)
                w[p + "ln_1.weight"], w[p + "ln_1.bias"],
                w[p + "mlp.fc1.weight"].T.copy(), w[p + "mlp.fc1.bias"],  # (d, m), (m,)
                w[p + "mlp.fc2.weight"].T.copy(), w[p + "mlp.fc2.bias"],  # (m, d), (d,)
                w[p + "ln_2.weight"], w[p + "ln_2.bias"],
            ))

    @classmethod
    def from_safetensors(cls, path: str | os.PathLike, config: Mapping | None = None) -> "NumpyBert":
        """Read a BERT safetensors file (any layout the torch loader accepts). The caller checks the
        file's integrity (sha256 pins) first, as for the torch network."""
        from safetensors.numpy import load_file

        raw = load_file(os.fspath(path))
        names = native_names(list(raw), source=os.fspath(path))
        weights = {names[k]: v for k, v in raw.items() if k in names}
        try:
            dims = NumpyBertDims.from_shapes({k: v.shape for k, v in weights.items()}, config)
            return cls(weights, dims)
        except KeyError as exc:
            raise CheckpointError(f"{os.fspath(path)} does not fit a BERT encoder: missing {exc}") from exc

    def attention(self, x: np.ndarray, keep: np.ndarray | None, qkv_w, qkv_b, out_w, out_b) -> np.ndarray:
        b, n, d = x.shape  # (batch, tokens, width)
        h = self.dims.heads
        qkv = linear(x, qkv_w, qkv_b).reshape(b, n, 3, h, d // h)  # (b, n, 3, h, hd)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # 3 x (b, h, n, hd)
        logits = (q @ k.transpose(0, 1, 3, 2)) * np.float32((d // h) ** -0.5)  # (b, h, n, n)
        if keep is not None:
            logits = np.where(keep[:, None, None, :], logits, MASKED)  # padded keys get no weight
        logits -= logits.max(-1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(-1, keepdims=True)
        o = (p @ v).transpose(0, 2, 1, 3).reshape(b, n, d)  # (b, n, d)
        return linear(o, out_w, out_b)

    def forward(self, ids: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """ids (b, n) ints, keep (b, n) bool True on real tokens (None: all real) -> (b, n, d)."""
        n = ids.shape[1]
        if n > self.dims.max_positions:
            raise ValueError(f"{n} tokens exceed the {self.dims.max_positions} positions")
        eps = self.dims.eps
        x = layer_norm(self.token[ids] + (self.position[:n] + self.type0), *self.ln, eps)  # (b, n, d)
        for qkv_w, qkv_b, out_w, out_b, ln1_w, ln1_b, fc1_w, fc1_b, fc2_w, fc2_b, ln2_w, ln2_b in self.blocks:
            x = layer_norm(x + self.attention(x, keep, qkv_w, qkv_b, out_w, out_b), ln1_w, ln1_b, eps)
            x = layer_norm(x + linear(gelu(linear(x, fc1_w, fc1_b)), fc2_w, fc2_b), ln2_w, ln2_b, eps)
        return x

    def embed(self, rows: Sequence[Sequence[int]], pad_id: int = 0) -> np.ndarray:
        """Token id rows (already framed and truncated) -> (len(rows), d) float32 unit vectors.
        Rows of unequal length are padded with ``pad_id`` and masked."""
        lengths = np.array([len(r) for r in rows])
        ids = np.full((len(rows), int(lengths.max())), pad_id, np.int64)  # (b, n)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
        keep = np.arange(ids.shape[1])[None, :] < lengths[:, None]  # (b, n)
        with one_blas_thread():
            hidden = self.forward(ids, None if keep.all() else keep)  # (b, n, d)
        w = keep[..., None].astype(np.float32)  # (b, n, 1)
        pooled = (hidden * w).sum(1) / np.maximum(w.sum(1), POOL_FLOOR)  # (b, d)
        norm = np.linalg.norm(pooled, axis=-1, keepdims=True)
        return (pooled / np.maximum(norm, NORM_FLOOR)).astype(np.float32)
