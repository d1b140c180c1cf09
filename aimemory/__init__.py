"""aimemory: a multimodal memory for agents and people.

    from aimemory import MemoryStore, Audio
    store = MemoryStore("./memory")            # opens or creates; model="auto"
    store.remember("the cat sleeps on the sofa", metadata={"tags": ["pets"]})
    store.recall("a cat", k=5)

Heavy modules (torch, lancedb, faiss) load on first use, not on ``import aimemory``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AimemoryError,
    CheckpointError,
    DecodeError,
    FilterError,
    InputError,
    InputTooLargeError,
    ModelError,
    ModelMismatchError,
    ModelNotAvailableError,
    NotFoundError,
    StoreClosedError,
    StoreCorruptError,
    StoreError,
    UnsupportedInputError,
)

__version__ = "0.1.0"

__all__ = [
    "MemoryStore",
    "Audio",
    "Memory",
    "Hit",
    "Hits",
    "Encoder",
    "View",
    "load_encoder",
    "AimemoryError",
    "CheckpointError",
    "DecodeError",
    "FilterError",
    "InputError",
    "InputTooLargeError",
    "ModelError",
    "ModelMismatchError",
    "ModelNotAvailableError",
    "NotFoundError",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreError",
    "UnsupportedInputError",
    "__version__",
]

_LAZY = {
    "MemoryStore": ("aimemory.store", "MemoryStore"),
    "Audio": ("aimemory.inputs", "Audio"),
    "Memory": ("aimemory.records", "Memory"),
    "Hit": ("aimemory.records", "Hit"),
    "Hits": ("aimemory.records", "Hits"),
    "Encoder": ("aimemory.encoders.base", "Encoder"),
    "View": ("aimemory.encoders.base", "View"),
    "load_encoder": ("aimemory.encoders.registry", "load_encoder"),
}

if TYPE_CHECKING:  # pragma: no cover
    from .encoders.base import Encoder, View
    from .encoders.registry import load_encoder
    from .inputs import Audio
    from .records import Hit, Hits, Memory
    from .store import MemoryStore


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aimemory' has no attribute {name!r}")
