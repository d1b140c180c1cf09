"""Every ```python and ```bash block of README.md runs as written.

Python blocks run as scripts, bash blocks with ``bash -euo pipefail`` and the CLI of this checkout,
each in a fresh folder holding a copy of the bundled samples at ``aimemory/samples`` (the README's
examples run from the repository root), offline, with ``AIMEMORY_HOME`` on a temporary store.

A block is skipped only when it matches one of the few reasons in ``SKIP`` (needs the network, a
service, or would rebuild this very environment); every other block runs, including blocks added
later, so a new example that does not work fails here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SAMPLES = REPO / "aimemory" / "samples"
TIMEOUT_S = 300
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)

# (pattern searched in the block, why such a block cannot run here); keep this list short
SKIP = [
    (r"^\s*make (demo|test)\b", "builds the virtualenv these tests run in"),
    (r"^\s*pip install\b", "installs packages from the network"),
    (r"\baimemory models download\b", "downloads from the model hub"),
    (r"\baimemory (serve|mcp)\b", "starts a long-running server"),
    (r"^\s*curl\b", "talks to a running server"),
    (r"s3://|az://|\bray\.init\(", "needs an object store or a Ray cluster"),
]


def _blocks() -> list:
    text = README.read_text(encoding="utf-8")
    params = []
    for match in FENCE.finditer(text):
        lang, body = match.group(1), match.group(2)
        if lang not in ("python", "bash"):
            continue
        line = text.count("\n", 0, match.start()) + 1
        reason = next((why for pattern, why in SKIP if re.search(pattern, body, re.M)), None)
        marks = [pytest.mark.skip(reason=f"README.md:{line} {reason}")] if reason else []
        params.append(pytest.param(lang, body, id=f"{lang}-line{line}", marks=marks))
    return params


BLOCKS = _blocks()


def test_readme_opens_with_its_title_then_the_two_make_commands():
    text = README.read_text(encoding="utf-8")
    assert text.startswith("# aimemory\n\n```bash\nmake demo\nmake test\n```\n")
    assert len(re.findall(r"^# ", text, re.M)) == 1  # one title


def test_there_are_blocks_to_run():
    runnable = [p for p in BLOCKS if not p.marks]
    assert {p.values[0] for p in runnable} == {"python", "bash"}


@pytest.fixture
def workdir(tmp_path):
    work = tmp_path / "work"
    shutil.copytree(SAMPLES, work / "aimemory" / "samples")
    bin_dir = tmp_path / "bin"  # `aimemory` on PATH runs this checkout's CLI
    bin_dir.mkdir()
    shim = bin_dir / "aimemory"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m aimemory "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "AIMEMORY_HOME": str(tmp_path / "store"), "AIMEMORY_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return work, env


@pytest.mark.parametrize("lang, body", BLOCKS)
def test_readme_block_runs(lang, body, workdir, tmp_path):
    work, env = workdir
    if lang == "python":
        script = tmp_path / "block.py"  # outside the work folder: its aimemory/ must not shadow the package
        script.write_text(body)
        cmd = [sys.executable, str(script)]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", body]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n" \
                                 f"--- stderr\n{proc.stderr[-3000:]}"
