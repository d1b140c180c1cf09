"""Threads for a CLI process that encodes one short query.

One text query is a handful of tiny matrix products: one thread encodes it as fast as two on an idle
machine, and does not wait for a second core on a busy one (measured on a shared 2-core box at load
7: 0.013 s against 0.57 s per query with two OpenMP threads). The limit is set through
``OMP_NUM_THREADS`` before torch is first imported (torch and the BLAS libraries read it then) and
only when the user has not set it; the variable is restored afterwards, so nothing this process
starts later inherits it.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator

VARIABLE = "OMP_NUM_THREADS"


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one OpenMP thread when torch is not loaded yet and the user set nothing."""
    if "torch" in sys.modules or VARIABLE in os.environ:
        yield
        return
    os.environ[VARIABLE] = "1"
    try:
        yield
    finally:
        os.environ.pop(VARIABLE, None)
