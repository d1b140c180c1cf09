"""``MemoryStore``: remember / recall / forget, top to bottom.

inputs (sniff + decode) -> encoder (views) -> one Lance commit per batch -> catalog + FAISS index.
The Lance table is the source of truth; the catalog and the index are rebuilt or caught up from it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from . import index as index_mod
from .encoders.base import Encoder
from .errors import (
    AimemoryError,
    InputError,
    NotFoundError,
    StoreClosedError,
    StoreError,
    UnsupportedInputError,
)
from .inputs import MODALITIES, Item, to_item
from .records import Hits, Memory
from .storage import Manifest, VectorTable
from .storage.manifest import MANIFEST_NAME
from .storage.remote import remote_lease
from .update import commit_metadata, merged, plan
from .views import build_rows, encode_items, load_speech

log = logging.getLogger("aimemory")

DEFAULT_NAMESPACE = "default"
NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}$")
INDEX_DIR = "index"
SAVE_INDEX_AFTER_CHANGES = 20_000  # vectors added/removed since the last save...
SAVE_INDEX_GROWTH = 0.25  # ...and at least this fraction of the index
REFRESH_INTERVAL_S = 0.5  # how stale a reader's view of other processes' writes may be


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_RE.match(namespace) or ".." in namespace:
        raise InputError(f"namespace {namespace!r} is not valid: use 1-128 letters, digits and . _ : @ - "
                         "(no '/' and no '..')")
    return namespace


def _timestamp(value: datetime | float | str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def _metadata(metadata: Mapping[str, Any] | None) -> tuple[dict, list[str]]:
    meta = dict(metadata or {})
    tags = meta.get("tags", [])
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise InputError("metadata['tags'] must be a string or a list of strings")
    meta["tags"] = list(tags)
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as exc:
        raise InputError(f"metadata must be JSON-serialisable: {exc}") from exc
    return meta, list(tags)


class MemoryList(list):
    """What ``remember_many`` returns: the memories, plus ``skipped`` [(index, item, error)]."""

    skipped: list


class MemoryStore:
    """A multimodal memory on disk at ``path``.

    >>> store = MemoryStore("./memory", model="auto")
    >>> store.remember("the cat sleeps on the sofa", metadata={"tags": ["pets"]})
    >>> store.recall("a cat", k=5)

    Audio gets two towers besides the model: ``speech_model`` transcribes it (Whisper) and
    ``sound_model`` embeds how it sounds (wav2clip, for CLIP ViT-B/32). Each takes a checkpoint id,
    a local path, or None for off; ``"auto"`` uses one found locally, never the network.
    """

    def __init__(self, path: str | os.PathLike, model: "str | os.PathLike | Encoder" = "auto", *,
                 precision: str = "fp32", keep_content: bool = True,
                 ann_threshold: int = index_mod.ANN_THRESHOLD, speech_model: object = "auto",
                 sound_model: object = "auto", storage_options: Mapping[str, str] | None = None, index: str = "auto"):
        from .encoders.registry import load_encoder, model_id_of
        from .encoders.sound import attach_sound
        from .index_lance import choose_index, lance_index_type
        from .storage.remote import store_root

        # a folder; for s3:// URIs a local cache folder whose .remote the manifest and table use
        self.path = store_root(path, storage_options)
        self.path.mkdir(parents=True, exist_ok=True)
        self.index_choice, self.index_why = choose_index(index, self.path)
        self.lance_index_type = lance_index_type(index)
        self.keep_content = keep_content
        self.ann_threshold = ann_threshold
        self._lock = threading.RLock()
        self._closed = False
        manifest = Manifest.read(self.path)
        if manifest is not None and model == "auto":
            model = manifest.extra.get("model_source", manifest.model_id)
        if manifest is not None and (wanted := model_id_of(model, precision)) is not None:
            manifest.check_model(wanted, None, self.path)  # before loading: no download for a mismatch
        self.encoder: Encoder = load_encoder(model, precision=precision)
        if manifest is None:
            manifest = Manifest(self.encoder.model_id, self.encoder.dim, precision=precision,
                                created_with=_version(),
                                extra={"model_source": _model_source(model, self.encoder),
                                       **({"lance_index_type": self.lance_index_type}
                                          if self.lance_index_type else {})})
            manifest.write(self.path)
        manifest.check_model(self.encoder.model_id, self.encoder.dim, self.path)
        self.encoder = attach_sound(self.encoder, sound_model)
        self.manifest = manifest
        self.model_id = manifest.model_id
        self._speech_spec = speech_model
        self._speech = None
        self.table = VectorTable(self.path, manifest.dim)
        self._unsaved_changes = 0
        self._last_refresh = time.monotonic()
        self._load_catalog_and_index()

    # -- opening -------------------------------------------------------------------------------
    def _load_catalog_and_index(self) -> None:
        from .storage.catalog_file import open_catalog

        self.catalog = open_catalog(self.path, self.table, self.manifest.model_id, self.manifest.dim)[0]
        self._table_version = self.table.version
        next_vkey = max(self.manifest.next_vkey, int(self.catalog.array("vkey").max(initial=0)) + 1)
        if next_vkey != self.manifest.next_vkey:
            self.manifest.next_vkey = next_vkey
            self.manifest.write(self.path)
        self.index = self._open_index()

    def _open_index(self) -> index_mod.VectorIndex:
        """The saved index, verified and caught up with the table; rebuilt if it cannot be."""
        if self.index_choice == "lance":  # Lance's ANN index lives in the table itself
            from .index_lance import LanceIndex

            return LanceIndex.open(self)
        folder = self.path / INDEX_DIR
        table_keys = self.catalog.alive_vkeys()
        loaded = index_mod.VectorIndex.load(folder)
        if loaded is not None:
            index, sidecar = loaded
            if sidecar.dim == self.manifest.dim:
                if (sidecar.table_version == self._table_version
                        and sidecar.keys_checksum == index_mod.keys_checksum(table_keys)):
                    return index
                index_keys = index.keys()
                missing = np.setdiff1d(table_keys, index_keys)
                extra = np.setdiff1d(index_keys, table_keys)
                index.remove(extra)
                keys, vectors = self.table.vectors_for(missing)
                index.add(vectors, keys)
                log.info("index caught up with the table: +%d -%d vectors", len(missing), len(extra))
                return index
        return self._rebuild_index()

    def _rebuild_index(self) -> index_mod.VectorIndex:
        if self.index_choice == "lance":
            from .index_lance import LanceIndex

            return LanceIndex.open(self, rebuild=True)
        keys, vectors = self.table.vectors_for(None)
        alive = np.isin(keys, self.catalog.alive_vkeys())
        index = index_mod.VectorIndex.build(vectors[alive], keys[alive], ann_threshold=self.ann_threshold)
        index.dirty = True
        return index

    def rebuild_index(self) -> None:
        """Rebuild the vector index from the table (e.g. after changing ``ann_threshold``)."""
        with self._write_lock():
            self.index = self._rebuild_index()
            self._save_index()

    # -- concurrency ---------------------------------------------------------------------------
    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """One writer at a time, across threads (RLock) and processes (flock on a lock file)."""
        self._check_open()
        with self._lock, remote_lease(self.path):  # remote: an object-store lease too
            with _storage_errors("taking the write lock"):
                fh = open(self.path / ".write.lock", "a+b")
            with fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    with _storage_errors("reading other processes' writes"):
                        self._refresh_if_changed()
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _refresh_if_changed(self) -> None:
        """Another process committed since we last looked: reload the catalog and catch up."""
        from .storage.catalog_file import refresh_catalog

        self.table._table.checkout_latest()
        if self.table.version != self._table_version:
            self.manifest = Manifest.read(self.path) or self.manifest
            self.catalog, added, removed = refresh_catalog(self.catalog, self.table)
            self._table_version = self.table.version
            # a reader's open may have written an older next_vkey over a writer's reservation:
            # never hand out a key at or below one the table holds
            self.manifest.next_vkey = max(self.manifest.next_vkey,
                                          int(self.catalog.array("vkey").max(initial=0)) + 1)
            if added is None:  # rebuilt: verify the index against it as on open
                self.index = self._open_index()
            else:  # caught up: the index takes exactly the same change
                self.index.remove(removed)
                keys, vectors = self.table.vectors_for(added)
                self.index.add(vectors, keys)

    def _refresh_if_stale(self) -> None:
        """Readers notice other processes' commits, checking at most every REFRESH_INTERVAL_S."""
        now = time.monotonic()
        if now - self._last_refresh >= REFRESH_INTERVAL_S:
            self._last_refresh = now
            self._refresh_if_changed()

    def _fresh(self) -> None:
        """Let a read see other processes' commits (as recall does), at most every REFRESH_INTERVAL_S.
        A closed store has nothing to refresh: its reads answer (or refuse) as they always did."""
        if self._closed:
            return
        with self._lock, _storage_errors("reading other processes' writes"):
            self._refresh_if_stale()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this MemoryStore is closed; open a new one")

    # -- remember ------------------------------------------------------------------------------
    def remember(self, x: object, metadata: Mapping[str, Any] | None = None,
                 namespace: str = DEFAULT_NAMESPACE, *, dedup: bool = True,
                 source: str | None = None) -> Memory:
        """Store one image / audio clip / text and return its :class:`Memory` (the existing one when
        identical content is already stored in this namespace and ``dedup`` is on)."""
        return self.remember_many([x], metadata=metadata, namespace=namespace, dedup=dedup,
                                  sources=[source])[0]

    def remember_many(self, items: Iterable[object], *, batch_size: int = 32,
                      metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
                      namespace: str = DEFAULT_NAMESPACE, dedup: bool = True, errors: str = "raise",
                      sources: Sequence[str | None] | None = None, progress=None,
                      item_progress=None) -> MemoryList:
        """Store many items: batched encoding, one commit per batch.

        ``errors="raise"`` decodes every item first and writes nothing if any is bad;
        ``errors="skip"`` streams, skips bad items and lists them in ``result.skipped``.
        ``progress`` is called with the number of items done after each batch;
        ``item_progress(index, what, done, total)`` with work inside one item: ``"decoding"`` (0 of 1)
        as each item is read, ``"transcribing"`` (seconds of audio) after each 30 s speech window."""
        check_namespace(namespace)
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors= must be 'raise' or 'skip'; got {errors!r}")
        items = list(items)
        metas = self._per_item(metadata, len(items), "metadata")
        srcs = list(sources) if sources is not None else [None] * len(items)
        result = MemoryList()
        result.skipped = []
        decoded: list[tuple[int, Item]] = []
        for i, x in enumerate(items):
            if item_progress is not None:
                item_progress(i, "decoding", 0.0, 1.0)
            try:
                decoded.append((i, to_item(x, source=srcs[i])))
            except InputError as exc:
                if errors == "raise":
                    exc.index = i
                    at = f" (item #{i})" if len(items) > 1 else ""  # one item: no index to point at
                    exc.args = (f"{exc.args[0]}{at}; nothing was stored",)
                    raise
                result.skipped.append((i, x, exc))
            if errors == "skip" and len(decoded) >= batch_size:
                result.extend(self._commit_batch(decoded, metas, namespace, dedup, item_progress))
                decoded = []
                if progress:
                    progress(i + 1)
        for start in range(0, len(decoded), batch_size):
            result.extend(self._commit_batch(decoded[start:start + batch_size], metas, namespace, dedup,
                                             item_progress))
            if progress:
                progress(min(len(items), decoded[min(start + batch_size, len(decoded)) - 1][0] + 1))
        return result

    @staticmethod
    def _per_item(value, n: int, name: str) -> list:
        if value is None or isinstance(value, Mapping):
            return [value] * n
        value = list(value)
        if len(value) != n:
            raise InputError(f"{name}= has {len(value)} entries for {n} items; pass one per item, or "
                             "one mapping for all")
        return value

    def _commit_batch(self, batch: list[tuple[int, Item]], metas: list, namespace: str,
                      dedup: bool, item_progress=None) -> list[Memory]:
        if not batch:
            return []
        with self._write_lock():
            out: list[Memory | None] = [None] * len(batch)
            todo: list[tuple[int, Item, dict, list[str]]] = []
            seen: dict[str, int] = {}  # content hash -> its position in todo
            stored: list[tuple[int, str, dict]] = []  # (slot, id, metadata) of content already stored
            for slot, (i, item) in enumerate(batch):
                meta, tags = _metadata(metas[i])
                if dedup:
                    existing = self.catalog.find_duplicate(namespace, item.content_hash)
                    if existing is not None:
                        stored.append((slot, existing, meta))
                        continue
                    if item.content_hash in seen:  # the same content twice in one batch: one memory
                        first = seen[item.content_hash]
                        first_slot, first_item, first_meta, _ = todo[first]
                        both = merged(first_meta, metadata=meta)
                        todo[first] = (first_slot, first_item, both, both["tags"])
                        out[slot] = -first_slot - 1  # type: ignore[assignment]
                        continue
                    seen[item.content_hash] = len(todo)
                todo.append((slot, item, meta, tags))
            if todo:
                on_progress = None
                if item_progress is not None:  # todo position -> the caller's item index
                    def on_progress(j, what, done, total):
                        item_progress(batch[todo[j][0]][0], what, done, total)
                views = self._encode([t[1] for t in todo], on_progress)
                rows, new_ids = self._rows(todo, views, namespace)
                with _storage_errors("remember"):
                    # reserve the keys first: a failure after this wastes keys, never reuses them,
                    # and a failure here leaves the table untouched
                    self.manifest.next_vkey = int(rows.column("vkey")[-1].as_py()) + 1
                    self.manifest.write(self.path)
                    self.table.add(rows)
                self._table_version = self.table.version
                self.catalog.append_arrow(rows.select(self.table_catalog_columns()))
                vectors = rows.column("vector").combine_chunks().flatten().to_numpy()
                self.index.add(vectors.reshape(-1, self.manifest.dim), rows.column("vkey").to_numpy())
                self._note_changes(rows.num_rows)
                for (slot, item, *_), mid in zip(todo, new_ids):
                    out[slot] = self._memory(mid, namespace)
                    out[slot].transcript = item.transcript
                    out[slot].status = "new"
                    if item.modality == "text" and self.keep_content:  # known: no read to show it
                        out[slot]._content, out[slot]._loader = item.payload, None
            if stored:  # content already stored: merge the new tags and metadata into it
                changes = plan(self.catalog, [(mid, {"metadata": meta}) for _, mid, meta in stored], namespace)
                commit_metadata(self.table, self.catalog, changes)
                self._table_version = self.table.version
                for slot, mid, _ in stored:
                    out[slot] = self._memory(mid, namespace)
                    out[slot].status = "updated" if mid in changes else "existing"
            for slot, m in enumerate(out):
                if isinstance(m, int):
                    out[slot] = out[-m - 1]
            return out  # type: ignore[return-value]

    @staticmethod
    def table_catalog_columns() -> list[str]:
        from .records import CATALOG_COLUMNS

        return CATALOG_COLUMNS

    def _encode(self, items: list[Item], on_progress=None) -> list[list]:
        """Items -> per item, its views (see :func:`aimemory.views.encode_items`)."""
        return encode_items(self.encoder, self.speech, items, self.model_id, on_progress)

    def _rows(self, todo, views, namespace: str) -> tuple[pa.Table, list[str]]:
        return build_rows(todo, views, namespace, dim=self.manifest.dim,
                          first_vkey=self.manifest.next_vkey, keep_content=self.keep_content,
                          model_id=self.model_id)

    @property
    def speech(self):
        """The speech recognizer (loaded on first use), or None when transcripts are off."""
        if self._speech is None and self._speech_spec is not None:
            self._speech = load_speech(self._speech_spec)
            if self._speech is None:
                self._speech_spec = None  # "auto" found nothing; do not look again
        return self._speech

    def _note_changes(self, n: int) -> None:
        self._unsaved_changes += n
        # saving writes the whole index, so during a long ingest save at a growing interval
        # (linear total cost); a crash in between only costs a catch-up from the table on open
        if self._unsaved_changes >= max(SAVE_INDEX_AFTER_CHANGES, SAVE_INDEX_GROWTH * self.index.ntotal):
            try:
                self._save_index()
            except OSError as exc:  # the write is committed; the index is a cache, saved later
                self._unsaved_changes = 0
                log.warning("saving the vector index of %s failed (%s); it stays in memory and is "
                            "caught up from the table on the next open", self.path, exc)

    def _save_index(self) -> None:
        self.index.save(self.path / INDEX_DIR, self.table.version)
        self._unsaved_changes = 0
        self._save_catalog()  # when due: a few unsaved rows cost the next open only a short catch-up

    def _save_catalog(self, force: bool = False) -> None:
        from .storage.catalog_file import save_if_due

        save_if_due(self.catalog, self.path, self.table, self.manifest.model_id, self.manifest.dim, force)

    # -- read ----------------------------------------------------------------------------------
    def _memory(self, memory_id: str, namespace: str | None, load_transcript: bool = False) -> Memory:
        positions = self.catalog.positions(memory_id, namespace)
        if not positions:
            where = f" in namespace {namespace!r}" if namespace is not None else ""
            raise NotFoundError(f"no memory {memory_id!r}{where}")
        p = positions[0]
        c = self.catalog
        vkey = int(c.get(p, "vkey"))
        modality = c.get(p, "modality")
        transcript = c.get(p, "text") if modality == "audio" and load_transcript else None
        return Memory(
            id=memory_id, modality=modality, namespace=c.get(p, "namespace"),
            created_at=datetime.fromtimestamp(c.get(p, "created"), tz=timezone.utc),
            source=c.get(p, "source"), metadata=dict(c.metadata(p)), mime=c.get(p, "mime"),
            transcript=transcript, _loader=lambda: self._load_content(vkey, modality))

    def _load_content(self, vkey: int, modality: str):
        self._check_open()
        if modality == "text":  # texts are in the catalog
            positions = self.catalog.position_of_vkeys(np.asarray([vkey]))
            p = int(positions[0])
            if p < self.catalog.n_rows and self.catalog.get(p, "vkey") == vkey and self.catalog.alive[p]:
                return self.catalog.get(p, "text")
        row = self.table.primary_rows([vkey], ["content", "text"]).to_pylist()
        if not row:
            return None
        return row[0]["text"] if modality == "text" else row[0]["content"]

    def get(self, memory_id: str, namespace: str = DEFAULT_NAMESPACE) -> Memory:
        """The memory with this id in this namespace, or :class:`NotFoundError`."""
        self._check_open()
        if not isinstance(memory_id, str):
            raise NotFoundError(f"memory ids are strings; got {type(memory_id).__name__}")
        self._fresh()
        with self._lock:
            return self._memory(memory_id, check_namespace(namespace), load_transcript=True)

    def __contains__(self, memory_id: object) -> bool:
        return isinstance(memory_id, str) and bool(self.catalog.live_positions(memory_id))

    def __len__(self) -> int:
        self._fresh()
        return len(self.catalog)

    def count(self, namespace: str | None = None) -> int:
        """Memories in one namespace (all namespaces when None)."""
        self._fresh()
        with self._lock:  # a writer thread swaps the catalog's arrays under this lock
            return self.catalog.count(namespace)

    # -- forget --------------------------------------------------------------------------------
    def forget(self, memory_id: str | Iterable[str], namespace: str = DEFAULT_NAMESPACE) -> int:
        """Delete memories (table and index) by id; returns how many were deleted. Unknown ids
        raise :class:`NotFoundError` and nothing is deleted."""
        ids = [memory_id] if isinstance(memory_id, str) else list(memory_id)
        check_namespace(namespace)
        with self._write_lock():
            for mid in ids:
                if not isinstance(mid, str) or not self.catalog.positions(mid, namespace):
                    raise NotFoundError(f"no memory {mid!r} in namespace {namespace!r}; nothing was deleted")
            vkeys = [int(self.catalog.get(p, "vkey")) for mid in ids for p in self.catalog.positions(mid, namespace)]
            with _storage_errors("forget"):
                self.table.delete_vkeys(vkeys)
            self._table_version = self.table.version
            self.catalog.remove_ids(ids)
            self.index.remove(np.asarray(vkeys, dtype=np.int64))
            self._note_changes(len(vkeys))
        return len(ids)

    # -- update --------------------------------------------------------------------------------
    def update(self, memory_id: str, *, metadata: Mapping[str, Any] | None = None,
               tags: str | Iterable[str] | None = None, remove_tags: str | Iterable[str] | None = None,
               replace: bool = False, namespace: str = DEFAULT_NAMESPACE) -> Memory:
        """Change a memory's tags and metadata; its content and vectors stay as they are.

        ``metadata`` is merged key by key (new values win), ``tags`` are added, ``remove_tags``
        removed; ``replace=True`` sets the metadata and tags to exactly those given. One commit (none
        when nothing changes: ``status`` says ``"updated"`` or ``"existing"``). An id of another
        namespace is :class:`NotFoundError`."""
        return self.update_many([memory_id], metadata=metadata, tags=tags, remove_tags=remove_tags,
                                replace=replace, namespace=namespace)[0]

    def update_many(self, memory_ids: Iterable[str], *, metadata: Mapping[str, Any] | None = None,
                    tags: str | Iterable[str] | None = None, remove_tags: str | Iterable[str] | None = None,
                    replace: bool = False, namespace: str = DEFAULT_NAMESPACE) -> list[Memory]:
        """:meth:`update` for many memories, in one commit; an unknown id changes nothing."""
        check_namespace(namespace)
        ids = [memory_ids] if isinstance(memory_ids, str) else list(memory_ids)
        change = {"metadata": metadata, "tags": tags, "remove_tags": remove_tags, "replace": replace}
        merged({}, **change)  # bad arguments fail before the lock is taken
        with self._write_lock():
            changes = plan(self.catalog, [(mid, change) for mid in ids], namespace)
            commit_metadata(self.table, self.catalog, changes)
            self._table_version = self.table.version
            out = []
            for mid in ids:
                memory = self._memory(mid, namespace, load_transcript=True)
                memory.status = "updated" if mid in changes else "existing"
                out.append(memory)
            return out

    # -- recall --------------------------------------------------------------------------------
    def recall(self, query: object, k: int = 5, modality: str | Sequence[str] | None = None,
               where: Mapping[str, Any] | None = None, namespace: str = DEFAULT_NAMESPACE, *,
               since: datetime | float | str | None = None, until: datetime | float | str | None = None,
               hybrid: bool = False) -> Hits:
        """The ``k`` memories closest to ``query`` (text, image, audio, a file...), best first.

        Each hit's ``score`` is the cosine of the query against the memory's best view. With
        ``hybrid=True`` (text queries) the vector ranking is fused with a BM25 keyword ranking:
        results are ordered by that fusion, given as ``hit.fusion``, and ``score`` stays the cosine
        (computed for hits that only the keyword side found)."""
        from .recall import run_recall

        self._check_open()
        check_namespace(namespace)
        if not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a positive int; got {k!r}")
        modalities = None
        if modality is not None:
            modalities = [modality] if isinstance(modality, str) else list(modality)
            bad = [m for m in modalities if m not in MODALITIES]
            if bad:
                raise InputError(f"modality={bad[0]!r} is not one of {MODALITIES}")
        item = to_item(query, purpose="recall")
        with self._lock:
            with _storage_errors("reading other processes' writes"):
                self._refresh_if_stale()
            return run_recall(self, item, k, namespace, modalities, where,
                              _timestamp(since), _timestamp(until), hybrid)

    def embed(self, x: object) -> np.ndarray:
        """The query vector of ``x`` in this store's space: (dim,) float32, unit norm."""
        item = to_item(x)
        return self.encoder.query_vectors(item.modality, [item.payload])[0]

    def classify(self, x: object, labels: Sequence[str], templates: Sequence[str] | None = None
                 ) -> dict[str, float]:
        """Zero-shot: probabilities of ``labels`` for an image (or any item) via the text tower."""
        from .encoders.zero_shot import zero_shot

        item = to_item(x, purpose="recall")
        if item.modality != "image":
            raise UnsupportedInputError(f"classify() takes an image; got {item.modality} "
                                        f"({item.source or type(x).__name__}): pass an image file or PIL image")
        return zero_shot(self.encoder, [item.payload], list(labels), templates=templates)[0]

    # -- maintenance ---------------------------------------------------------------------------
    def compact(self) -> None:
        """Merge table fragments and drop old versions now (also automatic past thresholds)."""
        with self._write_lock(), _storage_errors("compact"):
            self.table.compact()
            self._table_version = self.table.version
            self._save_index()

    def stats(self) -> dict[str, Any]:
        self._fresh()
        with self._lock:  # the catalog's arrays must not change mid-read
            return self._stats()

    def _stats(self) -> dict[str, Any]:
        views = self.catalog.value_counts("kind")
        return {
            "path": getattr(self.path, "uri", None) or str(self.path), "model": self.model_id, "dim": self.manifest.dim,
            "precision": self.manifest.precision, "memories": len(self),
            "sound_model": getattr(getattr(self.encoder, "tower", None), "model_id", None),
            "vectors": int(self.catalog.alive.sum()), "namespaces": self.catalog.namespaces(),
            "views": views,
            "index": {"kind": self.index.kind, "vectors": self.index.ntotal, "nprobe": self.index.nprobe,
                      "why": self.index_why},
            "table_version": self.table.version,
        }

    def close(self) -> None:
        """Save the index and release the store; safe to call twice."""
        if self._closed:
            return
        with self._lock:
            try:
                if self.index.dirty:
                    with _storage_errors("saving the index on close"):
                        self._save_index()
                else:
                    self._save_catalog()
            finally:
                self.table.close()
                self._closed = True

    def __enter__(self) -> "MemoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} memories"
        return f"MemoryStore({str(self.path)!r}, model={self.model_id!r}, {state})"

    # -- tables (see aimemory.export) ----------------------------------------------------------
    def to_arrow(self, namespace: str | None = None, vectors: bool = False, *, content: bool = False) -> pa.Table:
        """One row per memory (all namespaces when None); vectors/content opt-in."""
        from .export import to_arrow

        return to_arrow(self, namespace, vectors, content)

    def to_pandas(self, namespace: str | None = None, vectors: bool = False, *, content: bool = False):
        """:meth:`to_arrow` as a pandas DataFrame (metadata parsed into dicts)."""
        from .export import to_pandas

        return to_pandas(self, namespace, vectors, content)


@contextmanager
def _storage_errors(what: str) -> Iterator[None]:
    """Disk full, out of file handles, Lance IO errors -> a typed StoreError saying so."""
    from .storage.table import storage_error

    try:
        yield
    except AimemoryError:
        raise
    except BaseException as exc:
        if not (isinstance(exc, (OSError, RuntimeError)) or type(exc).__name__ == "PanicException"):
            raise
        err = storage_error(exc, f"{what} failed")
        if type(err) is not StoreError:  # a failed write is no proof of damage
            err = StoreError(f"{what} failed ({exc}); nothing was changed")
        raise err from exc


def _version() -> str:
    from . import __version__

    return __version__


def _model_source(model, encoder: Encoder) -> str:
    if isinstance(model, Encoder):
        return encoder.model_id
    return os.fspath(model) if model != "auto" else encoder.model_id


def is_store(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST_NAME).exists()
