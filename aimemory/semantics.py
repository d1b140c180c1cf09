"""What agent frameworks need from a memory besides remember/recall: memories named by the caller.

* **Caller ids (upsert).** ``remember(x, id="doc-7")`` names the memory. Ids are unique per
  namespace (the same id in two namespaces is two memories). Remembering an id that the namespace
  already holds *replaces* that memory (content, vectors, metadata, tags, source and time) in one
  Lance commit that deletes the old rows and adds the new ones: a reader, or a store reopened after
  a crash, sees the old memory or the new one, never neither or both. The result's ``status`` is
  ``"replaced"``; ``"existing"`` when content, metadata and source are all unchanged (nothing is
  written). A named memory is never merged into another by identical content: the caller chose
  the name, so content dedup applies only to unnamed items.

The store calls these under its write lock; they touch no storage themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import pyarrow as pa

from .errors import InputError

MAX_ID_CHARS = 256


@dataclass(frozen=True)
class ItemOptions:
    """Per-item options of one remember call beyond content and metadata."""

    id: str | None = None


def check_id(value: Any) -> str:
    """A caller-supplied memory id: a non-empty string of at most ``MAX_ID_CHARS`` characters."""
    if not isinstance(value, str):
        raise InputError(f"a memory id must be a string; got {type(value).__name__} ({value!r:.60})")
    if not value or not value.strip():
        raise InputError("a memory id must be a non-empty string (not only spaces); pass id=None to "
                         "have one generated")
    if len(value) > MAX_ID_CHARS:
        raise InputError(f"a memory id is at most {MAX_ID_CHARS} characters; got {len(value)}: use a "
                         "shorter id (a hash of a long key, say)")
    if "\0" in value:
        raise InputError("a memory id cannot contain the NUL character")
    return value


def item_options(n: int, *, ids: Sequence[str | None] | None = None) -> list[ItemOptions]:
    """One :class:`ItemOptions` per item, checked before anything is decoded or written."""
    if ids is None:
        return [ItemOptions()] * n
    if isinstance(ids, str):
        raise InputError("ids= takes one id per item (a list); for one item use remember(x, id=...)")
    ids = list(ids)
    if len(ids) != n:
        raise InputError(f"ids= has {len(ids)} entries for {n} items; pass one per item (None: generated)")
    seen: set[str] = set()
    out = []
    for i, mid in enumerate(ids):
        if mid is not None:
            check_id(mid)
            if mid in seen:
                raise InputError(f"id {mid!r} is given twice in one call (item #{i}); nothing was stored")
            seen.add(mid)
        out.append(ItemOptions(id=mid))
    return out


def unchanged(catalog, position: int, item, meta: dict) -> bool:
    """Whether the stored memory at catalog ``position`` (a primary view) already is what a
    remember of ``item`` with ``meta`` under the same id would write."""
    return (catalog.get(position, "content_hash") == item.content_hash
            and catalog.get(position, "source") == item.source
            and dict(catalog.metadata(position)) == json.loads(json.dumps(meta)))


def name_rows(rows: pa.Table, generated: list[str], options: Sequence[ItemOptions]
              ) -> tuple[pa.Table, list[str]]:
    """Rows built with ``generated`` ids (one per memory, in order) -> the rows with the callers'
    ids where given, and the final ids."""
    final = [o.id if o.id is not None else g for g, o in zip(generated, options)]
    if final == generated:
        return rows, final
    rename = dict(zip(generated, final))
    column = [rename[mid] for mid in rows.column("id").to_pylist()]
    index = rows.schema.get_field_index("id")
    return rows.set_column(index, rows.schema.field(index), pa.array(column, pa.string())), final
