"""Bytes to text as people's files hold it, and text to what UTF-8 can store.

:func:`decode_text` reads a text file's bytes: a BOM names the encoding; else UTF-8; else one 8-bit
Western encoding (Windows-1252, whose undefined bytes fall back to Latin-1) when the result reads as
text. :func:`printable` escapes what UTF-8 cannot hold: a file name's bytes that were not UTF-8, which
Python keeps as lone surrogates.
"""

from __future__ import annotations

_TEXT_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"),
)
TEXT_PRINTABLE_MIN = 0.95  # share of printable characters that makes decoded bytes text (binary is not)
TEXT_SAMPLE = 65536  # characters looked at by the printable check, and bytes by sniff()


def _decode(data: bytes, codec: str, complete: bool) -> str | None:
    import codecs

    try:  # an incremental decoder tolerates a character cut at the end of a sample
        return codecs.getincrementaldecoder(codec)().decode(data, final=complete)
    except UnicodeDecodeError:
        return None


def _reads_as_text(text: str) -> bool:
    sample = text[:TEXT_SAMPLE]
    shown = sum(1 for ch in sample if ch.isprintable() or ch in "\t\n\r\f\v")
    return shown >= TEXT_PRINTABLE_MIN * len(sample)


def decode_text(data: bytes, *, complete: bool = True) -> str | None:
    """Bytes -> str when they are text: UTF-8/16/32 with a BOM (removed), UTF-8, else Windows-1252 /
    Latin-1 if the result reads as text; None for anything else. ``complete=False``: ``data`` is a
    prefix, and a character cut at its end is not an error."""
    for bom, codec in _TEXT_BOMS:
        if data.startswith(bom):
            text = _decode(data, codec, complete)
            return text if text is not None and _reads_as_text(text) else None
    if b"\x00" in data[:4096]:  # no BOM-less text format we read has NUL bytes
        return None
    text = _decode(data, "utf-8", complete)
    if text is not None:
        return text
    text = _decode(data, "cp1252", True)
    if text is None:  # bytes cp1252 leaves undefined (0x81, 0x8d, ...) are Latin-1 control codes
        text = data.decode("latin-1")
    return text if _reads_as_text(text) else None


def printable(text: str) -> str:
    """``text`` as UTF-8 can hold it: bytes a file name had that were not UTF-8 (Python keeps them
    as lone surrogates) and any other lone surrogate are written as backslash escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # a name's undecodable bytes: \xff, as the bytes were
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate from elsewhere: \ud800
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
