"""Renaming table for HF BERT checkpoints onto :class:`aimemory.nn.bert.BertModel`.

Accepted layouts: a bare ``BertModel`` (``embeddings.*``, ``encoder.layer.N.*``, ``pooler.*``), the
same under ``bert.`` (``BertFor*`` heads models), ``module.`` (DDP) or ``0.auto_model.`` (a whole sentence-transformers
model saved as one state dict). Separate query / key / value projections are fused into one ``qkv``
(rows q, k, v) with their shapes checked. Every other key is an error, except buffers that carry no
weights (``position_ids``) and BERT's pre-training heads (``cls.*``), which an encoder never uses.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Mapping

from ..errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch  # imported where tensors are built: the table itself serves the numpy BERT too

PREFIXES = ("0.auto_model.", "bert.", "module.")
IGNORED = re.compile(r"(embeddings\.position_ids|cls\.(predictions|seq_relationship)\..*)")
QKV = {"query": "q", "key": "k", "value": "v"}

_LAYER = r"encoder\.layer\.(\d+)\."
# (HF name pattern, native name template); \1 is the layer index inside encoder layers
RULES = [(re.compile(p), r) for p, r in [
    (r"embeddings\.word_embeddings\.weight", "embeddings.token"),
    (r"embeddings\.position_embeddings\.weight", "embeddings.position"),
    (r"embeddings\.token_type_embeddings\.weight", "embeddings.token_type"),
    (r"embeddings\.LayerNorm\.(weight|bias)", r"embeddings.ln.\1"),
    (_LAYER + r"attention\.self\.(query|key|value)\.(weight|bias)", r"blocks.\1.attn.\2.\3"),  # fused below
    (_LAYER + r"attention\.output\.dense\.(weight|bias)", r"blocks.\1.attn.out.\2"),
    (_LAYER + r"attention\.output\.LayerNorm\.(weight|bias)", r"blocks.\1.ln_1.\2"),
    (_LAYER + r"intermediate\.dense\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (_LAYER + r"output\.dense\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (_LAYER + r"output\.LayerNorm\.(weight|bias)", r"blocks.\1.ln_2.\2"),
    (r"pooler\.dense\.(weight|bias)", r"pooler.\1"),
]]


def strip_prefix(key: str) -> str:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def is_bert_state(state: Mapping[str, object]) -> bool:
    return any(strip_prefix(k) == "embeddings.word_embeddings.weight" for k in state)


def native_name(key: str) -> str | None:
    """A checkpoint key (any prefix) -> its native name, q, k and v still apart
    (``blocks.N.attn.{q,k,v}.*``); None for a key the encoder ignores; KeyError for one with no place."""
    short = strip_prefix(key)
    if IGNORED.fullmatch(short):
        return None
    for pattern, native in RULES:
        m = pattern.fullmatch(short)
        if m:
            name = m.expand(native)
            for long, letter in QKV.items():
                name = name.replace(f".attn.{long}.", f".attn.{letter}.")
            return name
    raise KeyError(short)


def bert_to_native(state: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """HF BERT names -> native names, q/k/v fused, floating tensors as float32. Unknown keys raise
    :class:`CheckpointError`; missing keys and wrong shapes are caught when the weights are assigned
    (:func:`aimemory.weights.loader.assign_weights`)."""
    if not is_bert_state(state):
        raise CheckpointError(f"{source} is not a BERT checkpoint: no embeddings.word_embeddings.weight "
                              f"(first keys: {sorted(state)[:8]})")
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        try:
            name = native_name(key)
        except KeyError:
            unknown.append(strip_prefix(key))
            continue
        if name is None:
            continue
        if name in out:
            raise CheckpointError(f"{source}: {strip_prefix(key)} appears twice (with and without a prefix)")
        out[name] = value.float() if value.is_floating_point() else value
    if unknown:
        raise CheckpointError(f"{source}: keys with no place in a BERT encoder ({len(unknown)}): "
                              f"{', '.join(sorted(unknown)[:10])}")
    return fuse_qkv(out, source=source)


def fuse_qkv(state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """``blocks.N.attn.{q,k,v}.{weight,bias}`` -> ``blocks.N.attn.qkv.{weight,bias}``; the three
    parts must all be present and of one shape."""
    import torch

    for key in sorted(k for k in state if ".attn.q." in k):
        base, kind = key.rsplit(".attn.q.", 1)
        parts = [state.pop(f"{base}.attn.{p}.{kind}", None) for p in "qkv"]
        if any(p is None for p in parts):
            raise CheckpointError(f"{source}: {base} has a query {kind} but not all of key, value")
        if len({tuple(p.shape) for p in parts}) != 1:
            raise CheckpointError(f"{source}: {base} query/key/value {kind} shapes differ: "
                                  f"{[tuple(p.shape) for p in parts]}")
        state[f"{base}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
    stray = sorted(k for k in state if re.search(r"\.attn\.[kv]\.", k))
    if stray:
        raise CheckpointError(f"{source}: key/value projections without a query: {', '.join(stray[:10])}")
    return state
