"""aimemory as a LangGraph ``BaseStore``: long-term memory for LangGraph agents
(the ``langgraph`` extra).

    from aimemory.integrations.langgraph import AimemoryStore
    store = AimemoryStore("./memory")                       # the store's own model embeds
    store.put(("users", "ada"), "likes", {"text": "Ada likes green tea"})
    store.search(("users",), query="what does Ada drink?", limit=3)

How LangGraph's model maps onto aimemory's: the whole LangGraph store lives in one aimemory
namespace (``namespace=``, default ``"langgraph"``, the tenancy boundary); each item is one text
memory whose id is a hash of its (namespace tuple, key), and whose metadata keeps the namespace
tuple, key, value and times under ``"langgraph"``, so values round-trip exactly as JSON.

* ``index=`` is LangGraph's ``IndexConfig``: with ``embed`` the vectors come from it (a LangChain
  ``Embeddings``, a function, or a provider string), of width ``dims``; ``fields`` picks the texts
  (default ``["$"]``, the whole value as JSON). Without ``index`` the store's own model embeds the
  fields, so ``query=`` works out of the box. Several texts of one item are embedded together as
  one text (LangGraph's in-memory store keeps one vector per text and pools them).
* ``search`` without ``query`` lists matching items ordered by namespace, then key (a stable order
  for ``offset``/``limit`` pages); with ``query`` they are ranked by cosine (``score``), and items
  stored with ``index=False`` or without text at the fields fill the page after them, unscored.
* ``filter`` takes exact values and ``$eq $ne $gt $gte $lt $lte`` (and ``$in``/``$nin``) on the
  value's keys, nested dicts matched key by key, as LangGraph's own stores do.
* A batch reads the store as it was before the batch, then applies its puts (the last put of a
  (namespace, key) wins), as ``InMemoryStore`` does.
* TTL (``supports_ttl``): ``put(..., ttl=minutes)`` and ``ttl=TTLConfig(default_ttl=...)`` make
  items expire; an expired item is never returned (aimemory's expiry), and :meth:`sweep_ttl`
  deletes them from disk. Reads refresh an item's TTL when ``refresh_ttl`` (``refresh_on_read``)
  asks, by rewriting the item, at most once per tenth of its TTL (so a hot item is not rewritten on
  every read).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
    get_text_at_path,
    tokenize_path,
    validate_op_namespace,
)

from ..errors import NotFoundError
from .common import exists, forget_present, list_memories, matches, open_store, upsert
from .langchain import embeddings_encoder

if TYPE_CHECKING:  # pragma: no cover
    from ..store import MemoryStore

DEFAULT_NAMESPACE = "langgraph"
#: the memory metadata key that holds an item's namespace, key, value and times
META_KEY = "langgraph"
DEFAULT_FIELDS = ["$"]
ID_HEX = 40  # hex digits of the sha256 that names an item's memory
REFRESH_FRACTION = 0.1  # a read rewrites an item's expiry once this fraction of its TTL has passed


def memory_id(namespace: tuple[str, ...], key: str) -> str:
    """The aimemory id of a LangGraph item: a hash, so any labels and keys fit an id."""
    digest = hashlib.sha256(json.dumps([list(namespace), key], ensure_ascii=False).encode()).hexdigest()
    return f"lg-{digest[:ID_HEX]}"


def _matches_namespace(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    part = namespace[:len(path)] if condition.match_type == "prefix" else namespace[len(namespace) - len(path):]
    return all(p == "*" or p == n for p, n in zip(path, part))


class AimemoryStore(BaseStore):
    """A LangGraph store on an aimemory store (a ``MemoryStore`` or a folder path)."""

    supports_ttl = True
    #: a read rewrites an item's expiry once this fraction of its TTL has passed
    refresh_fraction = REFRESH_FRACTION

    def __init__(self, store: "MemoryStore | str | os.PathLike", *, index: IndexConfig | None = None,
                 namespace: str = DEFAULT_NAMESPACE, ttl: TTLConfig | None = None):
        self.ttl_config = ttl
        self.index_config = dict(index) if index else None
        model: Any = "auto"
        self.fields: list[str] = DEFAULT_FIELDS
        if self.index_config:
            self.fields = list(self.index_config.get("fields") or DEFAULT_FIELDS)
            if self.index_config.get("embed") is not None:
                embeddings = ensure_embeddings(self.index_config["embed"])
                model = embeddings_encoder(embeddings, dim=self.index_config.get("dims"))
        self.store = open_store(store, model)
        self.namespace = namespace

    # -- the batch -----------------------------------------------------------------------------
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        for op in ops:
            validate_op_namespace(op)
        results: list[Result] = [None] * len(ops)
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        snapshot: list[tuple[Item, bool]] | None = None
        read: set[tuple[tuple[str, ...], str]] = set()  # items whose TTL the reads refresh
        for i, op in enumerate(ops):
            if isinstance(op, GetOp):
                results[i] = self._get(tuple(op.namespace), op.key)
                if op.refresh_ttl and results[i] is not None:
                    read.add((tuple(op.namespace), op.key))
            elif isinstance(op, (SearchOp, ListNamespacesOp)):
                if snapshot is None:  # every read of a batch sees the store as it was before it
                    snapshot = self._items()
                results[i] = (self._search(op, snapshot) if isinstance(op, SearchOp)
                              else self._list_namespaces(op, snapshot))
                if isinstance(op, SearchOp) and op.refresh_ttl:
                    read.update((it.namespace, it.key) for it in results[i])
            elif isinstance(op, PutOp):
                puts[(tuple(op.namespace), op.key)] = op
            else:
                raise ValueError(f"unknown operation type: {type(op).__name__}")
        if read - set(puts):
            self._refresh(read - set(puts))
        if puts:
            self._apply(list(puts.values()))
        return results

    def sweep_ttl(self) -> None:
        """Delete expired items from disk now (they are never returned once expired anyway)."""
        self.store.compact()

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """:meth:`batch` in the default executor (the store's writes are blocking file I/O)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.batch, list(ops))

    # -- reads ---------------------------------------------------------------------------------
    @staticmethod
    def _item(record: dict) -> Item:
        return Item(value=record["value"], key=record["key"], namespace=tuple(record["namespace"]),
                    created_at=datetime.fromisoformat(record["created_at"]),
                    updated_at=datetime.fromisoformat(record["updated_at"]))

    def _get(self, namespace: tuple[str, ...], key: str) -> Item | None:
        try:
            memory = self.store.get(memory_id(namespace, key), self.namespace)
        except NotFoundError:
            return None
        return self._item(memory.metadata[META_KEY])

    def _items(self) -> list[tuple[Item, bool]]:
        """Every item, sorted by namespace then key, with whether it has a vector to rank by."""
        out = []
        for m in list_memories(self.store, self.namespace):
            record = m.metadata.get(META_KEY)
            if record is not None:
                out.append((self._item(record), bool(record.get("indexed", True))))
        return sorted(out, key=lambda pair: (pair[0].namespace, pair[0].key))

    def _search(self, op: SearchOp, snapshot: list[tuple[Item, bool]]) -> list[SearchItem]:
        prefix = tuple(op.namespace_prefix)
        found = [(it, indexed) for it, indexed in snapshot if it.namespace[:len(prefix)] == prefix
                 and (not op.filter or all(matches(it.value.get(k), v) for k, v in op.filter.items()))]
        if not op.query:
            return [self._search_item(it) for it, _ in found[op.offset:op.offset + op.limit]]
        ranked = [it for it, indexed in found if indexed]
        kept: list[SearchItem] = []
        if ranked and op.offset + op.limit > 0:
            by_id = {memory_id(it.namespace, it.key): it for it in ranked}
            hits = self.store.recall(op.query, k=min(len(ranked), op.offset + op.limit), namespace=self.namespace,
                                     where={"id": list(by_id)})
            kept = [self._search_item(by_id[h.id], h.score) for h in hits[op.offset:]]
        unscored = [it for it, indexed in found if not indexed]
        # fill the page, as LangGraph's own InMemoryStore does: unscored items fill a short page
        # without the offset (so they repeat on later pages there too; the differential test holds us
        # to its behaviour)
        if unscored and len(kept) < op.limit:
            kept += [self._search_item(it) for it in unscored[:op.limit - len(kept)]]
        return kept

    @staticmethod
    def _search_item(item: Item, score: float | None = None) -> SearchItem:
        return SearchItem(namespace=item.namespace, key=item.key, value=item.value,
                          created_at=item.created_at, updated_at=item.updated_at, score=score)

    @staticmethod
    def _list_namespaces(op: ListNamespacesOp, snapshot: list[tuple[Item, bool]]) -> list[tuple[str, ...]]:
        spaces = {it.namespace for it, _ in snapshot}
        if op.match_conditions:
            spaces = {ns for ns in spaces if all(_matches_namespace(c, ns) for c in op.match_conditions)}
        if op.max_depth is not None:
            spaces = {ns[:op.max_depth] for ns in spaces}
        return sorted(spaces)[op.offset:op.offset + op.limit]

    # -- writes --------------------------------------------------------------------------------
    def _texts(self, op: PutOp) -> list[str]:
        if op.index is False:
            return []
        paths = list(op.index) if op.index is not None else self.fields
        texts: list[str] = []
        for path in paths:
            texts += get_text_at_path(op.value, path if path == "$" else tokenize_path(path))
        return [t for t in texts if t.strip()]

    def _apply(self, puts: list[PutOp]) -> None:
        deletes = [memory_id(tuple(op.namespace), op.key) for op in puts if op.value is None]
        if deletes:
            forget_present(self.store, deletes, self.namespace)
        writes = [op for op in puts if op.value is not None]
        if not writes:
            return
        now = datetime.now(timezone.utc).isoformat()
        items, metas, ids = [], [], []
        for op in writes:
            mid = memory_id(tuple(op.namespace), op.key)
            created = now
            if exists(self.store, mid, self.namespace):  # an update keeps its creation time
                created = self.store.get(mid, self.namespace).metadata[META_KEY]["created_at"]
            value = dict(op.value)
            texts = self._texts(op)
            items.append("\n".join(texts) if texts else json.dumps(value, sort_keys=True, ensure_ascii=False))
            metas.append({META_KEY: {"namespace": list(op.namespace), "key": op.key, "value": value,
                                     "created_at": created, "updated_at": now, "indexed": bool(texts),
                                     "ttl": op.ttl}})
            ids.append(mid)
        upsert(self.store, items, metas, ids, self.namespace,
               ttl=[op.ttl * 60 if op.ttl else None for op in writes])

    def _refresh(self, keys: set[tuple[tuple[str, ...], str]]) -> None:
        """Restart the TTL of items just read: an expiry-only update (nothing is embedded again), one
        commit per distinct TTL."""
        now = datetime.now(timezone.utc)
        by_ttl: dict[float, list[str]] = {}
        for namespace, key in sorted(keys):
            mid = memory_id(namespace, key)
            try:
                memory = self.store.get(mid, self.namespace)
            except NotFoundError:
                continue
            minutes = memory.metadata[META_KEY].get("ttl")
            if not minutes or memory.expires_at is None:
                continue
            left = (memory.expires_at - now).total_seconds()
            if left > minutes * 60 * (1 - self.refresh_fraction):
                continue  # refreshed recently enough
            by_ttl.setdefault(minutes * 60, []).append(mid)
        for seconds, ids in by_ttl.items():
            try:
                self.store.update_many(ids, ttl=seconds, namespace=self.namespace)
            except NotFoundError:  # forgotten meanwhile by another writer: nothing left to refresh
                continue
