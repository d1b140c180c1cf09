"""Moving a whole namespace between stores, content and all: ``store.export_namespace(folder)`` and
``store.import_namespace(folder)`` (CLI: ``aimemory export --with-content DIR`` / ``aimemory import DIR``).

The folder holds::

    aimemory-export.json   format, model id, vector width, namespace, counts
    memories.jsonl         one memory per line: id, modality, created_at (ISO, microseconds),
                           source, mime, content_hash, tags, metadata, text (a text memory's
                           content, an audio memory's transcript), content (a media/ file name),
                           expires_at, created_by, derived_from, views (kind, start, end,
                           snippet) and the row of its first vector in vectors.npy
    vectors.npy            float32 (views, dim): every view's vector, in file order
    media/<sha256>.<ext>   the original bytes of image and audio memories

An import into a store of the same model writes every memory as it was: ids, metadata, tags,
times, provenance, expiry, content bytes and vectors bit for bit (only the store's internal row
keys differ). Into a store of another model the content is embedded again by that model (and
audio transcribed by its speech model, if any); everything else is kept. Ids already in the
target namespace are replaced, as ``remember(id=...)`` does. Expired memories are not exported,
and memories that expire before the import are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .encoders.base import View
from .errors import InputError
from .inputs import MODALITIES, Item, to_item
from .semantics import ItemOptions, epoch_seconds

if TYPE_CHECKING:  # pragma: no cover
    from .store import MemoryList, MemoryStore

FORMAT = "aimemory-namespace/1"
MANIFEST_FILE = "aimemory-export.json"
MEMORIES_FILE = "memories.jsonl"
VECTORS_FILE = "vectors.npy"
MEDIA_DIR = "media"
IMPORT_BATCH = 256  # memories read (content included) and committed at a time: bounds the memory used
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp",
               "image/bmp": ".bmp", "image/tiff": ".tiff", "audio/wav": ".wav", "audio/flac": ".flac",
               "audio/mpeg": ".mp3", "audio/ogg": ".ogg", "audio/aiff": ".aiff", "audio/mp4": ".m4a"}
_PRIMARY = ["vkey", "id", "modality", "created_at", "source", "mime", "content_hash", "tags", "metadata",
            "text", "content", "expires_at", "created_by", "derived_from"]


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds") if value is not None else None


def export_namespace(store: "MemoryStore", path: str | os.PathLike, namespace: str) -> dict[str, Any]:
    """Write ``namespace`` of ``store`` to the folder ``path`` (created; must be empty if it exists).
    Returns the summary written to ``aimemory-export.json``."""
    from lancedb.expr import col, lit

    from .export import unexpired

    folder = Path(path)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{folder} exists and is not an empty folder; export into a new folder")
    store.check_open()
    with store.reading():
        views = store.table.scan(["vkey", "id", "view", "kind", "start", "end", "snippet", "vector"],
                                 col("namespace") == lit(namespace))
        primary = store.table.scan(_PRIMARY, (col("namespace") == lit(namespace)) & (col("view") == lit(0)))
    primary = primary.filter(unexpired(primary.column("expires_at")))
    primary = primary.sort_by([("created_at", "ascending"), ("vkey", "ascending")])
    by_id: dict[str, list[int]] = {}
    for n, mid in enumerate(views.column("id").to_pylist()):
        by_id.setdefault(mid, []).append(n)
    vectors = views.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    vectors = vectors.astype(np.float32, copy=False).reshape(-1, store.manifest.dim)  # (views, dim)
    view_rows = views.drop_columns(["vector"]).to_pylist()
    (folder / MEDIA_DIR).mkdir(parents=True, exist_ok=True)
    order: list[int] = []
    with open(folder / MEMORIES_FILE, "w", encoding="utf-8") as fh:
        for row in primary.to_pylist():
            mine = sorted(by_id.get(row["id"], []), key=lambda n: view_rows[n]["view"])
            content_file = None
            if row["content"] is not None and row["modality"] != "text":
                data = row["content"]
                content_file = f"{MEDIA_DIR}/{hashlib.sha256(data).hexdigest()}{_EXTENSIONS.get(row['mime'], '.bin')}"
                if not (folder / content_file).exists():
                    (folder / content_file).write_bytes(data)
            line = {
                "id": row["id"], "modality": row["modality"], "created_at": _iso(row["created_at"]),
                "source": row["source"], "mime": row["mime"], "content_hash": row["content_hash"],
                "tags": row["tags"] or [], "metadata": json.loads(row["metadata"]) if row["metadata"] else {},
                "text": row["text"], "content": content_file, "expires_at": _iso(row["expires_at"]),
                "created_by": row["created_by"], "derived_from": row["derived_from"],
                "views": [{k: view_rows[n][k] for k in ("kind", "start", "end", "snippet")} for n in mine],
                "vector_row": len(order),
            }
            order.extend(mine)
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    np.save(folder / VECTORS_FILE, vectors[order] if order else np.zeros((0, store.manifest.dim), np.float32),
            allow_pickle=False)
    summary = {"format": FORMAT, "model": store.model_id, "dim": store.manifest.dim, "namespace": namespace,
               "memories": primary.num_rows, "views": len(order), "exported_at": _iso(datetime.now(timezone.utc))}
    (folder / MANIFEST_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        summary = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{folder} is not a namespace export (no {MANIFEST_FILE}); make one with "
                         "`aimemory export --with-content DIR` or store.export_namespace(DIR)") from None
    except ValueError as exc:
        raise InputError(f"{folder / MANIFEST_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(summary, dict):
        raise InputError(f"{folder / MANIFEST_FILE} is not a namespace export's header (a JSON object)")
    if summary.get("format") != FORMAT:
        raise InputError(f"{folder} holds format {summary.get('format')!r}; this aimemory reads {FORMAT!r}")
    if not isinstance(summary.get("namespace"), str):
        raise _damaged(str(folder / MANIFEST_FILE), "names no namespace")
    return summary


def import_namespace(store: "MemoryStore", path: str | os.PathLike, namespace: str | None = None,
                     *, batch_size: int = IMPORT_BATCH) -> "MemoryList":
    """Write the memories of the export folder ``path`` into ``namespace`` (default: the one that
    was exported); returns the memories written (``status`` "new", "replaced" or "existing"), with
    ``skipped`` listing (line, id, "expired") for those that expired before the import. Batches of
    ``batch_size`` memories are read and committed in turn: an import that fails part way leaves
    the batches before it stored, and running it again completes it."""
    from .store import MemoryList

    folder = Path(path)
    summary = read_manifest(folder)
    namespace = summary["namespace"] if namespace is None else namespace
    same_model = summary.get("model") == store.model_id and summary.get("dim") == store.manifest.dim
    vectors = _read_vectors(folder, store.manifest.dim) if same_model else None
    lines = _read_lines(folder / MEMORIES_FILE)
    for n, line in enumerate(lines, 1):  # every line checked before anything is written
        _check_line(folder, n, line, vectors)
    now = time.time()
    out = MemoryList()
    out.skipped = []
    for start in range(0, len(lines), batch_size):  # content is read a batch at a time
        items, metas, options = [], [], []
        for n, line in enumerate(lines[start:start + batch_size], start):
            expires = epoch_seconds(line["expires_at"], "expires_at") if line.get("expires_at") else None
            if expires is not None and expires <= now:
                out.skipped.append((n, line["id"], "expired"))
                continue
            item, views = _item(folder, line, vectors, store.manifest.dim)
            items.append(item)
            metas.append({**line.get("metadata", {}), "tags": line.get("tags", [])})
            options.append(ItemOptions(
                id=line["id"], expires_at=expires, created_by=line.get("created_by"),
                derived_from=tuple(line["derived_from"]) if line.get("derived_from") is not None else None,
                created_at=epoch_seconds(line["created_at"], "created_at"), views=views))
        out.extend(store.remember_many(items, metadata=metas, namespace=namespace, options=options,
                                       batch_size=batch_size))
    return out


def _damaged(where: str, what: str) -> InputError:
    return InputError(f"the export is damaged: {where} {what}; nothing was imported. Export it again "
                      "(`aimemory export --with-content DIR`)")


def _read_vectors(folder: Path, dim: int) -> np.ndarray:
    """vectors.npy, checked: float, (views, dim), finite."""
    try:
        vectors = np.load(folder / VECTORS_FILE, allow_pickle=False)
    except FileNotFoundError:
        raise _damaged(str(folder), f"has no {VECTORS_FILE}") from None
    except (ValueError, OSError, EOFError) as exc:
        raise _damaged(str(folder / VECTORS_FILE), f"does not load ({exc})") from exc
    if vectors.ndim != 2 or vectors.shape[1] != dim or vectors.dtype.kind != "f":
        raise _damaged(str(folder / VECTORS_FILE), f"holds {vectors.dtype} {vectors.shape}, not float (views, {dim})")
    if not np.isfinite(vectors).all():
        raise _damaged(str(folder / VECTORS_FILE), "holds NaN or infinite values")
    return vectors


def _read_lines(path: Path) -> list[dict]:
    lines = []
    try:
        with open(path, encoding="utf-8") as fh:
            for n, text in enumerate(fh, 1):
                if text.strip():
                    try:
                        lines.append(json.loads(text))
                    except ValueError as exc:
                        raise InputError(f"{path}:{n} is not valid JSON ({exc}); nothing was imported") from exc
    except FileNotFoundError:
        raise _damaged(str(path.parent), f"has no {MEMORIES_FILE}") from None
    except UnicodeDecodeError as exc:
        raise _damaged(str(path), f"is not UTF-8 ({exc})") from exc
    return lines


_OPTIONAL_TEXT = ("source", "mime", "content_hash", "text", "content", "created_by", "expires_at")


def _check_line(folder: Path, n: int, line: Any, vectors: np.ndarray | None) -> None:
    """One memories.jsonl line, checked for what an import reads from it (``vectors``: the export's,
    when they are reused)."""
    where = f"{MEMORIES_FILE} line {n}"
    if not isinstance(line, dict):
        raise _damaged(where, f"is a {type(line).__name__}, not an object")
    if not isinstance(line.get("id"), str) or not line["id"]:
        raise _damaged(where, f"has id {line.get('id')!r}, not a text")
    if line.get("modality") not in MODALITIES:
        raise _damaged(where, f"has modality {line.get('modality')!r}, not one of {MODALITIES}")
    if not isinstance(line.get("created_at"), str):
        raise _damaged(where, "has no created_at time")
    if not isinstance(line.get("metadata", {}), dict):
        raise _damaged(where, "has metadata that is not an object")
    for name in ("tags", "derived_from"):
        value = line.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise _damaged(where, f"has {name} that is not a list of texts")
    for name in _OPTIONAL_TEXT:
        if line.get(name) is not None and not isinstance(line[name], str):
            raise _damaged(where, f"has {name} that is not a text")
    if line["modality"] == "text" and not line.get("text"):
        raise _damaged(where, "is a text memory without its text")
    if line.get("content"):
        media = (folder / line["content"]).resolve()
        if folder.resolve() not in media.parents:
            raise InputError(f"memory {line['id']!r} names content outside the export folder: {line['content']!r}")
        if not media.is_file():
            raise _damaged(where, f"names content the export does not hold: {line['content']!r}")
    if vectors is None:
        return
    views, row = line.get("views"), line.get("vector_row")
    if not isinstance(views, list) or not views or not all(isinstance(v, dict) and isinstance(v.get("kind"), str)
                                                           for v in views):
        raise _damaged(where, "has no list of views")
    if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row <= len(vectors) - len(views):
        raise _damaged(where, f"has vector_row {row!r}, not a row of {VECTORS_FILE} ({len(vectors)} rows) "
                       f"with {len(views)} after it")
    if not isinstance(line.get("mime"), str) or not isinstance(line.get("content_hash"), str):
        raise _damaged(where, "has no mime type or content hash")


def _item(folder: Path, line: dict, vectors: np.ndarray | None, dim: int) -> tuple[Item, tuple | None]:
    """A memory line -> the Item to write, and its views when the vectors can be reused (None:
    embed again)."""
    content = None
    if line.get("content"):
        media = (folder / line["content"]).resolve()
        if folder.resolve() not in media.parents:
            raise InputError(f"memory {line['id']!r} names content outside the export folder: {line['content']!r}")
        content = media.read_bytes()
    if vectors is None:  # another model: decode and embed again
        if line["modality"] == "text":
            return to_item(line["text"], source=line.get("source")), None
        if content is None:
            raise InputError(f"memory {line['id']!r} was exported without its content (a store opened with "
                             "keep_content=False), so a store of another model cannot embed it; import it "
                             "into a store of the same model")
        item = to_item(content, source=line.get("source"))
        return item, None
    start = int(line["vector_row"])
    views = tuple(View(v["kind"], vectors[start + j], v.get("start"), v.get("end"), v.get("snippet"))
                  for j, v in enumerate(line["views"]))
    if vectors.shape[1] != dim or start + len(views) > len(vectors):
        raise InputError(f"{folder / VECTORS_FILE} does not match {MEMORIES_FILE}; the export is damaged")
    text = line.get("text")
    item = Item(line["modality"], text if line["modality"] == "text" else None, content, line["mime"],
                line.get("source"), line["content_hash"], transcript=text if line["modality"] == "audio" else None)
    return item, views


def export_tar(store: "MemoryStore", namespace: str) -> bytes:
    """:func:`export_namespace` as one uncompressed tar archive (for the HTTP API)."""
    import io
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory(prefix="aimemory-export-") as tmp:
        export_namespace(store, Path(tmp) / "export", namespace)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for p in sorted((Path(tmp) / "export").rglob("*")):
                tar.add(p, arcname=str(p.relative_to(Path(tmp) / "export")), recursive=False)
        return buf.getvalue()


def import_tar(store: "MemoryStore", data: bytes, namespace: str | None = None) -> "MemoryList":
    """:func:`import_namespace` from a tar archive made by :func:`export_tar`. Members are
    extracted with tarfile's ``data`` filter: no links, devices or paths outside the folder."""
    import io
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory(prefix="aimemory-import-") as tmp:
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise InputError(f"the upload is not a namespace export archive ({exc}); send the tar that "
                             "GET /api/export returns") from exc
        return import_namespace(store, tmp, namespace)
