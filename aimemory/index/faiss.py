"""FAISS indexes derived from the table: exact inner-product search for small stores, IVF past a
size threshold with ``nprobe`` tuned so recall@10 against exact search stays >= the target.

The index is a cache. It is saved beside the table with a sidecar (table version, key count, key
checksum, file checksum) written atomically, and on open it is verified and caught up, or rebuilt.
A saved index is memory-mapped on open (its vectors are paged in as searches touch them, so opening
a 1M store reads no vectors and a reader's RAM holds one copy of them). FAISS cannot grow a mapped
index: vectors added to one wait beside it in a small exact index until a save folds them in
(:mod:`.recent`), and a removal reads it into RAM.

:mod:`.flat_search` holds the exact search paths over the flat index's storage, :mod:`.ivf` the IVF
training, tuning and probing, and :mod:`.gpu` the optional GPU copy searches run on (see
:meth:`VectorIndex.place`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..storage.manifest import atomic_write_bytes
from . import ivf
from .faiss_file import (
    INDEX_STEM,
    SIDECAR_FILE,
    Sidecar,
    drop_recent,
    keys_checksum,
    read_ahead,
    read_recent,
    stamp_matches,
    write_index_file,
    write_recent,
    write_stamp,
)
from .flat_search import FlatSearch, id_selector
from .gpu import CPU_DEVICE, GPU_MAX_K, GpuClone, cuda_ordinal, search_device_for
from .ivf import exact_top as exact_top  # re-exported: tests and tools import it from here
from .ivf_file import write_filled
from .ivf_lists import SMALL_SET, ListMap
from .recent import RECENT_MAX, SAVE_FOLD_MIN, merge_top

log = logging.getLogger("aimemory.index")

ANN_THRESHOLD = 200_000  # vectors; below it exact search is fast enough (about 15 ms at 100k x 512)
SMALL_BATCH = 20  # FAISS's BLAS threshold: below it a flat search scans each query on one thread
#: a lone flat query allowed at most this share of the vectors gathers and scores just those rows;
#: above it FAISS's selector search (which skips disallowed rows) is as fast. Measured at 100k x 384
#: on one thread, ms: share 1%: gather 0.27, selector 0.41; 5%: 3.4, 1.7; 95%: selector 8.9 = scan
SUBSET_SHARE = 0.02
SELECTOR_CACHE = 8  # id selectors kept for reuse (a query's plans and look-ups use a few)


def _faiss() -> Any:
    import faiss

    return faiss


class VectorIndex:
    """An id-mapped FAISS index over unit vectors (inner product = cosine)."""

    def __init__(self, dim: int, kind: str = "flat", nprobe: int = 0):
        faiss = _faiss()
        self.dim = dim
        self.kind = kind
        self.nprobe = nprobe
        self.margin = 0.0  # IVF: see search_lists
        # IndexIDMap, not IDMap2: reading an IDMap2 builds its id -> row hash (4 ms at 100k on every
        # open); rows are found through FlatSearch.positions instead
        self._index: Any = faiss.IndexIDMap(faiss.IndexFlatIP(dim)) if kind == "flat" else None
        self._flat: FlatSearch | None = None  # flat: exact search paths, cached until add/remove
        self._list_map: ListMap | None = None  # IVF: key -> list, made on first need, kept up to date
        self._selectors: dict[int, tuple[np.ndarray, object]] = {}  # see _selector
        self._mapped: Path | None = None  # the file this index is memory-mapped from, if it is
        self._recent: VectorIndex | None = None  # flat: vectors added while mapped (see .recent)
        self._mapped_sha256 = ""  # the mapped file's hash, as checked on load or written by a build
        self._saved_name = ""  # the index file the folder's sidecar names, as far as this process knows
        self._gpu: GpuClone | None = None  # set by place() when searches run on a GPU
        self.search_device = CPU_DEVICE  # where unfiltered searches run: "cpu" or "cuda:N"
        self.dirty = False

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, vkeys: np.ndarray, *, ann_threshold: int = ANN_THRESHOLD,
              seed: int = 0) -> "VectorIndex":
        """vectors (n, d) float32 unit rows, vkeys (n,) int64 -> an index of the right kind."""
        return cls.build_from(ivf.array_blocks(vectors, vkeys), len(vkeys), vectors.shape[1],
                              ann_threshold=ann_threshold, seed=seed)

    @classmethod
    def build_from(cls, blocks: ivf.Blocks, n: int, dim: int, *, ann_threshold: int = ANN_THRESHOLD,
                   seed: int = 0, folder: Path | None = None) -> "VectorIndex":
        """The index of the right kind over the n vectors of ``blocks`` (see :data:`.ivf.Blocks`),
        read block by block: beside the index itself, only one block and the IVF's training sample
        (about 64 vectors per list) are held. ``folder``: an IVF index is written straight into a
        file there and memory-mapped (:mod:`.ivf_file`), so not even the index is held; ``save``
        into that folder then writes only the sidecar."""
        if n < max(ann_threshold, 1):  # an IVF needs at least one vector to train on
            index = cls(dim, "flat")
            for keys, vectors in blocks():
                index.add(vectors, keys)
            return index
        rng = np.random.default_rng(seed)
        sample = ivf.training_sample(blocks, n, rng)  # (m, d)
        index = cls(dim, "ivf")
        index._index = ivf.train_ivf(sample, n, seed)
        written = None
        if folder is not None:
            try:
                Path(folder).mkdir(parents=True, exist_ok=True)
                written = write_filled(index._index, blocks, Path(folder))
            except OSError as exc:  # a read-only or full disk: the lists are filled in RAM instead
                log.warning("writing the IVF index into %s failed (%s); building it in memory", folder, exc)
        if written is None:
            ivf.fill_lists(index._index, blocks)
        else:
            path, index._mapped_sha256 = written
            index._index, index._mapped = _faiss().read_index(str(path), _faiss().IO_FLAG_MMAP_IFC), path
        near, far = ivf.tuning_queries(sample, n, rng)
        want = ivf.exact_top_keys(blocks, np.concatenate([near, far]), ivf.TUNE_K)  # one pass serves both
        index.nprobe = ivf.tune_nprobe(index._index, near, want[:len(near)])
        index.margin = index.tune_margin(far, want[len(near):])
        index.dirty = True
        return index

    def tune_margin(self, queries: np.ndarray, want: np.ndarray) -> float:
        """Set and return the smallest centroid-score margin that keeps recall for ``queries`` far
        from every stored vector, against their exact top-10 ``want`` (see :func:`.ivf.tune_margin`)."""
        def keys_at(queries: np.ndarray, margin: float) -> np.ndarray:
            self.margin = margin
            return self.search(queries, ivf.TUNE_K)[1]

        self.margin = ivf.tune_margin(keys_at, queries, want)
        return self.margin

    def place(self, device: str) -> str:
        """Run unfiltered searches on the GPU of ``device`` (a placement's, e.g. ``"cuda:0"``) when it
        is a CUDA device and this FAISS build sees it (a GPU build: ``faiss.get_num_gpus() > 0``),
        else on the CPU -> the search device chosen (also :attr:`search_device`)."""
        chosen = search_device_for(device)
        if chosen != self.search_device:
            ordinal = cuda_ordinal(chosen)
            self._gpu = None if ordinal is None else GpuClone(ordinal)
            self.search_device = chosen
            log.info("FAISS searches run on %s", chosen)
        return chosen

    @property
    def gpu_clones(self) -> int:
        """GPU copies made so far (0 on the CPU): each change of the index costs one on the next search."""
        return self._gpu.clones if self._gpu is not None else 0

    # -- mutation ------------------------------------------------------------------------------
    def _changed(self) -> None:
        """Drop what was derived from the FAISS index: the flat paths' id map, the GPU copy."""
        self._flat = None
        if self._gpu is not None:
            self._gpu.drop()

    def _own(self) -> None:
        """Read a memory-mapped index into RAM before changing it (FAISS aborts the process when
        a mapped index grows). From its file when that is still there, else through a copy."""
        if self._mapped is None:
            return
        faiss = _faiss()
        try:
            owned = faiss.read_index(str(self._mapped))
        except RuntimeError:  # the file was replaced by another process's save meanwhile
            owned = faiss.deserialize_index(faiss.serialize_index(self._index))
        if owned.ntotal != self._index.ntotal:  # another save reused nothing: names hash contents
            owned = faiss.deserialize_index(faiss.serialize_index(self._index))
        self._index, self._mapped, self._mapped_sha256 = owned, None, ""
        self._changed()
        recent, self._recent = self._recent, None
        if recent is not None:  # what waited beside the mapped index joins it
            keys = recent.keys()
            self._add_owned(recent.vectors(keys), keys)

    def add(self, vectors: np.ndarray, vkeys: np.ndarray) -> None:
        if len(vkeys) == 0:
            return
        if self._mapped is not None and self.recent_count + len(vkeys) <= RECENT_MAX:
            if self._recent is None:
                self._recent = VectorIndex(self.dim, "flat")
            self._recent.add(vectors, vkeys)
            self.dirty = True
            return
        self._own()
        self._add_owned(vectors, vkeys)

    def _add_owned(self, vectors: np.ndarray | None, vkeys: np.ndarray) -> None:
        if len(vkeys) == 0 or vectors is None:
            return
        if self._list_map is not None:
            self._list_map.note_added(_faiss().extract_index_ivf(self._index), vectors, vkeys)
        self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                 np.ascontiguousarray(vkeys, dtype=np.int64))
        self._changed()
        self.dirty = True

    def remove(self, vkeys: np.ndarray | list[int]) -> int:
        if len(vkeys) == 0:
            return 0
        faiss = _faiss()
        keys = np.asarray(vkeys, dtype=np.int64)
        removed = 0
        if self._recent is not None:  # the recent ones go without reading the mapped index in
            held = self._recent.holds(keys)
            removed, keys = self._recent.remove(keys[held]), keys[~held]
            self.dirty = self.dirty or removed > 0
        if len(keys) == 0:
            return removed
        self._own()
        removed += int(self._index.remove_ids(faiss.IDSelectorBatch(keys)))
        self._changed()
        self.dirty = True
        return removed

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal) + self.recent_count

    @property
    def recent_count(self) -> int:
        """Vectors waiting beside the memory-mapped index (see :mod:`.recent`)."""
        return 0 if self._recent is None else self._recent.ntotal

    def holds(self, vkeys: np.ndarray) -> np.ndarray:
        """(n,) bool: which of ``vkeys`` a flat index holds."""
        return self._flat_search().positions(np.asarray(vkeys, np.int64)) >= 0

    def keys(self) -> np.ndarray:
        keys = self._held_keys()
        return keys if self._recent is None else np.concatenate([keys, self._recent.keys()])

    def _held_keys(self) -> np.ndarray:
        """:meth:`keys` of the index itself, not the recent ones."""
        if self.kind == "flat":
            keys: np.ndarray = _faiss().vector_to_array(self._index.id_map).astype(np.int64)
            return keys
        return ivf.list_keys(self._index)

    def vectors(self, vkeys: np.ndarray) -> np.ndarray | None:
        """(n, dim) float32 vectors of ``vkeys`` (exact copies of the table's: both index kinds store
        raw float32 vectors, and keys are never reused), or None when the index lacks one."""
        keys = np.asarray(vkeys, np.int64)
        if self._recent is not None:
            held = self._recent.holds(keys)
            if held.any():
                out = np.empty((len(keys), self.dim), np.float32)  # (n, dim)
                recent, rest = self._recent.vectors(keys[held]), self._held_vectors(keys[~held])
                if recent is None or rest is None:
                    return None
                out[held], out[~held] = recent, rest
                return out
        return self._held_vectors(keys)

    def _held_vectors(self, keys: np.ndarray) -> np.ndarray | None:
        """:meth:`vectors` from the index itself, not the recent ones."""
        if len(keys) == 0:
            return np.empty((0, self.dim), np.float32)
        if self.kind != "flat":
            lists = self._lists_holding(_faiss().extract_index_ivf(self._index), keys)
            return ivf.list_vectors(self._index, keys, self.dim, lists)
        flat = self._flat_search()
        position = flat.positions(keys)  # (n,), -1 where not held
        if bool((position < 0).any()):
            return None
        return np.array(flat.rows()[position], np.float32)  # (n, dim), a copy

    # -- search --------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """queries (q, d) -> (scores (q, k), vkeys (q, k)); -1 keys pad missing results.
        ``allowed`` (sorted int64 vkeys) restricts the search inside FAISS, so filtered queries
        still return k results when k exist."""
        if len(queries) != 1:
            return self._search(queries, k, allowed)
        # FAISS splits work by query: for one query its OpenMP regions leave all threads but one
        # idle, and on a busy machine waiting for them costs milliseconds per region (measured:
        # 24 -> 10 ms at 100k flat, load 4). The setting is this thread's own (an OpenMP ICV).
        faiss = _faiss()
        threads = faiss.omp_get_max_threads()
        if threads == 1:
            return self._search(queries, k, allowed)
        faiss.omp_set_num_threads(1)
        try:
            return self._search(queries, k, allowed)
        finally:
            faiss.omp_set_num_threads(threads)

    def scores_of(self, query: np.ndarray, allowed: np.ndarray, keys: np.ndarray) -> np.ndarray | None:
        """(m,) cosines of ``query`` (d,) with the views ``keys`` when this index's last search of it
        among ``allowed`` (a repeated filter's keys) scored them all, else None: recall's background
        sample is drawn from the allowed views, so its cosines need no vector read."""
        if self.kind != "flat" or self._flat is None:
            return None
        return self._flat.scores_of(query, allowed, keys)

    def _search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self._recent is None:
            return self._search_held(queries, k, allowed)
        held_allowed = allowed
        if allowed is not None and len(allowed) <= SMALL_SET:  # IVF: only the lists of its own keys
            held_allowed = allowed[~self._recent.holds(allowed)]
        if allowed is None:
            recent = self._recent._search(queries, k, None)
        else:  # the allowed keys in the recent ones' range (usually the newest): gathered, not selected
            flat = self._recent._flat_search()
            low, high = flat.key_range()
            in_range = allowed[np.searchsorted(allowed, low):np.searchsorted(allowed, high, "right")]
            recent = flat.subset(queries, k, in_range)
        if held_allowed is not None and len(held_allowed) == 0:
            return recent
        return merge_top(self._search_held(queries, k, held_allowed), recent, k)

    def _search_held(self, queries: np.ndarray, k: int, allowed: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` among the index's own vectors, not the recent ones."""
        faiss = _faiss()
        n = int(self._index.ntotal)
        k = max(1, min(k, n)) if n else 1
        if n == 0:
            return (np.full((len(queries), 0), -np.inf, np.float32), np.full((len(queries), 0), -1, np.int64))
        if allowed is None and self._gpu is not None and k <= GPU_MAX_K:
            found = self._gpu_search(queries, k)
            if found is not None:
                return found
        if self.kind == "flat" and allowed is None and len(queries) == 1:
            return self._flat_search().scan(queries, k)
        if self.kind == "flat" and allowed is not None and len(allowed) <= SUBSET_SHARE * n:
            return self._flat_search().subset(queries, k, allowed)
        if self.kind == "flat" and allowed is None and len(queries) < SMALL_BATCH:
            return self._flat_search().blas(queries, k)
        sel = None if allowed is None else self._selector(allowed)
        if self.kind != "flat":
            index_ivf = faiss.extract_index_ivf(self._index)
            if allowed is not None and len(allowed) <= SMALL_SET:  # a few keys: only their lists
                own = self._lists_holding(index_ivf, allowed)
                if own is not None:
                    lists = np.ascontiguousarray(np.broadcast_to(own, (len(queries), len(own))))  # (q, m)
                    return ivf.search_preassigned(index_ivf, queries, k, lists, np.zeros(lists.shape, np.float32), sel)
            nprobe = self.nprobe_for(len(allowed) if allowed is not None else n)
            lists, list_scores = self.search_lists(queries, nprobe)
            return ivf.search_preassigned(index_ivf, queries, k, lists, list_scores, sel)
        params = None if sel is None else faiss.SearchParameters(sel=sel)
        scores, keys = self._index.search(queries, k, params=params)
        return scores, keys

    def _gpu_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """An unfiltered search on the GPU copy, with the CPU's settings; None when the CPU must
        serve it (IVF lists past the GPU's limit). A GPU failure moves searches to the CPU for good."""
        gpu = self._gpu
        assert gpu is not None
        try:
            if self.kind == "flat":
                scores, keys = gpu.index_for(self._index).search(queries, k)
                return scores, keys
            lists, list_scores = self.search_lists(queries, self.nprobe_for(int(self._index.ntotal)))  # the CPU's
            if lists.shape[1] > GPU_MAX_K:
                return None
            return ivf.search_preassigned(gpu.index_for(self._index), queries, k, lists, list_scores)
        except Exception as exc:  # a GPU build that cannot copy or search this index: the CPU can
            log.warning("FAISS search on %s failed (%s); searching on the CPU from now on", self.search_device, exc)
            self._gpu, self.search_device = None, CPU_DEVICE
            return None

    def _lists_holding(self, index_ivf: Any, keys: np.ndarray) -> np.ndarray | None:
        """The IVF lists (m,) holding ``keys``, or None when one is not in the map."""
        if self._list_map is None:
            self._list_map = ListMap(index_ivf)
        return self._list_map.lists_of(keys)

    def _selector(self, allowed: np.ndarray) -> object:
        """The id selector of ``allowed``; reused for a read-only array seen before: recall passes the
        same frozen arrays (one per plan) until the catalog changes, and a bitmap over 1M keys takes
        about 0.4 ms to build."""
        if allowed.flags.writeable:
            return id_selector(allowed)
        cached = self._selectors.get(id(allowed))
        if cached is not None and cached[0] is allowed:
            return cached[1]
        if len(self._selectors) >= SELECTOR_CACHE:
            self._selectors.pop(next(iter(self._selectors)))
        sel = id_selector(allowed)
        self._selectors[id(allowed)] = (allowed, sel)
        return sel

    def _flat_search(self) -> FlatSearch:
        if self._flat is None:
            self._flat = FlatSearch(self._index, self.dim)
        return self._flat

    def search_lists(self, queries: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """The IVF lists each query probes -> (lists (q, m) int64 with -1 for none, their centroid
        scores (q, m)); see :func:`.ivf.probe_lists`."""
        return ivf.probe_lists(self._index, queries, nprobe, self.nprobe, self.margin)

    def nprobe_for(self, n_allowed: int) -> int:
        """Lists an IVF search probes when ``n_allowed`` of its vectors may match (0 for flat); see
        :func:`.ivf.scaled_nprobe`."""
        if self.kind == "flat":
            return 0
        return ivf.scaled_nprobe(self._index, self.nprobe, int(self._index.ntotal), n_allowed)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, folder: Path, table_version: int) -> None:
        """Write index then sidecar, each atomically; the sidecar names the index file's hash. A
        mapped file already in ``folder`` (built there, or loaded) is not written again, and fewer
        than SAVE_FOLD_MIN vectors added beside it are saved on their own (see :mod:`.recent`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        in_place = self._mapped is not None and bool(self._mapped_sha256) and self._mapped.parent == folder \
            and self._mapped.exists()
        if self._recent is not None and (self._recent.ntotal >= SAVE_FOLD_MIN or not in_place):
            self._own()  # the recent vectors join the index: the file holds them all
            in_place = False
        if in_place:
            assert self._mapped is not None
            name, digest = self._mapped.name, self._mapped_sha256
        else:
            # A new file name per save: the sidecar switches to it in one atomic rename, so a
            # crash at any point leaves a matching (sidecar, index) pair behind.
            name, digest = write_index_file(self._index, folder)
        if name != self._saved_name:
            keys = self._held_keys()
            sidecar = Sidecar(table_version, len(keys), keys_checksum(keys), digest, self.kind, self.dim,
                              self.nprobe, name, self.margin)
            atomic_write_bytes(folder / SIDECAR_FILE, json.dumps(asdict(sidecar)).encode())
            write_stamp(folder, sidecar, folder / name)
            self._saved_name = name
            for old in folder.glob(f"{INDEX_STEM}-*.faiss"):
                if old.name != name:
                    old.unlink(missing_ok=True)
        if self._recent is not None:
            keys = self._recent.keys()
            vectors = self._recent.vectors(keys)
            assert vectors is not None  # it holds every key it lists
            write_recent(folder, name, keys, vectors, {"table_version": table_version, "count": self.ntotal})
        else:
            drop_recent(folder)  # a record left names this file's predecessor, or vectors now in it
        self.dirty = False

    @classmethod
    def load(cls, folder: Path) -> tuple["VectorIndex", Sidecar] | None:
        """The saved index with the recent vectors saved beside it, and the sidecar of its file
        (which counts the file's vectors only); None (with a warning) when it is missing, torn or
        unreadable."""
        faiss = _faiss()
        folder = Path(folder)
        sidecar_path = folder / SIDECAR_FILE
        if not sidecar_path.exists():
            return None
        try:
            sidecar = Sidecar(**json.loads(sidecar_path.read_text()))
            path = folder / sidecar.file
            if not stamp_matches(folder, sidecar, path):
                with open(path, "rb") as fh:
                    if hashlib.file_digest(fh, "sha256").hexdigest() != sidecar.file_sha256:
                        raise ValueError("index file checksum does not match its sidecar")
                write_stamp(folder, sidecar, path)
            raw = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        except Exception as exc:  # torn, truncated or foreign file: the table can rebuild it
            log.warning("vector index in %s is unusable (%s); rebuilding it from the table", folder, exc)
            return None
        index = cls(sidecar.dim, sidecar.kind, sidecar.nprobe)
        index.margin = float(sidecar.margin)
        index._index, index._mapped, index._mapped_sha256 = raw, path, sidecar.file_sha256
        index._saved_name = sidecar.file
        read_ahead(path)
        if index.ntotal != sidecar.count:
            log.warning("vector index in %s holds %d vectors, sidecar says %d; rebuilding",
                        folder, index.ntotal, sidecar.count)
            return None
        recent = read_recent(folder, sidecar.file)
        if recent is not None and len(recent[1]):
            index._recent = VectorIndex(sidecar.dim, "flat")
            index._recent.add(recent[2], recent[1])
        return index, sidecar

    def recent_keys(self) -> np.ndarray:
        """The sorted keys (n,) of the vectors waiting beside the mapped index (see :mod:`.recent`)."""
        return np.zeros(0, np.int64) if self._recent is None else np.sort(self._recent.keys())
