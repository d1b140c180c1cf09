"""Namespace names, checked without importing the store (servers check them before answering)."""

from __future__ import annotations

import re

from .errors import InputError

NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}$")


def check_namespace(namespace: str) -> str:
    """``namespace`` when it is a valid name, else :class:`InputError` saying what is allowed."""
    if not isinstance(namespace, str) or not NAMESPACE_RE.match(namespace) or ".." in namespace:
        raise InputError(f"namespace {namespace!r} is not valid: use 1-128 letters, digits and . _ : @ - "
                         "(no '/' and no '..')")
    return namespace
