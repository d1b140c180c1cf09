"""Background jobs of a long-lived process (aimemory/background.py): they run once, their failures are
logged and not raised, an exiting process waits for them and exits cleanly, and a fork waits for them."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from aimemory import background

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_job_runs_on_its_own_thread_and_a_failure_is_logged(caplog):
    ran: list[str] = []
    thread = background.start("aimemory-test-job", lambda: ran.append(threading.current_thread().name))
    thread.join(10)
    assert ran == ["aimemory-test-job"] and not thread.daemon

    def fails() -> None:
        raise RuntimeError("no such thing")

    with caplog.at_level(logging.WARNING, logger="aimemory"):
        background.start("aimemory-failing-job", fails).join(10)
    assert "aimemory-failing-job failed in the background (no such thing)" in caplog.text
    background.wait_all(10)


def test_preload_imports_a_module_once(tmp_path, monkeypatch):
    (tmp_path / "aimemory_preload_probe.py").write_text("import time\ntime.sleep(0.2)\nLOADS = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    background.preload("aimemory_preload_probe")
    background.preload("aimemory_preload_probe")  # while the first import runs: not a second one
    background.wait_all(10)
    assert sys.modules["aimemory_preload_probe"].LOADS == 1
    starts = threading.active_count()
    background.preload("aimemory_preload_probe")  # imported: nothing starts
    assert threading.active_count() == starts


def test_an_exiting_process_waits_for_a_job_and_exits_cleanly():
    out = _python(
        "import time\n"
        "from aimemory import background\n"
        "def job():\n"
        "    time.sleep(0.3)\n"
        "    print('job done', flush=True)\n"
        "background.start('aimemory-slow-job', job)\n"
        "print('main done', flush=True)\n")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["main", "done", "job", "done"]
    assert out.stderr == ""


def test_a_fork_waits_for_running_jobs():
    out = _python(
        "import os, time\n"
        "from aimemory import background\n"
        "done = []\n"
        "background.start('aimemory-slow-job', lambda: (time.sleep(0.3), done.append(1)))\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if done == [1] else 3)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n")
    assert out.returncode == 0 and out.stdout.strip() == "0", (out.stdout, out.stderr[-2000:])


def test_a_job_does_not_start_in_an_exiting_process(monkeypatch):
    monkeypatch.setattr(background, "exiting", lambda: True)
    ran: list[int] = []
    background.start("aimemory-late-job", lambda: ran.append(1)).join(10)
    time.sleep(0.01)
    assert ran == []
