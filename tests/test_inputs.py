"""Text files in the encodings people actually have: UTF-8 with or without a BOM, UTF-16 with a BOM,
and Windows-1252 / Latin-1 when the bytes read as text; binary stays refused."""

from __future__ import annotations

import pytest

from aimemory.errors import UnsupportedInputError
from aimemory.inputs import decode_text, sniff, to_item

FRENCH = "Crème brûlée à la façon de ma grand-mère, cuite à 150 °C. Ça prend « une heure »."
QUOTES = "“Smart quotes” – and a price of 12 € – as Word writes them in Windows-1252."


@pytest.mark.parametrize("data,text", [
    (FRENCH.encode("utf-8"), FRENCH),
    (b"\xef\xbb\xbf" + FRENCH.encode("utf-8"), FRENCH),
    (FRENCH.encode("utf-16"), FRENCH),  # with its BOM (native order)
    (b"\xff\xfe" + FRENCH.encode("utf-16-le"), FRENCH),
    (b"\xfe\xff" + FRENCH.encode("utf-16-be"), FRENCH),
    (FRENCH.encode("latin-1"), FRENCH),
    (QUOTES.encode("cp1252"), QUOTES),
    (b"plain ascii\r\n\tindented\n", "plain ascii\r\n\tindented\n"),
], ids=["utf8", "utf8-bom", "utf16", "utf16le-bom", "utf16be-bom", "latin1", "cp1252", "ascii"])
def test_text_encodings_are_decoded(data, text):
    assert sniff(data) == ("text", "text/plain")
    assert decode_text(data) == text
    item = to_item(data)
    assert item.modality == "text" and item.payload == text


def test_latin1_file_is_remembered(store, tmp_path):
    path = tmp_path / "recette.txt"
    path.write_bytes(FRENCH.encode("latin-1"))
    m = store.remember(path)
    assert m.modality == "text" and m.content == FRENCH and m.source == str(path)
    assert store.remember(FRENCH).id == m.id  # the same text, whatever its file's encoding


@pytest.mark.parametrize("data", [
    bytes(range(1, 256)) * 4,  # every byte value but NUL: binary, not text
    b"\x1b[31m\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f\x10\x11\x12\xe9" * 20,  # not UTF-8
    b"\x00\x01\x02text with NULs\x00",
    b"\xff\xfe" + b"\x00\xd8" * 8,  # UTF-16 BOM, then unpaired surrogates
], ids=["all-bytes", "controls", "nul", "bad-utf16"])
def test_binary_is_still_refused(data):
    assert decode_text(data) is None
    with pytest.raises(UnsupportedInputError, match="Latin-1"):
        to_item(data)


def test_jpegs_decode_reduced_to_the_side_an_encoder_asks_for(tmp_path):
    import numpy as np
    from PIL import Image

    from aimemory.inputs import to_item

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8))
    photo.save(tmp_path / "p.jpg", quality=90)
    photo.save(tmp_path / "p.png")
    full = to_item(tmp_path / "p.jpg")
    for side, size in [(448, (800, 600)), (300, (400, 300)), (150, (200, 150)), (100, (200, 150)), (700, (1600, 1200))]:
        reduced = to_item(tmp_path / "p.jpg", image_side=side)
        assert reduced.payload.size == size and reduced.payload.mode == "RGB"  # 1/8 at most
        assert reduced.content == full.content and reduced.content_hash == full.content_hash
    assert full.payload.size == (1600, 1200)
    assert to_item(tmp_path / "p.png", image_side=150).payload.size == (1600, 1200)  # PNG: no reduced decode
    data = (tmp_path / "p.jpg").read_bytes()
    assert to_item(data, image_side=448).payload.size == (800, 600)


def _png(img) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_greyscale_of_more_than_8_bits_is_scaled_not_clipped_white():
    """PIL's convert("RGB") clips 16-bit samples at 255: such a photo was stored as solid white."""
    import numpy as np
    from PIL import Image

    from aimemory.inputs import eight_bit

    grey = np.add.outer(np.arange(48), np.arange(64)).astype(np.uint8) * 2  # (48, 64) 0..220
    item8 = to_item(_png(Image.fromarray(grey)))
    item16 = to_item(_png(Image.fromarray(grey.astype(np.uint16) * 257)))
    assert Image.fromarray(grey.astype(np.uint16) * 257).mode.startswith("I;16")
    assert item16.payload.mode == "RGB"
    assert np.abs(np.asarray(item16.payload, np.int16) - np.asarray(item8.payload, np.int16)).max() <= 1
    floats = eight_bit(Image.fromarray(grey.astype(np.float32) / 255))  # floats in 0..1
    assert np.abs(np.asarray(floats, np.int16) - grey).max() <= 1
    signed = np.asarray(eight_bit(Image.fromarray(grey.astype(np.int32) - 1000)))  # another range: stretched
    assert signed.min() == 0 and signed.max() == 255
    rgb = Image.new("RGB", (4, 4), (1, 2, 3))
    assert eight_bit(rgb) is rgb


def test_a_file_name_that_is_not_utf8_is_stored_with_escapes(store, tmp_path):
    import os
    from pathlib import Path

    name = os.fsdecode(b"caf\xe9 list.txt")  # Latin-1 bytes in a name: a lone surrogate in Python
    (tmp_path / name).write_text("milk and bread")
    item = to_item(Path(tmp_path / name))
    assert item.source.endswith("caf\\xe9 list.txt") and item.source.encode("utf-8")
    m = store.remember(Path(tmp_path / name))
    assert store.get(m.id).source == item.source
    assert to_item("x", source=name).source == "caf\\xe9 list.txt"


def test_unreadable_files_and_dead_links_are_typed_errors(tmp_path, monkeypatch):
    from pathlib import Path

    from aimemory.errors import InputError

    locked = tmp_path / "locked.txt"
    locked.write_text("secret")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # chmod 000 does not stop root, who runs CI
    with pytest.raises(InputError, match="permission denied"):
        to_item(locked)
    monkeypatch.undo()
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(InputError, match="symbolic link"):
        to_item(tmp_path / "a")


def test_text_with_a_lone_surrogate_or_nothing_visible(store):
    from aimemory.errors import InputError

    with pytest.raises(InputError, match="lone surrogate, U\\+D800, at position 4"):
        to_item("bad \ud800 x")
    assert to_item("a \ud800 cat", purpose="recall").payload == "a \\ud800 cat"  # a query still runs
    store.remember("a cat on the sofa")
    assert store.recall("a \ud800 cat", k=1)
    for invisible in ("\u200b\ufeff", "\x00\x00", " \n\t"):
        with pytest.raises(InputError, match="empty"):
            to_item(invisible)


def test_netpbm_images_are_images_and_text_that_starts_alike_is_text():
    from PIL import Image

    for mode in ("RGB", "L", "1"):
        import io

        buf = io.BytesIO()
        Image.new(mode, (40, 30), "white" if mode == "RGB" else 255 if mode == "L" else 1).save(buf, "PPM")
        item = to_item(buf.getvalue())  # a white PPM's bytes all decode as Latin-1 text
        assert item.modality == "image" and item.payload.size == (40, 30)
    assert to_item(b"P1 is the parking level\n").modality == "text"
