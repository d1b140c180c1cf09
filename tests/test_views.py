"""aimemory.views: decoded items -> encoder views -> the Arrow rows of one commit (no storage)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DIM, ColourEncoder

from aimemory.encoders.base import View
from aimemory.errors import InputError, ModelError, UnsupportedInputError
from aimemory.inputs import to_item
from aimemory.records import table_schema
from aimemory.views import build_rows, encode_items, load_speech, new_id


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def test_new_ids_are_24_hex_and_sort_by_time():
    a, b = new_id(), new_id()
    assert len(a) == 24 and int(a, 16) >= 0
    assert a[:12] <= b[:12]  # milliseconds first


def test_encode_items_gives_each_item_the_encoders_views_in_order():
    enc = ColourEncoder()
    items = [to_item("red apple"), to_item("green grass"), to_item("blue sky")]
    views = encode_items(enc, None, items, enc.model_id)
    assert len(views) == 3 and all(len(v) >= 1 for v in views)
    assert np.allclose(views[0][0].vector, enc.views("text", ["red apple"])[0][0].vector)


def test_encode_items_refuses_a_modality_the_model_cannot_embed():
    class TextOnly(ColourEncoder):
        modalities = frozenset({"text"})

    enc = TextOnly()
    from PIL import Image

    image = to_item(Image.new("RGB", (8, 8), (255, 0, 0)))
    with pytest.raises(UnsupportedInputError, match="cannot embed image; nothing was stored"):
        encode_items(enc, None, [image], enc.model_id)


def test_encode_items_refuses_an_item_without_vectors():
    class Silent(ColourEncoder):
        def views(self, modality, payloads):
            return [[] for _ in payloads]

    enc = Silent()
    with pytest.raises(InputError, match="produced no vectors"):
        encode_items(enc, None, [to_item("red")], enc.model_id)


def test_build_rows_puts_content_and_metadata_on_the_primary_row_only():
    item = to_item("red notes", source="notes.txt")
    views = [[View("text", _unit(1)), View("text.chunk", _unit(2), text="red")]]
    todo = [(0, item, {"tags": ["a"], "k": 1}, ["a"])]
    rows, ids = build_rows(todo, views, "ns", dim=DIM, first_vkey=7, keep_content=True, model_id="m")
    assert rows.schema == table_schema(DIM)
    got = rows.to_pylist()
    assert [r["vkey"] for r in got] == [7, 8] and [r["view"] for r in got] == [0, 1]
    assert {r["id"] for r in got} == set(ids) and len(ids) == 1
    primary, other = got
    assert primary["text"] == "red notes" and primary["source"] == "notes.txt"
    assert json.loads(primary["metadata"]) == {"tags": ["a"], "k": 1} and primary["tags"] == ["a"]
    assert primary["content_hash"] == item.content_hash
    assert other["text"] is None and other["metadata"] is None and other["snippet"] == "red"
    assert all(r["namespace"] == "ns" for r in got)


@pytest.mark.parametrize("bad", [np.full(DIM, np.nan, np.float32), np.ones(DIM + 1, np.float32)])
def test_build_rows_refuses_non_finite_or_wrong_width_vectors(bad):
    todo = [(0, to_item("red"), {"tags": []}, [])]
    with pytest.raises(ModelError, match="nothing was stored"):
        build_rows(todo, [[View("text", bad)]], "ns", dim=DIM, first_vkey=1, keep_content=True, model_id="m")


def test_load_speech_none_and_objects_pass_through(monkeypatch):
    class Recognizer:
        def transcribe(self, audio):  # pragma: no cover - never called here
            raise AssertionError

    recognizer = Recognizer()
    assert load_speech(None) is None
    assert load_speech(recognizer) is recognizer
    monkeypatch.setenv("AIMEMORY_SPEECH", "0")
    assert load_speech("auto") is None
