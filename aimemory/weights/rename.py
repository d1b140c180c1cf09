"""The one renaming engine for checkpoint formats: a table of ``(pattern, replacement)`` rules per
format maps checkpoint names onto native ones, and a key that maps nowhere is an error, never
silently dropped. Also the protobuf varint that the ONNX and TensorFlow readers share."""

from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence, TypeVar

from ..errors import CheckpointError

T = TypeVar("T")
Rule = tuple[str, str | Callable[[re.Match], str]]


def rename(state: Mapping[str, T], rules: Sequence[Rule], *, ignored: re.Pattern | None = None,
           model: str, source: str = "checkpoint") -> dict[str, T]:
    """Checkpoint names -> native names by the first rule whose pattern matches the whole key;
    ``ignored`` keys are dropped; any other unmatched key raises :class:`CheckpointError`."""
    out: dict[str, T] = {}
    unknown = []
    for key, value in state.items():
        if ignored is not None and ignored.fullmatch(key):
            continue
        for pattern, native in rules:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, native, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{source}: keys with no place in {model} ({len(unknown)}): "
                              f"{', '.join(sorted(unknown)[:10])}")
    return out


def read_varint(buf: "bytes | memoryview", pos: int, what: str) -> tuple[int, int]:
    """A protobuf base-128 varint at ``pos`` -> (value, position after it)."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError(f"truncated {what} (varint runs past the end)")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
