"""The CPU BERT forward (nn/bert_cpu.py): TorchScript traces that match the eager forward on other
shapes than the traced one, padded and not, and that fall back to the eager forward when a trace
cannot be trusted; bf16 linear layers close to fp32. (What the trace buys, running while another
Python thread is busy, is timed by benchmarks/bench_text.py's "busy" column, not here.)"""

from __future__ import annotations

import logging

import pytest
import torch

from aimemory.nn import bert_cpu
from aimemory.nn.bert import BertDims, BertModel
from aimemory.nn.bert_cpu import Bf16Linear, traced_embed, with_bf16_linears

DIMS = BertDims(vocab_size=300, width=64, layers=2, heads=4, mlp_hidden=128, max_positions=48,
                type_vocab_size=2, eps=1e-12, act="gelu", pooler=False)


@pytest.fixture(scope="module")
def model() -> BertModel:
    torch.manual_seed(0)
    net = BertModel(DIMS)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net.eval()


def batch(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, max) ids and mask for rows of ``lengths`` real tokens."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, DIMS.vocab_size, (len(lengths), max(lengths)), generator=gen)
    mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask


@pytest.mark.parametrize("lengths", [[9, 4, 1], [30, 30], [1], [47, 2, 2, 16]])
def test_traces_match_the_eager_forward_on_any_shape(model, lengths):
    padded, unpadded = traced_embed(model, padded=True), traced_embed(model, padded=False)
    assert isinstance(padded, torch.jit.ScriptModule) and isinstance(unpadded, torch.jit.ScriptModule)
    ids, mask = batch(lengths, seed=len(lengths))
    with torch.inference_mode():
        torch.testing.assert_close(padded(ids, mask), model.embed(ids, mask), atol=1e-5, rtol=1e-5)
        full = ids[:, : min(lengths)]  # every row as long as the batch: what the unpadded trace gets
        torch.testing.assert_close(unpadded(full, torch.ones_like(full)), model.embed(full), atol=1e-5, rtol=1e-5)


def test_a_trace_that_disagrees_is_not_used(model, monkeypatch, caplog):
    class Wrong(torch.nn.Module):
        def forward(self, ids, mask):
            return torch.nn.functional.normalize(torch.ones(ids.shape[0], DIMS.width), dim=-1)

    monkeypatch.setattr(bert_cpu.torch.jit, "trace", lambda *a, **k: Wrong())
    with caplog.at_level(logging.WARNING, logger="aimemory.nn"):
        run = traced_embed(model, padded=True)
    assert not isinstance(run, torch.jit.ScriptModule) and "runs eagerly" in caplog.text
    ids, mask = batch([5, 3], seed=1)
    with torch.inference_mode():
        torch.testing.assert_close(run(ids, mask), model.embed(ids, mask))


def _bf16_layers(network: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in network.modules() if isinstance(m, Bf16Linear)
            or getattr(m, "original_name", None) == "PackedBf16Linear"]


@pytest.mark.parametrize("packed", [True, False])
def test_bf16_linears_stay_close_to_fp32_and_share_the_embeddings(model, monkeypatch, packed):
    if packed and not bert_cpu.packing_works():
        pytest.skip("this torch build has no oneDNN weight packing")
    monkeypatch.setattr(bert_cpu, "packing_works", lambda: packed)
    fast = with_bf16_linears(model)
    linears = _bf16_layers(fast)
    assert len(linears) == 4 * DIMS.layers  # qkv, out, fc1, fc2 per block
    assert all(isinstance(m, Bf16Linear) is not packed for m in linears)
    assert all(m.weight.dtype == torch.bfloat16 and m.bias.dtype == torch.bfloat16 for m in linears)
    assert fast.embeddings.token is model.embeddings.token
    assert not _bf16_layers(model)  # the original is unchanged
    ids, mask = batch([20, 11, 3], seed=4)
    with torch.inference_mode():
        cos = (fast.embed(ids, mask) * model.embed(ids, mask)).sum(1)
        traced = traced_embed(fast, padded=True)(ids, mask)
    assert cos.min() >= 0.999
    torch.testing.assert_close(traced, fast.embed(ids, mask), atol=1e-5, rtol=1e-5)


def test_packed_bf16_linear_gives_the_plain_bf16_outputs():
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN")
    assert bert_cpu.packing_works()  # oneDNN is there, so the probe must pass
    torch.manual_seed(3)
    for linear in (torch.nn.Linear(64, 192), torch.nn.Linear(128, 64, bias=False)):
        packed = torch.jit.script(bert_cpu.PackedBf16Linear(linear))
        plain = Bf16Linear(linear)
        for rows in ((1, 1, 64), (2, 9, 64), (40, 30, 64)):
            x = torch.randn(*rows[:-1], linear.in_features)
            with torch.inference_mode():
                torch.testing.assert_close(packed(x), plain(x), atol=2e-2, rtol=2e-2)


def test_no_packing_when_the_probe_fails(monkeypatch, model):
    def broken(*args, **kwargs):
        raise RuntimeError("no oneDNN here")

    monkeypatch.setattr(bert_cpu, "PackedBf16Linear", broken)
    bert_cpu.packing_works.cache_clear()
    try:
        assert not bert_cpu.packing_works()
        fast = with_bf16_linears(model)
        assert all(isinstance(m, Bf16Linear) for m in _bf16_layers(fast)) and _bf16_layers(fast)
    finally:
        bert_cpu.packing_works.cache_clear()
