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
