"""Ingest at scale with Ray Data: ``aimemory.distributed.ingest(source, store_uri)``.

    read + decode (Ray tasks) -> encode (an actor pool; each actor holds the native encoder, on a
    GPU where there is one) -> write (the driver: one store commit per block)

Resumable: content already in the store (same hash, same namespace) is dropped at the read stage,
before it costs any encoding, so a crashed or interrupted ingest is simply run again.

The driver commits the views the actors computed with :func:`aimemory.write.commit_views`, the
commit ``remember_many`` makes, so keys, the manifest, dedup and the write lease work exactly as
there; encoding, the expensive part, is what runs in parallel.
Ray is imported only inside this module (the ``ray`` extra).
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .encoders.base import Encoder
from .inputs import Item

log = logging.getLogger("aimemory.distributed")


@dataclass
class IngestReport:
    """What an ingest did: memories stored, items skipped as already stored, and failures."""

    stored: int = 0
    already_stored: int = 0
    commits: int = 0
    failed: list = field(default_factory=list)  # (source, error message)


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from .errors import install_hint

        raise ImportError(f"aimemory.distributed needs Ray Data: {install_hint('ray')}") from exc
    return ray


# -- sources -----------------------------------------------------------------------------------
def _list_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _dataset(source: Any, block_items: int):
    """A folder, a list of paths/URIs, or a Ray Dataset (column ``path`` or ``bytes``)."""
    ray = _ray()
    if isinstance(source, ray.data.Dataset):
        return source
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        paths = _list_files(Path(source))
    elif isinstance(source, (str, os.PathLike)):
        paths = [os.fspath(source)]
    else:
        paths = [os.fspath(p) for p in source]
    blocks = max(1, -(-len(paths) // block_items))
    return ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)


def _read_one(path: str, data: bytes | None) -> Item:
    from .inputs import bytes_item, path_item

    if data is not None:
        return bytes_item(data, path)
    if "://" in path and not path.startswith("file://"):
        import pyarrow.fs as pafs

        fs, inner = pafs.FileSystem.from_uri(path)
        with fs.open_input_stream(inner) as f:
            return bytes_item(f.read(), path)
    return path_item(Path(path.removeprefix("file://")))


class _ReadDecode:
    """Ray stage 1: bytes -> decoded Item, dropping content the store already holds."""

    def __init__(self, known: frozenset[str]):
        self.known = known

    def __call__(self, batch: dict) -> dict:
        paths = batch.get("path")
        datas = batch.get("bytes")
        n = len(paths if paths is not None else datas)  # type: ignore[arg-type]
        packed, sources, status = [], [], []
        for i in range(n):
            source = str(paths[i]) if paths is not None else None
            try:
                item = _read_one(source or f"item{i}", datas[i] if datas is not None else None)
            except Exception as exc:  # a bad file must not stop a million good ones
                packed.append(b"")
                sources.append(source or "")
                status.append(f"error: {exc}")
                continue
            seen = item.content_hash in self.known
            packed.append(b"" if seen else pickle.dumps(item))
            sources.append(item.source or "")
            status.append("stored" if seen else "new")
        return {"packed": np.array(packed, dtype=object), "source": np.array(sources, dtype=object),
                "status": np.array(status, dtype=object)}


class _Encode:
    """Ray stage 2 (actor pool): each actor loads the encoder once and embeds whole blocks."""

    def __init__(self, model: Any, precision: str):
        from .encoders.registry import load_encoder

        self.encoder = model() if callable(model) and not isinstance(model, Encoder) else \
            load_encoder(model, precision=precision)

    def __call__(self, batch: dict) -> dict:
        new = [i for i, s in enumerate(batch["status"]) if s == "new"]
        items = [pickle.loads(batch["packed"][i]) for i in new]
        views: list = [None] * len(items)
        for modality in ("image", "audio", "text"):
            idx = [j for j, it in enumerate(items) if it.modality == modality]
            if not idx:
                continue
            if modality not in self.encoder.modalities:
                for j in idx:
                    views[j] = ValueError(f"model {self.encoder.model_id!r} cannot embed {modality}")
                continue
            for j, v in zip(idx, self.encoder.views(modality, [items[j].payload for j in idx])):
                views[j] = v
        out = list(batch["packed"])
        for j, i in enumerate(new):
            out[i] = pickle.dumps((items[j], views[j]))
        meta = (self.encoder.model_id, self.encoder.dim, sorted(self.encoder.modalities))
        return {**batch, "packed": np.array(out, dtype=object),
                "model": np.array([pickle.dumps(meta)] * len(out), dtype=object)}


def stored_hashes(store_uri: str, storage_options: Mapping[str, str] | None = None,
                  namespace: str = "default") -> frozenset[str]:
    """Content hashes already in a store (empty for a new one), read without loading a model."""
    from lancedb.expr import col, lit

    from .storage import Manifest, VectorTable
    from .storage.remote import store_root

    root = store_root(store_uri, storage_options)
    manifest = Manifest.read(root)
    if manifest is None:
        return frozenset()
    table = VectorTable(root, manifest.dim)
    try:
        rows = table.scan(["content_hash"], (col("view") == lit(0)) & (col("namespace") == lit(namespace)))
        return frozenset(h for h in rows.column("content_hash").to_pylist() if h)
    finally:
        table.close()


def ingest(source: Any, store_uri: str | os.PathLike, *, model: Any = "auto",
           storage_options: Mapping[str, str] | None = None, namespace: str = "default",
           num_workers: int = 2, block_items: int = 64, precision: str = "fp32",
           gpus_per_worker: float | None = None, cpus_per_worker: float = 0.75,
           metadata: Mapping[str, Any] | None = None,
           progress: Callable[[IngestReport], None] | None = None) -> IngestReport:
    """Embed and store every item of ``source`` in the store at ``store_uri`` with Ray.

    ``model`` is what ``MemoryStore`` takes (a name or folder), or a picklable zero-argument
    factory returning an :class:`Encoder` (each actor calls it). ``block_items`` items make one
    block, one encoder call per modality and one commit. Ray must be initialised (``ray.init``)
    or is started locally."""
    ray = _ray()
    from .store import MemoryStore
    from .write import commit_views

    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False)
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    uri = os.fspath(store_uri)
    known = stored_hashes(uri, storage_options, namespace)
    ds = _dataset(source, block_items)
    ds = ds.map_batches(_ReadDecode, fn_constructor_args=(known,), batch_size=block_items,
                        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.25)
    ds = ds.map_batches(_Encode, fn_constructor_args=(model, precision), batch_size=block_items,
                        compute=ray.data.ActorPoolStrategy(size=num_workers),
                        num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)
    report = IngestReport()
    store: MemoryStore | None = None
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            items: list[Item] = []
            views: list[list] = []
            for packed, src, status in zip(batch["packed"], batch["source"], batch["status"]):
                if status == "stored":
                    report.already_stored += 1
                elif status != "new":
                    report.failed.append((src, status.removeprefix("error: ")))
                else:
                    item, item_views = pickle.loads(packed)
                    if isinstance(item_views, Exception):
                        report.failed.append((src, str(item_views)))
                        continue
                    items.append(item)
                    views.append(item_views)
            if not items:
                continue
            if store is None:
                # the actors computed every view: the driver commits them, so it loads no model
                model_id, dim, _ = pickle.loads(batch["model"][0])
                store = MemoryStore.for_views(uri, model_id, dim, precision=precision,
                                              storage_options=storage_options)
            before = store.count(namespace)
            commit_views(store, items, views, namespace=namespace, metadata=metadata)
            new = store.count(namespace) - before
            report.stored += new
            report.already_stored += len(items) - new  # same content in two blocks of this run
            report.commits += 1
            if progress:
                progress(report)
    finally:
        if store is not None:
            store.close()
    return report


def ingest_files(paths: Iterable[str | os.PathLike], store_uri: str, **kwargs: Any) -> IngestReport:
    """:func:`ingest` for a list of paths or URIs."""
    return ingest([os.fspath(p) for p in paths], store_uri, **kwargs)
