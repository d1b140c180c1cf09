"""The write transaction's public entry point, ``commit_views``, on a store opened without a model
(``MemoryStore.for_views``): views computed elsewhere are committed once, deduplicated, recalled by
the real model afterwards, and the manifest records the model, width and precision they came from."""

from __future__ import annotations

import pytest
from conftest import DIM, ColourEncoder, solid

from aimemory import MemoryStore
from aimemory.errors import ModelMismatchError, ModelNotAvailableError
from aimemory.inputs import to_item
from aimemory.storage import Manifest
from aimemory.write import commit_views


def encoder_views(encoder, item):
    from aimemory.views import encode_items

    return encode_items(encoder, None, [item], encoder.model_id)[0]


def test_views_computed_elsewhere_are_committed_once_and_recalled_by_the_model(tmp_path):
    encoder = ColourEncoder()
    inputs = ["a red note", solid("green"), "a red note"]  # the third repeats the first
    items = [to_item(x) for x in inputs]
    views = [encoder_views(encoder, item) for item in items]
    with MemoryStore.for_views(tmp_path / "m", encoder.model_id, DIM, precision="fp16") as driver:
        memories = commit_views(driver, items, views, metadata={"tags": ["batch"]})
        assert memories[0].id == memories[2].id and driver.count() == 2  # the repeat is stored once
        again = commit_views(driver, items[:1], [None])  # already stored: no views needed
        assert again[0].id == memories[0].id and again[0].status == "existing"
        with pytest.raises(ModelNotAvailableError, match="opened without a model"):
            driver.remember("more")
    manifest = Manifest.read(tmp_path / "m")
    assert (manifest.model_id, manifest.dim, manifest.precision) == (encoder.model_id, DIM, "fp16")
    with MemoryStore(tmp_path / "m", model=ColourEncoder(), precision="fp16") as store:
        assert store.recall("green", k=1)[0].id == memories[1].id
        assert store.get(memories[0].id).tags == ["batch"]


def test_a_store_of_another_model_is_refused_and_mismatched_views_write_nothing(tmp_path):
    with MemoryStore(tmp_path / "m", model=ColourEncoder()) as store:
        store.remember("kept")
    with pytest.raises(ModelMismatchError):
        MemoryStore.for_views(tmp_path / "m", "another-model", DIM)
    with MemoryStore.for_views(tmp_path / "m", ColourEncoder.model_id, DIM) as driver:
        with pytest.raises(ValueError, match="1 views for 2 items"):
            commit_views(driver, [to_item("a"), to_item("b")], [None])
        assert driver.count() == 1
