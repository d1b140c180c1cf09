"""A store opened in a background thread, so a server answers its protocol at once.

``aimemory mcp`` must answer the client's ``initialize`` and ``tools/list`` while the store and the
model load (seconds of imports and weights): :class:`PendingStore` starts opening the store in a
thread, and every attribute access waits until it is open. When no call came meanwhile, the same
thread then warms the encoder up with one text query, so the towers a first recall needs are loaded
before an agent that calls later asks (a call made at once loads them itself, without a warm-up
competing for the cores). An error while opening is raised
again to every caller, so each tool call reports it (with its fix).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from .store import MemoryStore

log = logging.getLogger("aimemory")

WARM_UP_QUERY = "warm up"  # any text: the query towers load and run once


def warm_up(store: "MemoryStore") -> None:
    """Load and run what a first text recall needs (the catalog and index, which an open defers, and
    the query towers), then open the table's Lance dataset if the store opened it lazily (image
    thumbnails and writes need it). Best effort: a failure only costs time later, when the real call
    reports it."""
    import numpy as np

    encoder = getattr(store, "encoder", None)
    try:
        store.count()  # the first use loads the catalog and index
        if encoder is not None and "text" in getattr(encoder, "modalities", ()):
            for plan in encoder.query_plans("text", WARM_UP_QUERY):
                np.asarray(plan.vector)  # a plan may compute its vector on first use
        open_lance = getattr(store.table, "real", None)  # a LazyTable (see aimemory.storage.lazy_table)
        if callable(open_lance):
            open_lance()
    except Exception as exc:  # noqa: BLE001 - the real call will report a real problem
        log.info("warming the store up failed (%s); what it loads loads on first use", exc)


class PendingStore:
    """A :class:`MemoryStore` being opened by ``opener`` in a background thread (started at once).

    Attribute access (``pending.recall(...)``) waits until the store is open, then acts on it;
    :meth:`result` returns the store itself. ``warm``: run :func:`warm_up` once it is open."""

    def __init__(self, opener: Callable[[], "MemoryStore"], *, warm: bool = True):
        self._opener = opener
        self._warm = warm
        self._store: "MemoryStore | None" = None
        self._error: BaseException | None = None
        self._asked = False  # a caller asked for the store (before it was open, or since)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._open, name="aimemory-open-store", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        try:
            self._store = self._opener()
        except BaseException as exc:  # noqa: BLE001 - handed to every caller by result()
            self._error = exc
            log.error("the memory store could not be opened: %s", exc)
        finally:
            self._ready.set()
        # only when no call came while opening: a waiting call loads what it needs itself, and a
        # warm-up beside it would only compete for the cores
        if self._warm and self._store is not None and not self._asked:
            warm_up(self._store)

    @property
    def asked(self) -> bool:
        """Whether a caller has asked for the store."""
        return self._asked

    @property
    def ready(self) -> bool:
        """Whether opening has finished (successfully or not)."""
        return self._ready.is_set()

    def result(self, timeout: float | None = None) -> "MemoryStore":
        """The open store; waits for it (TimeoutError past ``timeout``), raises the opening error."""
        self._asked = True
        if not self._ready.wait(timeout):
            raise TimeoutError("the memory store is still opening")
        if self._error is not None:
            raise self._error
        assert self._store is not None
        return self._store

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.result(), name)

    def close(self) -> None:
        """Close the store once it is open (waits for the opening and the warm-up first)."""
        self._thread.join()
        if self._store is not None:
            self._store.close()
