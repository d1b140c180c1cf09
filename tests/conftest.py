"""Shared fixtures. ``ColourEncoder`` is a deterministic test encoder (never used by the library):
images embed by their mean colour, texts by colour words, audio by pitch, so cross-modal tests can
assert semantics without a trained model; a content hash adds a small unique component so every
distinct item has its own vector."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from aimemory.encoders.base import Encoder, View, l2_normalize

# Stores in tests do not transcribe audio unless a test asks for a speech model explicitly: a real
# Whisper on every tone fixture would cost seconds each and test nothing about the store.
os.environ.setdefault("AIMEMORY_SPEECH", "0")
# Likewise OCR: stores in tests read text in images only when a test passes ocr=True (or an engine).
os.environ.setdefault("AIMEMORY_OCR", "0")

DIM = 16
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
PITCH = {"red": 440.0, "green": 880.0, "blue": 1760.0}
UNIQUE_WEIGHT = 0.3


def _unique(data: bytes) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(data).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM - 3).astype(np.float32)
    return v / np.linalg.norm(v) * UNIQUE_WEIGHT


class ColourEncoder(Encoder):
    model_id = "test-colour-v1"
    dim = DIM
    modalities = frozenset({"image", "text", "audio"})
    logit_scale = 10.0

    def __init__(self):
        self.calls = 0

    def _vec(self, rgb: np.ndarray, data: bytes) -> np.ndarray:
        return np.concatenate([rgb / max(np.linalg.norm(rgb), 1e-6), _unique(data)])

    def embed_images(self, images):
        self.calls += 1
        rows = [self._vec(np.asarray(im.convert("RGB"), np.float32).reshape(-1, 3).mean(0), im.tobytes())
                for im in images]
        return l2_normalize(np.stack(rows))

    def embed_texts(self, texts):
        self.calls += 1
        rows = []
        for t in texts:
            rgb = np.zeros(3, np.float32)
            for name, c in COLOURS.items():
                if name in t.lower():
                    rgb += np.asarray(c, np.float32)
            rows.append(self._vec(rgb, t.encode()))
        return l2_normalize(np.stack(rows))

    def embed_audio(self, clips):
        self.calls += 1
        out = []
        for clip in clips:
            spectrum = np.abs(np.fft.rfft(clip.samples))
            freq = np.argmax(spectrum) * clip.sample_rate / len(clip.samples)
            rgb = np.zeros(3, np.float32)
            name = min(PITCH, key=lambda n: abs(PITCH[n] - freq))
            rgb += np.asarray(COLOURS[name], np.float32)
            vec = l2_normalize(self._vec(rgb, clip.samples.tobytes())[None])[0]
            out.append([View("audio.sound", vec, 0.0, clip.duration)])
        return out


# Test tiers (markers registered in pyproject.toml): whole modules by what they start. `make test`
# runs all but `slow`; `make check` runs none of these tiers, nor tests marked `heavy`.
TIERS = {
    "test_remote.py": ("services",),  # moto's S3 server
    "test_remote_azure.py": ("services",),  # Azurite
    "test_web_api.py": ("services",),  # uvicorn, schemathesis
    "test_mcp.py": ("services",),  # the MCP stdio server
    "test_web_browser.py": ("services", "browser"),
    "test_distributed.py": ("services", "ray"),
    "test_crash.py": ("heavy",),  # writer subprocesses killed at random
    "test_reliability_concurrency.py": ("heavy",),  # writer processes and threads
    "test_reliability_faults.py": ("heavy",),  # tmpfs, rlimits, hundreds of remembers
    "test_reliability_state.py": ("heavy",),  # a Hypothesis state machine
    "test_speech.py": ("heavy",),  # real Whisper
    "test_readme.py": ("heavy",),  # the README's examples, each in a fresh interpreter
    "test_demo.py": ("heavy",),
    "test_bench_smoke.py": ("heavy",),
    "test_encoders_offline.py": ("heavy",),  # the pretrained offline model on real photographs
    "test_eval_real.py": ("heavy",),  # the real-material evaluation at small size
    "test_nn_yamnet.py": ("heavy",),  # YAMNet parity against TensorFlow outputs
    "test_integrations_langgraph.py": ("heavy",),  # 2,000 random operations against InMemoryStore
    # framework adapters: each imports its framework (seconds), and LangChain's whole standard suite
    "test_integrations_langchain.py": ("heavy",),
    "test_integrations_llamaindex.py": ("heavy",),
    "test_integrations_adk.py": ("heavy",),
    "test_integrations_mem0.py": ("heavy",),
    "test_bench_peers_smoke.py": ("heavy",),  # six benchmark subprocesses
    "test_video_doors.py": ("services",),  # HTTP and MCP with real videos
    "test_cli_served.py": ("services",),  # a running `aimemory serve`
    "test_migrate.py": ("heavy",),  # a migrating subprocess killed while another recalls
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in TIERS.get(item.path.name, ()):
            item.add_marker(getattr(pytest.mark, name))


@pytest.fixture(scope="module")
def torch_one_thread():
    """Small forwards run fastest on one thread, and on a shared machine OpenMP barriers with two
    threads wait for descheduled workers; the thread count is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def encoder():
    return ColourEncoder()


@pytest.fixture
def no_network():
    """Refuse network sockets for the test, so passing proves it needs no network; Unix sockets stay
    (an event loop's self-pipe is one). Needs pytest-socket."""
    pytest_socket = pytest.importorskip("pytest_socket")
    pytest_socket.disable_socket(allow_unix_socket=True)
    try:
        yield
    finally:
        pytest_socket.enable_socket()


@pytest.fixture
def clock(monkeypatch):
    """time.time() plus an offset the test moves forward."""
    import time

    real, offset = time.time, [0.0]
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])
    return offset


@pytest.fixture
def store(tmp_path, encoder):
    from aimemory import MemoryStore

    s = MemoryStore(tmp_path / "mem", model=encoder)
    yield s
    s.close()


def solid(colour: str, size=(32, 24), noise_seed: int | None = None):
    from PIL import Image

    arr = np.zeros((size[1], size[0], 3), np.uint8) + np.asarray(COLOURS[colour], np.uint8)
    if noise_seed is not None:
        arr = np.clip(arr.astype(int) + np.random.default_rng(noise_seed).integers(-20, 20, arr.shape), 0, 255)
        arr = arr.astype(np.uint8)
    return Image.fromarray(arr)


def tone(colour: str, seconds=0.5, rate=16000):
    from aimemory import Audio

    t = np.arange(int(seconds * rate)) / rate
    return Audio((0.5 * np.sin(2 * np.pi * PITCH[colour] * t)).astype(np.float32), rate)


def mixed_items() -> list:
    """Colour notes, images and tones (three of each), and one unrelated note: a tiny mixed store."""
    return [x for colour in ("red", "green", "blue")
            for x in (f"a {colour} note", solid(colour, noise_seed=1), tone(colour))] + \
        ["an unrelated note about taxes"]
