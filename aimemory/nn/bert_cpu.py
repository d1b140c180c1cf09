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

Where oneDNN is there (x86 builds of torch), each bf16 weight is reordered once into oneDNN's
blocked layout (:class:`PackedBf16Linear`). A plain bf16 ``F.linear`` reorders it on every call, which
for a query of a few tokens costs more than the product: measured on all-MiniLM-L6, one 8-token query
took 4.6 ms with plain bf16 linears and 2.7 ms packed, with the same outputs (cosine 1.0000000).
"""

from __future__ import annotations

import copy
import functools
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
PACK_ROWS_HINT = 16  # rows (batch x tokens) oneDNN picks the packed layout for: a query's few tokens


class Bf16Linear(nn.Module):
    """A linear layer computed in bf16: (..., in) float32 -> (..., out) float32."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)  # (out, in)
        bias = linear.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(torch.bfloat16), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.weight, self.bias).float()


class PackedBf16Linear(nn.Module):
    """:class:`Bf16Linear` with its weight held in oneDNN's packed layout (an opaque tensor, so the
    module is scripted: a trace cannot hold such a tensor, but it can call a scripted module)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().to(torch.bfloat16)  # (out, in)
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS_HINT)
        bias = torch.zeros(weight.shape[0]) if linear.bias is None else linear.bias.detach()
        self.bias = bias.to(torch.bfloat16)  # (out,); zeros where there is none: a script attribute has one type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), self.weight, self.bias, "none", [], "").float()


@functools.cache
def packing_works() -> bool:
    """Whether this torch can pack bf16 weights for oneDNN and gets Bf16Linear's outputs from them
    (checked once per process on a small layer); False means plain :class:`Bf16Linear` layers."""
    try:
        gen = torch.Generator().manual_seed(0)
        probe = nn.Linear(32, 24)
        with torch.no_grad():
            probe.weight.copy_(torch.randn(24, 32, generator=gen))
        x = torch.randn(3, 5, 32, generator=gen)
        with torch.inference_mode():
            packed = torch.jit.script(PackedBf16Linear(probe))(x)
            plain = Bf16Linear(probe)(x)
        return bool(torch.allclose(packed, plain, rtol=1e-2, atol=1e-2))
    except Exception as exc:  # no oneDNN in this build, or a torch without these ops
        log.info("bf16 linear layers run unpacked (%s)", exc)
        return False


def bf16_linear(linear: nn.Linear) -> nn.Module:
    """``linear`` computed in bf16: packed for oneDNN where :func:`packing_works`, else plain."""
    if packing_works():
        return torch.jit.script(PackedBf16Linear(linear))
    return Bf16Linear(linear)


def with_bf16_linears(model: BertModel) -> BertModel:
    """A copy of ``model`` whose linear layers are computed in bf16 (:func:`bf16_linear`). The
    embeddings (47 MB for all-MiniLM) are shared with ``model``, not copied, and ``model`` itself
    is unchanged."""
    shared = {id(p): p for p in model.embeddings.parameters()}
    network = copy.deepcopy(model, shared)
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, bf16_linear(child))
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
