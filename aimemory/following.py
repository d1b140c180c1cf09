"""A long-lived door's handle on a store that follows a migration or a rollback.

``aimemory serve`` (HTTP) and ``aimemory mcp`` hold one store for their whole life. When ``aimemory
migrate`` (or ``--rollback``) switches the folder to another generation, that store keeps reading the
old vectors and refuses writes. :class:`FollowingStore` checks for a switch on every use (one stat)
and then opens the active generation as the store was opened (:meth:`MemoryStore.reopened`), so the
next request is answered by the new model. The store it replaces stays open until :meth:`close`: a
request already running on it finishes there.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .store import MemoryStore

log = logging.getLogger("aimemory")


class FollowingStore:
    """Attribute access (``following.recall(...)``) acts on the store of the folder's active
    generation; :meth:`current` returns that store itself."""

    def __init__(self, store: "MemoryStore"):
        self._store = store
        self._lock = threading.Lock()
        self._retired: list["MemoryStore"] = []

    def current(self) -> "MemoryStore":
        store = self._store
        if not store.switched():
            return store
        with self._lock:
            if self._store is store:  # the first caller to see the switch reopens; the others wait for it
                log.info("the store at %s was switched to another generation; reopening it", store.root)
                self._store = store.reopened()
                self._retired.append(store)
        return self._store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current(), name)

    def close(self) -> None:
        for store in (*self._retired, self._store):
            store.close()
