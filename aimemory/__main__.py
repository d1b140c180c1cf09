"""``python -m aimemory``: the same as the ``aimemory`` command."""

import sys

from .cli import main

sys.exit(main())
