"""aimemory.storage.columns: a growable column adopts read-only (memory-mapped) data without a copy
and copies it on its first change, leaving the borrowed data untouched."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from aimemory.storage.columns import Grow


def _mapped_like(values: list[int]) -> np.ndarray:
    array = pa.array(values, pa.int64()).to_numpy(zero_copy_only=True)  # read-only, as a mapped column is
    assert not array.flags.writeable
    return array


def test_read_only_data_is_borrowed_until_the_first_change():
    data = _mapped_like([5, 6, 7])
    column = Grow(np.int64, data)
    assert column.buf is data and column.view.tolist() == [5, 6, 7]  # no copy on open
    column.writable()[1] = 60
    assert column.view.tolist() == [5, 60, 7] and data.tolist() == [5, 6, 7]
    column.extend([8])
    assert column.view.tolist() == [5, 60, 7, 8]


def test_an_extend_of_borrowed_data_copies_it_first():
    data = _mapped_like([1, 2])
    column = Grow(np.int64, data)
    column.extend([3, 4, 5])
    assert column.view.tolist() == [1, 2, 3, 4, 5] and data.tolist() == [1, 2] and column.buf.flags.writeable


def test_writable_data_is_copied_at_once():
    data = np.array([1, 2, 3], np.int32)
    column = Grow(np.int32, data)
    data[0] = 100  # the caller's array stays the caller's
    assert column.view.tolist() == [1, 2, 3]
    assert column.writable() is column.buf


def test_a_take_of_few_or_many_values_equals_one_by_one_reads():
    from aimemory.storage.columns import FEW_VALUES, Column

    column = Column(pa.array([f"s{i}" if i % 3 else None for i in range(50)], pa.large_string()), pa.large_string())
    column.extend(["t0", None, "t2"])  # a tail past the loaded rows
    column.set(4, "changed")
    for positions in ([], [4], [52, 0, 4], list(range(0, 53, 2)), [51] * (FEW_VALUES + 3)):
        assert column.take(np.asarray(positions, np.int64)) == [column.get(p) for p in positions]
    plain = Column(pa.array([f"s{i}" for i in range(40)], pa.large_string()), pa.large_string())
    positions = np.arange(0, 40, 3)
    assert len(positions) > FEW_VALUES and plain.take(positions) == [f"s{p}" for p in positions]
