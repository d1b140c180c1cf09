"""Arrow arrays from Python values without pandas.

``pa.array`` and ``pa.table`` ask pandas whether their argument is one of its objects, and that
imports pandas (~0.2 s) on first use, even for a list of ints. A write builds a few rows per
``remember``, so in a short process (a CLI call, a hook) that import was a fifth of the run. The
types here are those of the store's table (:func:`aimemory.records.table_schema`); the arrays are
built from their buffers, as quickly as ``pa.array`` builds a few values, and anything else goes to
``pa.array``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import accumulate
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NUMBERS = {pa.int64(): np.int64, pa.int32(): np.int32, pa.float64(): np.float64, pa.float32(): np.float32}
_OFFSETS = {pa.string(): np.int32, pa.binary(): np.int32, pa.large_string(): np.int64, pa.large_binary(): np.int64}


def column(values: Sequence[Any], type: pa.DataType) -> pa.Array:
    """``values`` (None for null) -> an Arrow array of ``type``, equal to ``pa.array(values, type)``."""
    values = list(values)
    n = len(values)
    valid = [v is not None for v in values]
    nulls = n - sum(valid)
    if nulls == n and n and (type in _NUMBERS or type in _OFFSETS or pa.types.is_timestamp(type)
                             or pa.types.is_list(type)):
        return pa.nulls(n, type)  # a one-row write has several columns of nulls: built at once
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    if type in _NUMBERS:
        data = np.array([0 if v is None else v for v in values] if nulls else values, _NUMBERS[type])
        return pa.Array.from_buffers(type, n, [bitmap, pa.py_buffer(data)], null_count=nulls)
    if pa.types.is_timestamp(type) and type.unit == "us" and type.tz in ("UTC", "+00:00"):
        micros = np.array([0 if v is None else _micros(v) for v in values], np.int64)
        return pa.Array.from_buffers(type, n, [bitmap, pa.py_buffer(micros)], null_count=nulls)
    if type in _OFFSETS:
        encoded = [b"" if v is None else v.encode() if isinstance(v, str) else bytes(v) for v in values]
        offsets = np.array([0, *accumulate(map(len, encoded))], _OFFSETS[type])
        return pa.Array.from_buffers(type, n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))],
                                     null_count=nulls)
    if pa.types.is_list(type) and type.value_type in _OFFSETS:
        offsets = np.array([0, *accumulate(0 if v is None else len(v) for v in values)], np.int32)
        child = column([x for v in values if v is not None for x in v], type.value_type)
        return pa.Array.from_buffers(type, n, [bitmap, pa.py_buffer(offsets)], null_count=nulls, children=[child])
    return pa.array(values, type)


def _micros(value: datetime) -> int:
    if value.tzinfo is None:  # as pa.array reads a naive datetime: already UTC
        value = value.replace(tzinfo=timezone.utc)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def table(columns: dict[str, Any], schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` from one list (or ready Arrow array) per field."""
    arrays = [c if isinstance(c := columns[f.name], (pa.Array, pa.ChunkedArray)) else column(c, f.type)
              for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)
