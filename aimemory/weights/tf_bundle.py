"""Read a TensorFlow checkpoint ("tensor bundle": ``variables.index`` + ``variables.data-*``) without TF.

The index is a LevelDB-style sorted table: a 48-byte footer points at an index block, whose entries
point at data blocks; each block holds prefix-compressed (key, value) entries, then restart offsets,
then a 5-byte trailer (compression type, checksum). Each value is a ``BundleEntryProto`` (dtype,
shape, shard, offset, size) locating the tensor's raw little-endian bytes in a data shard. Keys are
the checkpoint's variable paths (``.../kernel/.ATTRIBUTES/VARIABLE_VALUE``); the empty key holds the
bundle header. Blocks may be Snappy-compressed, which a small decoder below handles.
"""

from __future__ import annotations

import struct
from typing import Callable

import numpy as np

from ..errors import CheckpointError
from .onnx_initializers import fields
from .rename import read_varint

FOOTER = 48
MAGIC = 0xDB4775248B80FB57
TRAILER = 5  # compression type byte + masked crc32c
NO_COMPRESSION, SNAPPY = 0, 1
# BundleEntryProto fields
ENTRY_DTYPE, ENTRY_SHAPE, ENTRY_SHARD, ENTRY_OFFSET, ENTRY_SIZE = 1, 2, 3, 4, 5
SHAPE_DIM, DIM_SIZE = 2, 1
# tensorflow DataType -> numpy (numeric types only; strings such as the object graph are skipped)
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 6: np.int8, 9: np.int64, 10: np.bool_,
          19: np.float16}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    return read_varint(buf, pos, "TensorFlow checkpoint index")


def snappy_decompress(data: bytes) -> bytes:
    """Raw Snappy block format: a varint length, then literal and back-reference elements."""
    length, pos = _varint(data, 0)
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            size = tag >> 2
            if size >= 60:
                extra = size - 59
                size = int.from_bytes(data[pos: pos + extra], "little")
                pos += extra
            size += 1
            out += data[pos: pos + size]
            pos += size
            continue
        if kind == 1:
            size, offset = 4 + ((tag >> 2) & 7), ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            size, offset = (tag >> 2) + 1, int.from_bytes(data[pos: pos + 2], "little")
            pos += 2
        else:
            size, offset = (tag >> 2) + 1, int.from_bytes(data[pos: pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise CheckpointError("corrupt Snappy block in a TensorFlow checkpoint index")
        for _ in range(size):  # byte by byte: a copy may overlap its own output
            out.append(out[-offset])
    if len(out) != length:
        raise CheckpointError("corrupt Snappy block in a TensorFlow checkpoint index (wrong length)")
    return bytes(out)


def _block(table: bytes, handle: bytes) -> list[tuple[bytes, bytes]]:
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if offset + size + TRAILER > len(table):
        raise CheckpointError("TensorFlow checkpoint index: a block runs past the end of the file")
    contents, kind = table[offset: offset + size], table[offset + size]
    if kind == SNAPPY:
        contents = snappy_decompress(contents)
    elif kind != NO_COMPRESSION:
        raise CheckpointError(f"TensorFlow checkpoint index: unknown block compression {kind}")
    (restarts,) = struct.unpack_from("<I", contents, len(contents) - 4)
    end = len(contents) - 4 - 4 * restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(contents, pos)
        unshared, pos = _varint(contents, pos)
        vlen, pos = _varint(contents, pos)
        key = key[:shared] + contents[pos: pos + unshared]
        pos += unshared
        entries.append((key, contents[pos: pos + vlen]))
        pos += vlen
    return entries


def read_index(index: bytes) -> dict[str, dict]:
    """``variables.index`` bytes -> {key: {"dtype", "shape", "shard", "offset", "size"}}."""
    if len(index) < FOOTER or struct.unpack("<Q", index[-8:])[0] != MAGIC:
        raise CheckpointError("not a TensorFlow checkpoint index (bad footer magic)")
    footer = index[-FOOTER:]
    _, pos = _varint(footer, 0)  # metaindex handle: unused
    _, pos = _varint(footer, pos)
    index_start = pos
    _, pos = _varint(footer, pos)
    _, pos = _varint(footer, pos)
    out: dict[str, dict] = {}
    for _, handle in _block(index, footer[index_start:pos]):
        for key, value in _block(index, handle):
            if not key:
                continue  # the bundle header
            entry = {"dtype": 0, "shape": [], "shard": 0, "offset": 0, "size": 0}
            for number, _, v in fields(memoryview(value)):
                if number == ENTRY_DTYPE:
                    entry["dtype"] = v
                elif number == ENTRY_SHAPE:
                    for n, _, dim in fields(v):  # type: ignore[arg-type]
                        if n == SHAPE_DIM:
                            entry["shape"].append(next((int(x) for m, _, x in fields(dim) if m == DIM_SIZE), 0))  # type: ignore[arg-type]
                elif number == ENTRY_SHARD:
                    entry["shard"] = v
                elif number == ENTRY_OFFSET:
                    entry["offset"] = v
                elif number == ENTRY_SIZE:
                    entry["size"] = v
            out[key.decode()] = entry
    return out


def read_bundle(index: bytes, shard: Callable[[int], bytes]) -> dict[str, np.ndarray]:
    """The numeric tensors of a checkpoint; ``shard(i)`` returns the bytes of data shard ``i``."""
    out, shards = {}, {}
    for key, entry in read_index(index).items():
        dtype = DTYPES.get(int(entry["dtype"]))
        if dtype is None:
            continue
        i = int(entry["shard"])
        data = shards.setdefault(i, shard(i))
        start, size = int(entry["offset"]), int(entry["size"])
        count = int(np.prod(entry["shape"])) if entry["shape"] else 1
        if start + size > len(data) or size != count * np.dtype(dtype).itemsize:
            raise CheckpointError(f"TensorFlow checkpoint: tensor {key!r} does not fit its data shard")
        out[key] = np.frombuffer(data, np.dtype(dtype).newbyteorder("<"), count, start).reshape(entry["shape"]).copy()
    return out
