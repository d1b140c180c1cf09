"""Text in images: the gate, the pinned OCR engine, and what the store does with what it reads
(``image.text`` views, full-text search, boxes and snippets on hits, ``ocr=False``, no engine)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from aimemory import MemoryStore
from aimemory.encoders import ocr as ocr_mod
from aimemory.errors import CheckpointError, ModelNotAvailableError
from aimemory.image_text import TEXT_KIND, attach_ocr, matching_boxes, ocr_text

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
RECEIPT = ("ZX-9931 order receipt", "Total 42.50 EUR paid")


def _font(size: int):
    try:
        return ImageFont.truetype(FONT, size)
    except OSError:  # pragma: no cover - fonts-dejavu-core missing
        return ImageFont.load_default(size)


def render(lines=RECEIPT, size=(640, 240), colour="white") -> Image.Image:
    im = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((20, 40 + 70 * i), line, fill="black", font=_font(36))
    return im


def photo(seed: int) -> Image.Image:
    """A smooth 'photo' without text: colour gradients plus mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:240, 0:320]
    base = np.stack([x / 320 * 255, y / 240 * 255, np.full_like(x, rng.integers(0, 255))], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8))


needs_engine = pytest.mark.skipif(ocr_mod.ocr_missing() is not None, reason=str(ocr_mod.ocr_missing()))


@pytest.fixture(scope="module")
def engine():
    if ocr_mod.ocr_missing() is not None:
        pytest.skip(ocr_mod.ocr_missing())
    return ocr_mod.OcrEngine(threads=1)


def test_gate_passes_text_and_skips_plain_images():
    pytest.importorskip("cv2")
    assert ocr_mod.text_likely(render())
    assert ocr_mod.text_likely(render().rotate(20, expand=True, fillcolor="white"))
    for seed in range(3):
        assert not ocr_mod.text_likely(photo(seed))
    assert not ocr_mod.text_likely(Image.new("RGB", (64, 64), "red"))
    noise = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    assert not ocr_mod.text_likely(Image.fromarray(noise))


@needs_engine
def test_engine_reads_lines_words_and_boxes(engine):
    result = engine.read(render())
    assert "ZX-9931 order receipt" in result.text and "42.50" in result.text
    assert result.size == (640, 240)
    words = {w.text: w.box for line in result.lines for w in line.words}
    assert {"ZX-9931", "order", "receipt"} <= set(words)
    (x0, y0), _, (x1, y1), _ = words["ZX-9931"]
    assert 10 <= x0 < x1 <= 200 and 25 <= y0 < y1 <= 95  # where it was drawn (20, 40), 36 px
    assert engine.read(photo(0)).lines == ()


def test_pinned_models_are_verified(monkeypatch):
    if ocr_mod.ocr_missing() is not None:
        pytest.skip(ocr_mod.ocr_missing())
    name, _ = ocr_mod.MODEL_FILES["cls"]
    monkeypatch.setitem(ocr_mod.MODEL_FILES, "cls", (name, "0" * 64))
    with pytest.raises(CheckpointError, match="force-reinstall"):
        ocr_mod.verified_models()


@needs_engine
def test_store_reads_text_in_images_and_finds_it_by_its_words(tmp_path, encoder, engine):
    store = MemoryStore(tmp_path / "m", model=encoder, ocr=engine)
    receipt, *others = store.remember_many([render(), photo(1), render(("",), colour="red"), photo(2)])
    assert store.stats()["views"][TEXT_KIND] == 1  # only the receipt has text
    assert store.stats()["ocr"]["enabled"]
    assert "ZX-9931" in receipt.text and "ZX-9931" in ocr_text(receipt.metadata)
    assert all("ocr" not in m.metadata and m.text is None for m in others)
    hits = store.recall("ZX-9931", k=3, hybrid=True)  # the colour encoder knows no words: keywords find it
    assert hits[0].id == receipt.id
    assert "ZX-9931" in hits[0].snippet
    assert [b["text"] for b in hits[0].boxes] == ["ZX-9931"] and len(hits[0].boxes[0]["box"]) == 4
    again = store.get(receipt.id)  # read back: text and boxes come with the memory
    assert "order receipt" in again.text and again.metadata["ocr"]["lines"][0]["words"]
    store.close()


def test_ocr_false_and_environment_switch_turn_it_off(tmp_path, encoder, monkeypatch):
    store = MemoryStore(tmp_path / "off", model=encoder, ocr=False)
    store.remember(render())
    assert TEXT_KIND not in store.stats()["views"]
    assert store.stats()["ocr"] == {"enabled": False, "status": "off (ocr=False)"}
    store.close()
    monkeypatch.setenv(ocr_mod.ENV_SWITCH, "0")
    engine, why = ocr_mod.load_ocr("auto")
    assert engine is None and ("AIMEMORY_OCR=0" in why or "not installed" in why)


def test_missing_engine_changes_nothing_and_says_how_to_enable(tmp_path, encoder, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rapidocr" else real(name, *a))
    monkeypatch.setenv(ocr_mod.ENV_SWITCH, "1")
    store = MemoryStore(tmp_path / "none", model=encoder)  # ocr="auto"
    memory = store.remember(render())
    stats = store.stats()
    assert not stats["ocr"]["enabled"] and "pip install" in stats["ocr"]["status"] and "[ocr]" in stats["ocr"]["status"]
    assert TEXT_KIND not in stats["views"] and "ocr" not in memory.metadata
    store.close()
    with pytest.raises(ModelNotAvailableError, match=r"\[ocr\]"):
        MemoryStore(tmp_path / "none", model=encoder, ocr=True)


def test_hit_boxes_and_snippet_come_from_the_matching_words():
    from aimemory.records import Hit, Hits, Memory

    ocr = {"size": [100, 50], "lines": [
        {"text": "Lunch menu", "box": [[0, 0], [50, 0], [50, 10], [0, 10]], "words": [
            {"text": "Lunch", "box": [[0, 0], [20, 0], [20, 10], [0, 10]]},
            {"text": "menu", "box": [[25, 0], [50, 0], [50, 10], [25, 10]]}]},
        {"text": "soup of the day", "box": [[0, 20], [60, 20], [60, 30], [0, 30]], "words": []}]}
    assert [b["text"] for b in matching_boxes(ocr, {"menu"})] == ["menu"]
    assert [b["text"] for b in matching_boxes(ocr, {"soup"})] == ["soup of the day"]  # no word boxes: the line
    memory = Memory(id="x", modality="image", namespace="default", created_at=None, source=None,  # type: ignore[arg-type]
                    metadata={"ocr": ocr})
    hits = Hits([Hit(id="x", score=0.5, modality="image", memory=memory, kind="image")])
    attach_ocr(hits, "the soup")
    assert hits[0].snippet == "soup of the day" and hits[0].boxes[0]["box"][0] == [0, 20]
    assert memory.text == "Lunch menu\nsoup of the day"


@pytest.mark.heavy
@needs_engine
def test_offline_model_finds_a_receipt_by_a_code_it_shows(tmp_path, engine, torch_one_thread):
    from aimemory.encoders.registry import offline_tier_missing

    if offline_tier_missing() is not None:
        pytest.skip(offline_tier_missing())
    store = MemoryStore(tmp_path / "base", model="aimemory-base", ocr=engine)
    receipt, *_ = store.remember_many([render(), render(("Quarterly planning", "budget review")),
                                       photo(3), photo(4)])
    hits = store.recall("ZX-9931", k=3)  # by meaning: the image.text view, no keyword side
    assert hits[0].id == receipt.id and hits[0].kind == TEXT_KIND
    assert "ZX-9931" in hits[0].snippet and hits[0].boxes[0]["text"] == "ZX-9931"
    assert store.recall("budget review", k=1)[0].id != receipt.id
    store.close()


def test_doors_carry_the_boxes():
    from datetime import datetime, timezone

    from aimemory.cli.output import hit_record
    from aimemory.records import Hit, Memory

    ocr = {"size": [10, 10], "lines": [{"text": "ZX-9931", "box": [[0, 0], [9, 0], [9, 4], [0, 4]], "words": []}]}
    memory = Memory(id="x", modality="image", namespace="default", created_at=datetime.now(timezone.utc),
                    source="receipt.png", metadata={"ocr": ocr})
    boxes = [{"text": "ZX-9931", "box": ocr["lines"][0]["box"]}]
    hit = Hit(id="x", score=0.5, modality="image", memory=memory, kind="image.text", snippet="ZX-9931", boxes=boxes)
    assert hit_record(1, hit)["boxes"] == boxes
    pytest.importorskip("starlette")
    from aimemory.web.app import hit_json

    record = hit_json(hit)
    assert record["boxes"] == boxes and record["memory"]["metadata"]["ocr"]["size"] == [10, 10]


def test_large_print_passes_the_gate_at_a_smaller_size():
    """A sign's 64-px letters are too tall for the gate at full size; at half size they pass."""
    pytest.importorskip("cv2")
    sign = Image.new("RGB", (600, 400), (200, 20, 20))
    draw = ImageDraw.Draw(sign)
    for i, line in enumerate(("NO PARKING", "TOW AWAY ZONE")):
        draw.text((40, 100 + 100 * i), line, fill="white", font=_font(64))
    assert not ocr_mod.text_likely(sign)  # full size alone missed it
    assert any(ocr_mod.text_likely(sign, side) for side in ocr_mod.gate_sides(sign.size))
    assert ocr_mod.gate_sides((200, 150)) == (ocr_mod.GATE_SIDE,)  # small images: one look
    for seed in range(3):
        assert not any(ocr_mod.text_likely(photo(seed), side) for side in ocr_mod.gate_sides((320, 240)))


@needs_engine
def test_a_long_banner_is_read_in_tiles_and_an_engine_failure_loses_nothing(tmp_path, encoder, engine, monkeypatch):
    """Whole, a 6000 x 100 banner shrinks to 16-px-high text at READ_SIDE and reads as nothing (a
    narrower one crashed the engine); in tiles every phrase is read, with boxes on the banner."""
    banner = Image.new("RGB", (6000, 100), "white")
    draw = ImageDraw.Draw(banner)
    for i, x in enumerate(range(40, 6000, 1000)):
        draw.text((x, 15), f"budget item {i}", fill="black", font=_font(56))
    lines = engine.read(banner).lines
    assert {f"budget item {i}" for i in range(6)} <= {line.text for line in lines}
    assert all(0 <= x <= 6000 and 0 <= y <= 100 for line in lines for x, y in line.box)
    assert max(x for line in lines for x, _ in line.box) > 5000  # the last tile's boxes are shifted

    def broken(*args, **kwargs):
        raise RuntimeError("resize_w or resize_h is less than or equal to 0")

    monkeypatch.setattr(type(engine), "_lines", lambda self, image: broken())
    assert engine.read(banner).lines == ()  # an engine failure reads as no text
    with MemoryStore(tmp_path / "m", model=encoder, ocr=engine, speech_model=None) as store:
        m = store.remember(banner)
        assert m.id in store and not m.transcript
