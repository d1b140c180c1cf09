"""Which encoder a model spec means: ``"auto"``, ``"aimemory-mini"``, a hub id, a local folder, or an
:class:`Encoder` instance. The library never falls back to a fake encoder: a spec resolves to a real
model or raises :class:`ModelNotAvailableError`."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from ..errors import ModelError, ModelNotAvailableError
from .base import Encoder

log = logging.getLogger("aimemory.encoders")

MINI_MODEL = "aimemory-mini"
BASE_MODEL = "aimemory-base"
DEFAULT_PRETRAINED = "openai/clip-vit-base-patch32"
_announced = False


def configured_pretrained() -> str:
    """The pretrained CLIP that ``model="auto"`` prefers (``AIMEMORY_MODEL`` overrides it)."""
    return os.environ.get("AIMEMORY_MODEL", DEFAULT_PRETRAINED)


def _announce(model: str, reason: str) -> None:
    global _announced
    if not _announced:
        print(f"aimemory: using {model!r} ({reason}). "
              f"For CLIP quality run `aimemory models download {configured_pretrained()}`.",
              file=sys.stderr)
        _announced = True


def offline_tier_missing() -> str | None:
    """Why the pretrained offline tier cannot load here (a missing weights package), or None."""
    from .imagenet import find_local_classifier
    from .offline import IMAGE_VARIANT
    from .sentence import find_local_sentence_model

    if find_local_sentence_model() is None:
        return "the all-MiniLM-L6-v2 weights are not installed"
    if find_local_classifier(IMAGE_VARIANT) is None:
        return f"the EfficientNet-{IMAGE_VARIANT.capitalize()} weights are not installed"
    return None


def auto_choice() -> tuple[str, str]:
    """What ``model="auto"`` picks here, and why: a cached pretrained CLIP, else the pretrained
    offline tier, else the built-in model (when the tier's weight packages are missing)."""
    pretrained = configured_pretrained()
    if _pretrained_available(pretrained):
        return pretrained, f"{pretrained} is cached"
    missing = offline_tier_missing()
    if missing is None:
        return BASE_MODEL, f"{pretrained} is not cached; the pretrained offline model is installed"
    return MINI_MODEL, f"{pretrained} is not cached and {missing}"


def _pretrained_available(model_id: str) -> bool:
    try:
        from ..weights.hub import is_cached
    except ImportError:  # pragma: no cover - hub module missing in a partial install
        return False
    return bool(is_cached(model_id))


def model_id_of(spec: "str | os.PathLike | Encoder", precision: str = "fp32") -> str | None:
    """The ``model_id`` that ``load_encoder(spec)`` would give, when it is known without loading
    anything (the built-in model, a hub id); None for "auto", local checkpoints and encoders. Lets a
    store refuse another model before a download is attempted."""
    if not isinstance(spec, str) or spec == "auto":
        return None
    if spec in (MINI_MODEL, "aimemory-mini-v1"):
        from .mini import MODEL_ID

        return MODEL_ID
    if spec == BASE_MODEL:
        return BASE_MODEL
    if "/" in spec and not Path(spec).expanduser().exists():  # a hub id: ClipEncoder names it so
        return spec if precision == "fp32" else f"{spec}@{precision}"
    return None


def load_encoder(spec: "str | os.PathLike | Encoder", *, precision: str = "fp32") -> Encoder:
    """Resolve a model spec into a loaded :class:`Encoder`."""
    if isinstance(spec, Encoder):
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise ModelError(f"model= must be a name, a folder path or an Encoder; got {type(spec).__name__}")
    if spec == "auto":
        spec, reason = auto_choice()
        if spec in (BASE_MODEL, MINI_MODEL):
            _announce(spec, reason)
    if spec == BASE_MODEL:
        from .offline import OfflineEncoder

        return OfflineEncoder.load()
    if spec in (MINI_MODEL, "aimemory-mini-v1"):
        from .mini import MiniEncoder

        return MiniEncoder.load()
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_clip(path, precision)
    if path.suffix in (".pt", ".bin", ".safetensors") and path.is_file():
        return _load_clip(path, precision)
    if "/" in spec and not path.exists():
        from ..weights.hub import resolve_checkpoint

        return _load_clip(resolve_checkpoint(spec), precision, model_id=spec)
    raise ModelNotAvailableError(
        f"unknown model {spec!r}: pass 'auto', {BASE_MODEL!r}, {MINI_MODEL!r}, a hub id such as "
        f"{DEFAULT_PRETRAINED!r}, or the path of a local checkpoint folder")


def _load_clip(path: Path, precision: str, model_id: str | None = None) -> Encoder:
    from .clip import ClipEncoder

    kwargs = {"precision": precision}
    if model_id is not None:
        kwargs["model_id"] = model_id
    return ClipEncoder.from_pretrained(path, **kwargs)
