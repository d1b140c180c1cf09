"""Checkpoint safety and integrity: corrupt files, pickled code, wrong shapes, Arrow round trips."""

from __future__ import annotations

import os
import pickle
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from aimemory.errors import CheckpointError
from aimemory.weights import assign_weights, load_state_dict
from aimemory.weights.arrow import load_arrow, save_arrow
from aimemory.weights.clip_formats import HF, read_torchscript, to_native


def _state():
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(4, 3, generator=g), "a.bias": torch.randn(4, generator=g)}


def test_corrupt_and_truncated_safetensors(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file(_state(), good)
    data = good.read_bytes()
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(data[: len(data) - 10])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    header_lies = tmp_path / "lies.safetensors"
    header_lies.write_bytes((10**12).to_bytes(8, "little") + data[8:])
    for bad in (truncated, garbage, header_lies):
        with pytest.raises(CheckpointError, match="safetensors"):
            load_state_dict(bad)
    assert torch.equal(load_state_dict(good)["a.weight"], _state()["a.weight"])
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict(tmp_path / "missing.safetensors")


class _Payload:
    """Unpickling this runs ``os.system``; a safe loader must never get that far."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_bin_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "pytorch_model.bin"
    torch.save({"a.weight": torch.zeros(2), "x": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_state_dict(evil)
    assert not marker.exists()


def test_malicious_torchscript_archive_is_refused_and_not_run(tmp_path):
    """A .pt zip whose data.pkl calls os.system: the whitelisting reader refuses it."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "ViT-B-32.pt"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("m/data.pkl", pickle.dumps(_Payload(marker), protocol=2))
        zf.writestr("m/constants.pkl", pickle.dumps((), protocol=2))
    with pytest.raises(CheckpointError, match="refusing"):
        read_torchscript(evil)
    from aimemory.encoders.clip import ClipEncoder

    with pytest.raises(CheckpointError):
        ClipEncoder.from_pretrained(evil, weights="safetensors")
    assert not marker.exists()


def test_wrong_shapes_and_names_are_listed():
    module = torch.nn.Linear(3, 4)
    with pytest.raises(CheckpointError, match=r"weight: checkpoint \(4, 2\) vs model \(4, 3\)"):
        assign_weights(module, {"weight": torch.zeros(4, 2), "bias": torch.zeros(4)})
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): bias.*unexpected keys \(1\): extra"):
        assign_weights(module, {"weight": torch.zeros(4, 3), "extra": torch.zeros(1)})
    assign_weights(module, {"weight": torch.ones(4, 3), "bias": torch.zeros(4)})
    assert torch.equal(module.weight, torch.ones(4, 3))


def test_assign_without_copy_on_meta_module():
    with torch.device("meta"):
        module = torch.nn.Linear(3, 4)
    w = torch.randn(4, 3)
    assign_weights(module, {"weight": w, "bias": torch.zeros(4)}, assign=True)
    assert module.weight.data_ptr() == w.data_ptr()


def test_renaming_rejects_unknown_keys_and_partial_qkv():
    with pytest.raises(CheckpointError, match="no place in a hf CLIP.*vision_model.encoder.layers.0.weird"):
        to_native({"vision_model.encoder.layers.0.weird": torch.zeros(1)}, HF)
    q = "text_model.encoder.layers.0.self_attn.q_proj.weight"
    with pytest.raises(CheckpointError, match="not all of k, v"):
        to_native({q: torch.zeros(4, 4), q.replace("q_proj", "k_proj"): torch.zeros(4, 4)}, HF)
    with pytest.raises(CheckpointError, match="shapes differ"):
        to_native({q: torch.zeros(4, 4), q.replace("q_proj", "k_proj"): torch.zeros(4, 4),
                   q.replace("q_proj", "v_proj"): torch.zeros(5, 4)}, HF)
    fused = to_native({q: torch.zeros(4, 4), q.replace("q_proj", "k_proj"): torch.ones(4, 4),
                       q.replace("q_proj", "v_proj"): torch.full((4, 4), 2.0)}, HF)
    qkv = fused["text.transformer.blocks.0.attn.qkv.weight"]
    assert qkv.shape == (12, 4) and qkv[4:8].eq(1).all() and qkv[8:].eq(2).all()


def test_arrow_round_trip_exact_and_zero_copy(tmp_path):
    g = torch.Generator().manual_seed(1)
    state = {
        "f32": torch.randn(7, 5, generator=g),
        "f16": torch.randn(3, 3, generator=g).half(),
        "bf16": torch.randn(9, generator=g).bfloat16(),
        "i64": torch.arange(5),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "odd": torch.randn(3, generator=g),  # 12 bytes: the next tensor must still be aligned
        "after": torch.randn(2, 2, generator=g).double(),
    }
    path = save_arrow(state, tmp_path / "w.arrow", extra={"dims": {"x": 1}})
    got, extra = load_arrow(path)
    assert extra == {"dims": {"x": 1}} and list(got) == list(state)
    for k, v in state.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and torch.equal(got[k], v), k
    got["f32"].add_(1)  # copy-on-write mapping: writable in memory, the file never changes
    again, _ = load_arrow(path)
    assert torch.equal(again["f32"], state["f32"])
    # zero copy: the tensors of one load live in one mapped buffer
    base = got["f32"].untyped_storage().data_ptr()
    assert got["after"].untyped_storage().data_ptr() == base


def test_arrow_damaged_file(tmp_path):
    path = save_arrow(_state(), tmp_path / "w.arrow")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="Arrow"):
        load_arrow(path)
