"""Background ingest jobs: long uploads are stored by one worker thread while clients poll
``GET /api/jobs/{id}``. One worker, because the store writes one batch at a time anyway (its write
lock), and a queue bound keeps uploaded bytes waiting in memory bounded too."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

log = logging.getLogger("aimemory.web")

MAX_QUEUED = 16  # jobs waiting or running; more get 429
KEEP_FINISHED = 200  # finished jobs remembered for polling


class Job:
    def __init__(self, total: int, namespace: str):
        self.id = secrets.token_hex(8)
        self.total, self.namespace = total, namespace
        self.status = "queued"
        self.done = 0
        self.memories: list[dict] = []
        self.skipped: list[dict] = []
        self.error: dict | None = None
        self.created = time.time()
        self.finished: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "namespace": self.namespace, "total": self.total,
                "done": self.done, "stored": len(self.memories), "memories": self.memories,
                "skipped": self.skipped, "error": self.error,
                "progress": round(self.done / self.total, 4) if self.total else 1.0}


class JobQueue:
    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aimemory-ingest")

    def active(self) -> int:
        with self._lock:
            return sum(j.status in ("queued", "running") for j in self._jobs.values())

    def submit(self, job: Job, work: Callable[[Job], None]) -> Job:
        with self._lock:
            self._jobs[job.id] = job
            finished = [k for k, j in self._jobs.items() if j.finished is not None]
            for key in finished[:max(0, len(finished) - KEEP_FINISHED)]:
                del self._jobs[key]
        self._pool.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Job], None]) -> None:
        from .http import error_body

        job.status = "running"
        try:
            work(job)
            job.status = "done"
        except Exception as exc:  # reported to the poller; the worker lives on
            log.warning("ingest job %s failed: %s", job.id, exc, exc_info=not hasattr(exc, "index"))
            job.error = error_body(exc)
            job.status = "failed"
        finally:
            job.finished = time.time()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
