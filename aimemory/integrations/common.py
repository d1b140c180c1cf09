"""What the framework adapters share: opening a store, upsert by caller id, deleting ids that may be
missing, and listing a namespace's memories. Only :class:`~aimemory.MemoryStore`'s public API is used,
so the adapters stay valid whatever the store does inside."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from ..errors import InputError, NotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from ..encoders.base import Encoder
    from ..records import Memory
    from ..store import MemoryStore

#: tries of a delete that races with another writer removing the same ids
DELETE_TRIES = 3


def open_store(store: "MemoryStore | str | os.PathLike", model: "Encoder | str" = "auto") -> "MemoryStore":
    """``store`` itself when it is a MemoryStore (whose model must then be ``model`` when an encoder
    is given), else the store at that path opened with ``model``."""
    from ..errors import ModelMismatchError
    from ..store import MemoryStore

    if isinstance(store, MemoryStore):
        wanted = getattr(model, "model_id", None)
        if wanted is not None and store.model_id != wanted:
            raise ModelMismatchError(
                f"the store at {store.path} holds vectors of {store.model_id!r}, not {wanted!r}: pass "
                "the store's path instead of an open MemoryStore so it opens with your embedding model, "
                "or use a new path")
        return store
    if not isinstance(store, (str, os.PathLike)):
        raise InputError(f"store= takes a MemoryStore or a folder path; got {type(store).__name__}")
    return MemoryStore(store, model=model)


def stored_dim(path: "str | os.PathLike") -> int | None:
    """The vector width of an existing local store at ``path`` (None when there is none), read from
    its manifest: opening it with an outside embedding model then costs no probe call."""
    from pathlib import Path

    from ..storage import Manifest

    folder = Path(path).expanduser()
    manifest = Manifest.read(folder) if folder.is_dir() else None
    return manifest.dim if manifest is not None else None


def exists(store: "MemoryStore", memory_id: str, namespace: str) -> bool:
    try:
        store.get(memory_id, namespace)
    except NotFoundError:
        return False
    return True


def upsert(store: "MemoryStore", items: Sequence[object], metadatas: Sequence[Mapping[str, Any]],
           ids: Sequence[str], namespace: str, sources: Sequence[str | None] | None = None,
           ttl: Sequence[float | None] | None = None) -> list["Memory"]:
    """Remember ``items`` under caller ``ids``: an id already held is replaced, never merged by
    content. An id given twice keeps its last item (as a dict assignment would). ``ttl``: seconds
    to live per item (None: no expiry)."""
    last = {mid: i for i, mid in enumerate(ids)}
    keep = sorted(last.values())
    if not keep:
        return []
    extra: dict[str, Any] = {}
    if ttl is not None and any(t is not None for t in ttl):
        extra["ttl"] = [ttl[i] for i in keep]
    return list(store.remember_many([items[i] for i in keep], metadata=[metadatas[i] for i in keep],
                                    ids=[ids[i] for i in keep], namespace=namespace, dedup=False,
                                    sources=None if sources is None else [sources[i] for i in keep], **extra))


def forget_present(store: "MemoryStore", ids: Iterable[str], namespace: str) -> int:
    """Delete the memories of ``ids`` that exist; missing ids are no error. Returns how many went."""
    wanted = list(dict.fromkeys(i for i in ids if isinstance(i, str)))
    for attempt in range(DELETE_TRIES):
        present = [mid for mid in wanted if exists(store, mid, namespace)]
        if not present:
            return 0
        try:
            return store.forget(present, namespace=namespace)
        except NotFoundError:  # another writer deleted one between the check and the delete
            if attempt == DELETE_TRIES - 1:
                raise
    return 0  # pragma: no cover


@dataclass(frozen=True)
class Listed:
    """One memory of a namespace listing (no content read, no vectors)."""

    id: str
    modality: str
    metadata: dict
    text: str | None
    source: str | None


def list_memories(store: "MemoryStore", namespace: str) -> list[Listed]:
    """Every memory of ``namespace``, oldest first (one scan of the table's primary rows)."""
    table = store.to_arrow(namespace)
    cols = {name: table.column(name).to_pylist() for name in ("id", "modality", "metadata", "text", "source")}
    return [Listed(cols["id"][i], cols["modality"][i], json.loads(cols["metadata"][i] or "{}"),
                   cols["text"][i], cols["source"][i]) for i in range(table.num_rows)]


def matches(value: Any, condition: Any) -> bool:
    """Whether ``value`` meets a JSON filter ``condition``: a plain value is compared for equality,
    a dict of ``$eq $ne $gt $gte $lt $lte $in $nin`` operators applies each, another dict matches
    key by key (nested), a list must match element-wise. The rules of LangGraph's stores."""
    if isinstance(condition, Mapping):
        if any(isinstance(k, str) and k.startswith("$") for k in condition):
            return all(_operator(value, op, arg) for op, arg in condition.items())
        if not isinstance(value, Mapping):
            return False
        return all(matches(value.get(k), v) for k, v in condition.items())
    if isinstance(condition, (list, tuple)):
        return (isinstance(value, (list, tuple)) and len(value) == len(condition)
                and all(matches(v, c) for v, c in zip(value, condition)))
    return value == condition


def _operator(value: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return value == arg
    if op == "$ne":
        return value != arg
    if op in ("$in", "$nin"):
        if not isinstance(arg, (list, tuple, set, frozenset)):
            raise InputError(f"filter operator {op} takes a list; got {type(arg).__name__}")
        return (value in arg) == (op == "$in")
    if op in ("$gt", "$gte", "$lt", "$lte"):
        try:
            a, b = float(value), float(arg)
        except (TypeError, ValueError):
            return False  # a missing or non-numeric value is not in any range
        return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]
    raise InputError(f"unknown filter operator {op!r}: use $eq $ne $gt $gte $lt $lte $in $nin")
