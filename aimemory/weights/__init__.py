"""Weight machinery shared by every native model: read a checkpoint into tensors (safely), rename
keys with a per-format table, check every shape, assign into a module.

The loader (torch) is imported on first use of its names, so the renaming tables and the hub
helpers stay importable in a process without torch (the numpy BERT reads the BERT table)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .loader import assign_weights, load_state_dict

__all__ = ["assign_weights", "load_state_dict"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
