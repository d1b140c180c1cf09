"""Arrow arrays built from buffers (aimemory/storage/arrow_build.py) equal pa.array's, for every
type of the store's table, and a write in a fresh process never imports pandas."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from aimemory.records import table_schema
from aimemory.storage.arrow_build import column, table

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TESTS = Path(__file__).parent
UTC_US = pa.timestamp("us", tz="UTC")
CASES = {
    pa.int64(): [0, -1, 2**62, None, 7],
    pa.int32(): [3, None, -(2**31)],
    pa.float64(): [0.1, None, -2.5e300, float("inf")],
    pa.string(): ["a cat", None, "", "Café ☕ 東京 🐈‍⬛", "x" * 1000],
    pa.large_binary(): [b"\x00\xff", None, "text as utf-8 é", b""],
    pa.list_(pa.string()): [["a", "b"], None, [], ["", None, "ü"], ("t",)],
    UTC_US: [datetime(2026, 12, 1, 18, 0, 0, 123456, tzinfo=timezone.utc), None,
             datetime(1969, 7, 20, 20, 17, 40, tzinfo=timezone(timedelta(hours=-5))),
             datetime(2000, 2, 29, 23, 59, 59, 999999)],  # naive: read as UTC, as pa.array does
}


@pytest.mark.parametrize("type_", list(CASES), ids=str)
def test_each_type_equals_pa_array(type_):
    values = CASES[type_]
    for part in (values, values[:1], [], [None] * 3):
        got, want = column(part, type_), pa.array(part, type_)
        got.validate(full=True)
        assert got.type == want.type and got.equals(want), (part, got, want)
        assert got.null_count == want.null_count


def test_a_whole_row_set_equals_pa_table():
    dim = 4
    schema = table_schema(dim)
    now = datetime.now(timezone.utc)
    cols = {f.name: [None, None] for f in schema}
    cols.update(vkey=[1, 2], id=["m1", "m1"], view=[0, 1], namespace=["default"] * 2, modality=["text"] * 2,
                kind=["text", "text.chunk"], start=[None, 1.5], end=[None, 2.25], snippet=[None, "chunk"],
                created_at=[now, now], text=["a cat on the sofa", None], content=["a cat on the sofa", None],
                tags=[["pets", "home"], None], metadata=['{"x": 1}', None], expires_at=[None, None])
    vectors = np.arange(2 * dim, dtype=np.float32)
    cols["vector"] = [vectors[:dim], vectors[dim:]]
    want = pa.table(cols, schema=schema)
    cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors), dim)
    got = table(cols, schema)
    got.validate(full=True)
    assert got.equals(want)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text()), max_size=20),
       st.lists(st.one_of(st.none(), st.lists(st.one_of(st.none(), st.text(max_size=5)), max_size=4)), max_size=10),
       st.lists(st.one_of(st.none(), st.datetimes(timezones=st.just(timezone.utc))), max_size=10))
def test_random_values_equal_pa_array(texts, tag_lists, times):
    assert column(texts, pa.string()).equals(pa.array(texts, pa.string()))
    assert column(tag_lists, pa.list_(pa.string())).equals(pa.array(tag_lists, pa.list_(pa.string())))
    assert column(times, UTC_US).equals(pa.array(times, UTC_US))


def test_a_remember_and_a_recall_in_a_fresh_process_never_import_pandas(tmp_path):
    """pandas takes ~0.2 s to import: a CLI ``remember`` or ``recall`` (or a hook) must not pay it."""
    from conftest import ColourEncoder

    from aimemory import MemoryStore

    with MemoryStore(tmp_path / "m", model=ColourEncoder()) as s:  # made here: creating needs LanceDB
        s.remember("red first", metadata={"tags": ["a"]})
    code = ("import sys\nfrom aimemory import MemoryStore\nfrom conftest import ColourEncoder\n"
            f"with MemoryStore({str(tmp_path / 'm')!r}, model=ColourEncoder()) as s:\n"
            "    s.remember('blue second', metadata={'tags': ['b'], 'n': 2}, expires_at=4102444800,\n"
            "               created_by='agent', derived_from=['x'])\n"
            "    hits = s.recall('blue', k=2)\n"
            "print(hits[0].memory.content, 'pandas' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=TESTS.parent, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["blue", "second", "False"]
