"""Native Whisper vs transformers' WhisperForConditionalGeneration (random weights, saved as HF
folders), the OpenAI .pt and CTranslate2 model.bin loaders, the tokenizer and the decoding rules."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from aimemory.errors import CheckpointError
from aimemory.inputs import Audio
from aimemory.nn.whisper import WhisperDims, WhisperModel, sinusoids
from aimemory.preprocess.audio import log_mel_spectrogram
from aimemory.preprocess.whisper_tokens import WhisperTokenizer
from aimemory.speech import N_FRAMES, Segment, SpeechRecognizer, log_mel_windows, pad_or_trim
from aimemory.weights.loader import assign_weights
from aimemory.weights.whisper_formats import read_ctranslate2, read_whisper

transformers = pytest.importorskip("transformers")

SOT, EN, TRANSCRIBE, EOT = 50258, 50259, 50359, 50257
TINY = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=256, decoder_ffn_dim=256)
BASE = dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
            encoder_ffn_dim=2048, decoder_ffn_dim=2048)


def _hf(cfg: dict, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.WhisperConfig(vocab_size=51865, num_mel_bins=80, max_source_positions=1500,
                                        max_target_positions=448, **cfg)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # random biases / LayerNorms too, so a swapped name cannot hide
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def _native(path) -> WhisperModel:
    state, _, heads = read_whisper(path)
    model = WhisperModel(WhisperDims.from_state_dict(state, **heads)).eval()
    assign_weights(model, state)
    return model


def _hf_greedy(ref, mel, prompt, n):
    ids = torch.tensor([prompt])
    with torch.no_grad():
        audio = ref.model.encoder(mel).last_hidden_state  # encoded once, as generate() does
        for _ in range(n):
            nxt = ref(encoder_outputs=(audio,), decoder_input_ids=ids).logits[:, -1].argmax(-1)
            ids = torch.cat([ids, nxt[:, None]], 1)
            if int(nxt) == EOT:
                break
    return ids[0, len(prompt):].tolist()


def _cos(a, b) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    ref = _hf(TINY)
    folder = tmp_path_factory.mktemp("tiny")
    ref.save_pretrained(folder)
    return ref, folder


def test_log_mel_matches_feature_extractor():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 7) / 16000
    samples = (0.3 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    fe = transformers.WhisperFeatureExtractor(feature_size=80)
    ref = fe(samples, sampling_rate=16000, return_tensors="np").input_features[0]  # (80, 3000)
    ours = log_mel_spectrogram(pad_or_trim(samples)).numpy()
    windows = log_mel_windows(samples)[:, :N_FRAMES].numpy()
    assert ours.shape == ref.shape == windows.shape == (80, 3000)
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    np.testing.assert_allclose(windows, ref, atol=2e-4)


@pytest.mark.heavy
def test_tiny_parity_encoder_logits_greedy(tiny):
    ref, folder = tiny
    ours = _native(folder)
    assert ours.dims.audio_heads == 4 and ours.dims.text_layers == 2
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ours.encoder(mel), ref.model.encoder(mel).last_hidden_state
        assert a.shape == b.shape == (1, 1500, 64)
        assert _cos(a, b) >= 0.9999
        toks = torch.tensor([[SOT, EN, TRANSCRIBE, 400, 1000, 220]])
        torch.testing.assert_close(ours(mel, toks), ref(input_features=mel, decoder_input_ids=toks).logits,
                                   atol=1e-4, rtol=1e-4)
    want = _hf_greedy(ref, mel, [SOT, EN, TRANSCRIBE], 10)
    assert ours.greedy(mel, torch.tensor([[SOT, EN, TRANSCRIBE]]), 10, EOT)[0].tolist()[: len(want)] == want


@pytest.mark.slow
def test_base_config_parity(tmp_path):
    ref = _hf(BASE, seed=3)
    ref.save_pretrained(tmp_path)
    ours = _native(tmp_path)
    assert ours.dims == WhisperDims(80, 1500, 512, 6, 8, 2048, 51865, 448, 512, 6, 8, 2048)
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert _cos(ours.encoder(mel), ref.model.encoder(mel).last_hidden_state) >= 0.9999
    want = _hf_greedy(ref, mel, [SOT, EN, TRANSCRIBE], 12)
    assert ours.greedy(mel, torch.tensor([[SOT, EN, TRANSCRIBE]]), 12, EOT)[0].tolist()[: len(want)] == want


def test_bin_weights_only_and_safetensors_preferred(tiny, tmp_path):
    ref, folder = tiny
    torch.save(_hf_tensors(ref), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    a, b = _native(tmp_path), _native(folder)
    assert read_whisper(tmp_path)[1] == "hf"
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    _native(tmp_path)  # safetensors is read first; the broken .bin is never opened
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def _hf_tensors(ref) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in ref.state_dict().items()}


def _to_openai(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    names = {"q_proj": "query", "k_proj": "key", "v_proj": "value", "out_proj": "out"}
    for k, v in sd.items():
        if k == "proj_out.weight":
            continue
        k = k.removeprefix("model.")
        k = k.replace("embed_positions.weight", "positional_embedding").replace("embed_tokens", "token_embedding")
        k = k.replace("encoder.layer_norm", "encoder.ln_post").replace("decoder.layer_norm", "decoder.ln")
        k = k.replace(".layers.", ".blocks.").replace("self_attn_layer_norm", "attn_ln")
        k = k.replace("encoder_attn_layer_norm", "cross_attn_ln").replace("final_layer_norm", "mlp_ln")
        k = k.replace("self_attn.", "attn.").replace("encoder_attn.", "cross_attn.")
        k = k.replace(".fc1.", ".mlp.0.").replace(".fc2.", ".mlp.2.")
        for hf, oa in names.items():
            k = k.replace(f".{hf}.", f".{oa}.")
        out[k] = v
    return out


def test_openai_pt_loader(tiny, tmp_path):
    ref, folder = tiny
    sd = _to_openai(_hf_tensors(ref))
    assert "encoder.blocks.0.attn.key.weight" in sd and "encoder.blocks.0.attn.key.bias" not in sd
    dims = {"n_mels": 80, "n_audio_head": 4, "n_text_head": 4}
    torch.save({"dims": dims, "model_state_dict": sd}, tmp_path / "tiny.pt")
    a, b = _native(tmp_path / "tiny.pt"), _native(folder)
    for k, v in b.state_dict().items():
        assert torch.equal(a.state_dict()[k], v), k


def _ct2_bytes(sd: dict[str, torch.Tensor], heads: int, layers: int) -> bytes:
    """A CTranslate2 v6 WhisperSpec model.bin written from HF tensors (fp16), independent of our reader."""
    def s(x: str) -> bytes:
        return struct.pack("<H", len(x) + 1) + x.encode() + b"\0"

    z = torch.zeros_like
    var: list[tuple[str, np.ndarray]] = []
    ln = lambda dst, src: var.extend([(f"{dst}/gamma", sd[f"{src}.weight"]), (f"{dst}/beta", sd[f"{src}.bias"])])  # noqa
    lin = lambda dst, w, b: var.extend([(f"{dst}/weight", w), (f"{dst}/bias", b)])  # noqa
    e, d = "model.encoder", "model.decoder"
    for c in ("conv1", "conv2"):
        lin(f"encoder/{c}", sd[f"{e}.{c}.weight"], sd[f"{e}.{c}.bias"])
    var.append(("encoder/position_encodings/encodings", sd[f"{e}.embed_positions.weight"]))
    ln("encoder/layer_norm", f"{e}.layer_norm")
    for side, src in (("encoder", e), ("decoder", d)):
        for i in range(layers):
            p, q = f"{side}/layer_{i}", f"{src}.layers.{i}"
            a = f"{q}.self_attn"
            ln(f"{p}/self_attention/layer_norm", f"{q}.self_attn_layer_norm")
            lin(f"{p}/self_attention/linear_0",
                torch.cat([sd[f"{a}.{x}_proj.weight"] for x in "qkv"]),
                torch.cat([sd[f"{a}.q_proj.bias"], z(sd[f"{a}.q_proj.bias"]), sd[f"{a}.v_proj.bias"]]))
            lin(f"{p}/self_attention/linear_1", sd[f"{a}.out_proj.weight"], sd[f"{a}.out_proj.bias"])
            if side == "decoder":
                x = f"{q}.encoder_attn"
                ln(f"{p}/attention/layer_norm", f"{q}.encoder_attn_layer_norm")
                lin(f"{p}/attention/linear_0", sd[f"{x}.q_proj.weight"], sd[f"{x}.q_proj.bias"])
                lin(f"{p}/attention/linear_1", torch.cat([sd[f"{x}.k_proj.weight"], sd[f"{x}.v_proj.weight"]]),
                    torch.cat([z(sd[f"{x}.v_proj.bias"]), sd[f"{x}.v_proj.bias"]]))
                lin(f"{p}/attention/linear_2", sd[f"{x}.out_proj.weight"], sd[f"{x}.out_proj.bias"])
            ln(f"{p}/ffn/layer_norm", f"{q}.final_layer_norm")
            lin(f"{p}/ffn/linear_0", sd[f"{q}.fc1.weight"], sd[f"{q}.fc1.bias"])
            lin(f"{p}/ffn/linear_1", sd[f"{q}.fc2.weight"], sd[f"{q}.fc2.bias"])
    var.append(("decoder/embeddings/weight", sd[f"{d}.embed_tokens.weight"]))
    var.append(("decoder/position_encodings/encodings", sd[f"{d}.embed_positions.weight"]))
    ln("decoder/layer_norm", f"{d}.layer_norm")
    out = [struct.pack("<I", 6), s("WhisperSpec"), struct.pack("<I", 3)]
    scalars = [("encoder/num_heads", 2, np.int16(heads)), ("decoder/num_heads", 2, np.int16(heads)),
               ("decoder/activation", 1, np.int8(3))]
    out.append(struct.pack("<I", len(var) + len(scalars)))
    for name, dtype_id, value in scalars:
        out += [s(name), struct.pack("<B", 0), struct.pack("<B", dtype_id), struct.pack("<I", value.nbytes),
                value.tobytes()]
    for name, t in var:
        arr = t.detach().numpy().astype(np.float16)
        out += [s(name), struct.pack("<B", arr.ndim), struct.pack(f"<{arr.ndim}I", *arr.shape),
                struct.pack("<B", 4), struct.pack("<I", arr.nbytes), arr.tobytes()]
    out += [struct.pack("<I", 1), s("decoder/projection/weight"), s("decoder/embeddings/weight")]
    return b"".join(out)


@pytest.mark.heavy
def test_ctranslate2_reader_split_parts_and_errors(tiny, tmp_path):
    ref, _ = tiny
    sd = {k: v.half().float() for k, v in _hf_tensors(ref).items()}  # what an fp16 CT2 file can hold
    blob = _ct2_bytes(sd, heads=4, layers=2)
    (tmp_path / "m_part1" / "data").mkdir(parents=True)
    (tmp_path / "m_part2" / "data").mkdir(parents=True)
    cut = len(blob) // 2
    (tmp_path / "m_part1" / "data" / "model.bin.part1").write_bytes(blob[:cut])
    (tmp_path / "m_part2" / "data" / "model.bin.part2").write_bytes(blob[cut:])
    with pytest.raises(CheckpointError, match="truncated"):  # half a file alone is refused
        read_ctranslate2(tmp_path / "m_part1" / "data" / "model.bin.part1")
    ours = _native(tmp_path / "m_part1" / "data")  # the folder finds its sibling part
    assert ours.dims.audio_heads == 4
    ref16 = ref.__class__(ref.config).eval()
    ref16.load_state_dict(sd)
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(4))
    toks = torch.tensor([[SOT, EN, TRANSCRIBE, 11]])
    with torch.no_grad():
        torch.testing.assert_close(ours(mel, toks), ref16(input_features=mel, decoder_input_ids=toks).logits,
                                   atol=1e-4, rtol=1e-4)


def test_ctranslate2_truncated_and_quantised_refused(tiny, tmp_path):
    ref, _ = tiny
    blob = _ct2_bytes(_hf_tensors(ref), heads=4, layers=2)
    (tmp_path / "model.bin").write_bytes(blob[: len(blob) - 1000])
    with pytest.raises(CheckpointError, match="truncated"):
        read_whisper(tmp_path)
    (tmp_path / "model.bin").write_bytes(struct.pack("<I", 99) + blob[4:])
    with pytest.raises(CheckpointError, match="version 99"):
        read_whisper(tmp_path)


def test_shape_mismatch_is_reported(tiny):
    _, folder = tiny
    state, _, heads = read_whisper(folder)
    state["decoder.blocks.0.mlp.fc1.weight"] = torch.zeros(3, 64)
    model = WhisperModel(WhisperDims.from_state_dict(_native(folder).state_dict(), **heads))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        assign_weights(model, state)


def test_sinusoids_match_checkpoint_positions(tiny):
    ref, _ = tiny
    torch.testing.assert_close(sinusoids(1500, 64), ref.model.encoder.embed_positions.weight.detach(),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.heavy
def test_kv_cache_equals_full_recompute(tiny):
    _, folder = tiny
    m = _native(folder)
    mel = torch.randn(1, 80, 3000)
    toks = torch.tensor([[SOT, EN, TRANSCRIBE, 5, 6, 7, 8]])
    with torch.no_grad():
        full = m(mel, toks)
        state = m.decoder.start(m.encoder(mel))
        steps = [m.decoder(toks[:, :3], state)] + [m.decoder(toks[:, i:i + 1], state) for i in range(3, 7)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


# -- tokenizer + decoding rules with a tiny byte-level vocabulary ----------------------------------
def _byte_tokenizer() -> WhisperTokenizer:
    from aimemory.preprocess.text import bytes_to_unicode

    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    merges = [("h", "i")]
    vocab["hi"] = 256
    return WhisperTokenizer(vocab, merges, {"<|endoftext|>": 50257, "<|en|>": 50259})


def test_tokenizer_layout_and_roundtrip(tmp_path):
    t = _byte_tokenizer()
    assert (t.sot, t.languages["en"], t.transcribe, t.no_speech, t.no_timestamps, t.timestamp_begin) == (
        50258, 50259, 50359, 50362, 50363, 50364)
    assert t.encode(" hi") == [t.vocab["Ġ"], 256]
    assert t.decode([t.timestamp_begin + 50, *t.encode(" hé"), t.eot], timestamps=True) == "<|1.00|> hé"
    assert t.prompt("en") == [50258, 50259, 50359]
    (tmp_path / "vocab.json").write_text(json.dumps(t.vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nh i\n")
    t2 = WhisperTokenizer.from_folder(tmp_path)
    assert t2.encode(" hi there") == t.encode(" hi there")


def test_segments_and_timestamp_rules(tiny):
    _, folder = tiny
    rec = SpeechRecognizer(_native(folder), _byte_tokenizer(), suppress=[], suppress_begin=[220, EOT])
    tb, a = 50364, rec.tok.encode(" hi")
    segs, adv = rec._segments([tb, *a, tb + 50, tb + 50, *a, tb + 100], 10.0, N_FRAMES)
    assert segs == [Segment(10.0, 11.0, "hi"), Segment(11.0, 12.0, "hi")] and adv == N_FRAMES
    segs, adv = rec._segments([tb, *a, tb + 50, tb + 60, *a], 0.0, N_FRAMES)  # cut mid-sentence
    assert segs == [Segment(0.0, 1.0, "hi")] and adv == 120
    scores = rec._apply_rules(torch.zeros(51865), [])
    assert torch.isinf(scores[:tb]).all() and not torch.isinf(scores[tb:tb + 51]).any()
    assert torch.isinf(scores[tb + 51:]).all()
    scores = rec._apply_rules(torch.zeros(51865), [tb + 5, *a])  # after text: only later stamps or EOT
    assert torch.isinf(scores[tb:tb + 6]).all() and not torch.isinf(scores[tb + 6]).any()


def test_transcribe_runs_end_to_end_with_random_weights(tiny):
    _, folder = tiny
    rec = SpeechRecognizer(_native(folder), _byte_tokenizer(), suppress=[], suppress_begin=[220, EOT])
    rec.temperatures, rec.max_new_tokens = (0.0, 0.5), 12  # random weights never stop on their own
    out = rec.transcribe(Audio(np.zeros(8000, np.float32), 8000), short_clip=True)
    assert out.duration == pytest.approx(1.0) and isinstance(out.text, str)
    assert all(0 <= s.start <= s.end <= 1.0 for s in out.segments)
    assert out.no_speech == (out.text == "")


def test_transcribe_reports_progress_per_window(tiny):
    """One call per 30 s window (silent windows too), in seconds of audio done / total."""
    _, folder = tiny
    rec = SpeechRecognizer(_native(folder), _byte_tokenizer(), suppress=[], suppress_begin=[220, EOT])
    rec.temperatures, rec.max_new_tokens = (0.0,), 4
    calls = []
    out = rec.transcribe(Audio(np.zeros(16000 * 70, np.float32), 16000), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(30.0, 70.0), (60.0, 70.0), (70.0, 70.0)] and out.no_speech
    rng = np.random.default_rng(0)
    loud = Audio((rng.standard_normal(16000 * 35) * 0.3).astype(np.float32), 16000)
    calls = []
    rec.transcribe(loud, progress=lambda d, t: calls.append((d, t)))
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == 35.0 and all(t == 35.0 for _, t in calls)


def test_from_pretrained_hf_folder_with_vocab_files(tiny, tmp_path, monkeypatch):
    _, folder = tiny
    for f in ("config.json", "model.safetensors"):
        (tmp_path / f).write_bytes((folder / f).read_bytes())
    t = _byte_tokenizer()
    (tmp_path / "vocab.json").write_text(json.dumps(t.vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nh i\n")
    specials = {"50257": {"content": "<|endoftext|>"}, "50259": {"content": "<|en|>"}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": specials}))
    (tmp_path / "generation_config.json").write_text(json.dumps({"suppress_tokens": [1, 2],
                                                                 "begin_suppress_tokens": [220, EOT]}))
    rec = SpeechRecognizer.from_pretrained(tmp_path)
    assert rec.model.dims.audio_heads == 4 and rec.tok.multilingual
    assert {1, 2, 50359}.issubset(set(rec._suppress.tolist()))
    import aimemory.speech as speech
    from aimemory.errors import ModelNotAvailableError

    monkeypatch.setattr(speech, "find_local_speech_model", lambda: None)
    with pytest.raises(ModelNotAvailableError):
        SpeechRecognizer.from_pretrained("auto")
