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
