"""``aimemory remember``: expand inputs, store them batch by batch with a progress bar, report.

Each batch is one atomic commit (``remember_many`` commits per ``batch_size``), so Ctrl-C leaves
every finished batch stored and nothing half-written. A rerun resumes cheaply: the store recognises content it
already holds by hash and returns the existing memory without encoding it again.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import typer

from ..prefetch import decode_threads, thread_map

GLOB_CHARS = set("*?[")
LIST_EACH_UP_TO = 20  # below this many items, print one line per item
CURRENT_CHARS = 40  # longest file name the progress bar shows
# batches handed to the store in one call: its files decode on threads ahead of each batch's
# commit, across batches; every batch is still its own atomic commit
WINDOW_BATCHES = 8


@dataclass
class Entry:
    """One thing to remember: a file (Path) or a text (str), and how to name it to the user."""

    item: object
    label: str
    source: str | None = None


@dataclass
class Tally:
    new: list = field(default_factory=list)  # (label, id)
    existing: list = field(default_factory=list)  # (label, id)
    updated: list = field(default_factory=list)  # (label, id): already stored, new tags/metadata merged
    skipped: list = field(default_factory=list)  # (label, reason)


def _walk(folder: Path, problems: list[tuple[str, str]]) -> list[Path]:
    """Files under ``folder``, sorted, skipping hidden files and folders (.git, .DS_Store...); a
    folder that cannot be listed is added to ``problems``, not passed over in silence."""
    from ..text_bytes import printable

    out = []

    def unreadable(exc: OSError) -> None:
        why = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
        problems.append((printable(str(exc.filename or folder)), f"folder cannot be read ({why})"))

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return out


def _stdin_text() -> str | None:
    """What was piped in, decoded as text files are (UTF-8, else Windows-1252 / Latin-1); None when
    it is not text."""
    from ..text_bytes import decode_text

    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # a text stream put in place of the console's (an embedding program, a test)
        return sys.stdin.read()
    data = raw.read()
    return decode_text(data) if data else ""


def collect(inputs: list[str], texts: list[str]) -> tuple[list[Entry], list[tuple[str, str]]]:
    """Arguments -> entries to remember, plus (label, reason) for arguments that name nothing."""
    from ..text_bytes import printable
    entries: list[Entry] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add_file(p: Path) -> None:
        p = p.absolute()
        if p not in seen:
            seen.add(p)
            entries.append(Entry(p, printable(str(p))))  # a name's bytes that are not UTF-8 escaped

    for arg in inputs:
        if arg == "-":
            data = _stdin_text()
            if data is None:
                problems.append(("<stdin>", "not text (binary data?); to remember a file, pass its path"))
            else:
                entries.append(Entry(data, "<stdin>", "stdin"))
            continue
        path = Path(arg).expanduser()
        if path.is_dir():
            for f in _walk(path, problems):
                add_file(f)
        elif path.is_file():
            add_file(path)
        elif GLOB_CHARS & set(arg):  # quoted globs ('photos/**/*.jpg') are expanded here
            matches = sorted(glob.glob(os.path.expanduser(arg), recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                problems.append((arg, "no files match this pattern"))
            for f in files:
                add_file(f)
        elif path.exists():
            problems.append((printable(arg), "not a regular file"))
        elif path.is_symlink():
            problems.append((printable(arg), "a symbolic link that leads nowhere (missing target, or a loop)"))
        else:
            problems.append((printable(arg), "no such file or folder"))
    for t in texts:
        entries.append(Entry(t, _short(t)))
    return entries, problems


def _short(text: str, n: int = 60) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= n else one_line[: n - 1] + "…"


def _progress(total: int):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- items/s" if speed is None else f"{speed:.1f} items/s", style="cyan")

    console = Console(stderr=True)
    # the last column names the file being worked on, and how far into it (long recordings)
    return Progress(TextColumn("remembering"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    TextColumn("{task.fields[current]}", style="dim"), console=console,
                    transient=True, disable=not console.is_terminal or total < 2)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def describe(label: str, what: str, done: float, total: float) -> str:
    """What the progress bar says about the item being worked on, e.g.
    ``talk.m4a: transcribing 1:30 / 3:00``."""
    name = os.path.basename(label) or label
    name = name if len(name) <= CURRENT_CHARS else "…" + name[-(CURRENT_CHARS - 1):]
    if what == "decoding":
        return name
    return f"{name}: {what} {_clock(done)} / {_clock(total)}"


def _stored_id(store, namespace: str, path: Path) -> str | None:
    """The id of a memory holding exactly this file's content, found by hashing its bytes, without
    decoding it: a rerun over a big folder of audio skips decoding and resampling as well as
    encoding. Mirrors the store's content hash (sha256 of the file's bytes for images and audio,
    of ``text:`` + the bytes for UTF-8 text without a BOM); if the store's internals differ, the store's own
    dedup still recognises the file after decoding."""
    import hashlib

    find = getattr(getattr(store, "catalog", None), "find_duplicate", None)
    if find is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None  # remember_many reports the error with its reason
    for prefix in (b"", b"text:"):
        mid = find(namespace, hashlib.sha256(prefix + data).hexdigest())
        if mid is not None:
            return mid
    return None


def ingest(store, entries: list[Entry], problems: list[tuple[str, str]], *, metadata: dict,
           namespace: str, batch_size: int, as_json: bool, allow_partial: bool = False,
           extra: dict | None = None) -> int:
    """Remember ``entries`` in batches; print a summary; return the exit code: 1 if anything was
    skipped for an error (0 with ``allow_partial`` when something was stored), 130 if interrupted.
    ``extra``: more keywords of ``remember_many`` (ids, ttl, provenance...)."""
    extra = extra or {}
    tally = Tally(skipped=list(problems))
    run_start = datetime.now(timezone.utc)
    seen_ids: set[str] = set()
    interrupted = False
    with _progress(len(entries)) as bar:
        task = bar.add_task("remember", total=len(entries), current="")
        try:
            window = batch_size * WINDOW_BATCHES
            named = "ids" in extra  # a named memory is upserted, never found by its content
            for start in range(0, len(entries), window):
                chunk = entries[start:start + window]
                batch, known = [], []
                found = thread_map(lambda e: _stored_id(store, namespace, e.item)
                                   if isinstance(e.item, Path) and not named else None,
                                   chunk, threads=decode_threads())  # hashing releases the GIL
                for e, mid in zip(chunk, found):
                    if mid is not None:
                        known.append((e.label, mid))
                    else:
                        batch.append(e)
                _merge_into_stored(store, known, metadata, namespace, tally, seen_ids)
                done_before = start + len(chunk) - len(batch)  # files found stored count as done
                bar.update(task, completed=done_before)
                if not batch:
                    continue

                def inside(i, what, done, total, base=done_before, labels=tuple(e.label for e in batch)):
                    current = describe(labels[i], what, done, total)
                    if what == "decoding":  # reading a file says which one, not how far the run is
                        bar.update(task, current=current)
                    else:  # long work inside an item moves the bar (and its rate and ETA)
                        part = min(done / total, 1.0) if total else 0.0
                        bar.update(task, completed=base + i + part, current=current)

                try:
                    result = store.remember_many(
                        [e.item for e in batch], batch_size=batch_size, metadata=metadata, namespace=namespace,
                        errors="skip", sources=[e.source for e in batch],
                        progress=lambda n, base=done_before: bar.update(task, completed=base + n),
                        item_progress=inside, **extra)
                except BaseException:  # Ctrl-C or an error: say what the window's batches stored
                    _count_committed(store, namespace, batch, tally, seen_ids)
                    raise
                _count(result, batch, tally, run_start, seen_ids)
                bar.update(task, completed=min(start + window, len(entries)))
        except KeyboardInterrupt:
            interrupted = True
        except Exception:
            if tally.new or tally.existing or tally.updated:  # say what is safely stored first
                bar.stop()
                report(tally, False, False)
            raise
    return finish(tally, as_json, allow_partial, interrupted)


def finish(tally: Tally, as_json: bool, allow_partial: bool, interrupted: bool = False) -> int:
    """Print the summary of a remember run and return its exit code (see :func:`ingest`)."""
    report(tally, as_json, interrupted)
    if interrupted:
        return 130
    if not tally.skipped:
        return 0
    stored = bool(tally.new or tally.existing or tally.updated)
    if allow_partial and stored:
        return 0
    if stored and not as_json:
        typer.echo(f"{len(tally.skipped)} input{'s were' if len(tally.skipped) != 1 else ' was'} skipped "
                   "(exit status 1); the others are stored. Pass --allow-partial to accept a partial "
                   "run with exit status 0", err=True)
    return 1


def served_tally(entries: list[Entry], memories: list[dict], skipped: list[dict]) -> Tally:
    """The tally of texts a running server remembered (see :func:`.served.remember_texts`): its
    memories come in the order of the entries it did not skip."""
    tally = Tally()
    gone = {int(s.get("index", -1)): s for s in skipped}
    stored = iter(memories)
    for i, entry in enumerate(entries):
        if i in gone:
            error = gone[i].get("error") or {}
            tally.skipped.append((entry.label, _reason(ValueError(error.get("message", "not stored")))))
            continue
        m = next(stored, None)
        if m is None:
            continue
        status = m.get("status")
        kind = tally.new if status in ("new", "replaced") else tally.updated if status == "updated" else tally.existing
        kind.append((entry.label, m.get("id")))
    return tally


def _merge_into_stored(store, known: list[tuple[str, str]], metadata: dict, namespace: str, tally: Tally,
                       seen_ids: set[str]) -> None:
    """Files found stored by their hash: merge this run's tags and metadata into them (one commit)."""
    updated: set[str] = set()
    if known and metadata:
        ids = list(dict.fromkeys(mid for _, mid in known))
        updated = {m.id for m in store.update_many(ids, metadata=metadata, namespace=namespace)
                   if m.status == "updated"}
    for label, mid in known:
        (tally.updated if mid in updated else tally.existing).append((label, mid))
        updated.discard(mid)  # the same file named twice: merged once
        seen_ids.add(mid)


def _count_committed(store, namespace: str, batch: list[Entry], tally: Tally, seen_ids: set[str]) -> None:
    """After Ctrl-C or an error inside a window: the window's batches committed before it are found
    by hash (none of these files was stored when the window started)."""
    for e in batch:
        mid = _stored_id(store, namespace, e.item) if isinstance(e.item, Path) else None
        if mid is not None and mid not in seen_ids:
            seen_ids.add(mid)
            tally.new.append((e.label, mid))


def _count(result, batch: list[Entry], tally: Tally, run_start: datetime, seen_ids: set[str]) -> None:
    skipped = {i: err for i, _, err in result.skipped}
    memories = iter(result)
    for i, entry in enumerate(batch):
        if i in skipped:
            tally.skipped.append((entry.label, _reason(skipped[i])))
            continue
        m = next(memories)
        # a memory made before this run started, or earlier in this run, was already stored
        fresh = m.created_at >= run_start and m.id not in seen_ids
        seen_ids.add(m.id)
        if fresh:
            tally.new.append((entry.label, m.id))
        elif m.status == "updated":
            tally.updated.append((entry.label, m.id))
        else:
            tally.existing.append((entry.label, m.id))


def _reason(err: BaseException) -> str:
    msg = str(err)
    return msg[:300] + ("…" if len(msg) > 300 else "")


def report(tally: Tally, as_json: bool, interrupted: bool) -> None:
    stored = len(tally.existing) + len(tally.updated)
    if as_json:
        rows = ([{"id": mid, "input": label, "status": "new"} for label, mid in tally.new]
                + [{"id": mid, "input": label, "status": "updated"} for label, mid in tally.updated]
                + [{"id": mid, "input": label, "status": "already stored"} for label, mid in tally.existing]
                + [{"id": None, "input": label, "status": "skipped", "reason": why} for label, why in tally.skipped])
        typer.echo(json.dumps({"new": len(tally.new), "already_stored": stored, "updated": len(tally.updated),
                               "skipped": len(tally.skipped), "interrupted": interrupted, "items": rows},
                              indent=2))
    else:
        if len(tally.new) + stored <= LIST_EACH_UP_TO:
            for label, mid in tally.new:
                typer.echo(f"new             {mid}  {label}")
            for label, mid in tally.updated:
                typer.echo(f"updated         {mid}  {label}")
            for label, mid in tally.existing:
                typer.echo(f"already stored  {mid}  {label}")
        merged = f" (new tags/metadata merged into {len(tally.updated)})" if tally.updated else ""
        typer.echo(f"{len(tally.new)} new, {stored} already stored{merged}, "
                   f"{len(tally.skipped)} skipped (errors)")
    if tally.skipped and not as_json:
        typer.echo("skipped:", err=True)
        for label, why in tally.skipped:
            typer.echo(f"  {label}: {why}", err=True)
    if interrupted:
        typer.echo("interrupted: the batches above are stored; run the same command again to resume "
                   "(stored files are recognised and not encoded again)", err=True)
