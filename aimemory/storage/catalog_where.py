"""``where=`` on metadata, vectorised: every memory's metadata is flattened once into entries
(row, key, type, number, string), one per scalar value or list element, so a filter is a few numpy /
pyarrow compares over the entries of one key instead of a Python loop over memories.

Matching follows Python's ``==`` as the per-row filter did: bools, ints and floats compare as numbers
(``True == 1 == 1.0``), strings only with strings, ``None`` with ``None`` (and with a missing key);
a list value matches when any element does; dicts and nested lists match nothing.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import FilterError
from .arrow_numpy import to_numpy
from .columns import Column, Grow

NONE, NUM, STR, OTHER = 0, 1, 2, 3  # entry types; OTHER is present but never equal to a wanted value
TAGS = "tags"

ENTRY_SCHEMA = pa.schema([("row", pa.int64()), ("key", pa.int32()), ("type", pa.int8()),
                          ("num", pa.float64()), ("str", pa.large_string()), ("live", pa.bool_())])


def _scalar(v: Any) -> tuple[int, float, str | None]:
    if v is None:
        return NONE, math.nan, None
    if isinstance(v, (bool, int, float)):
        try:
            return NUM, float(v), None
        except OverflowError:  # an int too large for a float: equal to no wanted value we can hold
            return OTHER, math.nan, None
    if isinstance(v, str):
        return STR, math.nan, v
    return OTHER, math.nan, None


def _values(v: Any) -> list[tuple[int, float, str | None]]:
    if isinstance(v, list):
        return [_scalar(x) for x in v] if v else [(OTHER, math.nan, None)]  # empty: present, no match
    return [_scalar(v)]


def check_where(where: Any) -> dict[str, list]:
    """Validate ``where=`` (same messages as always) -> key -> list of wanted values."""
    if not isinstance(where, Mapping):
        raise FilterError(f"where= must be a dict like {{'tags': 'pets'}}; got {type(where).__name__}")
    out = {}
    for key, want in where.items():
        if not isinstance(key, str):
            raise FilterError(f"where= keys must be strings; got {key!r}")
        wanted = list(want) if isinstance(want, (list, tuple, set, frozenset)) else [want]
        for w in wanted:
            if not isinstance(w, (str, int, float, bool)) and w is not None:
                raise FilterError(f"where={{{key!r}: ...}} values must be str, int, float, bool or "
                                  f"None (or a list of them); got {type(w).__name__}")
        out[key] = wanted
    return out


class MetaEntries:
    """Flattened metadata of primary rows; entries of a row are superseded (``live`` False) when
    its metadata changes."""

    def __init__(self, n_rows: int = 0, table: pa.Table | None = None, keys: list[str] | None = None,
                 start: np.ndarray | None = None, end: np.ndarray | None = None):
        self.key_names: list[str] = list(keys or [])
        self.key_code = {k: i for i, k in enumerate(self.key_names)}
        if table is None:
            # built from typed empty arrays: Schema.empty_table() imports pandas (0.3-0.5 s)
            table = pa.Table.from_arrays([pa.nulls(0, f.type) for f in ENTRY_SCHEMA], schema=ENTRY_SCHEMA)
        self.row = Grow(np.int64, to_numpy(table.column("row")))
        self.key = Grow(np.int32, to_numpy(table.column("key")))
        self.type = Grow(np.int8, to_numpy(table.column("type")))
        self.num = Grow(np.float64, to_numpy(table.column("num")))
        self.live = Grow(np.bool_, to_numpy(table.column("live")))
        self.str = Column(table.column("str"), pa.large_string())
        # per catalog row: its entries are [start, end) (rows without metadata: empty)
        self.start = Grow(np.int64, start if start is not None else np.zeros(n_rows, np.int64))
        self.end = Grow(np.int64, end if end is not None else np.zeros(n_rows, np.int64))

    def __len__(self) -> int:
        return self.row.n

    def add_rows(self, n_new: int, positions: Iterable[int], texts: Iterable[str | None]) -> None:
        """Grow to ``n_new`` catalog rows, flattening the metadata JSON of ``positions`` (all of them
        among the new rows)."""
        old = self.start.n
        metas = [(int(p), json.loads(text)) for p, text in zip(positions, texts) if text]
        if metas and metas[0][0] < old:
            raise AssertionError("add_rows takes new rows only; set_row changes a held one")
        starts, ends = self._add(metas)
        if n_new > old:  # the new rows' spans are appended, so a borrowed column is not copied in
            start, end = np.zeros(n_new - old, np.int64), np.zeros(n_new - old, np.int64)
            at = np.fromiter((p for p, _ in metas), dtype=np.int64, count=len(metas)) - old
            start[at], end[at] = starts, ends
            self.start.extend(start)
            self.end.extend(end)

    def set_row(self, p: int, meta: Mapping[str, Any]) -> None:
        s, e = self.start.buf[p], self.end.buf[p]
        if e > s:
            self.live.writable()[s:e] = False
        (start,), (end,) = self._add([(p, meta)])
        self.start.writable()[p], self.end.writable()[p] = start, end

    def _add(self, metas: list[tuple[int, Mapping[str, Any]]]) -> tuple[list[int], list[int]]:
        """Append the entries of these rows (each row's entries end up contiguous) -> each row's
        entries' (starts, ends)."""
        rows: list[int] = []
        keys, types, nums, strs = [], [], [], []
        starts, ends = [], []
        first = self.row.n
        code_of = self.key_code
        for p, meta in metas:
            starts.append(first + len(rows))
            for key, value in meta.items():
                code = code_of.get(key)
                if code is None:
                    code = code_of[key] = len(self.key_names)
                    self.key_names.append(key)
                for t, x, s_ in _values(value):
                    rows.append(p)
                    keys.append(code)
                    types.append(t)
                    nums.append(x)
                    strs.append(s_)
            ends.append(first + len(rows))
        self.row.extend(rows)
        self.key.extend(keys)
        self.type.extend(types)
        self.num.extend(nums)
        self.live.extend(np.ones(len(rows), np.bool_))
        self.str.extend(strs)
        return starts, ends

    def matches(self, key: str, wanted: list, n_rows: int) -> np.ndarray:
        """Bool (n_rows,): rows whose metadata ``key`` equals one of ``wanted`` (or lacks the key
        when None is wanted; except ``tags``, a column, which None never matches)."""
        out = np.zeros(n_rows, dtype=bool)
        code = self.key_code.get(key)
        present = np.zeros(0, np.int64)
        if code is not None:
            idx = np.flatnonzero((self.key.view == code) & self.live.view)
            types = self.type.view[idx]
            hit = np.zeros(len(idx), dtype=bool)
            nums = [float(w) for w in wanted if isinstance(w, (bool, int, float))]
            strs = [w for w in wanted if isinstance(w, str)]
            if nums:
                hit |= (types == NUM) & np.isin(self.num.view[idx], nums)
            if strs:
                is_str = types == STR
                taken = self.str.arrow().take(pa.array(idx[is_str]))
                hit[is_str] |= pc.is_in(taken, value_set=pa.array(strs, pa.large_string())) \
                    .to_numpy(zero_copy_only=False)
            if any(w is None for w in wanted):
                hit |= types == NONE
            rows = self.row.view[idx]
            out[rows[hit]] = True
            present = rows
        if key != TAGS and any(w is None for w in wanted):
            has = np.zeros(n_rows, dtype=bool)
            has[present] = True
            out |= ~has
        return out

    def table(self) -> pa.Table:
        return pa.table({"row": self.row.view, "key": self.key.view, "type": self.type.view,
                         "num": self.num.view, "str": self.str.arrow(), "live": self.live.view},
                        schema=ENTRY_SCHEMA)
