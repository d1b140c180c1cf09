"""What an open :class:`~aimemory.store.MemoryStore` holds of its folder, and how it opens, catches up
and closes it.

:class:`StoreState` owns the Lance table (the source of truth), the catalog and the vector index (both
rebuilt or caught up from the table), the write-ahead segment (:mod:`aimemory.write_ahead`), the
manifest (which model the folder's vectors are from), and the locks. ``MemoryStore`` keeps the
models and the public API; its ``table``, ``catalog``, ``index``, ... are the state's (see
:class:`StateAttributes`), so the write path's ``store.table_version = ...`` changes the one copy.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, Mapping, TypeVar, overload

from . import __version__
from .encoders.base import Encoder
from .errors import StoreError
from .index import INDEX_DIR, StoreIndex, choose_index, lance_index_type, open_index
from .migrate import active_folder, active_stamp
from .storage import Manifest
from .storage.lazy_table import index_vectors, open_table
from .write import WriteLock, storage_errors
from .write_ahead import absorb, fold_on_close, open_segment, pending_keys, read_tail

if TYPE_CHECKING:  # pragma: no cover
    from .storage.catalog import Catalog
    from .storage.segment import Segment
    from .storage.table import VectorTable

log = logging.getLogger("aimemory")

REFRESH_INTERVAL_S = 0.5  # how stale a reader's view of other processes' writes may be

T = TypeVar("T")


class StateAttribute(Generic[T]):
    """An attribute of an object with a ``state`` that lives on that state: ``store.table`` is
    ``store.state.table``, read and written, so there is never a second copy to go stale."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> "StateAttribute[T]": ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj.state, self.name)

    def __set__(self, obj: Any, value: T) -> None:
        setattr(obj.state, self.name, value)


class StateAttributes:
    """A store's attributes that live on its ``state`` (a :class:`StoreState`): the write path and
    readers use ``store.table``, ``store.catalog``, ``store.index``, ... and never see the state."""

    state: "StoreState"
    root: StateAttribute[Path] = StateAttribute()
    path: StateAttribute[Path] = StateAttribute()
    manifest: StateAttribute[Manifest] = StateAttribute()
    table: StateAttribute["VectorTable"] = StateAttribute()
    catalog: StateAttribute["Catalog"] = StateAttribute()
    index: StateAttribute[StoreIndex] = StateAttribute()
    segment: StateAttribute["Segment | None"] = StateAttribute()
    table_version: StateAttribute[int] = StateAttribute()
    unsaved_changes: StateAttribute[int] = StateAttribute()
    index_choice: StateAttribute[str] = StateAttribute()
    index_why: StateAttribute[str] = StateAttribute()
    lance_index_type: StateAttribute["str | None"] = StateAttribute()
    ann_threshold: StateAttribute[int] = StateAttribute()  # set it, then rebuild_index()


class LoadedOnFirstUse(Generic[T]):
    """An attribute of a :class:`StoreState` that its first read loads (the catalog, the index and
    the table version they reflect: see ``StoreState.load_on_first_use``); kept in ``_<name>``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> "LoadedOnFirstUse[T]": ...

    @overload
    def __get__(self, obj: "StoreState", owner: type | None = None) -> T: ...

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        if not obj.loaded:
            obj.load_on_first_use()
        return getattr(obj, self.slot)

    def __set__(self, obj: "StoreState", value: T) -> None:
        setattr(obj, self.slot, value)


class StoreState:
    """The open folder of a store: where it is (``root``, and ``path``, the generation of vectors it
    opened), the manifest, table, catalog, index and segment once :meth:`open_tables` ran, the write
    lock (``writes``; ``lock`` is its thread lock, which readers hold while they read the catalog),
    when readers last looked for other processes' commits, and whether it is closed.

    The catalog and the index load on first use (``catalog``, ``index`` or ``table_version``), as
    LanceDB's tables do: an open that will only write, or answer from elsewhere, pays neither, and
    an open is a few file reads. A segment left with records loads them at once."""

    manifest: Manifest
    table: "VectorTable"
    segment: "Segment | None"
    unsaved_changes: int  # vectors added or removed since the index was last saved
    last_refresh: float  # time.monotonic() of readers' last look at other processes' commits
    catalog: LoadedOnFirstUse["Catalog"] = LoadedOnFirstUse()
    index: LoadedOnFirstUse[StoreIndex] = LoadedOnFirstUse()
    table_version: LoadedOnFirstUse[int] = LoadedOnFirstUse()  # the version the catalog and index reflect

    def __init__(self, path: str | os.PathLike, storage_options: Mapping[str, str] | None, index: str,
                 ann_threshold: int, generation: str | None = None) -> None:
        from .storage.remote import store_root

        # a folder; for s3:// URIs a local cache folder whose .remote the manifest and table use
        self.root: Path = store_root(path, storage_options)
        self.root.mkdir(parents=True, exist_ok=True)
        # the generation of vectors the store opens (see aimemory.migrate); object stores have one
        # (``generation``: another one, as active.json names it, for a migration or a rollback)
        self.path: Path = self.root if getattr(self.root, "remote", None) is not None else \
            active_folder(self.root) if generation is None else self.root / generation
        self.generation_stamp = active_stamp(self.root)
        self.index_choice, self.index_why = choose_index(index, self.path)
        self.lance_index_type = lance_index_type(index)
        self.ann_threshold = ann_threshold
        self.search_device = "cpu"  # the store's device: FAISS searches there when FAISS is a GPU build
        self.writes = WriteLock(self.path, self.refresh_for_write)
        self.lock = self.writes.threads
        self.closed = False
        self._loaded = False  # the catalog and index (see load_on_first_use)
        self._loading = False
        self._catalog: "Catalog"
        self._index: StoreIndex
        self._table_version: int

    # -- the catalog and index, loaded on first use -------------------------------------------
    @property
    def loaded(self) -> bool:
        """Whether the catalog and index are loaded (an open defers them to their first use)."""
        return self._loaded

    def load_on_first_use(self) -> None:
        """Load the catalog and index and take in the segment's records, once: other threads wait
        (the lock is re-entrant, so the load's own reads of them pass through)."""
        with self.lock:
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                self.load_catalog_and_index()
                absorb(self, self.segment.records if self.segment is not None else [])
                self._loaded = True
            finally:
                self._loading = False

    # -- opening -------------------------------------------------------------------------------
    def model_to_load(self, model: Any, precision: str) -> tuple[Any, Manifest | None]:
        """-> (the model to load, the manifest if the store has one): ``"auto"`` is the model the
        manifest names; one it rules out fails here, before loading (no download for a mismatch)."""
        from .encoders.registry import model_id_of

        manifest = Manifest.read(self.path)
        if manifest is not None and model == "auto":
            model = manifest.extra.get("model_source", manifest.model_id)
        if manifest is not None and (wanted := model_id_of(model, precision)) is not None:
            manifest.check_model(wanted, None, self.path)
        return model, manifest

    def own_manifest(self, manifest: Manifest | None, model_id: str, dim: int, precision: str,
                     model_source: str) -> Manifest:
        """The store's manifest, written for a new store; checked against the model either way."""
        if manifest is None:
            manifest = Manifest(model_id, dim, precision=precision, created_with=__version__,
                                extra={"model_source": model_source,
                                       **({"lance_index_type": self.lance_index_type}
                                          if self.lance_index_type else {})})
            manifest.write(self.path)
        manifest.check_model(model_id, dim, self.path)
        return manifest

    def open_tables(self, manifest: Manifest) -> None:
        """Open the table (Lance loads on first need) and the segment; the catalog and the index load
        on first use, or now when the segment holds records another process left."""
        self.manifest = manifest
        self.table = open_table(self.path, manifest.dim, index_vectors(self))
        self.unsaved_changes = 0
        self.last_refresh = time.monotonic()
        # the segment before the table's version (see aimemory.write_ahead); local FAISS stores only
        with storage_errors("opening the write-ahead segment"):
            self.segment = open_segment(self.path, self.table, manifest, self.table.remote is None
                                        and self.index_choice == "faiss")
        self.table.checkout_latest()
        if self.segment is not None and self.segment.records:  # records another process left: now
            self.load_on_first_use()

    def load_catalog_and_index(self) -> None:
        from .storage.catalog_file import open_catalog

        self.catalog = open_catalog(self.path, self.table, self.manifest.model_id, self.manifest.dim)[0]
        self.table_version = self.table.version
        next_vkey = max(self.manifest.next_vkey, int(self.catalog.array("vkey").max(initial=0)) + 1)
        if next_vkey != self.manifest.next_vkey:
            self.manifest.next_vkey = next_vkey
            self.manifest.write(self.path)
        self.index = self.open_index()

    def open_index(self, rebuild: bool = False) -> StoreIndex:
        """The index (see :func:`aimemory.index.open_index`): caught up with the table, or rebuilt."""
        return open_index(self.index_choice, self.table, self.catalog.alive_vkeys(), folder=self.path / INDEX_DIR,
                          table_version=self.table_version, ann_threshold=self.ann_threshold,
                          index_type=self.lance_index_type or self.manifest.extra.get("lance_index_type"),
                          rebuild=rebuild, device=self.search_device)

    # -- saving --------------------------------------------------------------------------------
    def save_index(self) -> None:
        """Write the vector index beside the table (it is a cache: rebuilt or caught up on open)."""
        self.index.save(self.path / INDEX_DIR, self.table.version)
        self.unsaved_changes = 0
        self.save_catalog()  # when due: a few unsaved rows cost the next open only a short catch-up

    def save_catalog(self, force: bool = False) -> None:
        """Save the catalog beside the table when enough changed since (``force``: when anything did)."""
        from .storage.catalog_file import save_if_due

        save_if_due(self.catalog, self.path, self.table, self.manifest.model_id, self.manifest.dim, force,
                    settled=self.segment is None or not self.segment.records)

    # -- catching up with other processes ------------------------------------------------------
    def refresh(self) -> None:
        """Catch up with other processes' commits now."""
        with self.lock, storage_errors("reading other processes' writes"):
            self.refresh_if_changed()

    def fresh(self) -> None:
        """Let a read see other processes' commits (as recall does), at most every REFRESH_INTERVAL_S.
        A closed store has nothing to refresh: its reads answer (or refuse) as they always did."""
        if self.closed:
            return
        with self.lock:
            self.refresh_if_stale()

    def switched(self) -> bool:
        """Whether a migration or rollback switched the folder away from this generation (one stat)."""
        return active_stamp(self.root) != self.generation_stamp

    def refresh_for_write(self) -> None:
        """A writer first checks that no migration switched the store away from this generation."""
        if self.switched():
            raise StoreError(f"the store at {self.root} was switched to another model by `aimemory migrate` "
                             "(or a rollback) since it was opened; nothing was written. Reopen it")
        self.refresh_if_changed()

    def refresh_if_changed(self) -> None:
        """Another process committed since we last looked: reload the catalog and catch up."""
        from .storage.catalog_file import refresh_catalog

        tail = read_tail(self)  # before the table (see aimemory.write_ahead)
        if self.table.checkout_latest() and self.table.version != self.table_version:
            self.manifest = Manifest.read(self.path) or self.manifest
            self.catalog, added, removed = refresh_catalog(self.catalog, self.table, pending_keys(self))
            self.table_version = self.table.version
            # a reader's open may have written an older next_vkey over a writer's reservation:
            # never hand out a key at or below one the table holds
            self.manifest.next_vkey = max(self.manifest.next_vkey,
                                          int(self.catalog.array("vkey").max(initial=0)) + 1)
            if added is None or removed is None:  # rebuilt: verify the index against it as on open
                self.index = self.open_index()
                tail = self.segment.records if self.segment is not None else []  # all of them again
            else:  # caught up: the index takes exactly the same change
                self.index.remove(removed)
                keys, vectors = self.table.vectors_for(added)
                self.index.add(vectors, keys)
        absorb(self, tail)

    def refresh_if_stale(self) -> None:
        """Readers notice other processes' commits, checking at most every REFRESH_INTERVAL_S; the
        caller holds ``lock``."""
        with storage_errors("reading other processes' writes"):
            now = time.monotonic()
            if now - self.last_refresh >= REFRESH_INTERVAL_S:
                self.last_refresh = now
                self.refresh_if_changed()
            elif self.segment is not None and self.segment.changed():  # another process appended: one stat
                self.refresh_if_changed()

    # -- closing -------------------------------------------------------------------------------
    def close(self, fold: Callable[[], None]) -> None:
        """Fold the segment (``fold``: under the write lock) when :func:`fold_on_close` says so, save
        the index (or the catalog, when due) and release the segment and the table; closed even when
        a save fails."""
        if self.closed:
            return
        unfolded = self.segment is not None and bool(self.segment.records)
        # a generation a migration switched away from takes no writes: its records stay in its
        # segment, and an open after a rollback reads them
        if unfolded and fold_on_close(self) and not self.switched():
            try:  # the segment's records into the table, so the saves below match it
                fold()
                unfolded = False
            except StoreError as exc:
                log.warning("folding the write-ahead segment of %s on close failed (%s); its "
                            "records stay there, and a later write folds them", self.path, exc)
        with self.lock:
            try:
                # Never loaded: nothing changed. Records left unfolded: the saved index and catalog
                # stay those of the table, and the next open takes the records from the segment.
                if self._loaded and not unfolded:
                    if self.index.dirty:
                        with storage_errors("saving the index on close"):
                            self.save_index()
                    else:
                        self.save_catalog()
            finally:
                if self.segment is not None:
                    self.segment.close()
                self.table.close()
                self.closed = True


def model_source(model: Any, encoder: Encoder) -> str:
    """What a new store's manifest records as its model's source (what ``model="auto"`` reloads)."""
    if isinstance(model, Encoder):
        return encoder.model_id
    return os.fspath(model) if model != "auto" else encoder.model_id
