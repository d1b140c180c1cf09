"""Work a long-lived process does off its callers' threads: building the torch text network
(:mod:`aimemory.encoders.sentence`) and importing LanceDB ahead of the first fold of the write-ahead
segment (:mod:`aimemory.write_ahead`).

Each job runs on a thread that is not a daemon: torch's C++ runtime aborts ("terminate called
without an active exception") when the interpreter exits under a daemon thread inside it, so a
process that ends while a job runs waits for it. A job whose process is already exiting does not
start, and one the exiting interpreter interrupts (it refuses imports then) ends quietly. Before a
fork every running job is waited for, so no child starts inside an import.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from typing import Callable

log = logging.getLogger("aimemory")

FORK_WAIT_S = 60.0  # the longest a fork waits for each running job (a job that hangs must not hang it)

_running: "set[threading.Thread]" = set()
_preloaded: set[str] = set()  # modules asked for once (their import may still run)
_lock = threading.Lock()


def exiting() -> bool:
    """Whether the interpreter is shutting down (its main thread has ended)."""
    return not threading.main_thread().is_alive()


def start(name: str, job: Callable[[], None]) -> threading.Thread:
    """Run ``job`` on a new thread named ``name``; an exception is logged, not raised."""

    def run() -> None:
        try:
            if not exiting():
                job()
        except Exception as exc:  # noqa: BLE001 - a background job only saves time later
            if not exiting():
                log.warning("%s failed in the background (%s); it is done on first use instead", name, exc)
        finally:
            with _lock:
                _running.discard(threading.current_thread())

    # concurrent.futures pairs a lock's acquire and release around every fork. Imported by a job
    # while a fork waits for it (torch imports it), the pair is registered half way through that
    # fork, which then releases a lock it never took ("RuntimeError: release unlocked lock").
    import concurrent.futures.thread  # noqa: F401

    thread = threading.Thread(target=run, name=name)
    with _lock:
        _running.add(thread)
    thread.start()
    return thread


def preload(module: str) -> None:
    """Import ``module`` in the background, once per process, unless it is imported already."""
    with _lock:
        if module in sys.modules or module in _preloaded:
            return
        _preloaded.add(module)

    def load() -> None:
        importlib.import_module(module)

    start(f"aimemory-import-{module}", load)


def wait_all(timeout: float | None = None) -> None:
    """Wait for every running job (each up to ``timeout`` s)."""
    with _lock:
        running = list(_running)
    for thread in running:
        if thread is not threading.current_thread():
            thread.join(timeout)


def _before_fork() -> None:
    wait_all(FORK_WAIT_S)


os.register_at_fork(before=_before_fork)
