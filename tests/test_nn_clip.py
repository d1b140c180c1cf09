"""Native CLIP vs transformers.CLIPModel (random weights, no hub): HF folders, OpenAI state dicts and
TorchScript archives, open_clip files; fp32 cosine >= 0.9999 per sample, bf16 >= 0.99."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")

from aimemory.encoders.clip import ClipEncoder  # noqa: E402
from aimemory.errors import CheckpointError, ModelNotAvailableError  # noqa: E402
from aimemory.nn.clip import ClipDims  # noqa: E402

FP32_COS = 0.9999
BF16_COS = 0.99


def tiny_config(eos_token_id: int = 2, act: str = "quick_gelu", head64: bool = False):
    """A tiny CLIP; ``head64`` keeps OpenAI's 64-wide heads, which checkpoints without a config
    (OpenAI ``.pt``) imply since head counts do not show in shapes."""
    t_w, v_w, heads = (128, 128, 2) if head64 else (32, 48, 4)
    text = dict(vocab_size=100, hidden_size=t_w, intermediate_size=2 * t_w, num_hidden_layers=2,
                num_attention_heads=heads, max_position_embeddings=20, hidden_act=act, eos_token_id=eos_token_id,
                bos_token_id=98, pad_token_id=0)
    vision = dict(hidden_size=v_w, intermediate_size=2 * v_w, num_hidden_layers=2, num_attention_heads=heads,
                  image_size=32, patch_size=8, hidden_act=act)
    return transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)


def make_hf(tmp_path, config, name="hf", seed=0):
    torch.manual_seed(seed)
    model = transformers.CLIPModel(config).eval()
    with torch.no_grad():  # random init leaves some tensors at 0/1; perturb so every weight matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    folder = tmp_path / name
    model.save_pretrained(folder)
    return model, folder


def random_ids(n_tokens: list[int], vocab: int, ctx: int, pad: int, eot: int | None = None, seed=1):
    """Rows of [bos, words..., eot, pad...] padded to ``ctx`` (eot is the largest id, as in CLIP)."""
    g = torch.Generator().manual_seed(seed)
    eot = vocab - 1 if eot is None else eot
    rows = []
    for n in n_tokens:
        words = torch.randint(1, vocab - 2, (n,), generator=g).tolist()
        row = [vocab - 2] + words + [eot]
        rows.append(row + [pad] * (ctx - len(row)))
    return torch.tensor(rows)


def features(out):
    return out if torch.is_tensor(out) else out.pooler_output


def hf_text(model, ids, pad):
    mask = (torch.arange(ids.shape[1])[None] <= (ids == ids.max(dim=1, keepdim=True).values).int().argmax(1)[:, None])
    with torch.no_grad():
        return features(model.get_text_features(input_ids=ids, attention_mask=mask.long())).numpy()


def hf_image(model, pixels):
    with torch.no_grad():
        return features(model.get_image_features(pixel_values=pixels)).numpy()


def cosines(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def images(size: int, n: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size + 7 * i, size + 3 * i, 3), dtype=np.uint8)) for i in range(n)]


def check_parity(enc, model, ids, pixels_images, cos=FP32_COS):
    native_t = enc.embed_token_ids(ids)
    ref_t = hf_text(model, ids, 0)
    assert cosines(native_t, ref_t).min() >= cos
    assert np.allclose(np.linalg.norm(native_t, axis=1), 1, atol=1e-5) and native_t.dtype == np.float32
    pixels = enc.preprocess(pixels_images)
    native_i = enc.embed_images(pixels_images)
    assert cosines(native_i, hf_image(model, pixels)).min() >= cos


# -- HF folders --------------------------------------------------------------------------------

@pytest.mark.parametrize("pad", [0, 99])
def test_hf_tiny_parity_mixed_lengths(tmp_path, pad):
    model, folder = make_hf(tmp_path, tiny_config())
    enc = ClipEncoder.from_pretrained(folder, cache_dir=tmp_path / "cache")
    ids = random_ids([1, 17, 3, 9, 0, 5], vocab=100, ctx=20, pad=pad)
    enc.batch_size = 4  # several length buckets
    check_parity(enc, model, ids, images(40))
    assert enc.dim == 24 and enc.modalities == {"image", "text"}
    assert enc.logit_scale == pytest.approx(float(model.logit_scale.detach().exp()), rel=1e-6)


def test_hf_eos_token_convention_and_gelu(tmp_path):
    """Newer configs pool at the first ``eos_token_id`` even when a larger id appears."""
    model, folder = make_hf(tmp_path, tiny_config(eos_token_id=50, act="gelu"))
    enc = ClipEncoder.from_pretrained(folder, weights="safetensors")
    assert enc.model.dims.pool == "eos" and enc.model.dims.act == "gelu"
    with pytest.raises(ModelNotAvailableError, match="vocabulary"):  # the folder ships no tokenizer files
        enc.embed_texts(["a cat"])
    ids = random_ids([4, 10, 2], vocab=100, ctx=20, pad=50, eot=50)
    ids[0, 2] = 99  # a larger id before EOT would fool argmax pooling
    native = enc.embed_token_ids(ids)
    with torch.no_grad():
        ref = features(model.get_text_features(input_ids=ids)).numpy()
    assert cosines(native, ref).min() >= FP32_COS


def test_arrow_cache_loads_same_vectors(tmp_path):
    model, folder = make_hf(tmp_path, tiny_config())
    first = ClipEncoder.from_pretrained(folder, cache_dir=tmp_path / "c")
    assert len(list((tmp_path / "c").glob("*.arrow"))) == 1
    again = ClipEncoder.from_pretrained(folder, cache_dir=tmp_path / "c")  # now from the Arrow map
    plain = ClipEncoder.from_pretrained(folder, weights="safetensors")
    ids = random_ids([3, 8], vocab=100, ctx=20, pad=0)
    for enc in (again, plain):
        assert np.array_equal(first.embed_token_ids(ids), enc.embed_token_ids(ids))
        assert np.array_equal(first.embed_images(images(32)), enc.embed_images(images(32)))
    assert first.model_id == again.model_id


def test_bf16_path(tmp_path):
    model, folder = make_hf(tmp_path, tiny_config())
    enc = ClipEncoder.from_pretrained(folder, precision="bf16", cache_dir=tmp_path / "c")
    assert enc.model_id.endswith("@bf16")
    ids = random_ids([2, 12, 6], vocab=100, ctx=20, pad=0)
    check_parity(enc, model, ids, images(36), cos=BF16_COS)


@pytest.mark.heavy
@pytest.mark.parametrize("layers", [2, pytest.param(12, marks=pytest.mark.slow)])
def test_vit_b32_real_config(tmp_path, layers):
    """The real ViT-B/32 architecture (random weights): dims read from shapes, parity on a few inputs.
    The default run keeps every real width, head count, patch and vocabulary but 2 layers per tower."""
    config = transformers.CLIPConfig()  # the defaults are openai/clip-vit-base-patch32
    config.text_config.num_hidden_layers = config.vision_config.num_hidden_layers = layers
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    folder = tmp_path / "clip-vit-base-patch32"
    model.save_pretrained(folder)
    enc = ClipEncoder.from_pretrained(folder, cache_dir=tmp_path / "c")
    d = enc.model.dims
    assert (d.embed_dim, d.image_size, d.patch_size, d.vision_width, d.vision_layers, d.vision_heads) == \
        (512, 224, 32, 768, layers, 12)
    assert (d.context_length, d.vocab_size, d.text_width, d.text_layers, d.text_heads) == (77, 49408, 512, layers, 8)
    ids = random_ids([3, 40, 10], vocab=49408, ctx=77, pad=0)
    check_parity(enc, model, ids, images(250, n=2))


def test_dims_from_shapes_for_other_sizes():
    """B/16, L/14 and L/14-336 differ only in shapes; dims follow them."""
    for patch, image, width, layers in [(16, 224, 768, 12), (14, 224, 1024, 24), (14, 336, 1024, 24)]:
        grid = image // patch
        state = {
            "visual.patch_embed.weight": torch.empty(width, 3, patch, patch),
            "visual.pos_embed": torch.empty(grid * grid + 1, width),
            "visual.transformer.blocks.0.mlp.fc1.weight": torch.empty(4 * width, width),
            f"visual.transformer.blocks.{layers - 1}.ln_1.weight": torch.empty(width),
            "text.token_embed.weight": torch.empty(49408, 768),
            "text.pos_embed": torch.empty(77, 768),
            "text.transformer.blocks.11.ln_1.weight": torch.empty(768),
            "text.transformer.blocks.0.mlp.fc1.weight": torch.empty(3072, 768),
            "text.proj.weight": torch.empty(768, 768),
        }
        d = ClipDims.from_state_dict(state)
        assert (d.patch_size, d.image_size, d.vision_layers, d.vision_heads, d.text_heads) == \
            (patch, image, layers, width // 64, 12)


# -- OpenAI and open_clip formats -------------------------------------------------------------------

def hf_to_openai(sd: dict) -> dict:
    """transformers CLIPModel state dict -> OpenAI CLIP names (q/k/v stacked, projections transposed)."""
    out = {}
    block = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    for key, t in sd.items():
        m = re.match(r"(vision|text)_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", key)
        if m:
            tower, i, mod, kind = m.groups()
            pre = ("visual." if tower == "vision" else "") + f"transformer.resblocks.{i}."
            if mod.startswith("self_attn.") and mod[-6:] in ("q_proj", "k_proj", "v_proj"):
                if mod.endswith("q_proj"):
                    parts = [sd[key.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
                    out[pre + f"attn.in_proj_{kind}"] = torch.cat(parts)
                continue
            out[pre + block[mod] + "." + kind] = t
            continue
        simple = {
            "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
            "vision_model.embeddings.class_embedding": "visual.class_embedding",
            "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
            "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
            "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
            "vision_model.post_layernorm.weight": "visual.ln_post.weight",
            "vision_model.post_layernorm.bias": "visual.ln_post.bias",
            "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
            "text_model.embeddings.position_embedding.weight": "positional_embedding",
            "text_model.final_layer_norm.weight": "ln_final.weight",
            "text_model.final_layer_norm.bias": "ln_final.bias",
            "logit_scale": "logit_scale",
        }
        if key in simple:
            out[simple[key]] = t
        elif key == "visual_projection.weight":
            out["visual.proj"] = t.t().contiguous()
        elif key == "text_projection.weight":
            out["text_projection"] = t.t().contiguous()
        elif not key.endswith("position_ids"):
            raise AssertionError(f"unmapped HF key {key}")
    return out


def test_openai_state_dict_pt(tmp_path):
    model, _ = make_hf(tmp_path, tiny_config(head64=True))
    sd = hf_to_openai(model.state_dict())
    sd["input_resolution"] = torch.tensor(32)  # metadata tensors found in the wild are ignored
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, tmp_path / "tiny.pt")
    enc = ClipEncoder.from_pretrained(tmp_path / "tiny.pt", cache_dir=tmp_path / "c")
    assert enc.model_id == "tiny"
    # fp16 storage costs precision; compare against HF running the same fp16-rounded weights
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    check_parity(enc, model, random_ids([5, 1, 14], vocab=100, ctx=20, pad=0), images(33))


def _module_tree(sd: dict) -> torch.nn.Module:
    class Node(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Node()
    for key, t in sd.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, Node())
            node = getattr(node, part)
        node.register_parameter(leaf, torch.nn.Parameter(t, requires_grad=False))
    return root


def test_openai_torchscript_archive_read_without_running_code(tmp_path):
    model, _ = make_hf(tmp_path, tiny_config(head64=True))
    sd = {k: v.half() for k, v in hf_to_openai(model.state_dict()).items()}
    torch.jit.save(torch.jit.script(_module_tree(sd)), tmp_path / "jit.pt")
    from aimemory.weights.clip_formats import read_torchscript

    got = read_torchscript(tmp_path / "jit.pt")
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    enc = ClipEncoder.from_pretrained(tmp_path / "jit.pt", weights="safetensors")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    check_parity(enc, model, random_ids([7, 2], vocab=100, ctx=20, pad=0), images(32))


def test_open_clip_folder(tmp_path):
    from safetensors.torch import save_file

    model, _ = make_hf(tmp_path, tiny_config())
    folder = tmp_path / "oc"
    folder.mkdir()
    save_file(hf_to_openai(model.state_dict()), folder / "open_clip_model.safetensors")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": {
        "quick_gelu": True, "vision_cfg": {"width": 48, "head_width": 12}, "text_cfg": {"heads": 4}}}))
    enc = ClipEncoder.from_pretrained(folder, cache_dir=tmp_path / "c")
    check_parity(enc, model, random_ids([3, 11], vocab=100, ctx=20, pad=0), images(32))


def test_wrong_architecture_names_keys(tmp_path):
    model, folder = make_hf(tmp_path, tiny_config())
    from safetensors.torch import load_file, save_file

    sd = load_file(folder / "model.safetensors")
    sd["text_model.final_layer_norm.weight"] = torch.ones(31)
    del sd["text_model.final_layer_norm.bias"]
    save_file(sd, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"text\.ln_final\.bias.*text\.ln_final\.weight"):
        ClipEncoder.from_pretrained(folder, weights="safetensors")


# -- end to end through the BPE tokenizer ------------------------------------------------------------

def _write_small_vocab(folder, words=("a", "photo", "of", "the", "cat", "dog", "on", "beach")):
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    base = [chr(c) for c in cs]
    vocab, merges = base + [c + "</w>" for c in base], []
    for w in words:
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        while len(parts) > 1:
            if parts[0] + parts[1] not in vocab:
                vocab.append(parts[0] + parts[1])
                merges.append(f"{parts[0]} {parts[1]}")
            parts = [parts[0] + parts[1]] + parts[2:]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return len(vocab)


def test_embed_texts_through_tokenizer_matches_hf(tmp_path):
    pytest.importorskip("aimemory.preprocess.text")
    config = tiny_config()
    config.text_config.vocab_size = 600
    config.text_config.max_position_embeddings = 77
    model, folder = make_hf(tmp_path, config)
    assert _write_small_vocab(folder) <= 600
    tok = transformers.CLIPTokenizer.from_pretrained(folder)
    texts = ["a photo of the cat", "dog", "a dog on the beach " * 20, "zebra! ünïcode 🐱"]  # one over 77 tokens
    enc = ClipEncoder.from_pretrained(folder, cache_dir=tmp_path / "c")
    enc.batch_size = 2
    native = enc.embed_texts(texts)
    with torch.no_grad():
        ref = features(model.get_text_features(**tok(texts, padding=True, truncation=True, max_length=77,
                                                      return_tensors="pt"))).numpy()
    assert native.shape == (4, 24) and cosines(native, ref).min() >= FP32_COS
    assert enc.embed_texts([]).shape == (0, 24)


# -- the shared core ---------------------------------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_core_pooled_forward_equals_full_forward(causal, padded):
    from aimemory.nn.core import Transformer, key_padding_mask

    torch.manual_seed(0)
    net = Transformer(width=32, layers=3, heads=4, mlp_hidden=64, act="gelu").eval()
    x = torch.randn(3, 9, 32)
    lengths = torch.tensor([9, 4, 1])
    mask = key_padding_mask(lengths, 9, causal=causal) if padded else None
    rows = lengths - 1 if padded else torch.tensor([8, 3, 0])
    with torch.no_grad():
        full = net(x, mask, causal=causal and not padded)[torch.arange(3), rows]
        pooled = net.forward_pooled(x, rows, mask, causal=causal and not padded)
    assert torch.allclose(full, pooled, atol=1e-5)
    if padded:  # padding never leaks into real tokens
        x2 = x.clone()
        x2[1, 4:] = 100.0
        with torch.no_grad():
            assert torch.allclose(net.forward_pooled(x2, rows, mask), net.forward_pooled(x, rows, mask), atol=1e-5)
