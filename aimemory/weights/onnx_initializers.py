"""Read the weight tensors (``graph.initializer``) of an ONNX model without the ``onnx`` package.

An ONNX file is a protobuf ``ModelProto``; the weights are ``TensorProto`` messages in its graph,
with their bytes inline (``raw_data`` or a typed repeated field) or in a side file named by
``external_data`` (location, offset, length). Only that part of the schema is decoded here, with a
small protobuf wire-format reader, so ONNX weights load with numpy and torch alone. Operators and
attributes are not read: the native module that receives the weights defines the computation.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from ..errors import CheckpointError
from .rename import read_varint

# protobuf wire types
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
# field numbers (onnx.proto3)
MODEL_GRAPH = 7
GRAPH_INITIALIZER = 5
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_FLOAT_DATA, TENSOR_INT32_DATA = 1, 2, 4, 5
TENSOR_INT64_DATA, TENSOR_NAME, TENSOR_RAW_DATA, TENSOR_DOUBLE_DATA = 7, 8, 9, 10
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 13, 14
ENTRY_KEY, ENTRY_VALUE = 1, 2
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# TensorProto.DataType -> numpy dtype (the types weight files use)
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
          10: np.float16, 11: np.float64}
INT32_CARRIED = {2, 3, 4, 5, 6, 10}  # types whose typed values sit in int32_data


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    return read_varint(buf, pos, "ONNX protobuf")


def fields(buf: memoryview) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of each field of one message; LEN values are memoryviews."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = _varint(buf, pos)
        elif wire == LEN:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise CheckpointError("truncated ONNX protobuf (a field runs past the end)")
            value, pos = buf[pos: pos + size], pos + size
        elif wire == FIXED64:
            value, pos = buf[pos: pos + 8], pos + 8
        elif wire == FIXED32:
            value, pos = buf[pos: pos + 4], pos + 4
        else:
            raise CheckpointError(f"not an ONNX protobuf (wire type {wire} at byte {pos})")
        yield number, wire, value


def _ints(wire: int, value: object) -> list[int]:
    """A repeated integer field, packed (LEN) or not (VARINT); int64 two's complement undone."""
    if wire == VARINT:
        raw = [value]
    else:
        raw, pos, buf = [], 0, value
        while pos < len(buf):  # type: ignore[arg-type]
            v, pos = _varint(buf, pos)  # type: ignore[arg-type]
            raw.append(v)
    return [v - (1 << 64) if v >= 1 << 63 else v for v in raw]  # type: ignore[operator]


def _tensor(buf: memoryview, external: Callable[[str, int, int | None], bytes]) -> tuple[str, np.ndarray]:
    dims: list[int] = []
    name, dtype_id, raw, location = "", 0, None, 0
    typed: dict[int, list] = {}
    ext: dict[str, str] = {}
    for number, wire, value in fields(buf):
        if number == TENSOR_DIMS:
            dims += _ints(wire, value)
        elif number == TENSOR_DATA_TYPE:
            dtype_id = int(value)  # type: ignore[arg-type]
        elif number == TENSOR_NAME:
            name = bytes(value).decode()  # type: ignore[arg-type]
        elif number == TENSOR_RAW_DATA:
            raw = bytes(value)  # type: ignore[arg-type]
        elif number == TENSOR_DATA_LOCATION:
            location = int(value)  # type: ignore[arg-type]
        elif number == TENSOR_EXTERNAL_DATA:
            entry = {n: bytes(v).decode() for n, _, v in fields(value)}  # type: ignore[arg-type]
            ext[entry.get(ENTRY_KEY, "")] = entry.get(ENTRY_VALUE, "")
        elif number == TENSOR_FLOAT_DATA:
            typed.setdefault(number, []).extend(np.frombuffer(bytes(value), "<f4").tolist())  # type: ignore[arg-type]
        elif number == TENSOR_DOUBLE_DATA:
            typed.setdefault(number, []).extend(np.frombuffer(bytes(value), "<f8").tolist())  # type: ignore[arg-type]
        elif number in (TENSOR_INT32_DATA, TENSOR_INT64_DATA):
            typed.setdefault(number, []).extend(_ints(wire, value))
    if dtype_id not in DTYPES:
        raise CheckpointError(f"ONNX tensor {name!r}: unsupported data type {dtype_id}")
    dtype = np.dtype(DTYPES[dtype_id]).newbyteorder("<")
    count = int(np.prod(dims)) if dims else 1
    if location == EXTERNAL:
        if "location" not in ext:
            raise CheckpointError(f"ONNX tensor {name!r} is external but names no file")
        length = int(ext["length"]) if "length" in ext else None
        raw = external(ext["location"], int(ext.get("offset", 0)), length)
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise CheckpointError(f"ONNX tensor {name!r}: {len(raw)} bytes for shape {dims} of {dtype}")
        array = np.frombuffer(raw, dtype).copy()
    else:
        values = typed.get(TENSOR_FLOAT_DATA) or typed.get(TENSOR_DOUBLE_DATA) or typed.get(
            TENSOR_INT64_DATA) or typed.get(TENSOR_INT32_DATA) or []
        if dtype_id == 10:  # float16 values travel as their bit patterns in int32_data
            array = np.asarray(values, np.uint16).view(np.float16)
        else:
            array = np.asarray(values, dtype)
        if array.size != count:
            raise CheckpointError(f"ONNX tensor {name!r}: {array.size} values for shape {dims}")
    return name, array.reshape(dims).astype(dtype.newbyteorder("="))


def read_initializers(model: bytes, external: Callable[[str, int, int | None], bytes] | None = None
                      ) -> dict[str, np.ndarray]:
    """ONNX ``ModelProto`` bytes -> {initializer name: array}. ``external(location, offset, length)``
    returns the bytes of a tensor stored outside the model file (``length`` None: to the end)."""

    def no_external(location: str, offset: int, length: int | None) -> bytes:
        raise CheckpointError(f"the ONNX model keeps weights in {location!r}, which was not provided")

    view = memoryview(model)
    graphs = [value for number, wire, value in fields(view) if number == MODEL_GRAPH and wire == LEN]
    if len(graphs) != 1:
        raise CheckpointError("not an ONNX model: expected exactly one graph in the ModelProto")
    out: dict[str, np.ndarray] = {}
    for number, wire, value in fields(graphs[0]):  # type: ignore[arg-type]
        if number == GRAPH_INITIALIZER and wire == LEN:
            name, array = _tensor(value, external or no_external)  # type: ignore[arg-type]
            out[name] = array
    return out


def slice_reader(blob: bytes) -> Callable[[str, int, int | None], bytes]:
    """An ``external`` callback over one side file already in memory (the usual single ``.data``)."""

    def read(location: str, offset: int, length: int | None) -> bytes:
        end = len(blob) if length is None else offset + length
        if end > len(blob):
            raise CheckpointError(f"external ONNX data {location!r} is shorter than the model says")
        return blob[offset:end]

    return read


__all__ = ["read_initializers", "slice_reader", "fields"]
