"""Device placement: the "auto" choice with accelerators mocked absent and present, typed errors for
devices that are not there, and every tower's autocast path run on the CPU (bf16 / fp16), whose
vectors must stay in the fp32 space. Real CUDA runs are in ``benchmarks/bench_device.py``."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from aimemory import device as device_mod
from aimemory.device import CPU, Placement, imported_torch, resolve_placement
from aimemory.errors import DeviceNotAvailableError


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.delenv(device_mod.DEVICE_ENV, raising=False)
    monkeypatch.setattr(device_mod, "cuda_available", lambda: False)
    monkeypatch.setattr(device_mod, "mps_available", lambda: False)


def test_auto_is_cpu_without_accelerators(no_accelerators):
    p = resolve_placement("auto")
    assert (p.device, p.compute) == ("cpu", "fp32")
    assert "no CUDA" in p.why


def test_auto_prefers_cuda_then_mps(no_accelerators, monkeypatch):
    monkeypatch.setattr(device_mod, "mps_available", lambda: True)
    assert resolve_placement("auto").device == "mps"
    monkeypatch.setattr(device_mod, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    p = resolve_placement("auto")
    assert (p.device, p.compute, p.kind) == ("cuda:0", "fp16", "cuda")
    assert "CUDA GPU is available" in p.why
    assert resolve_placement("cuda:1").device == "cuda:1"
    with pytest.raises(DeviceNotAvailableError, match="has 2 CUDA GPU"):
        resolve_placement("cuda:2")


def test_environment_overrides_auto_only(no_accelerators, monkeypatch):
    monkeypatch.setenv(device_mod.DEVICE_ENV, "mps")
    with pytest.raises(DeviceNotAvailableError, match="Apple GPU"):
        resolve_placement("auto")
    assert resolve_placement("cpu").device == "cpu"  # an explicit device wins over the variable


@pytest.mark.parametrize("spec, match", [("cuda", "no CUDA GPU"), ("cuda:0", "no CUDA GPU"),
                                         ("mps", "Apple GPU"), ("tpu", "unknown device"),
                                         ("cuda:x", "unknown device"), ("mps:1", "unknown device")])
def test_missing_or_unknown_devices_are_typed_errors(no_accelerators, spec, match):
    with pytest.raises(DeviceNotAvailableError, match=match):
        resolve_placement(spec)


def test_compute_choice():
    assert resolve_placement("cpu", compute="bf16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="compute must be"):
        resolve_placement("cpu", compute="int8")
    assert resolve_placement(Placement("cpu", "fp16")) == Placement("cpu", "fp16")


def test_batch_size_is_the_default_off_cuda():
    assert CPU.batch_size(32, bytes_per_item=10**9) == 32


def test_move_keeps_a_module_already_there():
    net = torch.nn.Linear(3, 2)
    assert CPU.move(net) is net
    assert Placement("cpu", "bf16").move(net) is net


def test_store_refuses_a_missing_gpu_before_loading(tmp_path, no_accelerators):
    from aimemory import MemoryStore

    with pytest.raises(DeviceNotAvailableError, match="device='cpu'"):
        MemoryStore(tmp_path / "s", model="aimemory-mini", device="cuda")


def test_store_reports_its_device(tmp_path, no_accelerators):
    from aimemory import MemoryStore

    with MemoryStore(tmp_path / "s", model="aimemory-mini", speech_model=None) as store:
        store.remember("a red kite over the beach")
        assert (store.stats()["device"], store.stats()["compute"]) == ("cpu", "fp32")


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(1).min())


def test_mini_towers_under_autocast_stay_in_the_space(torch_one_thread):
    from PIL import Image

    from aimemory.encoders.mini import MiniEncoder

    enc = MiniEncoder.load()
    moved = enc.to(Placement("cpu", "bf16"))
    assert moved is not enc and enc.placement == CPU  # the shared model is untouched
    texts = ["a red kite", "the sound of rain on a tin roof"]
    images = [Image.new("RGB", (64, 64), c) for c in ("red", "navy")]
    assert _cos(enc.embed_texts(texts), moved.embed_texts(texts)) > 0.99
    assert _cos(enc.embed_images(images), moved.embed_images(images)) > 0.99
    assert moved.embed_texts(texts).dtype == np.float32
    assert enc.to(CPU) is enc  # nothing moves: no copy


def test_offline_tier_moves_every_tower(torch_one_thread):
    from PIL import Image

    from aimemory.encoders.offline import OfflineEncoder
    from aimemory.encoders.registry import offline_tier_missing

    if offline_tier_missing():
        pytest.skip(offline_tier_missing())
    enc = OfflineEncoder.load()
    moved = enc.to(Placement("cpu", "bf16"))
    assert moved is not enc and moved.text is not enc.text and enc.text.placement == CPU
    image = [Image.new("RGB", (96, 96), "orange")]
    placed = moved.views("image", image)[0]
    assert [v.kind for v in placed] == [v.kind for v in enc.views("image", image)[0]]
    assert moved.image_tower[0].placement.compute == "bf16"
    assert moved.drawing_tower.placement.compute == "bf16"
    assert _cos(enc.embed_texts(["a dog"]), moved.embed_texts(["a dog"])) > 0.99


def test_clip_moves_with_random_weights(torch_one_thread):
    from PIL import Image

    from aimemory.encoders.clip import ClipEncoder
    from aimemory.nn.clip import ClipDims, ClipModel
    from aimemory.preprocess.image import ImagePreprocessor

    dims = ClipDims(embed_dim=16, image_size=32, patch_size=16, vision_width=32, vision_layers=1,
                    vision_heads=2, vision_mlp=64, context_length=8, vocab_size=50, text_width=32,
                    text_layers=1, text_heads=2, text_mlp=64)
    torch.manual_seed(0)
    model = ClipModel(dims)
    with torch.no_grad():  # some parameters are created empty (a checkpoint always fills them)
        for param in model.parameters():
            param.normal_(0, 0.05)
    enc = ClipEncoder(model, ImagePreprocessor.for_size(32), model_id="tiny")
    moved = enc.to(Placement("cpu", "bf16"))
    ids = torch.tensor([[49, 3, 4, 0, 0, 0, 0, 0]])
    ids[0, 2] = dims.vocab_size - 1  # EOT: the largest id
    assert moved.placement.compute == "bf16" and enc.placement == CPU
    assert _cos(enc.embed_token_ids(ids), moved.embed_token_ids(ids)) > 0.98
    image = [Image.new("RGB", (40, 40), "teal")]
    assert _cos(enc.embed_images(image), moved.embed_images(image)) > 0.98


def test_speech_recognizer_moves(torch_one_thread):
    from aimemory.speech import SpeechRecognizer, find_local_speech_model

    found = find_local_speech_model()
    if found is None:
        pytest.skip("no local Whisper")
    rec = SpeechRecognizer.from_pretrained(found)
    moved = rec.to(Placement("cpu", "bf16"))
    assert moved is not rec and moved.placement.compute == "bf16" and rec.placement == CPU
    assert moved.model is rec.model  # already on the CPU: the weights are shared, not copied


def test_cli_device_option(tmp_path, capsys, no_accelerators, monkeypatch):
    from conftest import ColourEncoder

    import aimemory.cli.commands as commands
    from aimemory.cli import main

    monkeypatch.setattr(commands, "_TEST_STORE_KWARGS", {"model": ColourEncoder(), "speech_model": None})
    store = tmp_path / "s"
    assert main(["remember", "--text", "a red kite", "--store", str(store), "--device", "cpu"]) == 0
    code = main(["recall", "kite", "--store", str(store), "--device", "cuda"])
    err = capsys.readouterr().err
    assert code != 0 and "no CUDA GPU" in err and "Traceback" not in err
    monkeypatch.setenv("AIMEMORY_DEVICE", "cpu")  # the variable feeds --device
    assert main(["recall", "kite", "--store", str(store)]) == 0


def test_imported_torch_is_none_while_another_thread_imports_it(monkeypatch):
    import types
    from importlib.machinery import ModuleSpec

    half = types.ModuleType("torch")
    half.__spec__ = ModuleSpec("torch", None)
    half.__spec__._initializing = True  # what importlib marks a module being executed with
    monkeypatch.setitem(sys.modules, "torch", half)
    assert imported_torch() is None
    half.__spec__._initializing = False
    assert imported_torch() is half
    monkeypatch.delitem(sys.modules, "torch")
    assert imported_torch() is None
