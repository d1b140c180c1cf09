"""Move a store to another model without losing a memory.

A store folder holds one or more *generations*, each a complete set of vectors from one model (its
own manifest, Lance table and index). The first generation is the folder itself; migrations build
new ones under ``generations/<model>/``, and ``active.json`` names the one the store opens.

    migrate(store, model)   re-embed every memory from its kept content into a new generation, in
                            batches; each batch is one commit there, so the new generation *is* the
                            checkpoint: after Ctrl-C or SIGKILL the next run continues where it
                            stopped. The old generation serves recall and takes writes throughout;
                            each pass copies what changed since the last (new, updated, forgotten
                            memories), and the last pass runs under the old generation's write lock,
                            then one atomic rename of ``active.json`` switches every later open.
    rollback(folder)        switch back while the previous generation is kept.
    drop_old(folder)        delete the previous generation's vectors and content.

Speech segments are not transcribed again: their kept text and times are re-embedded with the new
model's text tower. Images and audio whose bytes were not kept (``keep_content=False``) cannot be
re-embedded; they are listed in the report and the switch waits for ``allow_loss=True``.
Object-store (s3://, az://) stores are not migrated yet.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .encoders.base import Encoder, View
from .errors import InputError, StoreError, UnsupportedInputError
from .inputs import Item, bytes_item
from .semantics import ItemOptions
from .storage.manifest import MANIFEST_NAME, Manifest, atomic_write_bytes
from .storage.segment import SEGMENT_NAME
from .views import encode_items
from .write import commit_views

if TYPE_CHECKING:  # pragma: no cover
    from .store import MemoryStore

ACTIVE_FILE = "active.json"  # {"folder": <active generation, relative>, "previous": <kept one or null>}
STATE_FILE = "migration.json"  # a migration in progress: {"model": ..., "folder": ..., "started": ...}
GENERATIONS = "generations"
ROOT_GENERATION = "."
# what a generation in the root folder owns: --drop-old deletes these there and nothing else (the
# folder may hold the store's other files, or a user's)
GENERATION_FILES = (MANIFEST_NAME, "tables", "index", "catalog", SEGMENT_NAME)
PRIMARY_COLUMNS = ["id", "namespace", "modality", "created_at", "source", "mime", "content_hash",
                   "metadata", "text", "content", "expires_at", "created_by", "derived_from"]

# progress(done, total) after each committed batch
Progress = Callable[[int, int], None]


@dataclass
class MigrationReport:
    """What a migration did. ``not_migrated``: (namespace, id, modality, why) of memories it could
    not re-embed; ``switched``: whether the store now opens the new generation."""

    model: str
    folder: str
    migrated: int = 0
    removed: int = 0
    not_migrated: list[tuple[str, str, str, str]] = field(default_factory=list)
    passes: int = 0
    seconds: float = 0.0
    switched: bool = False
    why_not_switched: str | None = None
    rollback: bool = False  # back to a kept generation: ``migrated`` counts what changed since the switch

    def __str__(self) -> str:
        passes = f"{self.passes} pass{'es' if self.passes != 1 else ''}"
        lines = [f"rolled back to {self.model} ({self.folder}) in {self.seconds:.1f} s; carried over what "
                 f"changed since the switch: {self.migrated} re-embedded, {self.removed} forgotten ({passes})"
                 if self.rollback else f"migrated {self.migrated} memories to {self.model} in {self.seconds:.1f} s "
                 f"({passes}); {self.removed} removed"]
        if self.not_migrated:
            lines.append(f"{len(self.not_migrated)} could not be re-embedded (content not kept):")
            lines += [f"  {ns}/{mid} ({modality}): {why}" for ns, mid, modality, why in self.not_migrated[:20]]
        lines.append(("switched: the store now opens " + ("it again" if self.rollback else "the new model"))
                     if self.switched else f"not switched: {self.why_not_switched}")
        return "\n".join(lines)


# -- which generation is active ---------------------------------------------------------------
def _read_json(file: Path) -> dict | None:
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise StoreError(f"{file} is unreadable ({exc}); restore it, or delete it to open the "
                         "store's first generation") from exc


def active_folder(root: Path) -> Path:
    """The folder of the generation ``root`` opens (``root`` itself unless a migration switched)."""
    active = _read_json(Path(root) / ACTIVE_FILE)
    if not active:
        return Path(root)
    folder = (Path(root) / active["folder"]).resolve()
    if not (folder / MANIFEST_NAME).exists():
        raise StoreError(f"{root}/{ACTIVE_FILE} names generation {active['folder']!r}, which has no "
                         f"manifest; run `aimemory migrate --rollback` or restore that folder")
    return folder


def active_stamp(root: Path) -> float:
    """Changes when a migration switches ``root`` (a writer with the old generation open checks it)."""
    try:  # every write checks it: os.path, not pathlib (5 us less)
        return os.stat(os.path.join(root, ACTIVE_FILE)).st_mtime_ns
    except FileNotFoundError:
        return 0


def is_migrated_store(root: Path) -> bool:
    return (Path(root) / ACTIVE_FILE).exists()


def generation_name(model_id: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model_id).strip("-.") or "model"
    return f"{GENERATIONS}/{slug}"


def _relative(root: Path, folder: Path) -> str:
    rel = Path(folder).resolve().relative_to(Path(root).resolve())
    return ROOT_GENERATION if str(rel) == "." else rel.as_posix()


# -- the copy ---------------------------------------------------------------------------------
def _signatures(store: "MemoryStore") -> dict[tuple[str, str], tuple[Any, ...]]:
    """(namespace, id) -> what must match for a copy to be current, for every live memory."""
    cat = store.catalog
    out = {}
    primary = cat.alive & (cat.array("view") == 0)
    for p in primary.nonzero()[0].tolist():
        parents = cat.get(p, "derived_from")
        out[(cat.get(p, "namespace"), cat.get(p, "id"))] = (
            cat.get(p, "content_hash"), cat.get(p, "source"), json.dumps(cat.metadata(p), sort_keys=True),
            float(cat.get(p, "created")), cat.get(p, "expires"), cat.get(p, "created_by"),
            tuple(parents) if parents is not None else None, int(p))
    return out


def _speech_segments(store: "MemoryStore", namespace: str, memory_id: str) -> list[tuple[float, float, str]]:
    cat = store.catalog
    return [(float(cat.get(p, "start")), float(cat.get(p, "end")), cat.get(p, "snippet"))
            for p in cat.positions(memory_id, namespace) if cat.get(p, "kind") == "audio.speech"]


def _item(row: dict) -> Item | str:
    """A primary row -> the item to re-embed, or why it cannot be."""
    if row["modality"] == "text":
        return Item("text", row["text"] or "", None, row["mime"] or "text/plain", row["source"],
                    row["content_hash"])
    if row["content"] is None:
        return "its bytes were not kept (keep_content=False)"
    item = bytes_item(row["content"], source=row["source"])
    # the stored hash stays the memory's identity even if decoding details changed
    return replace(item, content_hash=row["content_hash"], mime=row["mime"] or item.mime,
                   transcript=row["text"])


class _KeptTranscript:
    """A speech recognizer that "hears" what a memory's kept transcript says (no model runs), so a
    migration re-embeds transcripts without transcribing audio again."""

    def __init__(self, segments: list[tuple[float, float, str]]) -> None:
        self.segments = segments

    def transcribe(self, audio: Any) -> Any:
        from .speech import Segment, Transcript

        segments = [Segment(start, end, text) for start, end, text in self.segments]
        return Transcript(text=" ".join(s.text for s in segments), language="", segments=segments,
                          no_speech=not segments, language_prob=0.0,
                          duration=max((s.end for s in segments), default=0.0))


def _views(target: "MemoryStore", source: "MemoryStore", items: list[Item], keys: list[tuple[str, str]]
           ) -> list[list[View]]:
    """The new model's views of ``items``: its own towers, with kept speech segments re-embedded by
    its text tower. An item the new model cannot embed gets no views."""
    views: list[list[View]] = [[] for _ in items]
    still = [n for n, item in enumerate(items) if item.modality in ("text", "image")]
    if still:  # one encoder call per modality, as remember does
        for n, item_views in zip(still, encode_items(target.encoder, None, [items[n] for n in still],
                                                     target.model_id, ocr=target.ocr)):
            views[n] = list(item_views)
    for n, (item, (namespace, mid)) in enumerate(zip(items, keys)):
        if item.modality in ("text", "image"):
            continue
        kept = _KeptTranscript(_speech_segments(source, namespace, mid))
        try:
            views[n] = list(encode_items(target.encoder, kept, [item], target.model_id)[0])
        except (InputError, UnsupportedInputError):
            views[n] = []  # nothing the new model can embed: listed by the caller
    return views


def _copy(source: "MemoryStore", target: "MemoryStore", keys: list[tuple[str, str]],
          sigs: dict, report: MigrationReport) -> None:
    """Re-embed the memories ``keys`` of ``source`` into ``target`` (one commit per namespace)."""
    vkeys = [int(source.catalog.get(sigs[k][-1], "vkey")) for k in keys]
    rows = source.table.primary_rows(vkeys, PRIMARY_COLUMNS).to_pylist()
    by_key = {(r["namespace"], r["id"]): r for r in rows}
    groups: dict[str, list[tuple[tuple[str, str], Item, dict]]] = {}
    for key in keys:
        row = by_key.get(key)
        if row is None:
            continue  # forgotten since the catalog was read: the next pass sees it gone
        item = _item(row)
        if isinstance(item, str):
            if key not in {(ns, mid) for ns, mid, *_ in report.not_migrated}:
                report.not_migrated.append((key[0], key[1], row["modality"], item))
            continue
        groups.setdefault(key[0], []).append((key, item, row))
    for namespace, group in groups.items():
        views = _views(target, source, [item for _, item, _ in group], [k for k, _, _ in group])
        for (key, item, _), item_views in zip(group, views):
            if not item_views:
                report.not_migrated.append((key[0], key[1], item.modality,
                                            f"{target.model_id} cannot embed {item.modality} and it has no transcript"))
        group = [g for g, item_views in zip(group, views) if item_views]
        views = [v for v in views if v]
        if not group:
            continue
        items = [item for _, item, _ in group]
        metas = [json.loads(row["metadata"] or "{}") for _, _, row in group]
        options = [ItemOptions(id=mid, created_at=row["created_at"].timestamp(),
                               expires_at=row["expires_at"].timestamp() if row["expires_at"] else None,
                               created_by=row["created_by"],
                               derived_from=tuple(row["derived_from"]) if row["derived_from"] else None)
                   for (_, mid), _, row in group]
        commit_views(target, items, views, namespace=namespace, metadata=metas, dedup=False, options=options)
        report.migrated += len(group)


def _sync(source: "MemoryStore", target: "MemoryStore", batch_size: int, report: MigrationReport,
          progress: Progress | None, keep: set | None = None) -> int:
    """One pass: copy what is new or changed in ``source``, remove what it no longer holds (except
    the (namespace, id) keys in ``keep``). Returns how many memories it wrote or removed."""
    source.refresh()
    target.refresh()
    want, have = _signatures(source), _signatures(target)
    skipped = {(ns, mid) for ns, mid, *_ in report.not_migrated}
    todo = _stale(want, have, skipped)
    gone = [k for k in have if k not in want and k not in (keep or ())]
    done = len(want) - len(todo) - len([k for k in skipped if k in want])
    if progress:
        progress(done, len(want))
    for start in range(0, len(todo), batch_size):
        _copy(source, target, todo[start:start + batch_size], want, report)
        done += len(todo[start:start + batch_size])
        if progress:
            progress(min(done, len(want)), len(want))
    by_namespace: dict[str, list[str]] = {}
    for namespace, mid in gone:
        by_namespace.setdefault(namespace, []).append(mid)
    for namespace, ids in by_namespace.items():
        target.forget(ids, namespace=namespace)
        report.removed += len(ids)
    report.passes += 1
    return len(todo) + len(gone)


def migrate(store: "MemoryStore", model: "str | os.PathLike | Encoder", *, batch_size: int = 32,
            progress: Progress | None = None, allow_loss: bool = False, max_passes: int = 5,
            **open_kwargs: Any) -> MigrationReport:
    """Re-embed ``store`` into a generation for ``model`` and switch to it (see the module doc).
    ``open_kwargs`` go to the new generation's :class:`MemoryStore` (device, sound_model, ...)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    if getattr(store.path, "remote", None) is not None:
        raise StoreError("migrating an object-store (s3://, az://) store is not supported yet; "
                         "export it and import it into a new store with the other model")
    root = Path(store.root)
    started = time.monotonic()
    target, folder = _open_target(root, model, store, open_kwargs)
    try:
        state = {"model": target.model_id, "folder": _relative(root, folder),
                 "started": datetime.now(timezone.utc).isoformat()}
        atomic_write_bytes(root / STATE_FILE, json.dumps(state).encode())
        report = MigrationReport(model=target.model_id, folder=state["folder"])
        # catch up while the old generation keeps taking writes, until a pass finds little to do
        for _ in range(max_passes):
            if _sync(store, target, batch_size, report, progress) <= batch_size:
                break
        with store.writing():  # the last pass: no writer can slip in between it and the switch
            _sync(store, target, batch_size, report, progress)
            if report.not_migrated and not allow_loss:
                report.why_not_switched = (f"{len(report.not_migrated)} memories could not be re-embedded; "
                                           "rerun with allow_loss=True (--allow-loss) to switch without them")
            else:
                target.save_index()
                previous = _relative(root, store.path)
                atomic_write_bytes(root / ACTIVE_FILE, json.dumps(
                    {"folder": state["folder"], "previous": previous, "model": target.model_id,
                     "switched": datetime.now(timezone.utc).isoformat(),
                     # left behind (allow_loss): a rollback keeps them where they still are
                     "not_migrated": [[ns, mid] for ns, mid, *_ in report.not_migrated]}).encode())
                (root / STATE_FILE).unlink(missing_ok=True)
                report.switched = True
    finally:
        target.close()
    report.seconds = time.monotonic() - started
    return report


def _open_target(root: Path, model: "str | os.PathLike | Encoder", store: "MemoryStore",
                 open_kwargs: dict) -> tuple["MemoryStore", Path]:
    """The new generation's store, created on first use and reopened on resume."""
    from .encoders.registry import load_encoder
    from .store import MemoryStore

    encoder = model if isinstance(model, Encoder) else load_encoder(model)
    if encoder.model_id == store.model_id:
        raise InputError(f"the store already uses {encoder.model_id!r}; nothing to migrate")
    folder = root / generation_name(encoder.model_id)
    running = _read_json(root / STATE_FILE)
    if running and running.get("model") != encoder.model_id and (root / running["folder"]).exists():
        raise InputError(f"a migration to {running['model']!r} is in progress in {running['folder']}; "
                         f"resume it with `aimemory migrate --model {running['model']}`, or delete that "
                         f"folder and {STATE_FILE} to start over with another model")
    kwargs = {"keep_content": store.keep_content, "device": store.placement, **open_kwargs}
    return MemoryStore(folder, model=encoder, speech_model=None, **kwargs), folder


def rollback(root: str | Path, model: "str | os.PathLike | Encoder | None" = None, *, batch_size: int = 32,
             progress: Progress | None = None, max_passes: int = 5, **open_kwargs: Any) -> MigrationReport:
    """Switch back to the previous generation, carrying over what changed since the switch: memories
    remembered or updated since are re-embedded with the previous model (``model``: its encoder, by
    default loaded by the id its manifest names; needed only when there is something to re-embed),
    and memories forgotten since are forgotten there too. The newer generation is kept, so a second
    rollback switches forward again. Memories a migration left behind (``allow_loss``) stay where
    they are. ``open_kwargs`` go to the previous generation's :class:`MemoryStore`."""
    from .store import MemoryStore

    root = Path(root)
    active = _read_json(root / ACTIVE_FILE)
    if not active or not active.get("previous"):
        raise InputError(f"{root} has no previous generation to roll back to (it was never migrated, "
                         "or --drop-old deleted it)")
    previous, manifest = active["previous"], Manifest.read(root / active["previous"])
    current_manifest = Manifest.read(root / active["folder"])
    if manifest is None or current_manifest is None:
        raise StoreError(f"the generation {previous if manifest is None else active['folder']!r} has no "
                         "manifest; it cannot be opened")
    started = time.monotonic()
    report = MigrationReport(model=manifest.model_id, folder=previous, rollback=True)
    left_behind = {tuple(k) for k in active.get("not_migrated", [])}
    current = MemoryStore.for_views(root, current_manifest.model_id, current_manifest.dim,
                                    precision=current_manifest.precision, generation=active["folder"])
    target = None
    try:
        current.flush()  # every memory in its table before it is read
        target = MemoryStore.for_views(root, manifest.model_id, manifest.dim, precision=manifest.precision,
                                       generation=previous)
        if _changed(current, target, left_behind):  # re-embedding needs the previous model
            target.close()
            target = MemoryStore(root, model=model if model is not None else manifest.model_id,
                                 speech_model=None, generation=previous, **open_kwargs)
        for _ in range(max_passes):
            if _sync(current, target, batch_size, report, progress, keep=left_behind) <= batch_size:
                break
        with current.writing():  # the last pass: no writer slips in between it and the switch
            _sync(current, target, batch_size, report, progress, keep=left_behind)
            target.save_index()
            atomic_write_bytes(root / ACTIVE_FILE, json.dumps(
                {"folder": previous, "previous": active["folder"], "model": manifest.model_id,
                 "switched": datetime.now(timezone.utc).isoformat(),
                 "not_migrated": sorted({(ns, mid) for ns, mid, *_ in report.not_migrated} | left_behind)}
                ).encode())
            report.switched = True
    finally:
        current.close()
        if target is not None:
            target.close()
    report.seconds = time.monotonic() - started
    return report


def _changed(source: "MemoryStore", target: "MemoryStore", keep: set) -> bool:
    """Whether a sync of ``target`` from ``source`` has anything to re-embed."""
    source.refresh()
    return bool(_stale(_signatures(source), _signatures(target), keep))


def _stale(want: dict, have: dict, skip: set) -> list[tuple[str, str]]:
    """Keys whose memory ``have`` lacks or holds in another state than ``want`` (``skip`` aside)."""
    return [k for k, sig in want.items() if k not in skip and (k not in have or have[k][:-1] != sig[:-1])]


def drop_old(root: str | Path) -> int:
    """Delete the previous generation (vectors, content, index); returns bytes freed. Rollback is
    impossible afterwards."""
    root = Path(root)
    active = _read_json(root / ACTIVE_FILE)
    if not active or not active.get("previous"):
        raise InputError(f"{root} has no previous generation to drop")
    previous = (root / active["previous"]).resolve()
    if previous == active_folder(root).resolve():
        raise InputError("the previous generation is the active one; nothing dropped")
    if active["previous"] == ROOT_GENERATION:  # the first generation lives beside the store-level files
        doomed = [previous / name for name in GENERATION_FILES if (previous / name).exists()]
    else:
        doomed = [previous]
    freed = sum(_size(p) for p in doomed)
    atomic_write_bytes(root / ACTIVE_FILE, json.dumps({**active, "previous": None}).encode())
    for path in doomed:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return freed


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
