"""Rich notebook views of memories and hits (the ``_repr_html_`` of Memory, Hit and Hits).

Images become PNG thumbnails (data URIs, at most ``THUMB_PX``); audio becomes an ``<audio controls>``
player with the bytes inline, capped at ``MAX_AUDIO_BYTES``: a long clip shows only the hit's time
span when there is one, else its first ``MAX_CLIP_SECONDS``. Every user string (text, source,
metadata, snippets) is HTML-escaped: memories may hold anything, including markup.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Iterable

THUMB_PX = 160
MAX_AUDIO_BYTES = 1_500_000
MAX_CLIP_SECONDS = 30.0
SPAN_PAD_SECONDS = 0.5
MAX_TEXT_CHARS = 2_000
BADGE_COLOURS = {"image": "#8e44ad", "audio": "#1f78b4", "text": "#2e8b57"}

_CARD = ("border:1px solid #ddd;border-radius:6px;padding:8px;margin:4px 0;font-family:sans-serif;"
         "font-size:13px;max-width:720px")


def esc(value: object) -> str:
    """HTML-escape anything (quotes too, so values are safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def badge(modality: str) -> str:
    colour = BADGE_COLOURS.get(modality, "#666")
    return (f'<span style="background:{colour};color:#fff;border-radius:3px;padding:1px 6px;'
            f'font-size:11px">{esc(modality)}</span>')


def _clock(seconds: float) -> str:
    m, s = divmod(float(seconds), 60)
    return f"{int(m)}:{s:04.1f}"


def _span(start, end) -> str:
    return "" if start is None or end is None else f"{_clock(start)}–{_clock(end)}"


# -- media -----------------------------------------------------------------------------------------
def thumbnail_png(memory, max_px: int = THUMB_PX) -> bytes:
    """The image of an image memory as PNG bytes, at most ``max_px`` on its longer side."""
    img = memory.image()
    img.thumbnail((max_px, max_px))
    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def image_tag(memory, max_px: int = THUMB_PX) -> str:
    try:
        data = base64.b64encode(thumbnail_png(memory, max_px)).decode("ascii")
    except Exception:  # noqa: BLE001 - a broken stored image must not break the whole table
        return '<i style="color:#999">(image unavailable)</i>'
    alt = esc(memory.source or memory.id)
    return (f'<img src="data:image/png;base64,{data}" alt="{alt}" '
            f'style="max-width:{max_px}px;max-height:{max_px}px;border-radius:4px"/>')


def frame_tag(memory, start: float | None, end: float | None, max_px: int = THUMB_PX) -> str:
    """A video memory's picture at the middle of the span (its first scene without one)."""
    try:
        from .preprocess.video import frame_jpeg, shown_at

        data = base64.b64encode(frame_jpeg(bytes(memory.content), shown_at(start, end), max_px)).decode("ascii")
    except Exception:  # noqa: BLE001 - an undecodable video must not break the whole table
        return '<i style="color:#999">(frame unavailable)</i>'
    return (f'<img src="data:image/jpeg;base64,{data}" alt="{esc(memory.source or memory.id)}" '
            f'style="max-width:{max_px}px;max-height:{max_px}px;border-radius:4px"/>')


def _wav(samples, rate: int) -> bytes:
    import wave

    import numpy as np

    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def audio_clip(memory, start: float | None = None, end: float | None = None) -> tuple[bytes, str, str]:
    """-> (bytes, mime, note): the original file when small enough, else a WAV of the span
    (padded) or of the first ``MAX_CLIP_SECONDS``."""
    content = memory.content
    if isinstance(content, (bytes, bytearray)) and len(content) <= MAX_AUDIO_BYTES:
        return bytes(content), memory.mime or "audio/wav", ""
    audio = memory.audio()
    if start is not None and end is not None:
        lo = max(0.0, float(start) - SPAN_PAD_SECONDS)
        hi = min(audio.duration, float(end) + SPAN_PAD_SECONDS, lo + MAX_CLIP_SECONDS)
        note = f"excerpt {_clock(lo)}–{_clock(hi)} of {_clock(audio.duration)}"
    else:
        lo, hi = 0.0, min(audio.duration, MAX_CLIP_SECONDS)
        note = f"first {_clock(hi)} of {_clock(audio.duration)}"
    rate = audio.sample_rate
    return _wav(audio.samples[int(lo * rate):int(hi * rate)], rate), "audio/wav", note


def audio_tag(memory, start: float | None = None, end: float | None = None) -> str:
    try:
        data, mime, note = audio_clip(memory, start, end)
    except Exception:  # noqa: BLE001
        return '<i style="color:#999">(audio unavailable)</i>'
    b64 = base64.b64encode(data).decode("ascii")
    note_html = f'<div style="color:#888;font-size:11px">{esc(note)}</div>' if note else ""
    return f'<audio controls preload="none" src="data:{esc(mime)};base64,{b64}"></audio>{note_html}'


def text_block(text: str | None, limit: int = MAX_TEXT_CHARS) -> str:
    if not text:
        return ""
    shown = text if len(text) <= limit else text[:limit] + "…"
    return f'<div style="white-space:pre-wrap;margin-top:4px">{esc(shown)}</div>'


def preview(memory, start: float | None = None, end: float | None = None, text_limit: int = 300) -> str:
    """The content of a memory in a small space: thumbnail, player, or the start of its text."""
    if memory.modality == "image":
        return image_tag(memory)
    if memory.modality == "audio":
        return audio_tag(memory, start, end)
    if memory.modality == "video":
        return frame_tag(memory, start, end) + text_block(memory.text, text_limit)
    return text_block(memory.text, text_limit)


def _meta_html(memory) -> str:
    parts = []
    if memory.tags:
        parts.append("tags: " + ", ".join(f"<code>{esc(t)}</code>" for t in memory.tags))
    extra = {k: v for k, v in memory.metadata.items() if k != "tags"}
    if extra:
        parts.append(f"metadata: <code>{esc(json.dumps(extra, ensure_ascii=False, default=str))}</code>")
    return "<br/>".join(parts)


# -- the three reprs -------------------------------------------------------------------------------
def memory_html(memory) -> str:
    """One memory as a card: badge, id, time, source, tags/metadata, content."""
    head = (f"{badge(memory.modality)} <code>{esc(memory.id)}</code> "
            f'<span style="color:#888">{esc(memory.created_at.isoformat(timespec="seconds"))} · '
            f"namespace {esc(memory.namespace)}</span>")
    source = f'<div style="color:#555">source: {esc(memory.source)}</div>' if memory.source else ""
    body = preview(memory, text_limit=MAX_TEXT_CHARS) if memory.modality != "text" else text_block(memory.text)
    transcript = ""
    if memory.modality == "audio" and memory.text:
        transcript = f'<div style="color:#555">transcript:</div>{text_block(memory.text)}'
    meta = _meta_html(memory)
    meta = f'<div style="color:#555;margin-top:4px">{meta}</div>' if meta else ""
    return f'<div style="{_CARD}"><div>{head}</div>{source}<div style="margin-top:6px">{body}</div>' \
           f"{transcript}{meta}</div>"


def _snippet_html(hit) -> str:
    if not hit.snippet or (hit.modality == "text" and hit.kind == "text"):
        return ""  # a whole short text is already shown as the preview
    span = _span(hit.start, hit.end)
    when = f'<span style="color:#888">[{esc(span)}]</span> ' if span else ""
    return f'<div style="margin-top:4px">{when}“{esc(hit.snippet)}”</div>'


def _relevance(hit) -> str:
    """The calibrated relevance as a percentage before the raw cosine (empty when unknown)."""
    rel = getattr(hit, "relevance", None)
    return "" if rel is None else f'<span title="relevance (calibrated)">{100 * rel:.0f}%</span> '


def hit_html(hit, rank: int | None = None) -> str:
    """One hit as a card: relevance and score, badge, matched view and time span, content."""
    span = _span(hit.start, hit.end)
    head = (f"{'#' + str(rank) + ' ' if rank else ''}{_relevance(hit)}<b>{hit.score:.3f}</b> {badge(hit.modality)} "
            f'<span style="color:#888">{esc(hit.kind)}{" · " + esc(span) if span else ""}</span> '
            f"<code>{esc(hit.id)}</code>")
    source = f'<div style="color:#555">source: {esc(hit.memory.source)}</div>' if hit.memory.source else ""
    body = preview(hit.memory, hit.start, hit.end)
    return (f'<div style="{_CARD}"><div>{head}</div>{source}<div style="margin-top:6px">{body}</div>'
            f"{_snippet_html(hit)}</div>")


def hits_html(hits: Iterable) -> str:
    """Hits as a table: rank, score, modality, content, source and matched span."""
    hits = list(hits)
    if not hits:
        return "<i>no hits</i>"
    cell = 'style="padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top;text-align:left"'
    rows = []
    for rank, h in enumerate(hits, 1):
        span = _span(h.start, h.end)
        where = esc(h.memory.source or "")
        if span:
            where += f'<div style="color:#888">{esc(h.kind)} [{esc(span)}]</div>'
        rows.append(f"<tr><td {cell}>{rank}</td><td {cell}>{_relevance(h)}<b>{h.score:.3f}</b></td>"
                    f"<td {cell}>{badge(h.modality)}</td><td {cell}>{preview(h.memory, h.start, h.end)}"
                    f"{_snippet_html(h)}</td><td {cell}>{where}</td>"
                    f"<td {cell}><code style=\"font-size:11px\">{esc(h.id)}</code></td></tr>")
    header = "".join(f"<th {cell}>{name}</th>" for name in ("#", "score", "modality", "content", "source", "id"))
    return (f'<table style="border-collapse:collapse;font-family:sans-serif;font-size:13px">'
            f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
