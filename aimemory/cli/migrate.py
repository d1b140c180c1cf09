"""``aimemory migrate``: move a store to another model (see :mod:`aimemory.migrate`)."""

from __future__ import annotations

from typing import Annotated

import typer

from .commands import CliError, DebugOpt, DeviceOpt, StoreOpt, app, default_store_path, open_store


@app.command()
def migrate(
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="The model to move to: 'aimemory-base', a hub id or a checkpoint folder.",
        show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Memories per commit (checkpoint).")] = 32,
    allow_loss: Annotated[bool, typer.Option(
        "--allow-loss", help="Switch even if some memories cannot be re-embedded (their images or audio "
        "were not kept); they are listed.")] = False,
    rollback: Annotated[bool, typer.Option(
        "--rollback", help="Open the previous model's vectors again (while they are kept), carrying over "
        "what was remembered, changed or forgotten since the switch.")] = False,
    drop_old: Annotated[bool, typer.Option(
        "--drop-old", help="Delete the previous model's vectors and content to reclaim space (no rollback after).")]
    = False,
    device: DeviceOpt = "auto",
    store: StoreOpt = None, debug: DebugOpt = False,
) -> None:
    """Re-embed every memory with another model, then switch to it.

    Resumable: stop it (Ctrl-C) or lose the machine, run the same command again and it continues.
    The current model answers recall until the new vectors are complete."""
    from .. import migrate as migration

    path = (store or default_store_path()).expanduser()
    if rollback or drop_old:
        if model is not None or (rollback and drop_old):
            raise CliError("--rollback and --drop-old take no --model and go one at a time")
        if rollback:  # what changed since the switch is re-embedded with the previous model
            typer.echo(str(migration.rollback(path, batch_size=batch_size, device=device)))
        else:
            typer.echo(f"dropped the previous model's vectors: {migration.drop_old(path) / 2**20:.1f} MB freed")
        return
    if model is None:
        raise CliError("pass --model (the model to move to), or --rollback / --drop-old")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with open_store(path, "auto", device=device) as st, Progress(
            TextColumn(f"re-embedding with {model}"), BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("migrate", total=None)
        report = st.migrate(model, batch_size=batch_size, allow_loss=allow_loss,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))
    typer.echo(str(report))
    if not report.switched:
        raise CliError("not switched; the store still uses its previous model")
