"""Arrow IPC weight files: a checkpoint converted once (already renamed, fused, float32) into a file
whose tensors memory-map zero-copy into torch.

Layout: one record batch per tensor with a single ``uint8`` column holding its raw bytes (Arrow aligns
every buffer, so each tensor starts aligned); names, dtypes and shapes sit in the schema metadata
together with any JSON ``extra`` the caller stores (config, dims). The file is mapped copy-on-write:
tensors share the page cache, stay writable for the process, and never write back to disk.
"""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path
from typing import Mapping

import torch

from ..errors import CheckpointError

FORMAT_TAG = "aimemory.weights.v1"
META_KEY = b"aimemory"
_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int8,
    torch.uint8, torch.bool)}


def save_arrow(state: Mapping[str, torch.Tensor], path: str | Path, extra: Mapping | None = None) -> Path:
    """Write ``state`` as an Arrow IPC file (atomically: temp file + rename)."""
    import numpy as np
    import pyarrow as pa

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries, arrays = [], []
    for name, t in state.items():
        t = t.detach().contiguous().cpu()
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise CheckpointError(f"cannot store {name} of dtype {t.dtype} in an Arrow weight file")
        raw = t.reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
        arrays.append(pa.array(raw.numpy().view(np.uint8), type=pa.uint8()))
        entries.append({"name": name, "dtype": dtype, "shape": list(t.shape)})
    meta = {"format": FORMAT_TAG, "tensors": entries, "extra": dict(extra or {})}
    schema = pa.schema([("data", pa.uint8())], metadata={META_KEY: json.dumps(meta).encode()})
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for arr in arrays:
            writer.write_batch(pa.record_batch([arr], schema=schema))
    os.replace(tmp, path)
    return path


def load_arrow(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Map an Arrow weight file -> ({name: tensor viewing the mapped file}, extra)."""
    import pyarrow as pa

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)  # private pages: writable, never flushed
        reader = pa.ipc.open_file(pa.py_buffer(mm))
        meta = json.loads(reader.schema.metadata[META_KEY])
        if meta.get("format") != FORMAT_TAG or len(meta["tensors"]) != reader.num_record_batches:
            raise CheckpointError(f"{path} is not an aimemory weight file ({meta.get('format')!r})")
        whole = torch.frombuffer(mm, dtype=torch.uint8)  # (file bytes,) the single zero-copy view
        base = pa.py_buffer(mm).address
        state = {}
        for i, entry in enumerate(meta["tensors"]):
            buf = reader.get_batch(i).column(0).buffers()[1]  # the uint8 values: a slice of the map
            dtype, shape = _DTYPES[entry["dtype"]], entry["shape"]
            if buf is None or buf.size == 0:
                state[entry["name"]] = torch.empty(shape, dtype=dtype)
                continue
            start = buf.address - base
            n = int(torch.Size(shape).numel()) * dtype.itemsize
            if start < 0 or start + n > len(mm) or n > buf.size:  # pyarrow copied, or a lying header
                raise CheckpointError(f"{path}: tensor {entry['name']} is not inside the mapped file")
            state[entry["name"]] = whole[start:start + n].view(dtype).view(shape)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"cannot read Arrow weight file {path}: {exc}") from exc
    return state, meta["extra"]
