"""A recall's arguments, checked before anything is encoded: ``k``, ``modality``, and the times of
``since=`` / ``until=``."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Sequence

from .errors import InputError
from .inputs import MODALITIES
from .semantics import duration_seconds, epoch_seconds


def check_recall_args(k: object, modality: str | Sequence[str] | None) -> list[str] | None:
    """``k`` must be a positive int; ``modality`` (one or several) -> a list, or None for all."""
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive int; got {k!r}")
    if modality is None:
        return None
    modalities = [modality] if isinstance(modality, str) else list(modality)
    bad = [m for m in modalities if m not in MODALITIES]
    if bad:
        raise InputError(f"modality={bad[0]!r} is not one of {MODALITIES}")
    return modalities


def timestamp(value: datetime | float | str | None, name: str = "since") -> float | None:
    """``since=`` / ``until=``: a datetime (naive means UTC), ISO 8601 text (naive: UTC), an age as
    the CLI takes it ("30m", "2h", "7d", "4w": that long ago) or epoch seconds -> epoch seconds."""
    if value is None:
        return None
    if isinstance(value, str) and (age := duration_seconds(value)) is not None:
        return time.time() - age
    return epoch_seconds(value, name)
