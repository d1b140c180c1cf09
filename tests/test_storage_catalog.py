"""aimemory.storage.catalog: the in-memory mirror of the table's small columns (no disk)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DIM

from aimemory.encoders.base import View
from aimemory.errors import FilterError
from aimemory.inputs import to_item
from aimemory.records import CATALOG_COLUMNS
from aimemory.storage.catalog import Catalog
from aimemory.views import build_rows


def _vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _rows(texts, namespace="default", first_vkey=1, metas=None, views_each=1):
    metas = metas or [{"tags": []}] * len(texts)
    todo = [(i, to_item(t), m, m.get("tags", [])) for i, (t, m) in enumerate(zip(texts, metas))]
    views = [[View("text" if n == 0 else "text.chunk", _vector(i * 10 + n), text=t) for n in range(views_each)]
             for i, t in enumerate(texts)]
    rows, ids = build_rows(todo, views, namespace, dim=DIM, first_vkey=first_vkey, keep_content=True, model_id="m")
    return rows.select(CATALOG_COLUMNS), ids


@pytest.fixture
def catalog():
    c = Catalog()
    rows, ids = _rows(["red", "green", "blue"], metas=[{"tags": ["a"], "year": 2020}, {"tags": ["b"]},
                                                     {"tags": ["a", "b"], "year": [2020, 2021]}], views_each=2)
    c.append_arrow(rows)
    other, other_ids = _rows(["red"], namespace="other", first_vkey=100)
    c.append_arrow(other)
    c.ids, c.other_ids = ids, other_ids  # for the tests
    return c


def test_counts_and_namespaces(catalog):
    assert len(catalog) == 4
    assert catalog.count("default") == 3 and catalog.count("other") == 1 and catalog.count(None) == 4
    assert catalog.namespaces() == {"default": 3, "other": 1}
    assert len(catalog.alive_vkeys()) == 7


def test_positions_are_primary_first_and_confined_to_the_namespace(catalog):
    mid = catalog.ids[1]
    positions = catalog.positions(mid, "default")
    assert [catalog.get(p, "view") for p in positions] == [0, 1]
    assert catalog.positions(mid, "other") == []
    assert catalog.positions("nope", None) == []
    row = catalog.row(positions[0])
    assert row.id == mid and row.namespace == "default" and row.kind == "text"


def test_vkeys_map_back_to_positions(catalog):
    keys = catalog.array("vkey")
    assert np.array_equal(catalog.position_of_vkeys(keys), np.arange(len(keys)))


def test_duplicates_are_found_per_namespace(catalog):
    h = to_item("red").content_hash
    assert catalog.find_duplicate("default", h) == catalog.ids[0]
    assert catalog.find_duplicate("other", h) == catalog.other_ids[0]
    assert catalog.find_duplicate("third", h) is None


def test_mask_filters_namespace_modality_time_and_where(catalog):
    assert catalog.mask("default").sum() == 6
    assert catalog.mask("default", modalities=["image"]).sum() == 0
    assert catalog.mask("default", since=0.0).sum() == 6 and catalog.mask("default", until=0.0).sum() == 0
    tagged = catalog.mask("default", where={"tags": "a"})
    assert {catalog.get(p, "id") for p in np.flatnonzero(tagged)} == {catalog.ids[0], catalog.ids[2]}
    year = catalog.mask("default", where={"year": 2021})  # list-valued metadata matches any element
    assert {catalog.get(p, "id") for p in np.flatnonzero(year)} == {catalog.ids[2]}
    missing = catalog.mask("default", where={"year": None})  # None matches memories without the key
    assert {catalog.get(p, "id") for p in np.flatnonzero(missing)} == {catalog.ids[1]}
    with pytest.raises(FilterError):
        catalog.mask("default", where={"tags": {"nested": 1}})
    with pytest.raises(FilterError):
        catalog.mask("default", where=["tags"])  # type: ignore[arg-type]


def test_remove_ids_marks_every_view_dead_and_forgets_the_hash(catalog):
    mid = catalog.ids[0]
    vkeys = catalog.remove_ids([mid])
    assert len(vkeys) == 2 and len(catalog) == 3 and catalog.count("default") == 2
    assert catalog.find_duplicate("default", to_item("red").content_hash) is None
    assert catalog.mask("default").sum() == 4


def test_set_metadata_is_seen_by_filters(catalog):
    p = catalog.positions(catalog.ids[1], "default")[0]
    assert catalog.mask("default", where={"tags": "z"}).sum() == 0
    catalog.set_metadata(p, ["z"], '{"tags": ["z"], "year": 1999}')
    assert catalog.metadata(p) == {"tags": ["z"], "year": 1999}
    assert catalog.mask("default", where={"tags": "z"}).sum() == 2


def test_rows_must_arrive_in_increasing_vkey_order(catalog):
    rows, _ = _rows(["late"], first_vkey=1)
    with pytest.raises(AssertionError, match="increasing vkey"):
        catalog.append_arrow(rows)


def test_many_keys_are_found_as_one_by_one():
    import pyarrow as pa

    from aimemory.storage.columns import KeyIndex

    keys = ["m1", "m2", "m2", "m30", "", "m1", "zz"]
    index = KeyIndex.build(pa.array(keys), np.arange(10, 10 + len(keys)))
    index.add(["m2", "new", None], [40, 41, 42])  # keys added since the build live in the tail
    asked = ["m2", "absent", "m1", "a key longer than any built", "new", "m30", "m2", "ends\x00", ""]
    positions, which = index.find_many(asked)
    got = [sorted(positions[which == i].tolist()) for i in range(len(asked))]
    assert got == [sorted(index.find(key)) for key in asked]
    assert got[0] == [11, 12, 40] and got[1] == [] and got[3] == [] and got[4] == [41]
    assert KeyIndex().find_many(["m1"])[0].tolist() == []


def test_live_positions_of_many_memories(catalog):
    ids = list(dict.fromkeys(catalog.take("id", np.arange(catalog.n_rows))))[:3]
    catalog.remove_ids([ids[1]])
    positions, which = catalog.live_positions_of([*ids, "no such memory"])
    for i, mid in enumerate([*ids, "no such memory"]):
        assert sorted(positions[which == i].tolist()) == sorted(catalog.live_positions(mid))
    assert not (which == 1).any() and not (which == 3).any()


def test_derived_values_are_kept_within_a_budget_that_grows_with_the_rows(catalog, monkeypatch):
    import aimemory.storage.derived as derived

    built: list[str] = []

    def derive(name, nbytes):
        def build():
            built.append(name)
            return np.zeros(nbytes, np.uint8)
        return build

    monkeypatch.setattr(derived, "BYTES", 1000)
    monkeypatch.setattr(derived, "BYTES_PER_ROW", 1)  # 8 rows: the fixed 1000 B is the budget
    for _ in range(2):  # 600 + 600 B > 1000 B: each evicts the other, every time
        catalog.memo("a", derive("a", 600))
        catalog.memo("b", derive("b", 600))
    assert built == ["a", "b"] * 2
    built.clear()
    monkeypatch.setattr(derived, "BYTES_PER_ROW", 200)  # 8 rows x 200 B: both fit
    for _ in range(3):
        assert catalog.memo("c", derive("c", 600)).nbytes == 600
        catalog.memo("d", derive("d", 600))
    assert built == ["c", "d"]  # built once each, then reused


def _derived_after_appends(c: Catalog) -> dict:
    out = {}
    for ns in ("default", "other", "third"):
        out[("mask", ns)] = c.mask(ns).copy()
        out[("mask text", ns)] = c.mask(ns, modalities=["text"], kinds=["text.chunk"]).copy()
    out["kind"] = c.is_in("kind", ["text", "text.chunk"]).copy()
    out["where"] = c.mask("default", where={"year": 2020}).copy()
    return out


def test_cached_masks_grow_over_appended_rows_and_equal_fresh_ones(catalog):
    before = _derived_after_appends(catalog)  # fills the cache
    for first, namespace in ((200, "default"), (300, "third"), (400, "other")):
        rows, _ = _rows(["cyan", "teal"], namespace=namespace, first_vkey=first, views_each=3,
                        metas=[{"year": 2020}, {}])
        rewrites = catalog.rewrites
        catalog.append_arrow(rows)
        assert catalog.rewrites == rewrites  # an append keeps what is cached, to grow it
        grown = _derived_after_appends(catalog)
        catalog.rewrites += 1  # drops the cache: built afresh below
        fresh = _derived_after_appends(catalog)
        for key in fresh:
            assert np.array_equal(grown[key], fresh[key]), key
    assert len(grown[("mask", "third")]) == catalog.n_rows > len(before[("mask", "third")])
    assert grown[("mask", "third")].sum() == 6  # two memories of three views each


def test_any_change_but_an_append_drops_what_is_cached(catalog):
    catalog.mask("default")
    rewrites = catalog.rewrites
    catalog.remove_ids([catalog.ids[0]])
    assert catalog.rewrites > rewrites
    assert not catalog.mask("default")[:2].any()  # the first memory's two views
    assert catalog.mask("default").sum() == 4  # two memories of two views left


def test_an_append_costs_the_new_rows_only(catalog, monkeypatch):
    handed_out = catalog.mask("default")
    as_it_was = handed_out.copy()
    starts: list[int] = []
    build = catalog._fixed_mask
    monkeypatch.setattr(catalog, "_fixed_mask", lambda *a, **k: starts.append(a[3] if len(a) > 3 else 0) or build(*a))
    n = catalog.n_rows
    catalog.append_arrow(_rows(["cyan"], first_vkey=200)[0])
    catalog.mask("default")
    assert starts == [n]  # grown from the first new row, not built over every row
    catalog.append_arrow(_rows(["plum"], first_vkey=300)[0])  # grows in place, into room kept past the end
    assert len(catalog.mask("default")) == n + 2 and catalog.mask("default") is catalog.mask("default")
    assert np.array_equal(handed_out, as_it_was) and not handed_out.flags.writeable  # earlier values stay


def test_two_threads_growing_one_cached_value_append_the_new_rows_once(catalog, monkeypatch):
    import threading
    import time as time_module

    catalog.mask("default")
    catalog.append_arrow(_rows(["teal"], first_vkey=150)[0])
    catalog.mask("default")  # grown once: the cache now holds a growing buffer both threads share
    build = catalog._fixed_mask

    def slow(*a, **k):  # both threads are inside the growth at once
        time_module.sleep(0.05)
        return build(*a, **k)

    monkeypatch.setattr(catalog, "_fixed_mask", slow)
    catalog.append_arrow(_rows(["cyan", "plum"], first_vkey=200)[0])
    got: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: got.append(catalog.mask("default"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    catalog.rewrites += 1  # built afresh
    fresh = catalog.mask("default")
    assert len(got) == 2 and all(np.array_equal(g, fresh) for g in got)


def test_many_values_rows_and_primaries_read_as_one_by_one(catalog):
    positions = list(range(len(catalog.array("vkey"))))
    for name in ("vkey", "id", "view", "namespace", "kind", "start", "expires", "text", "snippet", "derived_from"):
        assert catalog.values(name, positions) == [catalog.get(p, name) for p in positions], name
    assert catalog.rows(positions[::-1]) == [catalog.row(p) for p in positions[::-1]]
    ids = catalog.take("id", np.asarray(positions))
    primaries = catalog.primaries_of(positions, ids)
    for p, mid, primary in zip(positions, ids, primaries):  # every view leads to its memory's first view
        assert primary == catalog.positions(mid, catalog.get(p, "namespace"))[0]
    assert catalog.primaries_of(positions[:1], ["not-this-id"]) == [None]
    catalog.remove_ids([catalog.ids[0]], "default")
    assert catalog.primaries_of(positions[:2], ids[:2]) == [None, None]  # forgotten: looked up by id instead
