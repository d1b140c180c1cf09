"""Running inside Jupyter: progress is an ipywidgets bar when ipywidgets is installed, else nothing
(stderr lines in a cell's output are noise), and dependencies' import-time progress warnings are
kept out of cell output."""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType

# tqdm.auto (imported by librosa -> pooch) warns at import time in a kernel: without ipywidgets
# "IProgress not found", with it "Using `tqdm.autonotebook.tqdm` in notebook mode"; aimemory never
# draws a tqdm bar, so neither says anything useful to our users
_TQDM_IMPORT_WARNINGS = ("IProgress not found", "Using `tqdm.autonotebook.tqdm` in notebook mode")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (notebook, lab, VS Code), False in a terminal or IPython shell."""
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython else None
    name = type(shell).__name__.lower()
    return shell is not None and "qt" not in name and "spyder" not in name


def import_quietly(name: str) -> ModuleType:
    """``importlib.import_module(name)`` without tqdm's import-time notebook warnings. librosa loads
    its submodules lazily (pooch, hence tqdm.auto, on first use), so tqdm.auto is imported here,
    under the filter: it warns only on its first import."""
    with warnings.catch_warnings():
        for message in _TQDM_IMPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        try:
            importlib.import_module("tqdm.auto")
        except ImportError:  # no tqdm: nothing to silence
            pass
        return importlib.import_module(name)


class WidgetProgress:
    """The notebook form of a download bar: an ipywidgets progress bar and a label."""

    def __init__(self, name: str, total: int | None, start: int = 0):
        import ipywidgets
        from IPython.display import display

        self.name, self.total, self.done = name, total, start
        self.bar = ipywidgets.FloatProgress(value=start, min=0, max=total or 1, description="")
        self.label = ipywidgets.Label(value=name)
        display(ipywidgets.HBox([self.bar, self.label]))

    def update(self, n: int) -> None:
        self.done += n
        self.bar.value = min(self.done, self.bar.max)

    def close(self, complete: bool = True) -> None:
        if complete:
            self.bar.value = self.bar.max = self.total or self.done or 1
        self.label.value = f"{self.name}: {'done' if complete else 'interrupted'}"


class NoProgress:
    """Nothing to show (a notebook without ipywidgets)."""

    done = 0

    def update(self, n: int) -> None:
        self.done += n

    def close(self, complete: bool = True) -> None:
        pass


def notebook_progress(name: str, total: int | None, start: int = 0) -> WidgetProgress | NoProgress:
    """The bar to use inside a notebook: a widget if ipywidgets imports, else a silent one."""
    try:
        import ipywidgets  # noqa: F401
        from IPython.display import display  # noqa: F401
    except ImportError:
        bar = NoProgress()
        bar.done = start
        return bar
    return WidgetProgress(name, total, start)
