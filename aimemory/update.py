"""Changing what is said about stored memories (tags, metadata), never what they are; and
forgetting them.

A memory's tags and metadata live on its primary table row (see ``records.py``). An update reads those
rows whole, edits the two columns and writes them back with one Lance commit (a merge on ``vkey``), then
mirrors the change in the catalog; content, vectors, ids and times are carried over untouched.

Rules, shared by :meth:`MemoryStore.update` and by ``remember`` of content already stored:

* ``metadata`` is merged key by key (new values win); a ``"tags"`` key in it adds tags;
* ``tags`` are added (union, stored tags first, in order); ``remove_tags`` are then removed;
* ``replace=True``: the memory's metadata becomes exactly ``metadata`` and its tags exactly the
  tags given (none if none are given); ``remove_tags`` cannot be combined with it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from .errors import AimemoryError, InputError, NotFoundError, StoreError

if TYPE_CHECKING:
    from .records import Memory
    from .storage.catalog import Catalog
    from .storage.table import VectorTable
    from .store import MemoryStore

TagsArg = str | Iterable[str] | None
KEEP = "keep"  # an update that leaves expiry as it is


def _tag_list(tags: Any, name: str) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, (list, tuple, set, frozenset)) or not all(isinstance(t, str) for t in tags):
        raise InputError(f"{name} must be a string or a list of strings")
    return list(tags)


def merged(stored: Mapping[str, Any], *, metadata: Mapping[str, Any] | None = None, tags: TagsArg = None,
           remove_tags: TagsArg = None, replace: bool = False) -> dict[str, Any]:
    """The metadata (with its ``"tags"`` list) a memory has after the change; raises InputError for
    arguments that cannot be stored and changes nothing."""
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InputError(f"metadata must be a dict; got {type(metadata).__name__}")
    if replace and remove_tags:
        raise InputError("replace=True sets the tags to exactly those given; remove_tags cannot be used with it")
    new = dict(metadata or {})
    add = _tag_list(new.pop("tags", None), "metadata['tags']") + _tag_list(tags, "tags")
    drop = set(_tag_list(remove_tags, "remove_tags"))
    base = {} if replace else {k: v for k, v in stored.items() if k != "tags"}
    base_tags = [] if replace else _tag_list(stored.get("tags"), "stored tags")
    out = {**base, **new, "tags": [t for t in dict.fromkeys(base_tags + add) if t not in drop]}
    try:
        json.dumps(out)  # the same rule as remember (non-finite floats are served as null)
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata must be JSON-serialisable: {exc}") from exc
    return out


def plan(catalog: "Catalog", requests: Iterable[tuple[str, Mapping[str, Any]]],
         namespace: str) -> dict[str, dict[str, Any]]:
    """``{memory id: its new metadata}`` for the memories that ``requests`` ((id, change) pairs, a
    change being :func:`merged`'s keywords, applied in order) alter; an unknown id, or one of
    another namespace, raises NotFoundError."""
    current: dict[str, dict[str, Any]] = {}
    changed: set[str] = set()
    for mid, change in requests:
        positions = catalog.positions(mid, namespace) if isinstance(mid, str) else []
        if not positions:
            raise NotFoundError(f"no memory {mid!r} in namespace {namespace!r}; nothing was changed")
        if mid not in current:  # normalised, so a change that adds nothing commits nothing
            current[mid] = merged(dict(catalog.metadata(positions[0])))
        after = merged(current[mid], **change)
        if after != current[mid]:
            current[mid] = after
            changed.add(mid)
    return {mid: current[mid] for mid in changed}


def expiry_change(expires_at: Any, ttl: Any) -> float | None | str:
    """What an update does to expiry: ``KEEP`` (neither given), None (``expires_at="never"``: the
    memory stops expiring), or the new time in epoch seconds (``expires_at`` or ``ttl`` seconds from
    now, which must be in the future)."""
    from .semantics import item_options

    if expires_at is None and ttl is None:
        return KEEP
    if isinstance(expires_at, str) and expires_at.strip().lower() == "never":
        if ttl is not None:
            raise InputError("pass expires_at='never' or ttl=, not both")
        return None
    return item_options(1, expires_at=expires_at, ttl=ttl)[0].expires_at


def commit_metadata(table: "VectorTable", catalog: "Catalog", changes: Mapping[str, dict[str, Any]],
                    namespace: str | None = None, expiry: Mapping[str, float | None] | None = None) -> None:
    """Write ``{memory id: its new metadata}`` and ``expiry`` (``{memory id: epoch seconds, or None for
    never}``, set on every view of the memory) to ``table`` in one commit, then mirror them in ``catalog``.
    The caller holds the store's write lock and has checked the ids in ``namespace`` (see :func:`plan`)."""
    expiry = expiry or {}
    if not changes and not expiry:
        return
    from .records import table_schema
    from .storage.table import is_lance_failure

    positions = {mid: catalog.positions(mid, namespace) for mid in {*changes, *expiry}}
    vkey_of = {int(catalog.get(p, "vkey")): mid for mid, ps in positions.items()
               for p in (ps if mid in expiry else ps[:1])}  # metadata lives on the primary row only
    others = [name for name in table_schema(table.dim).names if name != "vkey"]
    rows = table.primary_rows(list(vkey_of), others)  # whole rows: content and vectors carried over
    if rows.num_rows != len(vkey_of):
        raise StoreError(f"{len(vkey_of) - rows.num_rows} rows of the memories to update are missing from "
                         "the table; nothing was changed; reopen the store and retry")
    order = [vkey_of[int(k)] for k in rows.column("vkey").to_pylist()]
    primary = [v == 0 for v in rows.column("view").to_pylist()]
    stored_tags, stored_meta = rows.column("tags").to_pylist(), rows.column("metadata").to_pylist()
    tags = [changes[mid]["tags"] if first and mid in changes else old
            for mid, first, old in zip(order, primary, stored_tags)]
    texts = [json.dumps(changes[mid]) if first and mid in changes else old
             for mid, first, old in zip(order, primary, stored_meta)]

    def put(name: str, values: pa.Array) -> pa.Table:
        index = rows.schema.get_field_index(name)
        return rows.set_column(index, rows.schema.field(index), values.cast(rows.schema.field(index).type))

    rows = put("tags", pa.array(tags, pa.list_(pa.string())))
    rows = put("metadata", pa.array(texts, pa.string()))
    if expiry:
        old = rows.column("expires_at").cast(pa.int64()).to_pylist()
        def micros(mid: str, was: int | None) -> int | None:
            if mid not in expiry:
                return was
            at = expiry[mid]
            return None if at is None else round(at * 1e6)

        rows = put("expires_at", pa.array([micros(mid, was) for mid, was in zip(order, old)],
                                          pa.int64()).cast(pa.timestamp("us", tz="UTC")))
    try:
        table.rewrite_rows(rows)
    except AimemoryError:
        raise
    except BaseException as exc:
        if not is_lance_failure(exc):
            raise
        n = len(positions)
        raise StoreError(f"updating {n} memor{'y' if n == 1 else 'ies'} failed ({exc}); nothing was changed") from exc
    for mid in changes:
        catalog.set_metadata(positions[mid][0], changes[mid]["tags"], json.dumps(changes[mid]))
    for mid, at in expiry.items():
        catalog.set_expiry(positions[mid], at)


def update_memories(store: "MemoryStore", ids: Sequence[str], change: Mapping[str, Any],
                    namespace: str, expires: float | None | str = "keep") -> list["Memory"]:
    """:meth:`MemoryStore.update_many`: apply one change (:func:`merged`'s keywords) and ``expires``
    (see :func:`expiry_change`) to ``ids`` in one commit under the write lock; an unknown id changes
    nothing."""
    merged({}, **change)  # bad arguments fail before the lock is taken
    with store.writing():
        catalog = store.catalog
        changes = plan(catalog, [(mid, change) for mid in ids], namespace)
        expiry: dict[str, float | None] = {}
        if expires != KEEP:
            at = None if expires is None else float(expires)
            for mid in dict.fromkeys(ids):
                held = catalog.get(catalog.positions(mid, namespace)[0], "expires")
                if held != at and not (held is not None and at is not None and abs(held - at) < 1e-6):
                    expiry[mid] = at
        commit_metadata(store.table, catalog, changes, namespace, expiry)
        store.table_version = store.table.version
        out = []
        for mid in ids:
            memory = store.memory(mid, namespace, load_transcript=True)
            memory.status = "updated" if mid in changes or mid in expiry else "existing"
            out.append(memory)
        return out


def forget_memories(store: "MemoryStore", ids: Sequence[str], namespace: str) -> int:
    """:meth:`MemoryStore.forget`: delete ``ids`` (every view: table, catalog, index) in one commit;
    an unknown id raises NotFoundError and nothing is deleted."""
    from .write import note_changes, storage_errors

    with store.writing():
        catalog = store.catalog
        for mid in ids:
            if not isinstance(mid, str) or not catalog.positions(mid, namespace):
                raise NotFoundError(f"no memory {mid!r} in namespace {namespace!r}; nothing was deleted")
        vkeys = [int(catalog.get(p, "vkey")) for mid in ids for p in catalog.positions(mid, namespace)]
        with storage_errors("forget"):
            store.table.delete_vkeys(vkeys)
        store.table_version = store.table.version
        catalog.remove_ids(list(ids), namespace)
        store.index.remove(np.asarray(vkeys, dtype=np.int64))
        note_changes(store, len(vkeys))
    return len(ids)
