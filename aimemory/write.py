"""The write transaction: decoded items and their views -> one Lance commit -> catalog + index.

    dedup (content already in the namespace, or twice in one batch) -> rows (keys reserved in the
    manifest first) -> one Lance commit -> catalog append -> index add -> index saved now and then

The store's remember path encodes under the write lock and then calls :func:`commit_views`; the
Ray ingest (``aimemory.distributed``) commits the views its workers computed with the same call.
"""

from __future__ import annotations

import json
import logging
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from . import write_ahead
from .encoders.base import View
from .errors import AimemoryError, InputError, StoreError
from .inputs import Item
from .records import CATALOG_COLUMNS, SCHEMA_VERSION, Memory
from .semantics import ItemOptions, apply_options, each_item, unchanged
from .storage.arrow_numpy import to_numpy
from .storage.catalog import Catalog
from .storage.remote import remote_lease
from .storage.table import folder_lock, storage_error
from .update import commit_metadata, merged, plan
from .views import build_rows

if TYPE_CHECKING:  # pragma: no cover
    from .store import MemoryStore

log = logging.getLogger("aimemory")

SAVE_INDEX_AFTER_CHANGES = 20_000  # vectors added/removed since the last save...
SAVE_INDEX_GROWTH = 0.25  # ...and at least this fraction of the index

# a new item of a batch: (its slot, the item, its metadata, its tags)
New = tuple[int, Item, dict[str, Any], list[str]]
# metadata= of a batch: one mapping for all items, or one (or None) per item
Metadata = Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Disk full, out of file handles, Lance IO errors -> a typed StoreError saying so."""
    try:
        yield
    except AimemoryError:
        raise
    except BaseException as exc:
        if not (isinstance(exc, (OSError, RuntimeError)) or type(exc).__name__ == "PanicException"):
            raise
        err = storage_error(exc, f"{what} failed")
        if type(err) is not StoreError:  # a failed write is no proof of damage
            err = StoreError(f"{what} failed ({exc}); nothing was changed")
        raise err from exc


class WriteLock:
    """One writer at a time: across threads (``threads``, an RLock readers take too), processes
    (flock on the store's lock file) and, for object stores, machines (a lease). Re-entrant within
    the thread that holds it; ``refresh`` runs on taking it, so a writer sees other processes'
    commits before it writes."""

    def __init__(self, folder: Path, refresh: Callable[[], None]) -> None:
        self.folder = folder
        self.refresh = refresh
        self.threads = threading.RLock()
        self._held = False  # only read and written by the thread holding ``threads``

    @contextmanager
    def hold(self, then: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the lock; ``then`` runs after the refresh when this call takes it (not when nested)."""
        with self.threads:
            if self._held:  # this thread already holds it: flock again would wait on itself
                yield
                return
            with remote_lease(self.folder), ExitStack() as stack:
                with storage_errors("taking the write lock"):
                    stack.enter_context(folder_lock(self.folder))
                self._held = True
                try:
                    with storage_errors("reading other processes' writes"):
                        self.refresh()
                    if then is not None:
                        then()
                    yield
                finally:
                    self._held = False


def parse_metadata(metadata: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """A memory's metadata as stored (JSON-checked, ``tags`` a list of strings) and its tags."""
    meta = dict(metadata or {})
    tags = meta.get("tags", [])
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise InputError("metadata['tags'] must be a string or a list of strings")
    meta["tags"] = list(tags)
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata must be JSON-serialisable: {exc}") from exc
    return meta, list(tags)


def per_item(value: Any, n: int, name: str) -> list[Any]:
    """``value`` (a mapping, e.g. metadata) for each of ``n`` items: None or one mapping repeated,
    or a list of exactly ``n``."""
    return each_item(value, n, name, lambda v: isinstance(v, Mapping))


@dataclass
class BatchPlan:
    """What a commit does with each item of a batch (``slot`` = its position in the batch)."""

    todo: list[New] = field(default_factory=list)  # new items
    stored: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)  # already stored: slot, id, meta
    same_as: dict[int, int] = field(default_factory=dict)  # slot -> earlier slot with the same content
    unchanged: list[tuple[int, str]] = field(default_factory=list)  # named, already stored as given: slot, id
    replaced: dict[str, list[int]] = field(default_factory=dict)  # named memories replaced: id -> old vkeys
    renamed: set[str] = field(default_factory=set)  # ...of which not expired: their new version is "replaced"
    near_merged: set[int] = field(default_factory=set)  # slots merged into their near duplicate


def plan_batch(catalog: Catalog, items: Sequence[Item], metas: Sequence[Mapping[str, Any] | None],
               namespace: str, dedup: bool, options: Sequence[ItemOptions] | None = None,
               near: Mapping[int, tuple[str, float]] | None = None) -> BatchPlan:
    """Sort a batch into new items, content already stored in ``namespace`` and repeats (with
    ``dedup``; a repeat's metadata is merged into the first). Items named by the caller
    (``options[slot].id``) replace the memory of that id, if any, and are never merged by content;
    an item with a near duplicate (``near[slot]``) asking to merge is merged into it. Bad metadata
    raises here."""
    batch = BatchPlan()
    seen: dict[str, int] = {}  # content hash -> its position in todo
    options = list(options) if options is not None else [ItemOptions()] * len(items)
    near = near or {}
    named = {o.id for o in options if o.id is not None}  # content dedup must not land on one of these
    for slot, (item, metadata) in enumerate(zip(items, metas)):
        meta, tags = parse_metadata(metadata)
        option = options[slot]
        if (mid := option.id) is not None:  # named by the caller: upsert, no content dedup
            held = catalog.positions(mid, namespace, expired=True)  # expired rows go too
            if held and not catalog.is_expired(held[0]) and unchanged(catalog, held[0], item, meta, option):
                batch.unchanged.append((slot, mid))
                continue
            if held:
                batch.replaced[mid] = [int(catalog.get(p, "vkey")) for p in held]
                if not catalog.is_expired(held[0]):
                    batch.renamed.add(mid)
            batch.todo.append((slot, item, meta, tags))
            continue
        found = near.get(slot)
        if found and option.on_near_duplicate == "merge" and not (
                dedup and catalog.find_duplicate(namespace, item.content_hash)):  # an exact duplicate first
            batch.stored.append((slot, found[0], meta))
            batch.near_merged.add(slot)
            continue
        if dedup:
            existing = catalog.find_duplicate(namespace, item.content_hash)
            if existing is not None and existing not in named:
                batch.stored.append((slot, existing, meta))
                continue
            if item.content_hash in seen:  # the same content twice in one batch: one memory
                first = seen[item.content_hash]
                first_slot, first_item, first_meta, _ = batch.todo[first]
                both = merged(first_meta, metadata=meta)
                batch.todo[first] = (first_slot, first_item, both, both["tags"])
                batch.same_as[slot] = first_slot
                continue
            seen[item.content_hash] = len(batch.todo)
        batch.todo.append((slot, item, meta, tags))
    return batch


def commit_views(store: "MemoryStore", items: Sequence[Item], views: Sequence[Sequence[View] | None], *,
                 namespace: str = "default", metadata: Metadata = None, dedup: bool = True,
                 options: Sequence[ItemOptions] | None = None,
                 near: Mapping[int, tuple[str, float]] | None = None) -> list[Memory]:
    """Store decoded ``items`` whose ``views`` (per item, the encoder's output) are already computed,
    here or on other machines: the new ones in one Lance commit, then the catalog and the index.

    With ``dedup``, content already stored in ``namespace`` gets the new tags and metadata merged in
    (``status`` ``"updated"`` or ``"existing"``) and content repeated in ``items`` is stored once;
    ``views[i]`` may be None for such an item. ``options`` (one
    :class:`~aimemory.semantics.ItemOptions` per item) name memories, set expiry, provenance and
    creation times: a named memory the namespace holds is replaced in the same commit (``status``
    ``"replaced"``), or left alone when nothing differs (``"existing"``). ``near`` (slot -> (id,
    cosine)) reports near duplicates found before the write, and merges those whose options ask.
    Returns one :class:`Memory` per item. Takes the store's write lock (re-entrant: the remember
    path already holds it while encoding)."""
    if len(views) != len(items):
        raise ValueError(f"commit_views: {len(views)} views for {len(items)} items")
    metas = per_item(metadata, len(items), "metadata")
    options = list(options) if options is not None else [ItemOptions()] * len(items)
    with store.writing(fold=False):
        out = _commit_planned(store, items, views, namespace, metas, dedup, options, near)
    write_ahead.sync(store)  # after the lock: writer threads share the fsync (deferred by remember)
    return out


def _commit_planned(store: "MemoryStore", items: Sequence[Item], views: Sequence[Sequence[View] | None],
                    namespace: str, metas: list[Mapping[str, Any] | None], dedup: bool, options: list[ItemOptions],
                    near: Mapping[int, tuple[str, float]] | None) -> list[Memory]:
    batch = plan_batch(store.catalog, items, metas, namespace, dedup, options, near)
    out: list[Memory | None] = [None] * len(items)
    if batch.todo:
        todo_views = [v for slot, *_ in batch.todo if (v := views[slot]) is not None]
        if len(todo_views) != len(batch.todo):
            missing = next(slot for slot, *_ in batch.todo if views[slot] is None)
            raise ValueError(f"commit_views: item #{missing} is new but has no views")
        _commit_new(store, batch, todo_views, namespace, out, [options[slot] for slot, *_ in batch.todo])
    for slot, mid in batch.unchanged:
        memory = store.memory(mid, namespace)
        memory.status = "existing"
        out[slot] = memory
    if batch.stored:  # content already stored: merge the new tags and metadata into it
        changes = plan(store.catalog, [(mid, {"metadata": meta}) for _, mid, meta in batch.stored], namespace)
        if changes:  # rows are rewritten in the table: the segment's must be there
            write_ahead.fold(store)
        commit_metadata(store.table, store.catalog, changes, namespace)
        store.table_version = store.table.version
        for slot, mid, _ in batch.stored:
            memory = store.memory(mid, namespace)
            memory.status = "updated" if mid in changes else "existing"
            out[slot] = memory
    for slot, (mid, score) in (near or {}).items():  # reported on new memories and on merges
        found = out[slot]
        if found is not None and (slot in batch.near_merged or found.status in ("new", "replaced")):
            found.near_duplicate_of, found.near_duplicate_score = mid, score
            found.status = "merged" if slot in batch.near_merged else found.status
    for slot, first in batch.same_as.items():
        out[slot] = out[first]
    return out  # type: ignore[return-value]


def _commit_new(store: "MemoryStore", batch: BatchPlan, views: list[Sequence[View]], namespace: str,
                out: list[Memory | None], options: Sequence[ItemOptions]) -> None:
    todo = batch.todo
    for (_, item, *_), item_views in zip(todo, views):
        if not item_views:
            raise InputError(f"{item.source or 'the ' + item.modality} produced no vectors; nothing was stored",
                             item=item.source)
    rows, new_ids = build_rows(todo, views, namespace, dim=store.manifest.dim,
                               first_vkey=store.manifest.next_vkey, keep_content=store.keep_content,
                               model_id=store.model_id)
    rows, new_ids = apply_options(rows, new_ids, options)
    old_vkeys = [k for keys in batch.replaced.values() for k in keys]
    ahead = write_ahead.takes(store, todo, bool(old_vkeys))
    with storage_errors("remember"):
        if ahead:  # appended, durable at sync (after the lock), folded into the table later
            write_ahead.append(store, rows)
        else:
            write_ahead.fold(store)  # the table gains keys only with the segment empty
            # reserve the keys first: a failure after this wastes keys, never reuses them,
            # and a failure here leaves the table untouched
            store.manifest.next_vkey = int(rows.column("vkey")[-1].as_py()) + 1
            store.manifest.schema_version = SCHEMA_VERSION  # the write adds the newer columns
            store.manifest.write(store.path)
            if old_vkeys:  # one commit deletes the replaced rows and adds the new ones
                store.table.replace(rows, old_vkeys)
            else:
                store.table.add(rows)
            store.table_version = store.table.version
    if old_vkeys:  # the replaced memories leave the catalog and index before the new rows come in
        store.catalog.remove_ids(list(batch.replaced), namespace)
        store.index.remove(np.asarray(old_vkeys, dtype=np.int64))
    store.catalog.append_arrow(rows.select(CATALOG_COLUMNS))
    vectors = to_numpy(rows.column("vector").combine_chunks().flatten())
    store.index.add(vectors.reshape(-1, store.manifest.dim), to_numpy(rows.column("vkey")))
    if ahead:
        write_ahead.fold_if_due(store)
    else:
        note_changes(store, rows.num_rows + len(old_vkeys))
    for (slot, item, *_), mid in zip(todo, new_ids):
        memory = store.memory(mid, namespace)
        memory.transcript = item.transcript
        memory.status = "replaced" if mid in batch.renamed else "new"
        if item.modality == "text" and store.keep_content and isinstance(item.payload, str):  # no read to show it
            memory.content = item.payload
        out[slot] = memory


def note_changes(store: "MemoryStore", n: int) -> None:
    """Count ``n`` vectors added or removed; save the index when enough have piled up."""
    store.unsaved_changes += n
    # saving writes the whole index, so during a long ingest save at a growing interval
    # (linear total cost); a crash in between only costs a catch-up from the table on open
    if store.unsaved_changes >= max(SAVE_INDEX_AFTER_CHANGES, SAVE_INDEX_GROWTH * store.index.ntotal):
        try:
            store.save_index()
        except OSError as exc:  # the write is committed; the index is a cache, saved later
            store.unsaved_changes = 0
            log.warning("saving the vector index of %s failed (%s); it stays in memory and is "
                        "caught up from the table on the next open", store.path, exc)


def new_items(catalog: Catalog, items: Sequence[Item], metas: Sequence[Mapping[str, Any] | None],
              namespace: str, dedup: bool, options: Sequence[ItemOptions] | None = None,
              near: Mapping[int, tuple[str, float]] | None = None) -> list[int]:
    """Positions of the items :func:`commit_views` would store as new: the only ones worth encoding."""
    return [slot for slot, *_ in plan_batch(catalog, items, metas, namespace, dedup, options, near).todo]


def spread_views(views: Sequence[Sequence[View]], positions: Sequence[int], n: int) -> list[list[View] | None]:
    """Views computed for the items at ``positions``, laid out for all ``n`` items (None elsewhere)."""
    out: list[list[View] | None] = [None] * n
    for position, item_views in zip(positions, views):
        out[position] = list(item_views)
    return out

