"""aimemory.storage.columns: a growable column adopts read-only (memory-mapped) data without a copy,
keeps rows appended to it aside until it is first read, and copies it then (or on its first change
in place), leaving the borrowed data untouched."""

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


def test_rows_appended_to_borrowed_data_wait_until_it_is_read():
    data = _mapped_like([1, 2])
    column = Grow(np.int64, data)
    column.extend([])
    assert column.nbytes == data.nbytes  # nothing appended, nothing waits
    appended = np.array([3, 4], np.int64)
    column.extend(appended)
    column.extend([5])
    appended[0] = 30  # the caller's array stays the caller's
    # nothing copied yet (a buffer of its own would hold 64 rows or more): an open that applies
    # saved rows to every column pays no copy
    assert column.n == 5 and column.last() == 5 and column.nbytes == data.nbytes + 3 * 8
    assert column.view.tolist() == [1, 2, 3, 4, 5] and data.tolist() == [1, 2] and column.buf.flags.writeable
    column.extend([6])  # now in place
    assert column.view.tolist() == [1, 2, 3, 4, 5, 6] and column.last() == 6


def test_a_change_in_place_takes_the_waiting_rows_along():
    column = Grow(np.int64, _mapped_like([1, 2, 3]))
    column.extend([4])
    column.writable()[3] = 40
    assert column.view.tolist() == [1, 2, 3, 40]
    empty = Grow(np.int64, _mapped_like([]))
    empty.extend([7])
    assert empty.last() == 7 and empty.view.tolist() == [7]


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


def _string_arrays() -> list[pa.Array]:
    """String and list-of-string arrays as a catalog holds them: nulls, empty values, non-ASCII text,
    and slices (a column read from a file can start inside its buffers)."""
    texts = ["a", None, "", "héllo wörld", "日本語のメモ", "x" * 300, "tab\there"] * 5
    lists = [["cat", "dog"], None, [], ["ünï", None, ""], ["only"]] * 7
    out = []
    for values, arrow_type in ((texts, pa.large_string()), (texts, pa.string()), (lists, pa.list_(pa.string()))):
        array = pa.array(values, arrow_type)
        out += [array, array.slice(3), array.slice(5, 11)]
    out += [pa.nulls(6, pa.large_string()), pa.array([], pa.large_string()), pa.nulls(4, pa.list_(pa.string())),
            pa.array(["a", None, None, "b"], pa.large_string()).slice(1, 2)]  # all null, inside a column that is not
    return out


def test_values_read_from_the_buffers_equal_arrows_own():
    from aimemory.storage.columns import DIRECT_MAX, Column

    rng = np.random.default_rng(0)
    for array in _string_arrays():
        stored_as = pa.large_string() if pa.types.is_string(array.type) else array.type
        column = Column(array, stored_as)
        expected = array.to_pylist()
        assert [column.get(p) for p in range(len(array))] == expected, array.type
        for size in (0, 3, 40, DIRECT_MAX + 5):  # one by one, from the buffers, Arrow's take
            positions = rng.integers(0, len(array), size) if len(array) else np.zeros(0, np.int64)
            assert column.take(positions) == [expected[p] for p in positions], (array.type, size)


def test_the_buffer_reader_serves_the_string_and_list_columns():
    from aimemory.storage.columns import Column

    for arrow_type in (pa.large_string(), pa.list_(pa.string())):
        assert Column(pa.nulls(2, arrow_type), arrow_type)._direct is not None
    assert Column(pa.array([1, 2], pa.int64()), pa.int64())._direct is None  # other types: Arrow's take
