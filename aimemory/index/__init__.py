"""The store's vector index, behind one protocol (:class:`StoreIndex`), opened by :func:`open_index`.

Two kinds, chosen by :func:`choose_index` from ``MemoryStore(index=...)``:

* ``faiss`` (:mod:`.faiss`): in this process's RAM, exact below ``ann_threshold`` vectors and IVF
  above, saved beside the table as a cache that is verified, caught up or rebuilt on open
  (:mod:`.flat_search`: its exact search paths; :mod:`.ivf`: IVF training, tuning and probing;
  :mod:`.gpu`: searches on a CUDA GPU when a GPU build of FAISS is installed);
* ``lance`` (:mod:`.lance`): Lance's ANN index inside the table, shared by every reader of a
  remote store.

Both are derived from the table, which stays the source of truth; :mod:`.tuning` holds the recall
target and the query sampler both tune with.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol

import numpy as np

from ..storage.arrow_numpy import to_numpy
from .faiss import ANN_THRESHOLD, Sidecar, VectorIndex, keys_checksum
from .ivf import Blocks
from .lance import INDEX_TYPES, AnnParams, LanceIndex, choose_index, lance_index_type
from .recent import prefix_missing
from .tuning import TARGET_RECALL, recall_at_k

if TYPE_CHECKING:  # pragma: no cover
    from ..storage.table import VectorTable

log = logging.getLogger("aimemory.index")

INDEX_DIR = "index"  # the FAISS cache's folder inside the store
BUILD_BATCH_ROWS = 8_192  # rows a FAISS build reads from the table at a time (12 MB at 384-d)


class StoreIndex(Protocol):
    """What the store asks of its vector index: keys are the table's ``vkey`` values."""

    dirty: bool  # changed since the last save
    search_device: str  # where searches run: "cpu", or "cuda:N" for FAISS on a GPU (see VectorIndex.place)

    @property
    def kind(self) -> str: ...  # "flat", "ivf", "lance-ivf_pq", "lance-exact"...

    @property
    def nprobe(self) -> int: ...

    @property
    def ntotal(self) -> int: ...

    def keys(self) -> np.ndarray: ...

    def add(self, vectors: np.ndarray, vkeys: np.ndarray) -> None: ...

    def remove(self, vkeys: np.ndarray) -> int: ...

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]: ...

    def scores_of(self, query: np.ndarray, allowed: np.ndarray, keys: np.ndarray) -> np.ndarray | None: ...

    def save(self, folder: Path, table_version: int) -> None: ...


def open_index(kind: str, table: "VectorTable", alive_vkeys: np.ndarray, *, folder: Path, table_version: int,
               ann_threshold: int = ANN_THRESHOLD, index_type: str | None = None,
               rebuild: bool = False, device: str = "cpu") -> StoreIndex:
    """The index of ``kind`` (``"faiss"`` or ``"lance"``, from :func:`choose_index`) over ``table``'s
    live vectors (``alive_vkeys``): FAISS's saved copy in ``folder`` when it matches
    ``table_version``, caught up when it does not, rebuilt when it is unusable; Lance's index in the
    table, refreshed. ``rebuild``: build anew. ``index_type``: the Lance index type (IVF_PQ...).
    ``device``: the store's placement device; FAISS searches run on that GPU when it is CUDA and
    FAISS is a GPU build (see :meth:`VectorIndex.place`), Lance's on the CPU."""
    if kind == "lance":
        return LanceIndex.open(table, len(alive_vkeys), index_type, rebuild=rebuild)
    index = None if rebuild else _load_caught_up(table, alive_vkeys, folder, table_version)
    if index is None:
        index = VectorIndex.build_from(table_blocks(table, alive_vkeys), len(alive_vkeys), table.dim,
                                       ann_threshold=ann_threshold, folder=folder)
        index.dirty = True
    index.place(device)
    return index


def table_blocks(table: "VectorTable", alive_vkeys: np.ndarray, rows: int = BUILD_BATCH_ROWS) -> Blocks:
    """:data:`.ivf.Blocks` of the table's live vectors, streamed ``rows`` at a time: a build holds
    one batch, never the table's vectors (1.5 GB per 1M x 384)."""
    alive = np.sort(np.asarray(alive_vkeys, dtype=np.int64))

    def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for batch in table.batches(["vkey", "vector"], rows):
            keys = to_numpy(batch.column("vkey")).astype(np.int64)  # (m,)
            flat = batch.column("vector").flatten().to_numpy(zero_copy_only=False)
            vectors = flat.astype(np.float32, copy=False).reshape(-1, table.dim)  # (m, d)
            at = np.minimum(np.searchsorted(alive, keys), max(len(alive) - 1, 0))
            live = alive[at] == keys if len(alive) else np.zeros(len(keys), bool)
            yield keys[live], vectors[live]
    return blocks


def _load_caught_up(table: "VectorTable", table_keys: np.ndarray, folder: Path,
                    table_version: int) -> VectorIndex | None:
    """The saved FAISS index, verified and caught up with the table; None when it cannot be."""
    loaded = VectorIndex.load(folder)
    if loaded is None:
        return None
    index, sidecar = loaded
    if sidecar.dim != table.dim:
        return None
    table_keys = np.asarray(table_keys, np.int64)
    if len(table_keys) > 1 and not bool(np.all(table_keys[1:] > table_keys[:-1])):
        table_keys = np.sort(table_keys)
    # the usual change since the save: rows appended (keys are handed out in increasing order)
    missing = prefix_missing(table_keys, sidecar.count, sidecar.keys_checksum, index.recent_keys(), keys_checksum)
    if missing is not None and len(missing) == 0:
        return index
    if missing is None:
        index_keys = index.keys()
        missing = np.setdiff1d(table_keys, index_keys)
        extra = np.setdiff1d(index_keys, table_keys)
        index.remove(extra)
    else:
        extra = np.zeros(0, np.int64)
    keys, vectors = table.vectors_for(missing)
    index.add(vectors, keys)
    log.info("index caught up with the table: +%d -%d vectors", len(missing), len(extra))
    return index


__all__ = ["ANN_THRESHOLD", "INDEX_DIR", "INDEX_TYPES", "TARGET_RECALL", "AnnParams", "LanceIndex", "Sidecar",
           "StoreIndex", "VectorIndex", "choose_index", "keys_checksum", "lance_index_type", "open_index",
           "recall_at_k"]
