"""``ClipEncoder``: native CLIP (no transformers at runtime) behind the store's :class:`Encoder` API.

Loading: the checkpoint (HF folder, OpenAI ``.pt``, open_clip) is renamed to native names once and
cached as an Arrow weight file that later loads memory-mapped, zero-copy, into a model built on the
``meta`` device (so no random init is paid). Texts use dynamic padding: a batch is padded to its
longest text, not to 77, and texts are bucketed by length so short queries never pay for long ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..device import Placement
from ..errors import CheckpointError, ModelNotAvailableError
from ..nn.clip import POOL_ARGMAX, POOL_EOS, ClipDims, ClipModel, fold_quick_gelu
from ..preprocess.image import ImagePreprocessor
from ..weights.clip_formats import HF, OPEN_CLIP, find_clip_checkpoint, read_checkpoint, to_native
from ..weights.loader import assign_weights
from .base import Encoder, l2_normalize

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
BATCH_SIZE = 32
DECODE_MARGIN = 2  # photos decode (JPEG draft) to at least twice the input side, see image_decode_side
OLD_HF_EOS = 2  # HF configs before transformers#24773 carry eos_token_id=2 and pool by argmax
HUB_ID = re.compile(r"\w[\w.-]*/\w[\w.-]*")  # "openai/clip-vit-base-patch32"
CACHE_ENV = "AIMEMORY_WEIGHTS_CACHE"
CACHE_VERSION = 2  # bump when the native names or the Arrow layout change
WEIGHT_FORMATS = ("arrow", "safetensors")  # "safetensors" = read the checkpoint itself every time


def weights_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "aimemory" / "weights")


def _read_json(file: Path) -> dict:
    try:
        return json.loads(file.read_text()) if file.is_file() else {}
    except ValueError as exc:
        raise CheckpointError(f"unreadable JSON config {file}: {exc}") from exc


def _config_kwargs(folder: Path, fmt: str, act: str | None) -> tuple[dict, str | None]:
    """Settings that shapes cannot tell (heads, activation, EOT convention) -> (kwargs, repo name)."""
    cfg = _read_json(folder / "config.json") if fmt == HF else {}
    if cfg:
        v, t = cfg.get("vision_config", {}), cfg.get("text_config", {})
        eos = t.get("eos_token_id", OLD_HF_EOS)
        kw = dict(vision_heads=v.get("num_attention_heads"), text_heads=t.get("num_attention_heads"),
                  act=act or t.get("hidden_act", "quick_gelu"), eps=t.get("layer_norm_eps", 1e-5),
                  pool=POOL_ARGMAX if eos == OLD_HF_EOS else POOL_EOS, eos_token_id=int(eos))
        name = cfg.get("_name_or_path") or ""
        return kw, name if HUB_ID.fullmatch(name) else None  # a local path is not a stable id
    if fmt == OPEN_CLIP:  # open_clip marks OpenAI-style activations with quick_gelu; its default is GELU
        model_cfg = _read_json(folder / "open_clip_config.json").get("model_cfg", {})
        v, t = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
        v_heads = v["width"] // v.get("head_width", 64) if "width" in v else None  # ViT-H uses 80-wide heads
        return dict(act=act or ("quick_gelu" if model_cfg.get("quick_gelu") else "gelu"),
                    vision_heads=v_heads, text_heads=t.get("heads")), None
    return dict(act=act or "quick_gelu"), None


class ClipEncoder(Encoder):
    """CLIP image + text encoder producing unit-norm float32 vectors of width ``dim``."""

    modalities = frozenset({"image", "text"})

    def __init__(self, model: ClipModel, preprocess: ImagePreprocessor, *, model_id: str,
                 tokenizer=None, tokenizer_folder: Path | None = None, precision: str = "fp32",
                 batch_size: int = BATCH_SIZE):
        self.model = model.eval()
        self.preprocess = preprocess
        self.model_id = model_id
        self.dim = model.dims.embed_dim
        self.precision = precision
        self.batch_size = batch_size
        self.logit_scale = float(model.logit_scale.detach().float().exp())
        self._tokenizer, self._tokenizer_folder = tokenizer, tokenizer_folder

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, precision: str = "fp32", *, weights: str = "arrow",
                        cache_dir: str | Path | None = None, act: str | None = None, tokenizer=None,
                        batch_size: int = BATCH_SIZE, model_id: str | None = None) -> "ClipEncoder":
        """Load a local HF folder, OpenAI ``.pt`` or open_clip checkpoint.

        ``weights="arrow"`` converts once into an Arrow file under ``cache_dir`` (default
        ``$AIMEMORY_WEIGHTS_CACHE`` or ``~/.cache/aimemory/weights``) and maps it on later loads;
        ``"safetensors"`` reads the checkpoint every time. ``act`` overrides the activation for
        checkpoints that do not record it (open_clip without its config). ``model_id`` (e.g. the hub
        id it was downloaded as) replaces the name read from the config / folder; a non-fp32
        precision is always appended, since it changes the vectors slightly."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if weights not in WEIGHT_FORMATS:
            raise ValueError(f"weights must be one of {WEIGHT_FORMATS}, got {weights!r}")
        path = Path(path).expanduser()
        if not path.exists():
            raise ModelNotAvailableError(f"no CLIP checkpoint at {path}; pass a local folder or .pt file")
        file, _ = find_clip_checkpoint(path)
        folder = path if path.is_dir() else path.parent
        state, extra = None, None
        cache = _cache_file(file, cache_dir, act) if weights == "arrow" else None
        if cache is not None and cache.is_file():
            from ..weights.arrow import load_arrow

            try:
                state, extra = load_arrow(cache)
            except CheckpointError:
                state = None  # a damaged cache is rebuilt from the checkpoint below
        if state is None:
            raw, fmt = read_checkpoint(path)
            state = to_native(raw, fmt, source=str(file))
            kw, repo = _config_kwargs(folder, fmt, act)
            state, dims = fold_quick_gelu(state, ClipDims.from_state_dict(state, **kw))
            extra = {"dims": dims.__dict__, "repo": repo, "format": fmt}
            if cache is not None:
                _try_save(state, cache, extra)
        dims = ClipDims(**extra["dims"])
        with torch.device("meta"):  # no random init: the checkpoint tensors become the parameters
            model = ClipModel(dims)
        assign_weights(model, state, source=str(file), assign=True)
        if precision != "fp32":
            model = model.to(PRECISIONS[precision])
        preprocess = ImagePreprocessor.from_folder(folder, dims.image_size)
        base = model_id or extra.get("repo") or (path.name if path.is_dir() else path.stem)
        model_id = base if precision == "fp32" else f"{base}@{precision}"
        return cls(model, preprocess, model_id=model_id, tokenizer=tokenizer, tokenizer_folder=folder,
                   precision=precision, batch_size=batch_size)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from ..preprocess.text import ClipTokenizer  # owned by the tokenizer module; lazy

            try:
                self._tokenizer = ClipTokenizer.from_folder(self._tokenizer_folder)
            except FileNotFoundError as exc:
                raise ModelNotAvailableError(f"{self.model_id}: cannot embed text, {exc}") from exc
        return self._tokenizer

    # -- embedding -----------------------------------------------------------------------------
    def to(self, placement: Placement) -> "ClipEncoder":
        new = placement.adopt(self)
        new.model, new.placement = placement.move(self.model), placement
        # activations per image, generously: 64 float32 feature maps of the input's size
        size = self.model.dims.image_size
        new.batch_size = placement.batch_size(BATCH_SIZE, bytes_per_item=64 * 3 * size * size * 4)
        return new

    def prepare_image(self, image) -> None:
        self.preprocess.prepare(image)

    @property
    def image_decode_side(self) -> int:  # type: ignore[override]
        # twice the input: the bicubic resize after a reduced decode still shrinks >= 2x
        return DECODE_MARGIN * self.preprocess.size

    @torch.inference_mode()
    def embed_images(self, images: Sequence) -> np.ndarray:
        """PIL images -> (n, dim) float32 unit rows, ``batch_size`` images per forward."""
        out = []
        place = self.placement
        for i in range(0, len(images), self.batch_size):
            pixels = self.preprocess(images[i:i + self.batch_size], device=place.arithmetic_device)  # (b, 3, S, S)
            with place.autocast():
                out.append(place.back(self.model.encode_image(place.put(pixels))))
        return _unit(out, self.dim)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> (n, dim) float32 unit rows (truncated to the context length)."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        ids, _lengths = self.tokenizer.encode_batch(list(texts), context_length=self.model.dims.context_length)
        return self.embed_token_ids(ids)

    @torch.inference_mode()
    def embed_token_ids(self, ids: torch.Tensor) -> np.ndarray:
        """(n, L) token ids (SOT ... EOT, then any padding) -> (n, dim) float32 unit rows.

        Texts are sorted by length and each batch is cut to its longest member; with padding only
        after EOT, causal attention makes the pooled EOT state independent of the padding."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        lengths = self.model.text.eot_positions(ids) + 1  # (n,) tokens up to and including EOT
        order = torch.argsort(lengths, descending=True, stable=True)
        out = torch.empty(len(ids), self.dim)
        for i in range(0, len(ids), self.batch_size):
            idx = order[i:i + self.batch_size]
            longest = int(lengths[idx].max())
            with self.placement.autocast():
                vecs = self.model.encode_text(self.placement.put(ids[idx, :longest]))  # (b, dim)
            out[idx] = self.placement.back(vecs)
        return _unit([out], self.dim)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


def _unit(chunks: list[torch.Tensor], dim: int) -> np.ndarray:
    if not chunks:
        return np.zeros((0, dim), np.float32)
    return l2_normalize(torch.cat(chunks).numpy())


def _cache_file(file: Path, cache_dir, act: str | None) -> Path:
    """Cache key: the checkpoint's resolved path, size and mtime, plus what changes the result."""
    st = file.stat()
    folder = file.parent
    configs = [folder / n for n in ("config.json", "open_clip_config.json")]
    stamp = [str(file.resolve()), st.st_size, st.st_mtime_ns, CACHE_VERSION, act,
             [(str(c), c.stat().st_mtime_ns) for c in configs if c.is_file()]]
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:24]
    return Path(cache_dir or weights_cache_dir()) / f"clip-{key}.arrow"


def _try_save(state, cache: Path, extra: dict) -> None:
    """Write the Arrow cache; a read-only cache location only costs speed, never correctness."""
    from ..weights.arrow import save_arrow

    try:
        save_arrow(state, cache, extra)
    except OSError:
        pass
