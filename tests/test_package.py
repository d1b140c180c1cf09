"""The package's face: what ``import aimemory`` offers (``__all__``, ``dir``), and that it imports from
any folder, the parent of a clone named ``aimemory`` included."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import aimemory
import aimemory.errors

REPO = Path(aimemory.__file__).resolve().parent.parent


def test_dir_lists_the_public_names_and_no_typing_helpers():
    names = dir(aimemory)
    assert set(aimemory.__all__) <= set(names)
    for noise in ("Any", "TYPE_CHECKING", "annotations"):
        assert noise not in names


def test_all_is_complete_and_every_name_resolves():
    errors = {name for name, obj in vars(aimemory.errors).items()
              if inspect.isclass(obj) and issubclass(obj, aimemory.errors.AimemoryError)}
    assert errors <= set(aimemory.__all__), errors - set(aimemory.__all__)
    for name in ("MemoryStore", "MemoryList", "Audio", "Memory", "Hit", "Hits", "Encoder", "View",
                 "load_encoder", "zero_shot", "__version__"):
        assert name in aimemory.__all__
    for name in aimemory.__all__:
        assert getattr(aimemory, name) is not None


def test_import_works_from_the_folder_that_holds_the_clone(tmp_path):
    """The clone's own folder is named ``aimemory`` there, and Python would take it for a namespace
    package ahead of an import hook. Installed as a path entry (what the Makefile does), the real
    package wins: a regular package anywhere on sys.path beats a namespace folder."""
    parent = tmp_path / "projects"
    parent.mkdir()
    (parent / "aimemory").symlink_to(REPO, target_is_directory=True)
    site = tmp_path / "site"
    site.mkdir()
    (site / "aimemory-path.pth").write_text(str(REPO) + "\n")  # what a path-entry install writes
    code = ("import site, sys; site.addsitedir(sys.argv[1]); import aimemory; "
            "from aimemory import MemoryStore; print(aimemory.__file__)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code, str(site)], cwd=parent, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(REPO / "aimemory" / "__init__.py")


def test_makefile_installs_the_package_as_a_path_entry():
    """setuptools' default editable install is an import hook that runs after Python's path search,
    so a folder named ``aimemory`` in the working directory shadowed the package ("unknown
    location"); the compat mode writes a plain path entry instead."""
    makefile = (REPO / "Makefile").read_text()
    for name, value in re.findall(r"^(\w+)\s*:?=\s*(.*)$", makefile, flags=re.M):
        makefile = makefile.replace(f"$({name})", value)
    installs = re.findall(r"pip install[^\n]* -e [^\n]*", makefile)
    assert installs and all("editable_mode=compat" in line for line in installs), installs


def _test_extra() -> list[str]:
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["optional-dependencies"]["test"]


def test_test_extra_has_what_the_readme_and_makefile_use():
    names = {re.split(r"[<>=\[ ]", dep, maxsplit=1)[0].lower() for dep in _test_extra()}
    assert "nbconvert" in names  # `jupyter nbconvert --execute` on the notebooks


def _pyproject() -> dict:
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def test_tiers_are_registered_and_make_check_skips_them():
    markers = {m.split(":")[0] for m in _pyproject()["tool"]["pytest"]["ini_options"]["markers"]}
    assert {"slow", "services", "browser", "notebooks", "ray", "heavy"} <= markers
    makefile = (REPO / "Makefile").read_text()
    fast = re.search(r"^FAST\s*:?=\s*(.*)$", makefile, re.M).group(1)
    for tier in ("slow", "services", "browser", "notebooks", "ray", "heavy"):
        assert f"not {tier}" in fast
    assert re.search(r"^check:.*\n\t.*pytest.*-m \"\$\(FAST\)\"", makefile, re.M)
    assert re.search(r"^test:.*\n\t\$\(BIN\)/python -m pytest -q$", makefile, re.M)  # CI: all but slow


def test_lint_works_in_a_fresh_venv_and_enforces_the_line_length():
    names = {re.split(r"[<>=\[ ]", dep, maxsplit=1)[0].lower() for dep in _test_extra()}
    assert "ruff" in names
    ruff = _pyproject()["tool"]["ruff"]
    assert "line-length" in ruff and "E501" not in ruff["lint"].get("ignore", [])
