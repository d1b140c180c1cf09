"""On a real CUDA GPU: the "auto" choice, half precision against fp32 on the CPU, weights placed on
the GPU, memory-aware batches, and a store written on the GPU read back on the CPU. Skipped where
torch sees no CUDA device (CI); run on a GPU machine with ``pytest -m cuda tests/test_device_cuda.py``.
Results from such runs are in ``benchmarks/RESULTS_GPU.md``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from aimemory.device import CPU, resolve_placement

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]

HALF_CONTRACT = 0.999  # cosine of a half-precision forward against CPU fp32


def _cos(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """ViT-B/32's widths, heads and patch with 2 layers per tower, random weights, as transformers saves it."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.CLIPConfig()
    config.text_config.num_hidden_layers = config.vision_config.num_hidden_layers = 2
    model = transformers.CLIPModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    folder = tmp_path_factory.mktemp("clip") / "vit-b-32-2layers"
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def _photos(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (180 + 7 * i, 240, 3), dtype=np.uint8)) for i in range(n)]


def test_auto_picks_the_gpu_in_half_precision():
    p = resolve_placement("auto")
    assert p.kind == "cuda" and p.compute == "fp16" and "CUDA" in p.why


def test_clip_on_the_gpu_matches_cpu_fp32(clip_folder, tmp_path):
    from aimemory.encoders.clip import ClipEncoder

    cpu = ClipEncoder.from_pretrained(clip_folder, cache_dir=tmp_path)
    gpu = cpu.to(resolve_placement("cuda"))
    assert next(gpu.model.parameters()).device.type == "cuda"
    assert next(cpu.model.parameters()).device.type == "cpu" and cpu.placement == CPU  # the original stays
    assert gpu.batch_size > cpu.batch_size  # sized from the GPU's free memory
    images = _photos(40)
    assert _cos(cpu.embed_images(images), gpu.embed_images(images)).min() >= HALF_CONTRACT
    ids = torch.zeros(6, 77, dtype=torch.long)
    for r, n in enumerate((1, 5, 20, 40, 60, 75)):
        ids[r, 0], ids[r, 1:n + 1], ids[r, n + 1] = 49406, torch.arange(100, 100 + n), 49407
    assert _cos(cpu.embed_token_ids(ids), gpu.embed_token_ids(ids)).min() >= HALF_CONTRACT


def test_a_store_written_on_the_gpu_recalls_on_the_cpu(clip_folder, tmp_path):
    from aimemory import MemoryStore

    images = _photos(24)
    with MemoryStore(tmp_path / "s", model=str(clip_folder), ocr=False) as store:
        assert store.stats()["device"].startswith("cuda") and store.stats()["compute"] == "fp16"
        ids = [m.id for m in store.remember_many(images)]
        on_gpu = [store.recall(images[i], k=1, modality="image")[0].id for i in (0, 7, 23)]
    with MemoryStore(tmp_path / "s", model=str(clip_folder), device="cpu", ocr=False) as store:
        assert store.stats()["device"] == "cpu"
        on_cpu = [store.recall(images[i], k=1, modality="image")[0].id for i in (0, 7, 23)]
    assert on_gpu == on_cpu == [ids[0], ids[7], ids[23]]  # fp16 and fp32 vectors find each other


def test_peak_memory_stays_bounded(clip_folder, tmp_path):
    from aimemory.encoders.clip import ClipEncoder

    torch.cuda.reset_peak_memory_stats()
    gpu = ClipEncoder.from_pretrained(clip_folder, cache_dir=tmp_path).to(resolve_placement("cuda"))
    gpu.embed_images(_photos(300))
    free, total = torch.cuda.mem_get_info()
    assert torch.cuda.max_memory_allocated() < 0.6 * total  # the batch rule takes at most half the free memory


def test_pixels_normalised_on_the_gpu_equal_the_cpu_ones():
    from aimemory.preprocess.image import ImagePreprocessor

    pre = ImagePreprocessor.for_size(224)
    images = _photos(9)
    on_gpu = pre(images, device=resolve_placement("cuda").arithmetic_device)
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), pre(images))
