"""Text read in images, as the store keeps and shows it.

An image whose OCR finds text gets:
- ``image.text`` views: the text in chunks of whole lines (at most ``CHUNK_WORDS`` words; longer lines
  in overlapping windows, as long texts are chunked), embedded by the model's text tower (search by
  meaning); each view's snippet is its chunk;
- the text in the primary row's ``text`` column, which the full-text index covers (keyword search,
  ``hybrid=True``), and as ``Memory.text``;
- ``metadata["ocr"]``: the lines with their boxes and confidence and each word's box (see
  :meth:`aimemory.encoders.ocr.OcrResult.to_json`), so every door can draw them.

At recall, an image hit of a text query gets ``hit.boxes`` (the words that match the query, with
their boxes in image pixels) and a snippet that shows those words.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from .encoders.base import Encoder, View, chunk_text

if TYPE_CHECKING:  # pragma: no cover
    from .inputs import Item
    from .records import Hits

TEXT_KIND = "image.text"
#: words per image.text view. Text in images is short lines (menus, slides, receipts); a quoted 2-3 words
#: is closer in meaning to its own line than to a chunk of everything in the image: on 40 generated
#: images (eval_ocr.py) recall@1 by meaning was 0.80 with 48-word chunks, 0.80 with 16, 0.95 with 8
CHUNK_WORDS = 8
CHUNK_OVERLAP_WORDS = 4
META_KEY = "ocr"
SNIPPET_CHARS = 160
_TOKEN = re.compile(r"\w+")
#: query words that match too many image words to be worth a box
STOPWORDS = frozenset("a an and are as at be by for from in is it of on or the to with".split())


def ocr_views(encoder: Encoder, engine, items: list["Item"]) -> list[list[View]]:
    """Read each image; an image with text gets its ``image.text`` views (one text-tower call for the
    whole batch) and ``item.transcript`` / ``item.ocr`` for its row. No text: no views."""
    results = [engine.read(item.payload) for item in items]
    chunks: list[list[str]] = []
    for item, result in zip(items, results):
        text = result.text.strip()
        if not text:
            chunks.append([])
            continue
        item.transcript = text
        item.ocr = result.to_json()
        chunks.append(line_chunks([line.text for line in result.lines]))
    flat = [c for cs in chunks for c in cs]
    if not flat or "text" not in encoder.modalities:  # no text tower: keyword search only
        return [[] for _ in items]
    vectors = encoder.embed_texts(flat)  # (n_chunks, dim)
    out, i = [], 0
    for cs in chunks:
        out.append([View(TEXT_KIND, np.asarray(vectors[i + j], np.float32), text=c) for j, c in enumerate(cs)])
        i += len(cs)
    return out


def line_chunks(lines: list[str], words: int = CHUNK_WORDS, overlap: int = CHUNK_OVERLAP_WORDS) -> list[str]:
    """Consecutive lines joined while they fit in ``words`` words; a longer line in word windows."""
    out: list[str] = []
    current: list[str] = []
    for line in lines:
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) > words:
            if current:
                out.append(" ".join(current))
                current = []
            out.extend(chunk_text(line, words, overlap))
            continue
        if len(current) + len(tokens) > words:
            out.append(" ".join(current))
            current = []
        current.extend(tokens)
    if current:
        out.append(" ".join(current))
    return out


def with_ocr(metadata: Mapping[str, Any], item: "Item") -> dict:
    """The metadata to store for ``item``: the caller's, plus what OCR read (under ``"ocr"``)."""
    ocr = getattr(item, "ocr", None)
    return {**metadata, META_KEY: ocr} if ocr else dict(metadata)


def ocr_of(metadata: Mapping[str, Any] | None) -> dict | None:
    ocr = (metadata or {}).get(META_KEY)
    return ocr if isinstance(ocr, dict) and isinstance(ocr.get("lines"), list) else None


def ocr_text(metadata: Mapping[str, Any] | None) -> str | None:
    """The text OCR read in an image memory (from its metadata), or None."""
    ocr = ocr_of(metadata)
    if not ocr:
        return None
    return "\n".join(str(line.get("text", "")) for line in ocr["lines"]) or None


def query_words(query: str) -> set[str]:
    return {w for w in _TOKEN.findall(query.lower()) if w not in STOPWORDS}


def matching_boxes(ocr: Mapping[str, Any], words: Iterable[str]) -> list[dict]:
    """The OCR words that share a token with ``words``: [{"text", "box"}], box = 4 (x, y) corners in
    image pixels. A line without word boxes is matched (and boxed) whole."""
    wanted = set(words)
    out = []
    for line in ocr.get("lines", []):
        parts = line.get("words") or [{"text": line.get("text", ""), "box": line.get("box")}]
        for word in parts:
            if word.get("box") and wanted & set(_TOKEN.findall(str(word.get("text", "")).lower())):
                out.append({"text": word["text"], "box": word["box"]})
    return out


def _snippet(ocr: Mapping[str, Any], words: set[str]) -> str | None:
    """The lines that hold query words, joined, at most SNIPPET_CHARS."""
    lines = [str(ln.get("text", "")) for ln in ocr.get("lines", [])
             if words & set(_TOKEN.findall(str(ln.get("text", "")).lower()))]
    if not lines:
        return None
    text = " … ".join(lines)
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS - 1] + "…"


def attach_ocr(hits: "Hits", query: str) -> None:
    """Image hits of a text query: ``hit.boxes`` (matching words and their boxes) and a snippet that
    shows those words when the one recall chose does not."""
    words: set[str] | None = None  # split on the first image hit with text read: most recalls have none
    for hit in hits:
        if hit.modality != "image":
            continue
        ocr = ocr_of(hit.memory.metadata)
        if ocr is None:
            continue
        if words is None:
            words = query_words(query)
        hit.boxes = matching_boxes(ocr, words) if words else []
        shown = set(_TOKEN.findall((hit.snippet or "").lower()))
        if hit.boxes and not (words & shown):
            hit.snippet = _snippet(ocr, words) or hit.snippet
