"""aimemory: a multimodal memory for agents and people.

    from aimemory import MemoryStore, Audio
    store = MemoryStore("./memory")            # opens or creates; model="auto"
    store.remember("the cat sleeps on the sofa", metadata={"tags": ["pets"]})
    store.recall("a cat", k=5)

Heavy modules (torch, lancedb, faiss) load on first use, not on ``import aimemory``.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from .errors import (
    AimemoryError,
    CheckpointError,
    DecodeError,
    DeviceNotAvailableError,
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

__version__ = "0.5.0"  # the single source: pyproject.toml reads it; see CHANGELOG.md

__all__ = [
    "MemoryStore",
    "MemoryList",
    "Audio",
    "Memory",
    "Hit",
    "Hits",
    "Encoder",
    "View",
    "load_encoder",
    "zero_shot",
    "AimemoryError",
    "CheckpointError",
    "DeviceNotAvailableError",
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
    "MemoryList": ("aimemory.store", "MemoryList"),
    "Audio": ("aimemory.inputs", "Audio"),
    "Memory": ("aimemory.records", "Memory"),
    "Hit": ("aimemory.records", "Hit"),
    "Hits": ("aimemory.records", "Hits"),
    "Encoder": ("aimemory.encoders.base", "Encoder"),
    "View": ("aimemory.encoders.base", "View"),
    "load_encoder": ("aimemory.encoders.registry", "load_encoder"),
    "zero_shot": ("aimemory.encoders.zero_shot", "zero_shot"),
}

if _TYPE_CHECKING:  # pragma: no cover
    from .encoders.base import Encoder, View
    from .encoders.registry import load_encoder
    from .encoders.zero_shot import zero_shot
    from .inputs import Audio
    from .records import Hit, Hits, Memory
    from .store import MemoryList, MemoryStore


def __dir__() -> list[str]:
    """The public names (what ``from aimemory import *`` gives), not the module's helpers."""
    return sorted(__all__)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'aimemory' has no attribute {name!r}")
