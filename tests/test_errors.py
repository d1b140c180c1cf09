"""Install hints: one helper makes every "pip install ..." the library prints, with the distribution
name that pyproject.toml publishes (the import name and the command stay ``aimemory``)."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

import aimemory.errors as errors
from aimemory.errors import DISTRIBUTION, install_hint

ROOT = Path(__file__).resolve().parent.parent


def test_distribution_name_is_the_published_one():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION != "aimemory"  # "aimemory" on PyPI is another project
    assert project["scripts"] == {"aimemory": "aimemory.cli:main"}
    for extra in ("mcp", "web", "s3", "azure", "ray"):
        assert extra in project["optional-dependencies"]


def test_hint_for_a_release_and_for_a_clone(monkeypatch, tmp_path):
    monkeypatch.setattr(errors, "_clone_root", lambda: None)
    assert install_hint("web") == f"pip install '{DISTRIBUTION}[web]'"
    assert install_hint() == f"pip install '{DISTRIBUTION}'"
    clone = tmp_path / "aimemory"
    monkeypatch.setattr(errors, "_clone_root", lambda: clone)
    monkeypatch.setattr(sys, "prefix", str(clone / ".venv"))
    assert install_hint("mcp") == f"cd {clone} && .venv/bin/pip install -e '.[mcp]'"
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "elsewhere"))
    assert install_hint("mcp") == f"cd {clone} && {sys.executable} -m pip install -e '.[mcp]'"


def test_this_checkout_is_recognised_as_a_clone():
    assert errors._clone_root() == ROOT


def test_no_message_or_doc_names_the_old_distribution():
    """Every hint goes through install_hint (code) or names the published distribution (docs)."""
    old = re.compile(r"pip install[^\n]*'aimemory(\[|')")
    for path in [*ROOT.joinpath("aimemory").rglob("*.py"), ROOT / "README.md", *ROOT.joinpath("docs").rglob("*.md")]:
        assert not old.search(path.read_text()), path
    for path in ROOT.joinpath("aimemory").rglob("*.py"):
        if path.name != "errors.py":
            assert "pip install '" not in path.read_text(), f"{path}: use errors.install_hint"


@pytest.mark.parametrize("extra", ["mcp", "web"])
def test_make_demo_installs_the_server_extras(extra):
    """After `make demo`, `aimemory mcp` and `aimemory serve` work without another install."""
    makefile = (ROOT / "Makefile").read_text()
    runtime = makefile.split("$(VENV)/.runtime:")[1].split("\n\n")[0]
    installs = re.search(r"pip install -q -e '\.\[([a-z,]+)\]'", runtime)
    assert installs and extra in installs.group(1).split(","), runtime
