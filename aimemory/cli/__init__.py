"""The ``aimemory`` command line. ``main(argv)`` runs it and returns the exit code:

0 ok, 1 user error (bad input, not found; ``remember``: any input skipped for an error, unless
``--allow-partial``), 2 usage, 3 model not available, 130 interrupted.

Only ``typer`` is imported up front so ``aimemory --help`` starts fast; the store, torch, pandas and
the MCP SDK load inside the commands that need them.
"""

from . import migrate as _migrate  # noqa: F401  (registers `aimemory migrate` on app)
from . import serve as _serve  # noqa: F401  (registers `aimemory serve` on app)
from .commands import app, main

__all__ = ["app", "main"]
