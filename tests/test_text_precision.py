"""The sentence tower's linear layers in bf16 on a CPU that has it natively (device.text_compute):
the choice, its override, and parity of bf16 vectors (documents and queries) with fp32's on the
real weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aimemory import device
from aimemory.encoders.sentence import SentenceEncoder, find_local_sentence_model

needs_weights = pytest.mark.skipif(find_local_sentence_model() is None, reason="all-MiniLM-L6-v2 is not installed")
TEXTS = ["a cat", "the invoice from march", "A photo of my dog playing in the garden, taken last summer.",
         "東京の天気は晴れです", "x", " ".join(f"word{i} meeting budget invoice" for i in range(120))]


@pytest.fixture()
def cpuinfo(monkeypatch, tmp_path):
    """Point cpu_has_native_bf16 at a fake /proc/cpuinfo with the given flags line."""
    def use(line: str) -> None:
        fake = tmp_path / "cpuinfo"
        fake.write_text(f"processor\t: 0\n{line}\n")
        real_open = open
        monkeypatch.setattr(device, "open", lambda path, *a, **k: real_open(fake if path == "/proc/cpuinfo" else path,
                                                                          *a, **k), raising=False)
        monkeypatch.setattr(device, "_native_bf16", [])
    monkeypatch.delenv(device.TEXT_COMPUTE_ENV, raising=False)
    return use


@pytest.mark.parametrize("line, native", [
    ("flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni", True),  # AMD Zen 4, Intel Cooper Lake
    ("flags\t\t: fpu avx2 amx_bf16 amx_tile", True),  # Intel Sapphire Rapids
    ("Features\t: fp asimd bf16 i8mm", True),  # Arm v8.6 (Graviton 3)
    ("flags\t\t: fpu sse4_2 avx2 fma avx512f", False),  # AVX-512 without bf16: emulated, slower
])
def test_bf16_queries_only_where_the_cpu_has_bf16(cpuinfo, line, native):
    cpuinfo(line)
    assert device.cpu_has_native_bf16() is native
    assert device.text_compute() == ("bf16" if native else "fp32")


def test_the_environment_overrides_and_a_bad_value_is_refused(cpuinfo, monkeypatch):
    cpuinfo("flags\t\t: avx512_bf16")
    monkeypatch.setenv(device.TEXT_COMPUTE_ENV, "FP32")
    assert device.text_compute() == "fp32"
    cpuinfo("flags\t\t: avx2")
    monkeypatch.setenv(device.TEXT_COMPUTE_ENV, "bf16")
    assert device.text_compute() == "bf16"
    monkeypatch.setenv(device.TEXT_COMPUTE_ENV, "int8")
    with pytest.raises(ValueError, match="fp32 or bf16"):
        device.text_compute()


@needs_weights
def test_bf16_vectors_match_the_fp32_network(monkeypatch):
    encoder = SentenceEncoder.from_pretrained()
    monkeypatch.setenv(device.TEXT_COMPUTE_ENV, "fp32")
    reference = encoder.embed(TEXTS)  # (n, 384): the reference network, bit for bit
    assert encoder._bf16 is None
    monkeypatch.setenv(device.TEXT_COMPUTE_ENV, "bf16")
    batch = encoder.embed(TEXTS)  # padded batch, as documents are embedded
    alone = np.stack([encoder.embed_query(t) for t in TEXTS])  # one by one, as queries are
    for fast in (batch, alone):
        assert fast.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
        cosines = (fast * reference).sum(1)
        assert cosines.min() >= 0.99995, cosines
        assert not np.allclose(fast, reference, atol=1e-6)  # the bf16 path did run
    np.testing.assert_allclose(batch, alone, atol=2e-3)
    network = encoder.bf16_network
    assert network.blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert network.embeddings.token is encoder.model.embeddings.token  # shared, not copied
    assert encoder.model.blocks[0].mlp.fc1.weight.dtype == torch.float32  # the network is unchanged
    monkeypatch.setenv(device.TEXT_COMPUTE_ENV, "fp32")
    np.testing.assert_array_equal(encoder.embed(TEXTS), reference)


@needs_weights
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_first_calls_run_eagerly_then_a_trace_gives_the_same_vectors(monkeypatch, precision):
    from aimemory.encoders.sentence import EAGER_CALLS

    monkeypatch.setenv(device.TEXT_COMPUTE_ENV, precision)
    encoder = SentenceEncoder.from_pretrained()
    texts = ["a cat on the sofa", "the invoice from march, paid late", "x"]
    first = [encoder.embed(texts) for _ in range(EAGER_CALLS)]  # padded batches
    assert (precision, True) not in encoder._cpu_forwards  # no trace made yet
    traced = encoder.embed(texts)
    assert isinstance(encoder._cpu_forwards[(precision, True)], torch.jit.ScriptModule)
    assert (precision, False) not in encoder._cpu_forwards  # unpadded calls count on their own
    for eager in first:
        np.testing.assert_allclose(traced, eager, atol=2e-5)
