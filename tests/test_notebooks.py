"""The notebooks: committed without outputs, in sync with their generator, and (when the built-in
mini model is installed) executed top to bottom, offline, with nbclient."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_explore.ipynb"]
MINI_DIR = ROOT / "aimemory" / "models" / "aimemory-mini"


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebooks_match_their_generator():
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS / "build_notebooks.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for cells, name in ((gen.QUICKSTART, NAMES[0]), (gen.EXPLORE, NAMES[1])):
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert [c.source for c in nb.cells] == [c.source for c in cells], f"run notebooks/build_notebooks.py ({name})"


@pytest.mark.notebooks
@pytest.mark.skipif(not (MINI_DIR.is_dir() and any(MINI_DIR.iterdir())),
                    reason="aimemory-mini weights are not installed (aimemory/models/aimemory-mini)")
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_offline(name, tmp_path, monkeypatch):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nbclient import NotebookClient

    monkeypatch.setenv("AIMEMORY_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "IProgress" not in streams and "TqdmWarning" not in streams, streams
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("score" in h for h in html), "rich hit tables were not displayed"
    if name == NAMES[1]:
        assert any("image/png" in o.get("data", {}) for o in outputs), "the PCA map was not drawn"
    assert os.environ["AIMEMORY_OFFLINE"] == "1"
