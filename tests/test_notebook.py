"""Progress and warnings inside Jupyter: a widget when ipywidgets is installed, else nothing; no
``TqdmWarning: IProgress not found`` from a dependency's import. A fake kernel module makes tqdm and
aimemory believe they run in a notebook, so no Jupyter is needed."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import types

import pytest

from aimemory import notebook
from aimemory.weights import hub

FAKE_KERNEL = """
import sys, types
shell = types.ModuleType("ipykernel.zmqshell")
sys.modules["ipykernel.zmqshell"] = shell
ipython = types.ModuleType("IPython")
class ZMQInteractiveShell:
    pass
ipython.get_ipython = lambda: ZMQInteractiveShell()
sys.modules["IPython"] = ipython
sys.modules["ipywidgets"] = None  # not installed
"""


@pytest.mark.heavy
def test_no_tqdm_warning_when_audio_code_loads_in_a_notebook():
    code = FAKE_KERNEL + textwrap.dedent("""
        import warnings
        warnings.simplefilter("always")
        from aimemory.preprocess.audio import mel_filters
        mel_filters(80)  # imports librosa, which imports pooch, which imports tqdm.auto
        import numpy as np
        from aimemory import Audio
        Audio(np.zeros(8000, np.float32), 8000).resampled(16000)
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
    assert "IProgress" not in proc.stderr and "TqdmWarning" not in proc.stderr, proc.stderr


@pytest.fixture
def in_notebook(monkeypatch):
    monkeypatch.setattr(notebook, "in_notebook", lambda: True)


def test_download_progress_in_a_notebook_without_ipywidgets_is_silent(in_notebook, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    stream = io.StringIO()
    bar = hub.progress_bar("model.safetensors", 1000, stream=stream)
    bar.update(500)
    bar.close()
    assert stream.getvalue() == ""


def test_download_progress_in_a_notebook_is_a_widget(in_notebook, monkeypatch):
    shown = []

    class FloatProgress:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    widgets = types.ModuleType("ipywidgets")
    widgets.FloatProgress = FloatProgress
    widgets.Label = FloatProgress
    widgets.HBox = lambda children: children
    display = types.ModuleType("IPython.display")
    display.display = shown.append
    monkeypatch.setitem(sys.modules, "ipywidgets", widgets)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    stream = io.StringIO()
    bar = hub.progress_bar("model.safetensors", 1000, stream=stream)
    bar.update(400)
    bar.close()
    assert stream.getvalue() == "" and len(shown) == 1
    progress, label = shown[0]
    assert progress.value == 1000 and progress.max == 1000 and "model.safetensors" in label.value


def test_download_progress_outside_notebooks_is_the_stderr_line():
    stream = io.StringIO()
    bar = hub.progress_bar("model.safetensors", 1000, stream=stream)
    bar.update(1000)
    bar.close()
    assert "model.safetensors: 1.0kB/1.0kB 100.0%" in stream.getvalue()
