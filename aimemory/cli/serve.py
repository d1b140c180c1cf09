"""``aimemory serve``: the HTTP API and the explorer page (needs the ``web`` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from .commands import CliError, DebugOpt, DeviceOpt, ModelOpt, OcrOpt, StoreOpt, app, open_store


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind; anything but loopback needs a token.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port to listen on.")] = 8765,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="AIMEMORY_TOKEN", show_default=False,
        help="API token: clients send 'Authorization: Bearer TOKEN'. Prefer $AIMEMORY_TOKEN (a command "
        "line is visible to other users).")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001,
                                                 help="Largest request body in MiB (bigger ones get 413).")] = 100.0,
    speech: Annotated[str, typer.Option("--speech", help="Speech model for audio transcripts: 'auto', "
                                        "'none' or a checkpoint.")] = "auto",
    sound: Annotated[str, typer.Option("--sound", help="Sound model for audio: 'auto', 'wav2clip', "
                                       "'none' or a checkpoint.")] = "auto",
    device: DeviceOpt = "auto",
    ocr: OcrOpt = True,
    store: StoreOpt = None, model: ModelOpt = "auto", debug: DebugOpt = False,
) -> None:
    """Serve the store over HTTP: a JSON API (OpenAPI at /api/openapi.json) and an explorer page at /."""
    from ..web import MISSING_EXTRA, require_web

    try:
        require_web()
    except ImportError as exc:
        raise CliError(str(exc) if MISSING_EXTRA in str(exc) else MISSING_EXTRA) from exc
    from ..web.server import BindError, check_bind
    from ..web.server import serve as run_server

    try:
        token = check_bind(host, token)  # before opening the store: fail fast, load no model
    except BindError as exc:
        raise CliError(str(exc)) from exc
    mem = open_store(store, model, create=True, speech=speech, sound=sound, device=device, ocr=ocr)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"aimemory: serving {mem.path} ({len(mem)} memories) at http://{shown}:{port}/ "
               f"{'(token required)' if token else '(loopback only)'}; Ctrl-C to stop", err=True)
    from . import served

    record = served.announce(mem.path, host, port, token is not None)  # lets `aimemory recall` reuse us
    try:
        run_server(mem, host, port, token=token, max_upload=int(max_upload_mb * 1024 * 1024),
                   log_level="debug" if debug else "info")
    finally:
        served.withdraw(record)
