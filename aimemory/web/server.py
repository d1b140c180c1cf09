"""Running the app: bind checks (loopback, or a token) and uvicorn."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from .app import DEFAULT_MAX_UPLOAD, create_app
from .http import is_loopback

if TYPE_CHECKING:  # pragma: no cover
    from ..store import MemoryStore

MIN_TOKEN_CHARS = 16


class BindError(ValueError):
    """A host/token combination the server refuses to start with."""


def check_bind(host: str, token: str | None) -> str | None:
    """The token to use (None on loopback without one); refuses to expose a store without a token."""
    token = token or None
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise BindError(f"the API token must be at least {MIN_TOKEN_CHARS} characters; make one with "
                        "python -c 'import secrets; print(secrets.token_urlsafe(24))'")
    if token is None and not is_loopback(host):
        raise BindError(f"binding to {host} would expose your memories to the network: set an API "
                        "token with --token or $AIMEMORY_TOKEN (clients send 'Authorization: Bearer "
                        "<token>'), or bind to 127.0.0.1")
    return token


def serve(store: "MemoryStore", host: str = "127.0.0.1", port: int = 8765, *, token: str | None = None,
          max_upload: int = DEFAULT_MAX_UPLOAD, log_level: str = "info") -> None:
    """Serve ``store`` until interrupted, then close it."""
    import uvicorn

    token = check_bind(host, token if token is not None else os.environ.get("AIMEMORY_TOKEN"))
    app = create_app(store, token=token, max_upload=max_upload)
    logging.getLogger("aimemory.web").setLevel(log_level.upper())
    # server_header off: no version banner; one process, since the store's lock is per process
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, server_header=False,
                            proxy_headers=False, access_log=log_level == "debug")
    try:
        uvicorn.Server(config).run()
    finally:
        app.state.api.jobs.close()
        app.state.api.handle.close()  # the store, and any it replaced after a migration
