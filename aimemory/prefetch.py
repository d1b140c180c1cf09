"""Work on a few threads ahead of the consumer: files decode while the previous batch encodes.

An accelerator encodes a batch of photos in milliseconds; reading, decoding and resizing them on
one CPU thread takes far longer, so without this the GPU mostly waits. PIL and ffmpeg release the
GIL while they decode and resample, so threads are enough (no processes, no pickling of images).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from .errors import InputError

THREADS_ENV = "AIMEMORY_DECODE_THREADS"
MAX_THREADS = 8  # past this, decoding is no longer what an encode waits for, and memory grows
MAX_READY = 512  # model inputs kept for items not yet encoded (~150 KB each at 224 px)

T = TypeVar("T")
R = TypeVar("R")


def decode_threads() -> int:
    """Threads for decoding and preprocessing: ``$AIMEMORY_DECODE_THREADS``, else the CPU count
    (at most :data:`MAX_THREADS`); 1 turns the threads off."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        try:
            threads = int(value)
        except ValueError:
            threads = 0
        if threads < 1:
            raise InputError(f"${THREADS_ENV}={value!r} is not a whole number >= 1; set it to the "
                              "number of decoding threads (1 turns them off) or unset it")
        return threads
    return max(1, min(MAX_THREADS, os.cpu_count() or 1))


def ordered(fn: Callable[[T], R], items: Sequence[T], *, threads: int, ahead: int
            ) -> Iterator[tuple[R | None, BaseException | None]]:
    """``(fn(item), None)`` or ``(None, the exception fn raised)`` for each item, in input order,
    with at most ``ahead`` items started past the one being consumed. Leaving the loop early (an
    exception, ``break``) cancels what has not started and waits for what has, so nothing keeps
    decoding after the caller returns."""
    if threads <= 1 or len(items) <= 1:
        for item in items:
            yield _call(fn, item)
        return
    pool = ThreadPoolExecutor(max_workers=min(threads, len(items)), thread_name_prefix="aimemory-decode")
    pending: deque[Future] = deque()
    feed = iter(items)
    try:
        _fill(pool, pending, feed, fn, max(1, ahead))
        while pending:
            future = pending.popleft()
            _fill(pool, pending, feed, fn, max(1, ahead))
            yield future.result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)


def thread_map(fn: Callable[[T], R], items: Sequence[T], *, threads: int) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``threads`` threads; the first exception propagates."""
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items)), thread_name_prefix="aimemory-prep") as pool:
        return list(pool.map(fn, items))


class ReadyInputs:
    """Model inputs computed ahead on a decoding thread, waiting for the batch that embeds their
    source object. Keyed by (owner, the object's identity). An entry goes at the next call after its
    object is collected (an item found already stored is never embedded), or past
    :data:`MAX_READY`; either only costs recomputing it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[object, int], tuple[weakref.ref, object]] = OrderedDict()
        # refs of collected objects; a weakref callback may run inside a locked section (GC), so it
        # only appends here and the next call under the lock removes their entries
        self._dead: list[tuple[tuple[object, int], weakref.ref]] = []

    def put(self, owner: object, source: object, value: object) -> None:
        key = (owner, id(source))
        ref = weakref.ref(source, lambda r: self._dead.append((key, r)))
        with self._lock:
            self._purge()
            self._entries[key] = (ref, value)
            while len(self._entries) > MAX_READY:
                self._entries.popitem(last=False)

    def _purge(self) -> None:
        while self._dead:
            key, ref = self._dead.pop()
            entry = self._entries.get(key)
            if entry is not None and entry[0] is ref:  # not a newer object that reuses the id
                del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            self._purge()
            return len(self._entries)

    def take(self, owner: object, source: object) -> object | None:
        """The value put for ``source`` (once), or None."""
        with self._lock:
            self._purge()
            entry = self._entries.pop((owner, id(source)), None)
        return entry[1] if entry is not None and entry[0]() is source else None


def _fill(pool: ThreadPoolExecutor, pending: deque, feed: Iterable[T], fn: Callable[[T], R], ahead: int) -> None:
    while len(pending) < ahead:
        item = next(feed, _END)  # type: ignore[call-overload]
        if item is _END:
            return
        pending.append(pool.submit(_call, fn, item))


def _call(fn: Callable[[T], R], item: T) -> tuple[R | None, BaseException | None]:
    try:
        return fn(item), None
    except Exception as exc:  # handed to the consumer, in order, as if raised there
        return None, exc


_END = object()
