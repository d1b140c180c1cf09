"""The BERT sentence forward for the CPU: TorchScript traces, in fp32 or with bf16 linear layers.

Why a trace: an eager forward makes about 120 torch calls, and after each one the thread must take
the GIL back. When any other Python thread is busy (a commit, a web handler, an agent's loop), each
of those takes can wait up to the interpreter's switch interval (5 ms). Measured: one busy Python
thread made a four-text encode go from 12 ms to 660 ms. A trace runs the whole forward in C++
without the GIL; with the same busy thread it took 29 ms.

Two traces per network, because the eager forward branches on its input:
- *unpadded*: no mask, so SDPA runs without one, which is faster;
- *padded*: with a key-padding mask.

Each trace is checked against the eager forward on inputs of other shapes than the one traced. If
tracing fails or disagrees, the eager forward is used and a warning is logged, so a torch release
without tracing still works, only without the GIL release.

bf16 linear layers (:func:`with_bf16_linears`) cast their input to bf16 and their output back to
fp32. Everything else (embeddings, LayerNorm, attention, GELU, pooling) stays fp32. This keeps
cosine to the fp32 vectors >= 0.99996 on the real weights, where every module in bf16 gave 0.9999.
Casting explicitly, instead of using autocast, is also what makes the bf16 network traceable:
autocast does not survive a trace.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .bert import BertModel

log = logging.getLogger("aimemory.nn")

TRACE_CHECK_COSINE = 0.99999  # a trace must reproduce the eager forward to this, or it is not used
EXAMPLE_TOKENS = (2, 12)  # (batch, tokens) of the example the traces are recorded on
CHECK_SHAPES = ((3, 7), (1, 20))  # other shapes the traces are checked on


class Bf16Linear(nn.Module):
    """A linear layer computed in bf16: (..., in) float32 -> (..., out) float32."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)  # (out, in)
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(torch.bfloat16), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.weight, self.bias).float()


def with_bf16_linears(model: BertModel) -> BertModel:
    """A copy of ``model`` whose linear layers are :class:`Bf16Linear`. The embeddings (47 MB for
    all-MiniLM) are shared with ``model``, not copied, and ``model`` itself is unchanged."""
    shared = {id(p): p for p in model.embeddings.parameters()}
    network = copy.deepcopy(model, shared)
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, Bf16Linear(child))
    return network.eval()


class _Embed(nn.Module):
    """``BertModel.embed`` as a module of tensors only, which is what a trace records."""

    def __init__(self, model: BertModel, padded: bool):
        super().__init__()
        self.model, self.padded = model, padded

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model.embed(ids, mask if self.padded else None)


def _example(batch: int, tokens: int, padded: bool, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, n) ids and mask; when ``padded``, every row but the first is cut short (the first
    keeps all n tokens, as in a real batch, where it is the longest)."""
    gen = torch.Generator().manual_seed(batch * 1000 + tokens)
    ids = torch.randint(0, vocab, (batch, tokens), generator=gen)
    mask = torch.ones_like(ids)
    if padded:
        for row in range(1, batch):
            mask[row, max(1, tokens - 1 - row * 3):] = 0
    return ids, mask


def eager_embed(model: BertModel, *, padded: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(ids (b, n), mask (b, n)) -> (b, d)``: ``model.embed`` itself, with the call shape of
    :func:`traced_embed` (an unpadded forward ignores ``mask``)."""
    return _Embed(model, padded).eval()


def traced_embed(model: BertModel, *, padded: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(ids (b, n), mask (b, n)) -> (b, d)`` unit rows: a trace of ``model.embed``, or the eager
    forward when tracing fails or its output disagrees. Unpadded traces ignore ``mask``."""
    eager = eager_embed(model, padded=padded)
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            # the branches the tracer warns about (the position check, mask or no mask) are meant
            # to be fixed per trace; the check below runs the trace on other shapes
            warnings.simplefilter("ignore")
            vocab = model.dims.vocab_size
            traced = torch.jit.trace(eager, _example(*EXAMPLE_TOKENS, padded, vocab), check_trace=False)
            for shape in CHECK_SHAPES:
                ids, mask = _example(*shape, padded, vocab)
                agree = (traced(ids, mask) * eager(ids, mask)).sum(1).min()
                if not float(agree) >= TRACE_CHECK_COSINE:
                    raise RuntimeError(f"trace disagrees with the eager forward (cosine {float(agree):.6f})")
    except Exception as exc:  # a torch without tracing, or one that traces this forward wrongly
        log.warning("the CPU text forward runs eagerly (%s): it holds the GIL between ops, so other "
                    "busy Python threads slow it down", exc)
        return eager
    return traced
