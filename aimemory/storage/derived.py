"""Values derived from the catalog's rows (masks, allowed keys, positions, counts), cached until the
rows change, and grown in place when the change only appended rows: a recall right after a write
then costs the new rows, not every row."""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

ENTRIES = 64  # values kept until a change other than an append (a 1M-row mask is 1 MB)
BYTES = 48 << 20  # and at most this many bytes of them (or BYTES_PER_ROW): the oldest go first
# a text query's masks, allowed keys and per-kind positions come to ~20 B per row: past ~2.5M rows
# a fixed budget evicted them on every query, and each query rebuilt them (70 ms at 5M rows)
BYTES_PER_ROW = 32


class Growing:
    """A cached array over the catalog's first ``rows`` rows that grows over appended rows: its
    items live in a buffer with room past their end (doubling, as :class:`.columns.Grow`), so an
    append writes only the new items. Values handed out earlier are views of the items they had,
    which later appends do not touch."""

    def __init__(self, items: np.ndarray, rows: int):
        self.buf, self.n, self.rows = items, len(items), rows
        self.value = items  # the same object until the next append: callers cache by identity
        self._lock = threading.Lock()

    def grow_to(self, rows: int, tail: Callable[[int], np.ndarray]) -> np.ndarray:
        """The value over ``rows`` rows: ``tail(start)`` (the items of the rows from ``start``)
        appended. One thread at a time: a second one asking for the same rows gets the first's."""
        with self._lock:
            if self.rows < rows:
                items = tail(self.rows)
                end = self.n + len(items)
                if end > len(self.buf):  # also the first time: the built array has no room past its end
                    grown = np.empty((max(end, 2 * len(self.buf)), *self.buf.shape[1:]), self.buf.dtype)
                    grown[: self.n] = self.buf[: self.n]
                    self.buf = grown
                if len(items):
                    self.buf[self.n:end] = items
                self.n, self.rows = end, rows
                self.value = self.buf[:end]
                self.value.flags.writeable = False
            return self.value


def _nbytes(held: Any) -> int:
    if isinstance(held, Growing):
        return int(held.buf.nbytes)
    return int(held.nbytes) if isinstance(held, np.ndarray) else 0


class DerivedCache:
    """``get(key, build, tail)``: ``build()``, cached. ``state()`` -> (version, rewrites, rows) of the
    catalog: ``version`` moves with every change, ``rewrites`` with every change but appended rows.
    A change of ``rewrites`` drops every value; appended rows grow a value by ``tail(start)``, its
    value over the rows from ``start`` (appended to an array, added to a count), or build it again
    when it has no ``tail``."""

    def __init__(self, state: Callable[[], tuple[int, int, int]]):
        self._state = state
        self._held: dict[Any, tuple[Any, int]] = {}  # key -> (value or Growing, rows it covers)
        self._rewrites = -1
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Any, build: Callable[[], Any], tail: Callable[[int], Any] | None = None) -> Any:
        version, rewrites, rows = self._state()
        with self._lock:
            if self._rewrites != rewrites:
                self._held.clear()
                self._rewrites, self._bytes = rewrites, 0
            cached = self._held.get(key)
        covers = -1 if cached is None else cached[0].rows if isinstance(cached[0], Growing) else cached[1]
        if cached is not None and covers == rows:
            return cached[0].value if isinstance(cached[0], Growing) else cached[0]
        if cached is not None and tail is not None and covers < rows:
            held = cached[0]
            if isinstance(held, np.ndarray):
                held = Growing(held, covers)
            if isinstance(held, Growing):
                value = held.grow_to(rows, tail)
            else:  # a count
                held = value = held + tail(covers)
        else:
            held = value = build()
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
        size = _nbytes(held)
        with self._lock:
            if self._state()[:2] != (version, rewrites):
                dropped = self._held.pop(key, None)  # the rows changed while it was built: use it once,
                self._bytes -= 0 if dropped is None else _nbytes(dropped[0])  # keep nothing
                return value
            budget = max(BYTES, BYTES_PER_ROW * rows)
            old = self._held.pop(key, None)
            self._bytes -= 0 if old is None else _nbytes(old[0])
            while self._held and (len(self._held) >= ENTRIES or self._bytes + size > budget):
                self._bytes -= _nbytes(self._held.pop(next(iter(self._held)))[0])  # oldest out
            self._held[key] = (held, rows)
            self._bytes += size
        return value
