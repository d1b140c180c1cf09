"""CLIP checkpoints -> our native parameter names (:class:`aimemory.nn.clip.CLIP`), with one renaming
table per format for the engine in :mod:`aimemory.weights.rename`.

Formats: HF ``CLIPModel`` folders (``model.safetensors`` first, ``pytorch_model.bin`` read weights-only),
OpenAI ``.pt`` files (usually TorchScript archives: read here by a whitelisting unpickler that never
runs archive code) and open_clip checkpoints (``open_clip_model.safetensors``; OpenAI's names).
HF's separate q/k/v projections are fused into one ``qkv`` at rename time, with shape checks.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import torch

from ..errors import CheckpointError
from .loader import first_present, load_state_dict
from .rename import rename

HF, OPENAI, OPEN_CLIP = "hf", "openai", "open_clip"
#: files looked for in a folder, in order of preference (safe formats first)
FOLDER_FILES = (
    ("model.safetensors", HF),
    ("open_clip_model.safetensors", OPEN_CLIP),
    ("model.safetensors.index.json", HF),
    ("pytorch_model.bin", HF),
    ("open_clip_pytorch_model.bin", OPEN_CLIP),
)
#: keys that carry no weights (buffers, metadata) and are dropped before the strict check
IGNORED = re.compile(r"(.*position_ids|input_resolution|context_length|vocab_size|attn_mask|.*\.attn_mask)$")

_BLOCK_HF = [  # inside one encoder layer
    (r"self_attn\.([qkv])_proj\.(weight|bias)", r"attn.\1.\2"),  # fused below
    (r"self_attn\.out_proj\.(weight|bias)", r"attn.out.\1"),
    (r"layer_norm1\.(weight|bias)", r"ln_1.\1"),
    (r"layer_norm2\.(weight|bias)", r"ln_2.\1"),
    (r"mlp\.(fc1|fc2)\.(weight|bias)", r"mlp.\1.\2"),
]
_BLOCK_OPENAI = [
    (r"attn\.in_proj_weight", "attn.qkv.weight"),
    (r"attn\.in_proj_bias", "attn.qkv.bias"),
    (r"attn\.out_proj\.(weight|bias)", r"attn.out.\1"),
    (r"ln_(1|2)\.(weight|bias)", r"ln_\1.\2"),
    (r"mlp\.c_fc\.(weight|bias)", r"mlp.fc1.\1"),
    (r"mlp\.c_proj\.(weight|bias)", r"mlp.fc2.\1"),
]


def _with_blocks(top: list[tuple[str, str]], towers: list[tuple[str, str]], block: list[tuple[str, str]]):
    """Expand per-block rules under each tower's layer prefix."""
    rules = list(top)
    for src, dst in towers:
        for pat, rep in block:
            rules.append((src + r"\.(\d+)\." + pat, dst + r".transformer.blocks.\1." + _shift(rep)))
    return [(re.compile(p + "$"), r) for p, r in rules]


def _shift(rep: str) -> str:
    """Group numbers move up by one once the layer index is group 1."""
    return re.sub(r"\\(\d)", lambda m: "\\" + str(int(m.group(1)) + 1), rep)


#: format -> [(full-key regex, native name)]
TABLES = {
    HF: _with_blocks(
        [
            (r"vision_model\.embeddings\.patch_embedding\.weight", "visual.patch_embed.weight"),
            (r"vision_model\.embeddings\.class_embedding", "visual.class_embed"),
            (r"vision_model\.embeddings\.position_embedding\.weight", "visual.pos_embed"),
            (r"vision_model\.pre_layrnorm\.(weight|bias)", r"visual.ln_pre.\1"),  # sic, HF's spelling
            (r"vision_model\.post_layernorm\.(weight|bias)", r"visual.ln_post.\1"),
            (r"visual_projection\.weight", "visual.proj.weight"),
            (r"text_model\.embeddings\.token_embedding\.weight", "text.token_embed.weight"),
            (r"text_model\.embeddings\.position_embedding\.weight", "text.pos_embed"),
            (r"text_model\.final_layer_norm\.(weight|bias)", r"text.ln_final.\1"),
            (r"text_projection\.weight", "text.proj.weight"),
            (r"logit_scale", "logit_scale"),
        ],
        [(r"vision_model\.encoder\.layers", "visual"), (r"text_model\.encoder\.layers", "text")],
        _BLOCK_HF,
    ),
    OPENAI: _with_blocks(
        [
            (r"visual\.conv1\.weight", "visual.patch_embed.weight"),
            (r"visual\.class_embedding", "visual.class_embed"),
            (r"visual\.positional_embedding", "visual.pos_embed"),
            (r"visual\.ln_(pre|post)\.(weight|bias)", r"visual.ln_\1.\2"),
            (r"visual\.proj", "visual.proj.weight"),
            (r"token_embedding\.weight", "text.token_embed.weight"),
            (r"positional_embedding", "text.pos_embed"),
            (r"ln_final\.(weight|bias)", r"text.ln_final.\1"),
            (r"text_projection", "text.proj.weight"),
            (r"logit_scale", "logit_scale"),
        ],
        [(r"visual\.transformer\.resblocks", "visual"), (r"transformer\.resblocks", "text")],
        _BLOCK_OPENAI,
    ),
}
TABLES[OPEN_CLIP] = TABLES[OPENAI]  # open_clip's ViT CLIPs keep OpenAI's module names
#: native names stored as (in, out) matrices used as ``x @ W`` -> transposed into Linear weights
TRANSPOSED = {OPENAI: {"visual.proj.weight", "text.proj.weight"}}
TRANSPOSED[OPEN_CLIP] = TRANSPOSED[OPENAI]


def detect_format(state: Mapping[str, torch.Tensor]) -> str:
    """Guess a checkpoint's naming from its keys."""
    if any(k.startswith(("vision_model.", "text_model.")) for k in state):
        return HF
    if "visual.conv1.weight" in state:
        return OPENAI
    raise CheckpointError(
        "unrecognised CLIP checkpoint: expected HF names (vision_model.*) or OpenAI/open_clip names "
        f"(visual.conv1.weight); first keys: {sorted(state)[:8]}"
    )


def to_native(state: Mapping[str, torch.Tensor], fmt: str, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename a checkpoint's keys to native names, fuse q/k/v, transpose projections; every key must
    be known. Floating tensors come out float32."""
    # DDP-trained open_clip checkpoints prefix every key with "module."
    unprefixed = {key.removeprefix("module."): t for key, t in state.items()}
    named = rename(unprefixed, TABLES[fmt], ignored=IGNORED, model=f"a {fmt} CLIP", source=source)
    transposed = TRANSPOSED.get(fmt, set())
    out: dict[str, torch.Tensor] = {}
    for name, t in named.items():
        t = t.float() if t.is_floating_point() else t
        out[name] = t.t().contiguous() if name in transposed else t
    return fuse_qkv(out, source)


def fuse_qkv(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """attn.q/k/v.{weight,bias} -> attn.qkv.{weight,bias} (rows q, then k, then v, as SDPA expects)."""
    for key in [k for k in state if ".attn.q." in k]:
        base, kind = key.rsplit(".attn.q.", 1)
        parts = [state.pop(f"{base}.attn.{p}.{kind}", None) for p in "qkv"]
        if any(p is None for p in parts):
            raise CheckpointError(f"{source}: {base} has a q projection but not all of k, v ({kind})")
        if len({tuple(p.shape) for p in parts}) != 1:
            raise CheckpointError(f"{source}: {base} q/k/v {kind} shapes differ: {[tuple(p.shape) for p in parts]}")
        state[f"{base}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
    stray = [k for k in state if re.search(r"\.attn\.[kv]\.", k)]
    if stray:
        raise CheckpointError(f"{source}: k/v projections without q: {stray[:10]}")
    return state


# -- reading files ---------------------------------------------------------------------------------

def find_clip_checkpoint(path: str | Path) -> tuple[Path, str | None]:
    """A file or folder -> (weights file, format hint or None to detect from keys)."""
    path = Path(path)
    if path.is_dir():
        found = first_present(path, FOLDER_FILES)
        if found is not None:
            return found
        raise CheckpointError(
            f"no CLIP weights in {path}: looked for {', '.join(n for n, _ in FOLDER_FILES)}"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path, OPENAI if path.suffix == ".pt" else None


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """A checkpoint file or folder -> (raw state dict, format). Never executes code from the file."""
    file, fmt = find_clip_checkpoint(path)
    if file.name.endswith(".index.json"):
        state = _read_sharded(file)
    elif zipfile.is_zipfile(file) and _is_torchscript(file):
        state = read_torchscript(file)
    else:
        state = load_state_dict(file)
    return state, fmt or detect_format(state)


def _read_sharded(index: Path) -> dict[str, torch.Tensor]:
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"unreadable shard index {index}: {exc}") from exc
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(load_state_dict(index.parent / shard))
    return state


def _is_torchscript(file: Path) -> bool:
    with zipfile.ZipFile(file) as zf:
        return any(n.endswith("/constants.pkl") or n.split("/")[1:2] == ["code"] for n in zf.namelist())


# -- TorchScript archives without TorchScript ------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Stands in for any ``__torch__.*`` class: records its attribute state, runs nothing."""

    def __setstate__(self, state):
        self.state = state


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    return storage.as_strided(tuple(size), tuple(stride), offset)


class _SafeUnpickler(pickle.Unpickler):
    """Only tensor rebuilding, storages, OrderedDict and inert script-object stubs are allowed."""

    def __init__(self, fh, zf: zipfile.ZipFile, prefix: str):
        super().__init__(fh)
        self.zf, self.prefix = zf, prefix

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__."):
            return type(name, (_ScriptObject,), {})
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        raise CheckpointError(f"refusing {module}.{name} in a TorchScript archive: not a plain weight")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"unexpected persistent id {pid!r} in TorchScript archive")
        raw = bytearray(self.zf.read(f"{self.prefix}/data/{key}"))
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return flat[:numel]


def read_torchscript(file: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``torch.jit.save`` archive (e.g. OpenAI's ``ViT-B-32.pt``) by module path,
    without loading TorchScript: the pickle is read with a whitelist and no code is compiled."""
    try:
        with zipfile.ZipFile(file) as zf:
            pkl = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
            if not pkl:
                raise CheckpointError(f"{file}: TorchScript archive without data.pkl")
            prefix = pkl[0].split("/")[0]
            with zf.open(pkl[0]) as fh:
                root = _SafeUnpickler(fh, zf, prefix).load()
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"cannot read TorchScript archive {file}: {exc}") from exc
    out: dict[str, torch.Tensor] = {}
    _collect(root, "", out)
    if not out:
        raise CheckpointError(f"{file}: no tensors found in TorchScript archive")
    return out


def _collect(obj, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Walk script-object state dicts: tensors become dotted names, sub-objects recurse."""
    state = getattr(obj, "state", None)
    if not isinstance(state, Mapping):
        return
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{name}.", out)
