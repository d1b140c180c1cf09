"""Column containers for the catalog: growable numpy buffers, Arrow string columns with an appended
tail, and a sorted-key index (binary search over fixed-width bytes) with a small dict for new keys.

They let a catalog loaded from a memory-mapped Arrow file answer at once (no per-row Python work on
open) and still take appends in O(rows appended).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrow_numpy import int64_array

MIN_CAPACITY = 64
DIRECT_MAX = 256  # beyond this, Arrow's take (C++ over all positions) is quicker
FEW_VALUES = 8  # up to this many values are read one by one: an Arrow take costs 5-8 us whatever its size
# a recall reads nine string columns at its ~10 hits: from the buffers, 10 values cost ~3 us (a
# slice and a decode each) where an Arrow take and to_pylist cost 5-7 us whatever their size
DIRECT_TYPES = {pa.large_string(): np.int64, pa.string(): np.int32}


class Grow:
    """A numpy array with spare capacity: ``extend`` is amortised O(len(values)).

    Read-only data (a column memory-mapped from a saved catalog) is adopted as it is, not copied:
    opening a 1M-row catalog copied 0.25 s of columns it mostly only reads. Rows appended to such a
    column wait beside it until the column is first read (``view``, ``buf``, ``writable``), which
    copies it into a buffer of its own: an open that applies a few saved rows to every column
    (storage/catalog_tail.py) copies only the columns its process goes on to read."""

    def __init__(self, dtype, data: np.ndarray | Sequence | None = None):
        data = np.asarray(data if data is not None else [], dtype=dtype)
        self.n = len(data)
        self._waiting: list[np.ndarray] = []  # appended to a borrowed column, not yet copied in
        if not data.flags.writeable and data.ndim == 1:
            self._buf = data  # borrowed: read-only until the first read after a change copies it
            return
        self._buf = np.empty(max(MIN_CAPACITY, self.n), dtype=dtype)
        self._buf[: self.n] = data

    @property
    def nbytes(self) -> int:
        """Bytes held: the buffer (borrowed or owned) and the rows waiting beside it."""
        return int(self._buf.nbytes) + sum(int(w.nbytes) for w in self._waiting)

    def extend(self, values) -> None:
        values = np.asarray(values, dtype=self._buf.dtype)
        if not len(values):
            return
        end = self.n + len(values)
        if not self._buf.flags.writeable:  # borrowed: set the rows aside (a copy: the caller's may change)
            self._waiting.append(np.array(values, copy=True))
            self.n = end
            return
        if end > len(self._buf):
            self._own(end)
        self._buf[self.n:end] = values
        self.n = end

    def _own(self, need: int) -> None:
        """Move the rows (the borrowed ones and those waiting) into a buffer of our own with room
        for ``need`` rows."""
        held = self.n - sum(len(w) for w in self._waiting)
        new = np.empty(max(need, 2 * len(self._buf), MIN_CAPACITY), dtype=self._buf.dtype)
        new[:held] = self._buf[:held]
        at = held
        for w in self._waiting:
            new[at:at + len(w)] = w
            at += len(w)
        self._buf, self._waiting = new, []

    @property
    def buf(self) -> np.ndarray:
        """The buffer (rows ``[0, n)`` are the column), copied in first when rows wait beside it."""
        if self._waiting:
            self._own(self.n)
        return self._buf

    def last(self) -> Any:
        """The last row's value, without copying a borrowed column in."""
        return self._waiting[-1][-1] if self._waiting else self.view[-1]

    def writable(self) -> np.ndarray:
        """The buffer, for a change in place (a borrowed one is copied first)."""
        if self._waiting or not self._buf.flags.writeable:
            self._own(self.n)
        return self._buf

    @property
    def view(self) -> np.ndarray:
        return self.buf[: self.n]


class Column:
    """An Arrow column (read-only, possibly memory-mapped) + Python values appended or overridden since."""

    def __init__(self, base: pa.Array | pa.ChunkedArray, arrow_type: pa.DataType):
        if isinstance(base, pa.ChunkedArray):
            base = base.combine_chunks() if base.num_chunks != 1 else base.chunk(0)
        self.type = arrow_type
        self.base = base if base.type == arrow_type else base.cast(arrow_type)
        self.tail: list = []
        self.over: dict[int, Any] = {}  # base position -> value set since load
        self._arrow: pa.Array | None = None
        self._numpy: np.ndarray | None = None
        self._direct = _StringBuffers.of(self.base) or _StringListBuffers.of(self.base)

    def __len__(self) -> int:
        return len(self.base) + len(self.tail)

    def get(self, p: int) -> Any:
        nb = len(self.base)
        if p >= nb:
            return self.tail[p - nb]
        if p in self.over:
            return self.over[p]
        if self._direct is not None:
            return self._direct.value(p)
        return self.base[p].as_py()

    def take(self, positions: np.ndarray) -> list:
        """Values at many positions in one read of the buffers or one Arrow take (plus the tail and
        overrides)."""
        positions = np.asarray(positions, dtype=np.int64)
        # every position is a loaded row unless rows were appended since (numpy's max costs 2 us)
        if self._direct is not None and len(positions) <= DIRECT_MAX and not self.over and \
                (not self.tail or not len(positions) or positions.max() < len(self.base)):
            return self._direct.values(positions)
        if len(positions) <= FEW_VALUES:
            return [self.get(p) for p in positions.tolist()]
        nb = len(self.base)
        if not self.over and (not len(positions) or positions.max() < nb):  # the usual case: one take
            values: list = self.base.take(int64_array(positions)).to_pylist()
            return values
        in_base = positions < nb
        out = [None] * len(positions)
        if in_base.any():
            idx = np.flatnonzero(in_base)
            for i, v in zip(idx.tolist(), self.base.take(int64_array(positions[idx])).to_pylist()):
                out[i] = v
        for i in np.flatnonzero(~in_base).tolist():
            out[i] = self.tail[int(positions[i]) - nb]
        if self.over:
            for i, p in enumerate(positions.tolist()):
                if p in self.over:
                    out[i] = self.over[p]
        return out

    def set(self, p: int, value: Any) -> None:
        nb = len(self.base)
        if p >= nb:
            self.tail[p - nb] = value
        else:
            self.over[p] = value
        self._arrow = self._numpy = None

    def extend(self, values: Iterable) -> None:
        self.tail.extend(values)
        self._arrow = self._numpy = None

    def arrow(self) -> pa.Array:
        """The whole column as one Arrow array (cached until the next change)."""
        if self._arrow is None:
            parts = [self.base]
            if self.tail:
                parts.append(pa.array(self.tail, self.type))
            arr = pa.concat_arrays(parts) if len(parts) > 1 else self.base
            if self.over:  # overridden base rows: take them from an array of the new values
                where = np.fromiter(self.over, dtype=np.int64, count=len(self.over))
                extra = pa.array([self.over[int(p)] for p in where], self.type)
                idx = np.arange(len(arr), dtype=np.int64)
                idx[where] = len(arr) + np.arange(len(where))
                arr = pa.concat_arrays([arr, extra]).take(pa.array(idx))
            self._arrow = arr
        return self._arrow

    def numpy(self) -> np.ndarray:
        """An object array of Python values (cached; O(n) to build, for rare whole-column reads)."""
        if self._numpy is None:
            out = np.empty(len(self), dtype=object)
            out[:] = self.arrow().to_pylist()
            self._numpy = out
        return self._numpy


class _StringBuffers:
    """A string array's offsets and data read in place: one value is a slice and a decode."""

    def __init__(self, offsets: np.ndarray, data: memoryview, validity: np.ndarray | None, first_bit: int,
                 all_null: bool = False):
        self.offsets, self.data, self.validity, self.first_bit = offsets, data, validity, first_bit
        # columns a store may never fill (sources, mime types, authors of text notes): 0.5 us a value
        # in slices and bit checks for nothing
        self.all_null = all_null

    def _null(self, p: int) -> bool:
        if self.validity is None:
            return False
        bit = self.first_bit + p
        return not (int(self.validity[bit >> 3]) >> (bit & 7)) & 1

    @classmethod
    def of(cls, array: pa.Array) -> "_StringBuffers | None":
        """The reader for ``array``, or None for another type."""
        width = DIRECT_TYPES.get(array.type)
        if width is None:
            return None
        validity, offsets, data = array.buffers()[:3]
        offs = np.frombuffer(offsets, dtype=width)[array.offset: array.offset + len(array) + 1] \
            if offsets is not None else np.zeros(1, dtype=width)
        bits = np.frombuffer(validity, dtype=np.uint8) if validity is not None and array.null_count else None
        return cls(offs, memoryview(data) if data is not None else memoryview(b""), bits, array.offset,
                   len(array) > 0 and array.null_count == len(array))

    def value(self, p: int) -> str | None:
        if self.all_null:
            return None
        start, end = int(self.offsets[p]), int(self.offsets[p + 1])
        if start == end and self._null(p):
            return None
        return self.data[start:end].tobytes().decode()

    def values(self, positions: np.ndarray) -> list:
        """(m,) int64 positions -> their values (a null is an empty slice, so only those are checked)."""
        if self.all_null:
            return [None] * len(positions)
        data, offsets = self.data, self.offsets
        out: list = [data[a:b].tobytes().decode() for a, b in zip(offsets[positions].tolist(),
                                                                   offsets[positions + 1].tolist())]
        if self.validity is not None:
            for i, p in enumerate(positions.tolist()):
                if not out[i] and self._null(p):
                    out[i] = None
        return out


class _StringListBuffers(_StringBuffers):
    """A list-of-strings array read in place: its list offsets over a string child."""

    def __init__(self, offsets: np.ndarray, items: _StringBuffers, validity: np.ndarray | None, first_bit: int,
                 all_null: bool = False):
        super().__init__(offsets, memoryview(b""), validity, first_bit, all_null)
        self.items = items

    @classmethod
    def of(cls, array: pa.Array) -> "_StringListBuffers | None":  # type: ignore[override]
        if not pa.types.is_list(array.type) or array.type.value_type != pa.string():
            return None
        items = _StringBuffers.of(array.values)  # the whole child: the list offsets index into it
        validity, offsets = array.buffers()[:2]
        offs = np.frombuffer(offsets, dtype=np.int32)[array.offset: array.offset + len(array) + 1] \
            if offsets is not None else np.zeros(1, dtype=np.int32)
        bits = np.frombuffer(validity, dtype=np.uint8) if validity is not None and array.null_count else None
        return cls(offs, items, bits, array.offset, len(array) > 0 and array.null_count == len(array)) \
            if items is not None else None

    def value(self, p: int) -> list | None:  # type: ignore[override]
        if self.all_null:
            return None
        start, end = int(self.offsets[p]), int(self.offsets[p + 1])
        if start == end and self._null(p):
            return None
        return [self.items.value(i) for i in range(start, end)]

    def values(self, positions: np.ndarray) -> list:
        if self.all_null:
            return [None] * len(positions)
        return [self.value(p) for p in positions.tolist()]


def fixed_bytes(strings: pa.Array) -> tuple[np.ndarray, int]:
    """A string array -> (numpy 'S<w>' array, w); nulls become b''. Vectorised for ASCII keys."""
    strings = strings.cast(pa.large_string()) if strings.type != pa.large_string() else strings
    filled = pc.fill_null(strings, "")
    width = int(pc.max(pc.binary_length(filled)).as_py() or 0) if len(filled) else 0
    width = max(width, 1)
    if int(pc.max(pc.utf8_length(filled)).as_py() or 0) == width or len(filled) == 0:
        try:  # ASCII (as generated ids and hex hashes are): pad and view the bytes in place
            padded = pc.utf8_rpad(filled, width=width, padding="\x00").cast(pa.large_binary())
            fixed = padded.cast(pa.binary(width))
            data = np.frombuffer(fixed.buffers()[1], dtype=f"S{width}", count=len(fixed) + fixed.offset)
            return data[fixed.offset:].copy(), width
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return np.array([s.encode() for s in filled.to_pylist()], dtype=f"S{width}"), width


class KeyIndex:
    """String key -> row positions: a sorted fixed-width byte array searched by bisection (built or
    loaded once), plus a dict for keys added since."""

    def __init__(self, sorted_keys: np.ndarray | None = None, order: np.ndarray | None = None):
        self.sorted = sorted_keys if sorted_keys is not None else np.zeros(0, dtype="S1")
        self.order = order if order is not None else np.zeros(0, dtype=np.int64)
        self.tail: dict[str, list[int]] = {}

    @classmethod
    def build(cls, keys: pa.Array, positions: np.ndarray) -> "KeyIndex":
        """``keys`` (strings) at ``positions`` (int64)."""
        if len(keys) == 0:
            return cls()
        data, _ = fixed_bytes(keys)
        order = np.argsort(data, kind="stable")
        return cls(data[order], np.asarray(positions, dtype=np.int64)[order])

    def find(self, key: str) -> list[int]:
        out: list[int] = []
        raw = key.encode()
        width = self.sorted.dtype.itemsize
        if len(self.sorted) and len(raw) <= width and not raw.endswith(b"\x00"):
            lo = int(np.searchsorted(self.sorted, raw, "left"))
            hi = int(np.searchsorted(self.sorted, raw, "right"))
            out = self.order[lo:hi].tolist()
        extra = self.tail.get(key)
        return out + extra if extra else out

    def find_many(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`find` for many keys in two bisections -> (positions (m,) int64, which (m,) int64):
        ``which[j]`` is the index in ``keys`` of the key held at ``positions[j]``."""
        width = self.sorted.dtype.itemsize
        raw = [key.encode() for key in keys]
        fits = np.array([len(r) <= width and not r.endswith(b"\x00") for r in raw], bool)  # (k,)
        positions, which = np.zeros(0, np.int64), np.zeros(0, np.int64)
        if len(self.sorted) and fits.any():
            wanted = np.array([r if ok else b"" for r, ok in zip(raw, fits)], dtype=self.sorted.dtype)  # (k,)
            lo = np.searchsorted(self.sorted, wanted, "left")
            counts = np.where(fits, np.searchsorted(self.sorted, wanted, "right") - lo, 0)  # (k,)
            which = np.repeat(np.arange(len(keys), dtype=np.int64), counts)  # (m,)
            firsts = np.cumsum(counts) - counts  # where each key's run starts in the output
            positions = self.order[np.arange(len(which)) - firsts[which] + lo[which]]
        if self.tail:
            extra = [(i, p) for i, key in enumerate(keys) for p in self.tail.get(key, ())]
            if extra:
                more = np.asarray(extra, np.int64)  # (e, 2)
                positions, which = np.concatenate([positions, more[:, 1]]), np.concatenate([which, more[:, 0]])
        return positions, which

    def add(self, keys: Iterable[str | None], positions: Iterable[int]) -> None:
        for key, p in zip(keys, positions):
            if key is not None:
                self.tail.setdefault(key, []).append(int(p))

    def merged(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted keys, positions) including the tail: what a saved catalog stores."""
        if not self.tail:
            return self.sorted, self.order
        keys = [k for k, ps in self.tail.items() for _ in ps]
        pos = np.array([p for ps in self.tail.values() for p in ps], dtype=np.int64)
        width = max([self.sorted.dtype.itemsize] + [len(k.encode()) for k in keys])
        base = self.sorted.astype(f"S{width}")
        extra = np.array([k.encode() for k in keys], dtype=f"S{width}")
        o = np.argsort(extra, kind="stable")
        extra, pos = extra[o], pos[o]
        at = np.searchsorted(base, extra, "right")
        return np.insert(base, at, extra), np.insert(self.order, at, pos)
