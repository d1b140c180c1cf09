"""The built-in model's text tower in numpy: parity with the torch tower on the shipped weights,
shape checks, and a cold text recall of a store with photos that never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aimemory.encoders.offline import MINI_WEIGHTS
from aimemory.nn.mini_numpy import TEXT_KEYS, MiniTextNumpy

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["a cat", "stars in outer space", "2 dogs playing in the park", "", "fix the bike!!",
         "ünïcode 🐱 words and more words " * 30, "the", "RED  apples; green pears."]


def test_numpy_matches_the_torch_tower():
    from aimemory.encoders.mini import MODEL_DIR, MiniEncoder

    assert MINI_WEIGHTS == MODEL_DIR / "model.safetensors"
    ours = MiniTextNumpy.from_safetensors(MINI_WEIGHTS)
    ref = MiniEncoder.load().embed_texts(TEXTS)
    got = np.stack([ours.embed(t) for t in TEXTS])
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert (got * ref).sum(1).min() >= 0.9999 and np.abs(got - ref).max() < 1e-4


def test_weights_of_the_wrong_shape_are_refused():
    from safetensors import safe_open

    with safe_open(str(MINI_WEIGHTS), framework="np") as f:
        weights = {k: f.get_tensor(k) for k in TEXT_KEYS}
    with pytest.raises(ValueError, match="text.mlp.0.weight"):
        MiniTextNumpy({**weights, "text.mlp.0.weight": weights["text.mlp.0.weight"][:-1]})
    with pytest.raises(KeyError, match="text.score.bias"):
        MiniTextNumpy({k: v for k, v in weights.items() if k != "text.score.bias"})


def test_the_drawing_query_is_the_same_vector_either_way():
    from aimemory.encoders.registry import offline_tier_missing

    if offline_tier_missing() is not None:
        pytest.skip(offline_tier_missing())
    from aimemory.encoders.offline import OfflineEncoder

    enc = OfflineEncoder.load()
    numpy_path = enc.drawing_query("a red bicycle")  # on the CPU: the numpy tower, torch imported or not
    torch_tower = enc.drawing_tower.embed_texts(["a red bicycle"])[0]
    assert not numpy_path[len(torch_tower):].any()  # zero-padded into the shared width
    assert float(torch_tower @ numpy_path[: len(torch_tower)]) >= 0.9999


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                         "HOME": str(Path.home()), "AIMEMORY_USE_SERVER": "0"})


def test_a_cold_text_recall_of_a_store_with_photos_never_imports_torch(tmp_path):
    from aimemory.encoders.registry import offline_tier_missing

    if offline_tier_missing() is not None:
        pytest.skip(offline_tier_missing())
    store, photo = tmp_path / "store", ROOT / "aimemory" / "samples" / "real" / "cat.jpg"
    made = _python("from pathlib import Path\nfrom aimemory import MemoryStore\n"
                   f"with MemoryStore({str(store)!r}, model='aimemory-base', speech_model=None, ocr=False) as s:\n"
                   f"    s.remember_many([Path({str(photo)!r}), 'the quarterly budget meeting'])\n")
    assert made.returncode == 0, made.stderr[-2000:]
    out = _python("import sys\nfrom aimemory import MemoryStore\n"
                  f"with MemoryStore({str(store)!r}) as s:\n"
                  "    print(s.stats()['views'])\n"
                  "    print(s.recall('a kitten', k=2)[0].memory.source)\n"
                  "print('torch' in sys.modules)\n")
    assert out.returncode == 0, out.stderr[-2000:]
    views, top, torch_loaded = out.stdout.strip().splitlines()[-3:]
    assert "image.drawing" in views and top.endswith("cat.jpg")
    assert torch_loaded == "False", "a cold text recall imported torch"
