"""A recall's arguments, checked before anything is encoded: ``k``, ``modality``, and the times of
``since=`` / ``until=``."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from typing import Sequence

from .errors import InputError
from .inputs import MODALITIES

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")  # since="7d": a week ago, as in the CLI
_AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


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
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InputError(f"{name}={value!r} is not a time; pass a datetime, ISO text, an age like "
                             "'7d', or epoch seconds")
        return float(value)
    if isinstance(value, str):
        if age := _AGE.match(value):
            return time.time() - float(age.group(1)) * _AGE_SECONDS[age.group(2)]
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InputError(f"{name}={value!r} is not an ISO date (2024-05-01, 2024-05-01T12:00) or "
                             "an age (30m, 2h, 7d, 4w)") from None
    if not isinstance(value, datetime):
        raise InputError(f"{name} takes a datetime, ISO text, an age like '7d' or epoch seconds; "
                         f"got a {type(value).__name__}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()
