"""Arrow columns as numpy arrays without pandas.

pyarrow's ``to_numpy`` goes through its pandas conversion layer, which imports pandas (0.3-0.5 s)
on first use even for plain integers. Opening a saved catalog only converts fixed-width columns
without nulls, which numpy can view in place, so :func:`to_numpy` reads their buffers directly and
leaves anything else (nulls, strings, several chunks of other types) to pyarrow.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

NUMPY_DTYPES = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
                pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64,
                pa.float32(): np.float32, pa.float64(): np.float64}


def to_numpy(data: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numpy array of ``data``: a read-only view for fixed-width columns without nulls (as
    pyarrow's zero-copy ``to_numpy``), a new array for booleans, pyarrow's conversion otherwise."""
    if isinstance(data, pa.ChunkedArray):
        if data.num_chunks == 1:
            data = data.chunk(0)
        elif data.num_chunks == 0 and data.type in NUMPY_DTYPES:
            return np.zeros(0, NUMPY_DTYPES[data.type])
        elif data.num_chunks == 0 and data.type == pa.bool_():
            return np.zeros(0, np.bool_)
        elif data.type in NUMPY_DTYPES or data.type == pa.bool_():
            return np.concatenate([to_numpy(chunk) for chunk in data.chunks])
        else:
            return data.to_numpy()
    if data.null_count:
        return data.to_numpy(zero_copy_only=False)
    n, offset = len(data), data.offset
    dtype = NUMPY_DTYPES.get(data.type)
    if dtype is not None:
        buf = data.buffers()[1]
        if buf is None or n == 0:
            return np.zeros(0, dtype)
        out: np.ndarray = np.frombuffer(buf, dtype=dtype, count=offset + n)[offset:]
        return out
    if data.type == pa.bool_():
        buf = data.buffers()[1]
        if buf is None or n == 0:
            return np.zeros(0, np.bool_)
        bits = np.unpackbits(np.frombuffer(buf, np.uint8), bitorder="little", count=offset + n)
        return bits[offset:].astype(np.bool_)
    return data.to_numpy(zero_copy_only=False)


def int64_array(values: np.ndarray) -> pa.Array:
    """An Arrow int64 array over numpy integers (for ``take``): ``pa.array`` of a numpy array imports
    pandas to check whether it is a pandas object."""
    data = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def float32_array(values: np.ndarray) -> pa.Array:
    """An Arrow float32 array over numpy floats, without pandas (see :func:`int64_array`)."""
    data = np.ascontiguousarray(values, dtype=np.float32)
    return pa.Array.from_buffers(pa.float32(), len(data), [None, pa.py_buffer(data)])


def _one_chunk(data: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(data, pa.ChunkedArray):
        return data.combine_chunks() if data.num_chunks != 1 else data.chunk(0)
    return data


def nulls(data: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """(n,) bool: where ``data`` is null, from its validity buffer."""
    data = _one_chunk(data)
    n, offset = len(data), data.offset
    validity = data.buffers()[0]
    if not data.null_count or validity is None:
        return np.zeros(n, np.bool_)
    valid = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little", count=offset + n)[offset:]
    out: np.ndarray = valid == 0
    return out


def filled(data: pa.Array | pa.ChunkedArray, fill: float) -> np.ndarray:
    """A numeric column as a new numpy array with nulls replaced by ``fill``, read from its buffers
    (``pc.fill_null`` builds an Arrow scalar, which imports pandas)."""
    data = _one_chunk(data)
    dtype = NUMPY_DTYPES[data.type]
    n, offset = len(data), data.offset
    if n == 0:
        return np.zeros(0, dtype)
    values = np.frombuffer(data.buffers()[1], dtype=dtype, count=offset + n)[offset:]
    out = values.astype(np.result_type(dtype, type(fill)))
    out[nulls(data)] = fill
    return out
