"""``MemoryStore``: the public facade (remember / recall / get / update / forget / export).

remember: inputs (sniff + decode) -> encoder views (:mod:`.views`) -> :func:`aimemory.write.commit_views`
(one Lance commit per batch -> catalog + vector index, :mod:`.index`); recall: :mod:`.recall`. The
Lance table is the source of truth; the catalog and the index are rebuilt or caught up from it.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

from .calibration import check_relevance
from .device import CPU, one_torch_thread
from .encode_batch import EncodeBatcher, parallel_encodes
from .encoders.base import Encoder, View
from .errors import InputError, ModelNotAvailableError, NotFoundError, StoreClosedError, UnsupportedInputError
from .index import ANN_THRESHOLD
from .inputs import Item, to_item
from .lookup import memory_at, recent_memories
from .migrate import MigrationReport, Progress, is_migrated_store
from .namespaces import NAMESPACE_RE, check_namespace  # noqa: F401  (public here too)
from .records import Hits, Memory
from .remember import remember_items
from .semantics import ItemOptions, item_options, purge_expired
from .storage import Manifest
from .storage.manifest import MANIFEST_NAME
from .store_state import REFRESH_INTERVAL_S, StateAttributes, StoreState, model_source  # noqa: F401  (public here too)
from .update import expiry_change, forget_memories, update_memories
from .views import encode_items, load_speech
from .write import per_item, storage_errors
from .write_ahead import fold as fold_segment

DEFAULT_NAMESPACE = "default"
#: text-only encodes of up to this many items run on one torch thread (see device.one_torch_thread);
#: at load 1.5 on 2 cores one thread was faster at every size up to 8
SMALL_TEXT_ENCODE = 8


class MemoryList(list):
    """What ``remember_many`` returns: the memories, plus ``skipped`` [(index, item, error)]."""

    skipped: list


def _load_ocr(spec: object) -> tuple[object | None, str]:
    from .encoders.ocr import load_ocr

    return load_ocr(spec)


class MemoryStore(StateAttributes):
    """A multimodal memory on disk at ``path``.

    >>> store = MemoryStore("./memory", model="auto")
    >>> store.remember("the cat sleeps on the sofa", metadata={"tags": ["pets"]})
    >>> store.recall("a cat", k=5)

    Audio gets two towers besides the model: ``speech_model`` transcribes it (Whisper) and
    ``sound_model`` embeds how it sounds (wav2clip, for CLIP ViT-B/32). Each takes a checkpoint id,
    a local path, or None for off; ``"auto"`` uses one found locally, never the network.

    ``device``: where every tower runs, ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``,
    ``"cuda"``, ``"cuda:1"`` or ``"mps"``; accelerators compute in fp16, and vectors always come
    back float32, so a store's vectors recall each other whatever device made them.

    ``ocr`` reads text in images (screenshots, receipts, signs) so it is searchable by words and by
    meaning: ``"auto"`` (on when the engine is installed: the ``ocr`` extra),
    False (off), True (on, or an error saying how to install it), or an engine with ``read(image)``.
    ``generation``: in a migrated store, the set of vectors to open instead of the active one, as
    ``active.json`` names it (``"."`` or ``"generations/<model>"``; :mod:`aimemory.migrate`).
    """

    def __init__(self, path: str | os.PathLike, model: "str | os.PathLike | Encoder" = "auto", *,
                 precision: str = "fp32", keep_content: bool = True,
                 ann_threshold: int = ANN_THRESHOLD, speech_model: object = "auto",
                 sound_model: object = "auto", storage_options: Mapping[str, str] | None = None, index: str = "auto",
                 device: str = "auto", ocr: object = "auto", write_ahead: bool = True,
                 generation: str | None = None):
        from .device import resolve_placement
        from .encoders.registry import load_encoder
        from .encoders.sound import attach_sound

        self._model_arg = model  # what reopened() opens with: "auto" follows a migration to another model
        # what a migration's switch reopens with
        self._open_args = dict(path=path, precision=precision, keep_content=keep_content,
                               ann_threshold=ann_threshold, speech_model=speech_model, sound_model=sound_model,
                               storage_options=storage_options, index=index, device=device, ocr=ocr,
                               write_ahead=write_ahead)
        self.write_ahead = write_ahead  # small writes go through the segment (see aimemory.write_ahead)
        self.batch_encodes = True  # small text writes share encoder calls (see aimemory.encode_batch)
        self.encode_batcher: EncodeBatcher | None = None  # shares small text writes' encodes, once the encoder loads
        # generation: a migrated store's other set of vectors, as active.json names it (a rollback's)
        self.state = StoreState(path, storage_options, index, ann_threshold, generation)
        self.keep_content = keep_content
        model, manifest = self.state.model_to_load(model, precision)
        # before loading: a missing GPU fails fast. A ready encoder in a process that never imported
        # torch has no network to place: asking torch about GPUs would import it (seconds) for nothing
        self.placement = CPU if isinstance(model, Encoder) and "torch" not in sys.modules and device == "auto" \
            else resolve_placement(device)
        self.state.search_device = self.placement.device
        encoder = load_encoder(model, precision=precision)
        manifest = self.state.own_manifest(manifest, encoder.model_id, encoder.dim, precision,
                                           model_source(model, encoder))
        self.encoder: Encoder = attach_sound(encoder, sound_model).to(self.placement)
        self._speech_spec = speech_model
        # "auto" is settled on the first image (its check imports the engine's metadata); an explicit
        # choice now, so ocr=True without the engine fails here
        self._ocr: tuple[object | None, str] | None = None if isinstance(ocr, str) and ocr == "auto" \
            else _load_ocr(ocr)
        self._ocr_spec = ocr
        self.encode_batcher = EncodeBatcher(self.encode, max_parallel=parallel_encodes(self.encoder))
        self.model_id, self._speech = manifest.model_id, None
        self.state.open_tables(manifest)

    @classmethod
    def for_views(cls, path: str | os.PathLike, model_id: str, dim: int, *, precision: str = "fp32",
                  storage_options: Mapping[str, str] | None = None, generation: str | None = None
                  ) -> "MemoryStore":
        """A store opened without a model, to commit views computed elsewhere with
        :func:`aimemory.write.commit_views` (the Ray ingest's driver). A new store's manifest names
        ``model_id``, ``dim`` and the ``precision`` the views were computed in; an existing store
        must have been made by that model. remember, recall, embed and classify need a model and refuse."""
        store = cls.__new__(cls)
        store.write_ahead = True
        store.batch_encodes, store.encode_batcher = False, None  # no model to encode with
        store.state = StoreState(path, storage_options, "auto", ANN_THRESHOLD, generation)
        store.keep_content = True
        manifest = store.state.own_manifest(Manifest.read(store.path), model_id, dim, precision, model_id)
        store.encoder = None  # type: ignore[assignment]
        store.placement = CPU
        store._ocr, store._ocr_spec = (None, "off: a store opened without a model reads no images"), False
        store._speech_spec = None
        store.model_id, store._speech = manifest.model_id, None
        store.state.open_tables(manifest)
        return store

    @property
    def ocr(self) -> object | None:
        """The engine that reads text in images, or None (``ocr_status`` says why)."""
        return self._ocr_choice()[0]

    @property
    def ocr_status(self) -> str:
        return self._ocr_choice()[1]

    def _ocr_choice(self) -> tuple[object | None, str]:
        if self._ocr is None:
            self._ocr = _load_ocr(self._ocr_spec)  # the engine loads its networks on the first text seen
        return self._ocr

    # -- the index and the catalog (see aimemory.store_state) ----------------------------------
    def rebuild_index(self) -> None:
        """Rebuild the vector index from the table (e.g. after changing ``ann_threshold``)."""
        with self.writing():
            self.index = self.state.open_index(rebuild=True)
            self.save_index()

    def save_index(self) -> None:
        """Write the vector index beside the table (it is a cache: rebuilt or caught up on open)."""
        self.state.save_index()

    def save_catalog(self, force: bool = False) -> None:
        """Save the catalog beside the table when enough changed since (``force``: when anything did)."""
        self.state.save_catalog(force)

    # -- concurrency ---------------------------------------------------------------------------
    def writing(self, fold: bool = True) -> AbstractContextManager[None]:
        """The write lock (see :class:`aimemory.write.WriteLock`): one writer at a time across
        threads, processes and machines; other processes' commits are read on taking it, and the
        write-ahead segment is folded into the table first (``fold=False``: the small-write path)."""
        self.check_open()
        return self.state.writes.hold(self._fold_segment if fold else None)

    def _fold_segment(self) -> None:
        fold_segment(self)

    def flush(self) -> None:
        """Fold the write-ahead segment into the table now (reads never need it: they see small
        writes at once; exports and migrations call it)."""
        with self.writing():
            pass

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the catalog still for a read, after catching up with other processes' commits (at
        most every REFRESH_INTERVAL_S). A closed store reads what it held."""
        self.state.fresh()
        with self.state.lock:
            yield

    def refresh(self) -> None:
        """Catch up with other processes' commits now (reads do it at most every REFRESH_INTERVAL_S)."""
        self.check_open()
        self.state.refresh()

    def check_open(self) -> None:
        """:class:`StoreClosedError` once the store is closed."""
        if self.state.closed:
            raise StoreClosedError("this MemoryStore is closed; open a new one")

    def _model(self) -> Encoder:
        if self.encoder is None:
            raise ModelNotAvailableError("this MemoryStore was opened without a model (for_views) to "
                                         "commit precomputed views; open it with its model to remember "
                                         "or recall")
        return self.encoder

    # -- remember ------------------------------------------------------------------------------
    def remember(self, x: object, metadata: Mapping[str, Any] | None = None,
                 namespace: str = DEFAULT_NAMESPACE, *, dedup: bool = True,
                 source: str | None = None, id: str | None = None,
                 expires_at: datetime | float | str | None = None, ttl: float | None = None,
                 created_by: str | None = None, derived_from: Sequence[str] | None = None,
                 created_at: datetime | float | str | None = None, near_duplicate: float | None = None,
                 on_near_duplicate: str = "report") -> Memory:
        """Store one image / audio clip / text and return its :class:`Memory` (the existing one when
        identical content is already stored in this namespace and ``dedup`` is on).

        See :mod:`aimemory.semantics`: ``id`` names the memory (an id the namespace already holds is
        replaced in one atomic commit, ``status == "replaced"``); ``expires_at`` / ``ttl`` (seconds)
        make it expire; ``created_by`` / ``derived_from`` record provenance; ``created_at`` backdates
        it; ``near_duplicate`` (a cosine) reports, or with ``on_near_duplicate="merge"`` merges into,
        a near duplicate already stored."""
        return self.remember_many([x], metadata=metadata, namespace=namespace, dedup=dedup,
                                  sources=[source], ids=None if id is None else [id], expires_at=expires_at,
                                  ttl=ttl, created_by=created_by,
                                  derived_from=None if derived_from is None else [derived_from],
                                  created_at=created_at, near_duplicate=near_duplicate,
                                  on_near_duplicate=on_near_duplicate)[0]

    def remember_many(self, items: Iterable[object], *, batch_size: int = 32,
                      metadata: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
                      namespace: str = DEFAULT_NAMESPACE, dedup: bool = True, errors: str = "raise",
                      sources: Sequence[str | None] | None = None, progress=None,
                      item_progress=None, ids: Sequence[str | None] | None = None,
                      expires_at=None, ttl=None, created_by=None, derived_from=None, created_at=None,
                      near_duplicate: float | None = None, on_near_duplicate: str = "report",
                      options: Sequence[ItemOptions] | None = None) -> MemoryList:
        """Store many items: batched encoding, one commit per batch.

        ``errors="raise"`` decodes every item first and writes nothing if any is bad;
        ``errors="skip"`` streams, skips bad items and lists them in ``result.skipped``.
        ``progress`` is called with the number of items done after each batch;
        ``item_progress(index, what, done, total)`` with work inside one item: ``"decoding"`` (0 of 1)
        as each item is read, ``"decoding video"`` (seconds of video) while a video streams,
        ``"transcribing"`` (seconds of audio) after each 30 s speech window; the decoding calls come
        from the threads that decode ahead (:mod:`aimemory.prefetch`).
        ``ids``, ``expires_at``, ``ttl``, ``created_by``, ``derived_from``, ``created_at``: one value for
        all items or a list of one per item (``ids``: always a list; None entries are generated);
        see :meth:`remember`. ``options`` (advanced, used by imports): one
        :class:`~aimemory.semantics.ItemOptions` per item instead of those keywords."""
        check_namespace(namespace)
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors= must be 'raise' or 'skip'; got {errors!r}")
        items = list(items)
        if options is None:
            options = item_options(len(items), ids=ids, expires_at=expires_at, ttl=ttl, created_by=created_by,
                                   derived_from=derived_from, created_at=created_at,
                                   near_duplicate=near_duplicate, on_near_duplicate=on_near_duplicate)
        elif len(options) != len(items):
            raise InputError(f"options= has {len(options)} entries for {len(items)} items")
        result = MemoryList()
        result.skipped = remember_items(
            self, items, result, metas=per_item(metadata, len(items), "metadata"), options=options,
            namespace=namespace, dedup=dedup, errors=errors, batch_size=batch_size,
            sources=list(sources) if sources is not None else [None] * len(items),
            progress=progress, item_progress=item_progress)
        return result

    def encode(self, items: list[Item], on_progress=None) -> list[list[View]]:
        """Items -> per item, its views (see :func:`aimemory.views.encode_items`)."""
        heard = any(item.modality in ("audio", "video") for item in items)  # texts never load Whisper
        seen = any(item.modality == "image" for item in items)  # nor look for the OCR engine
        few_texts = len(items) <= SMALL_TEXT_ENCODE and all(item.modality == "text" for item in items)
        with one_torch_thread(few_texts):  # two such calls may run at once (encode_batch): one core each
            return encode_items(self._model(), self.speech if heard else None, items, self.model_id, on_progress,
                                ocr=self.ocr if seen else None)

    @property
    def speech(self):
        """The speech recognizer (loaded on first use), or None when transcripts are off."""
        if self._speech is None and self._speech_spec is not None:
            self._speech = load_speech(self._speech_spec)
            if self._speech is not None and hasattr(self._speech, "to"):
                self._speech = self._speech.to(self.placement)
            if self._speech is None:
                self._speech_spec = None  # "auto" found nothing; do not look again
        return self._speech

    # -- read ----------------------------------------------------------------------------------
    def memory(self, memory_id: str, namespace: str | None, load_transcript: bool = False) -> Memory:
        """The :class:`Memory` of an id, from the catalog (content loads on first use); for callers
        already inside :meth:`reading` or :meth:`writing` (:meth:`get` takes the lock itself)."""
        return memory_at(self, memory_id, namespace, load_transcript)

    def get(self, memory_id: str, namespace: str = DEFAULT_NAMESPACE) -> Memory:
        """The memory with this id in this namespace, or :class:`NotFoundError`."""
        self.check_open()
        if not isinstance(memory_id, str):
            raise NotFoundError(f"memory ids are strings; got {type(memory_id).__name__}")
        self.state.fresh()
        with self.state.lock:
            return self.memory(memory_id, check_namespace(namespace), load_transcript=True)

    def recent(self, n: int = 10, namespace: str = DEFAULT_NAMESPACE) -> list[Memory]:
        """The ``n`` newest memories in ``namespace``, newest first, texts and transcripts attached."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InputError(f"n must be a whole number of memories, 0 or more; got {n!r}")
        return recent_memories(self, check_namespace(namespace), n)

    def __contains__(self, memory_id: object) -> bool:
        return isinstance(memory_id, str) and bool(self.catalog.positions(memory_id, None))

    def __len__(self) -> int:
        self.state.fresh()
        return len(self.catalog)

    def count(self, namespace: str | None = None) -> int:
        """Memories in one namespace (all namespaces when None)."""
        self.state.fresh()
        with self.state.lock:  # a writer thread swaps the catalog's arrays under this lock
            return self.catalog.count(namespace)

    # -- forget and update -----------------------------------------------------------------------
    def forget(self, memory_id: str | Iterable[str], namespace: str = DEFAULT_NAMESPACE) -> int:
        """Delete memories (table and index) by id; returns how many were deleted. Unknown ids
        raise :class:`NotFoundError` and nothing is deleted."""
        ids = [memory_id] if isinstance(memory_id, str) else list(dict.fromkeys(memory_id))  # each id once
        return forget_memories(self, ids, check_namespace(namespace))

    def update(self, memory_id: str, *, metadata: Mapping[str, Any] | None = None,
               tags: str | Iterable[str] | None = None, remove_tags: str | Iterable[str] | None = None,
               replace: bool = False, expires_at: datetime | float | str | None = None, ttl: float | None = None,
               namespace: str = DEFAULT_NAMESPACE) -> Memory:
        """Change a memory's tags, metadata and expiry; its content and vectors stay as they are.

        ``metadata`` is merged key by key (new values win), ``tags`` are added, ``remove_tags``
        removed; ``replace=True`` sets the metadata and tags to exactly those given. ``expires_at``
        (a time, or ``"never"``) or ``ttl`` (seconds from now) sets when it expires. One commit (none
        when nothing changes: ``status`` says ``"updated"`` or ``"existing"``). An id of another
        namespace is :class:`NotFoundError`."""
        return self.update_many([memory_id], metadata=metadata, tags=tags, remove_tags=remove_tags,
                                replace=replace, expires_at=expires_at, ttl=ttl, namespace=namespace)[0]

    def update_many(self, memory_ids: Iterable[str], *, metadata: Mapping[str, Any] | None = None,
                    tags: str | Iterable[str] | None = None, remove_tags: str | Iterable[str] | None = None,
                    replace: bool = False, expires_at: datetime | float | str | None = None,
                    ttl: float | None = None, namespace: str = DEFAULT_NAMESPACE) -> list[Memory]:
        """:meth:`update` for many memories, in one commit; an unknown id changes nothing."""
        ids = [memory_ids] if isinstance(memory_ids, str) else list(memory_ids)
        change: dict[str, Any] = {"metadata": metadata, "tags": tags, "remove_tags": remove_tags, "replace": replace}
        return update_memories(self, ids, change, check_namespace(namespace), expiry_change(expires_at, ttl))

    # -- recall --------------------------------------------------------------------------------
    def recall(self, query: object, k: int = 5, modality: str | Sequence[str] | None = None,
               where: Mapping[str, Any] | None = None, namespace: str = DEFAULT_NAMESPACE, *,
               since: datetime | float | str | None = None, until: datetime | float | str | None = None,
               hybrid: bool = False, half_life: float | None = None,
               min_relevance: float | None = None) -> Hits:
        """The ``k`` memories closest to ``query`` (text, image, audio, a file...), best first.

        Each hit's ``score`` is the cosine of the query against the memory's best view and its
        ``relevance`` (0-1) that cosine calibrated for the pair of query modality and view kind, one
        scale for all; ``min_relevance`` drops hits below it. A model with a fitted calibration orders
        by relevance (see :mod:`aimemory.ranking`), one without by the (standardised) cosine. With
        ``hybrid=True`` (text queries) the vector ranking is fused with a BM25 keyword ranking:
        results are ordered by that fusion, given as ``hit.fusion``, and ``score`` stays the cosine
        (computed for hits that only the keyword side found). ``half_life`` (seconds) weights by
        recency: score (and fusion, and the relevance that orders) x 0.5 ** (age / half_life), given as
        ``hit.recency``; expired
        memories are never returned (see :mod:`aimemory.semantics`). ``where={key: value or
        [values]}`` matches a memory's metadata and ``tags``; the keys ``source``, ``modality``,
        ``mime`` and ``id`` match the memory's own fields instead (metadata under those names cannot
        be filtered on)."""
        from .recall import run_recall
        from .recall_args import check_recall_args, timestamp

        self.check_open()
        self._model()
        check_namespace(namespace)
        modalities = check_recall_args(k, modality)
        since_s, until_s = timestamp(since, "since"), timestamp(until, "until")  # checked before the encode
        item = to_item(query, purpose="recall")
        if hybrid and self.segment is not None and self.segment.records:
            self.flush()  # the keyword side searches the table's full-text index
        with self.state.lock:
            self.state.refresh_if_stale()
            return run_recall(self, item, k, namespace, modalities, where,
                              since_s, until_s, hybrid, half_life=half_life,
                              min_relevance=check_relevance(min_relevance))

    def embed(self, x: object) -> np.ndarray:
        """The query vector of ``x`` in this store's space: (dim,) float32, unit norm."""
        item = to_item(x)
        return self._model().query_vectors(item.modality, [item.payload])[0]

    def classify(self, x: object, labels: Sequence[str], templates: Sequence[str] | None = None
                 ) -> dict[str, float]:
        """Zero-shot: probabilities of ``labels`` for an image (or any item) via the text tower."""
        from .encoders.zero_shot import zero_shot

        item = to_item(x, purpose="recall")
        if item.modality != "image":
            raise UnsupportedInputError(f"classify() takes an image; got {item.modality} "
                                        f"({item.source or type(x).__name__}): pass an image file or PIL image")
        return zero_shot(self._model(), [item.payload], list(labels), templates=templates)[0]

    # -- maintenance ---------------------------------------------------------------------------
    def migrate(self, model: "str | os.PathLike | Encoder", *, batch_size: int = 32,
                progress: Progress | None = None, allow_loss: bool = False) -> MigrationReport:
        """Re-embed every memory with ``model`` into a new generation beside the current one and
        switch to it (see :mod:`aimemory.migrate`): resumable after an interruption, and recall keeps
        answering from the current model until the switch. Afterwards this store uses ``model``;
        other processes that have the store open must reopen it to write. ``progress(done, total)``
        is called after each batch."""
        from .migrate import migrate

        self.flush()  # every memory in the table before it is read
        report = migrate(self, model, batch_size=batch_size, progress=progress, allow_loss=allow_loss)
        if report.switched:
            self.close()
            args = dict(self._open_args)
            self.__init__(args.pop("path"), model=model, **args)  # type: ignore[misc]
        return report

    def switched(self) -> bool:
        """Whether a migration or rollback switched the store's folder to another generation since
        this store opened (it then refuses writes: :meth:`reopened` opens the new one)."""
        return self.state.switched()

    def reopened(self) -> "MemoryStore":
        """A new store on the folder's active generation, opened as this one was: with ``model="auto"``
        it takes the model that generation was made by (a long-lived server follows a migration so,
        see :mod:`aimemory.following`); with a given model, one the generation was not made by is a
        :class:`ModelMismatchError`. This store stays open."""
        args: dict[str, Any] = dict(self._open_args)
        return MemoryStore(args.pop("path"), model=self._model_arg, **args)

    def compact(self) -> None:
        """Delete expired memories, merge table fragments and drop old versions now (the merging
        is also automatic past thresholds; expired memories are only deleted here)."""
        with self.writing(), storage_errors("compact"):
            purge_expired(self.table, self.catalog, self.index)
            self.table.compact()
            self.table_version = self.table.version
            self.save_index()

    def stats(self) -> dict[str, Any]:
        """Model, sizes, namespaces, view kinds and the index (see :func:`aimemory.export.stats`)."""
        from .export import stats

        self.check_open()  # it reads the table, which a close released
        with self.reading():  # the catalog's arrays must not change mid-read
            return stats(self)

    def close(self) -> None:
        """Save the index and release the store; safe to call twice."""
        self.state.close(fold=self.flush)

    def __enter__(self) -> "MemoryStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.state.closed else f"{len(self)} memories"
        return f"MemoryStore({str(self.root)!r}, model={self.model_id!r}, {state})"

    # -- tables (see aimemory.export) ----------------------------------------------------------
    def to_arrow(self, namespace: str | None = None, vectors: bool = False, *, content: bool = False) -> pa.Table:
        """One row per memory (all namespaces when None); vectors/content opt-in."""
        from .export import to_arrow

        if namespace is not None:
            check_namespace(namespace)  # a name no namespace can have: an error, not an empty table
        self.flush()
        return to_arrow(self, namespace, vectors, content)

    def export_namespace(self, path: str | os.PathLike, namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
        """Write a whole namespace, content and vectors included, to a new folder (see
        :mod:`aimemory.transfer`); returns its summary."""
        from .transfer import export_namespace

        self.flush()
        return export_namespace(self, path, check_namespace(namespace))

    def import_namespace(self, path: str | os.PathLike, namespace: str | None = None) -> MemoryList:
        """Write the memories of an :meth:`export_namespace` folder into ``namespace`` (default: the
        exported one): bit-exact with the same model, embedded again with another."""
        from .transfer import import_namespace

        return import_namespace(self, path, None if namespace is None else check_namespace(namespace))

    def to_pandas(self, namespace: str | None = None, vectors: bool = False, *, content: bool = False):
        """:meth:`to_arrow` as a pandas DataFrame (metadata parsed into dicts)."""
        from .export import to_pandas

        if namespace is not None:
            check_namespace(namespace)
        self.flush()
        return to_pandas(self, namespace, vectors, content)


def is_store(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST_NAME).exists() or is_migrated_store(Path(path))
