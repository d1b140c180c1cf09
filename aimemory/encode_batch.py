"""Shared encoder calls for small text writes made by many threads at once.

A text encode is most of a single ``remember(text)``'s cost, and one call for N short texts costs
far less than N calls (all-MiniLM-L6-v2 on one CPU thread, 14-token texts: 10.5 ms for one, 34 ms
for 4, 56 ms for 8, 110 ms for 16). So threads that write at once hand their texts to an
:class:`EncodeBatcher`: the first caller (the leader) encodes everything waiting when it starts,
in one call, while later callers wait for their result; a waiting caller whose text no leader has
taken yet leads the next call as soon as one may start. Nothing runs in the background, and a lone
writer leads at once, so its latency is unchanged.

Up to ``max_parallel`` calls run at once. More lets a second call start on an idle core instead of
waiting, but calls then start sooner with fewer texts each, and two eager torch forwards slow each
other down at every op (each must take the GIL back). A store uses :func:`parallel_encodes`:
- two calls at once for encoders whose text forward runs without the GIL (the sentence tower's CPU
  trace);
- otherwise one.

Measured on the quiet 2-core box (MiniLM on one torch thread, into a 100k store, end to end):
- 8 writer threads: one call at a time gave 165 writes/s with 3.9 texts per call; two at once gave 209/s;
- 16 writer threads: 165 and 229/s.

Earlier, with the eager forward on a busy box, two calls at once gave 49/s against 63/s for one.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Callable, Generic, Sequence, TypeVar

from .inputs import Item

MAX_BATCH = 64  # texts per shared call: more only delays the leader's own write
SMALL_WRITE_ITEMS = 8  # a remember_many batch of at most this many texts shares calls too
SMALL_TEXT_CHARS = 4096  # longer texts are chunked into many views: they keep the write lock's path

T = TypeVar("T")

_QUEUED, _TAKEN, _DONE = 0, 1, 2



def parallel_encodes(encoder: object) -> int:
    """Shared calls a store lets run at once: the encoder's ``parallel_text_calls``, at most the
    number of cores."""
    return max(1, min(int(getattr(encoder, "parallel_text_calls", 1)), os.cpu_count() or 1))


class _Request(Generic[T]):
    __slots__ = ("item", "state", "result", "error")

    def __init__(self, item: Item):
        self.item = item
        self.state = _QUEUED
        self.result: T | None = None
        self.error: BaseException | None = None


def small_texts(items: Sequence[Item]) -> bool:
    """Whether a write of ``items`` is small text (few, short texts) that shares encoder calls."""
    return 0 < len(items) <= SMALL_WRITE_ITEMS and all(
        item.modality == "text" and isinstance(item.payload, str) and len(item.payload) <= SMALL_TEXT_CHARS
        for item in items)


class EncodeBatcher(Generic[T]):
    """Runs ``encode(items) -> one result per item`` for items submitted by many threads, sharing
    calls (see the module docstring). An error in a shared call is retried one item per call, so
    it fails only the callers whose own item fails."""

    def __init__(self, encode: Callable[[list[Item]], Sequence[T]], max_parallel: int = 1,
                 max_batch: int = MAX_BATCH):
        if max_parallel < 1 or max_batch < 1:
            raise ValueError(f"max_parallel and max_batch must be >= 1; got {max_parallel}, {max_batch}")
        self.encode_fn = encode
        self.max_parallel = max_parallel
        self.max_batch = max_batch
        self.calls = 0  # encoder calls made (statistics for tests and benchmarks)
        self.items = 0  # items encoded by them
        self._cond = threading.Condition(threading.Lock())  # leaders release it while they encode
        self._queue: deque[_Request[T]] = deque()
        self._running = 0  # calls in flight

    def encode(self, items: Sequence[Item]) -> list[T]:
        """One result per item, from shared calls; raises the error of the first item that failed."""
        requests: list[_Request[T]] = [_Request(item) for item in items]
        with self._cond:
            self._queue.extend(requests)
        for request in requests:
            self._serve(request)
        for request in requests:
            if request.error is not None:
                raise request.error
        return [request.result for request in requests]  # type: ignore[misc]

    def queued(self) -> int:
        """Items waiting for a call to take them."""
        with self._cond:
            return len(self._queue)

    def _serve(self, request: _Request[T]) -> None:
        """Lead calls while ``request`` waits untaken and a call may start; then wait for it."""
        with self._cond:
            while request.state != _DONE:
                if request.state == _QUEUED and self._running < self.max_parallel:
                    batch = self._take(request)
                    self._running += 1
                    self._cond.release()
                    try:
                        self._run(batch)
                    finally:
                        self._cond.acquire()
                        self._running -= 1
                        self._cond.notify_all()
                else:
                    self._cond.wait()

    def _take(self, own: _Request[T]) -> list[_Request[T]]:
        """The leader's own request first, then the oldest waiting ones (held: the condition)."""
        self._queue.remove(own)
        batch = [own]
        while self._queue and len(batch) < self.max_batch:
            batch.append(self._queue.popleft())
        for request in batch:
            request.state = _TAKEN
        return batch

    def _run(self, batch: list[_Request[T]]) -> None:
        try:
            self._call(batch)
        except BaseException as exc:  # the shared call failed: find whose item fails, alone
            if len(batch) == 1 or not isinstance(exc, Exception):
                for request in batch:
                    request.error = exc
            else:
                for request in batch:
                    try:
                        self._call([request])
                    except BaseException as one:  # noqa: BLE001  (handed to that item's caller)
                        request.error = one
        finally:
            for request in batch:
                request.state = _DONE  # the caller's wait ends: with a result or an error

    def _call(self, batch: list[_Request[T]]) -> None:
        results = list(self.encode_fn([request.item for request in batch]))
        if len(results) != len(batch):
            raise RuntimeError(f"the encoder returned {len(results)} results for {len(batch)} items")
        with self._cond:
            self.calls += 1
            self.items += len(batch)
        for request, result in zip(batch, results):
            request.result = result
