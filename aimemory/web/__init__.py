"""The HTTP API and the explorer page (``aimemory serve``), behind the ``web`` extra.

    from aimemory.web import create_app, serve
    serve(store, host="127.0.0.1", port=8765)     # blocking; or run create_app(store) in any ASGI server
"""

from __future__ import annotations

from ..errors import install_hint

MISSING_EXTRA = ("the web server needs the 'web' extra (starlette, uvicorn, python-multipart): "
                 + install_hint("web"))


def require_web() -> None:
    """Raise ImportError with the install hint when the web extra is not installed."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401

        try:  # python-multipart (starlette's form parser) renamed its module in 0.0.13
            import python_multipart  # noqa: F401
        except ImportError:
            import multipart  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{MISSING_EXTRA} (missing: {exc.name})") from exc


def __getattr__(name: str):
    # lazy, so `import aimemory.web` works (and can say what is missing) without the extra
    if name in ("create_app", "serve", "check_bind"):
        require_web()
        from . import server

        return getattr(server, name)
    raise AttributeError(name)


__all__ = ["create_app", "serve", "check_bind", "require_web", "MISSING_EXTRA"]
