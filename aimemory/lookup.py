"""Reading memories back by id: the :class:`~aimemory.records.Memory` of a catalog row, its
content (texts from the catalog, media from the table on first use) and the newest memories.

Callers hold the store's read or write lock where noted; :class:`~aimemory.store.MemoryStore`'s
``get`` / ``recent`` / ``memory`` are the public entry points.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .errors import NotFoundError
from .records import Hit, Hits, Memory
from .semantics import memory_fields

MEMORY_COLUMNS = ("vkey", "modality", "namespace", "created", "source", "mime")  # read per hit, in this order
UTC = timezone.utc

if TYPE_CHECKING:
    from .store import MemoryStore


def memory_at(store: "MemoryStore", memory_id: str, namespace: str | None,
              load_transcript: bool = False, primary: int | None = None) -> Memory:
    """The memory of ``memory_id`` (in ``namespace``, or any when None) from the catalog; its
    content loads on first use. ``primary``: the catalog position of its primary view, when the
    caller knows it (recall does: no look-up by id). The caller holds the store's lock."""
    if primary is None:
        positions = store.catalog.positions(memory_id, namespace)
        if not positions:
            where = f" in namespace {namespace!r}" if namespace is not None else ""
            raise NotFoundError(f"no memory {memory_id!r}{where}")
        primary = positions[0]
    return memories_at(store, [memory_id], [primary], load_transcript)[0]


def memories_at(store: "MemoryStore", memory_ids: Sequence[str], primaries: Sequence[int],
                load_transcript: bool = False) -> list[Memory]:
    """The memories whose primary views are at catalog ``primaries``, one column read per field
    for all of them (recall hydrates its hits so). The caller holds the store's lock."""
    catalog = store.catalog
    at = np.asarray(primaries, np.int64)  # converted once for every column read
    columns = [catalog.values(name, at) for name in MEMORY_COLUMNS]
    out = []
    for memory_id, p, (vkey, modality, namespace, created, source, mime), fields in zip(
            memory_ids, at.tolist(), zip(*columns), memory_fields(catalog, at)):
        transcript = catalog.get(p, "text") if load_transcript and modality in ("audio", "video") else None
        out.append(Memory(
            id=memory_id, modality=modality, namespace=namespace, created_at=datetime.fromtimestamp(created, tz=UTC),
            source=source, metadata=dict(catalog.metadata(p)), mime=mime, transcript=transcript,
            _loader=_content_loader(store, vkey, modality), **fields))
    return out


def _content_loader(store: "MemoryStore", vkey: int, modality: str) -> Callable[[], Any]:
    return lambda: load_content(store, vkey, modality)


def load_content(store: "MemoryStore", vkey: int, modality: str) -> Any:
    """A memory's content: its text (from the catalog while the row is there) or its media bytes
    (one table read); None when the content was not kept."""
    store.check_open()
    catalog = store.catalog
    if modality == "text":
        p = int(catalog.position_of_vkeys(np.asarray([vkey]))[0])
        if p < catalog.n_rows and catalog.get(p, "vkey") == vkey and catalog.alive[p]:
            return catalog.get(p, "text")
    row = store.table.primary_rows([vkey], ["content", "text"]).to_pylist()
    if not row:
        return None
    return row[0]["text"] if modality == "text" else row[0]["content"]


def recent_memories(store: "MemoryStore", namespace: str, n: int) -> list[Memory]:
    """The ``n`` newest memories in ``namespace``, newest first, texts and transcripts attached (one
    table read for all of them)."""
    from .export import recent
    from .recall import attach_texts

    ids = recent(store, namespace, n)
    if not ids:
        return []
    store.check_open()  # the texts are read from the table
    with store.reading():
        # Hit wrappers let recall's batched text read fill in all texts at once
        hits = Hits(Hit(mid, 0.0, m.modality, m) for mid in ids for m in [memory_at(store, mid, namespace)])
        attach_texts(store, hits)
    return [h.memory for h in hits]
