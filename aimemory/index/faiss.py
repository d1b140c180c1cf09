"""FAISS indexes derived from the table: exact inner-product search for small stores, IVF past a
size threshold with ``nprobe`` tuned so recall@10 against exact search stays >= the target.

The index is a cache. It is saved beside the table with a sidecar (table version, key count, key
checksum, file checksum) written atomically, and on open it is verified and caught up, or rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..storage.manifest import atomic_write_bytes
from .tuning import FAISS_TUNING_QUERIES, TARGET_RECALL, TUNING_MARGIN, near_queries, recall_at_k

log = logging.getLogger("aimemory.index")

INDEX_STEM = "vectors"
SIDECAR_FILE = "vectors.json"
STAMP_FILE = "vectors.stamp.json"  # the saved file's (size, mtime, inode) once its hash checked out
ANN_THRESHOLD = 200_000  # vectors; below it exact search is fast enough (about 15 ms at 100k x 512)
NPROBE_CANDIDATES = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
SMALL_BATCH = 20  # FAISS's BLAS threshold: below it a flat search scans each query on one thread


def keys_checksum(vkeys: np.ndarray) -> str:
    return hashlib.blake2b(np.sort(np.asarray(vkeys, dtype=np.int64)).tobytes(), digest_size=16).hexdigest()


@dataclass
class Sidecar:
    table_version: int
    count: int
    keys_checksum: str
    file_sha256: str
    kind: str
    dim: int
    nprobe: int = 0
    file: str = ""


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
        self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim)) if kind == "flat" else None
        self._ids: np.ndarray | None = None  # flat: position -> vkey, cached until add/remove
        self.dirty = False

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, vkeys: np.ndarray, *, ann_threshold: int = ANN_THRESHOLD,
              seed: int = 0) -> "VectorIndex":
        """vectors (n, d) float32 unit rows, vkeys (n,) int64 -> an index of the right kind."""
        n, dim = vectors.shape
        if n < max(ann_threshold, 1):  # an IVF needs at least one vector to train on
            index = cls(dim, "flat")
            index.add(vectors, vkeys)
            return index
        return cls._build_ivf(vectors, vkeys, seed)

    @classmethod
    def _build_ivf(cls, vectors: np.ndarray, vkeys: np.ndarray, seed: int) -> "VectorIndex":
        faiss = _faiss()
        n, dim = vectors.shape
        # FAISS wants >= 39 points per centroid; at least one list, or every search fails (nprobe 0)
        nlist = max(1, int(min(max(64, 4 * np.sqrt(n)), n // 39)))
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = vectors[rng.choice(n, size=min(n, nlist * 64), replace=False)]
        ivf.cp.seed = seed
        ivf.train(np.ascontiguousarray(train, dtype=np.float32))
        ivf.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(vkeys, np.int64))
        index = cls(dim, "ivf")
        index._index = ivf
        index.nprobe = index._tune_nprobe(vectors, vkeys, rng)
        index.dirty = True
        return index

    def _tune_nprobe(self, vectors: np.ndarray, vkeys: np.ndarray, rng: np.random.Generator) -> int:
        """Smallest nprobe whose recall@10 against exact search reaches TARGET_RECALL (plus a
        margin) on queries drawn near stored vectors, which is where real queries land."""
        faiss = _faiss()
        n, dim = vectors.shape
        queries = near_queries(vectors[rng.choice(n, size=min(FAISS_TUNING_QUERIES, n), replace=False)], rng)
        exact = faiss.IndexFlatIP(dim)
        exact.add(np.ascontiguousarray(vectors, dtype=np.float32))
        _, truth = exact.search(queries, 10)
        want = np.asarray(vkeys, dtype=np.int64)[truth]
        ivf = faiss.extract_index_ivf(self._index)
        for nprobe in NPROBE_CANDIDATES:
            if nprobe >= ivf.nlist:
                break
            _, got = self._index.search(queries, 10, params=faiss.SearchParametersIVF(nprobe=nprobe))
            recall = recall_at_k(got, want)
            if recall >= TARGET_RECALL + TUNING_MARGIN:
                log.info("IVF nlist=%d tuned to nprobe=%d (recall@10 %.3f)", ivf.nlist, nprobe, recall)
                return nprobe
        return int(ivf.nlist)

    # -- mutation ------------------------------------------------------------------------------
    def add(self, vectors: np.ndarray, vkeys: np.ndarray) -> None:
        if len(vkeys) == 0:
            return
        self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                 np.ascontiguousarray(vkeys, dtype=np.int64))
        self._ids = None
        self.dirty = True

    def remove(self, vkeys: np.ndarray | list[int]) -> int:
        if len(vkeys) == 0:
            return 0
        faiss = _faiss()
        removed = self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(vkeys, dtype=np.int64)))
        self._ids = None
        self.dirty = True
        return int(removed)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def keys(self) -> np.ndarray:
        faiss = _faiss()
        if self.kind == "flat":
            keys: np.ndarray = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            return keys
        ivf = faiss.extract_index_ivf(self._index)
        invlists = ivf.invlists
        out = []
        for list_no in range(ivf.nlist):
            size = invlists.list_size(list_no)
            if size:
                ids = faiss.rev_swig_ptr(invlists.get_ids(list_no), size)
                out.append(np.array(ids, dtype=np.int64))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def vectors(self, vkeys: np.ndarray) -> np.ndarray | None:
        """(n, dim) float32 vectors of ``vkeys`` (exact copies of the table's: both index kinds store
        raw float32 vectors, and keys are never reused), or None when the index lacks one."""
        keys = np.asarray(vkeys, np.int64)
        out = np.empty((len(keys), self.dim), np.float32)  # (n, dim)
        if self.kind == "flat":
            try:
                for i, key in enumerate(keys.tolist()):
                    out[i] = self._index.reconstruct(key)
            except RuntimeError:  # a key the index does not hold
                return None
            return out
        # IVF keeps no id -> position map: look the keys up list by list (one pass over the ids)
        faiss = _faiss()
        ivf = faiss.extract_index_ivf(self._index)
        invlists = ivf.invlists
        if invlists.code_size != self.dim * 4:  # not raw float32 codes (not an IndexIVFFlat)
            return None
        want = {key: i for i, key in enumerate(keys.tolist())}
        found = 0
        for list_no in range(ivf.nlist):
            size = invlists.list_size(list_no)
            if not size:
                continue
            ids = np.array(faiss.rev_swig_ptr(invlists.get_ids(list_no), size), dtype=np.int64)
            hit = np.flatnonzero(np.isin(ids, keys))
            if not len(hit):
                continue
            codes = np.array(faiss.rev_swig_ptr(invlists.get_codes(list_no), size * invlists.code_size))
            rows = codes.view(np.float32).reshape(size, self.dim)  # IndexIVFFlat codes are the vectors
            for j in hit.tolist():
                out[want[int(ids[j])]] = rows[j]
            found += len(hit)
        return out if found == len(want) == len(keys) else None

    # -- search --------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """queries (q, d) -> (scores (q, k), vkeys (q, k)); -1 keys pad missing results.
        ``allowed`` (sorted int64 vkeys) restricts the search inside FAISS, so filtered queries
        still return k results when k exist."""
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, self.ntotal)) if self.ntotal else 1
        if self.ntotal == 0:
            return (np.full((len(queries), 0), -np.inf, np.float32), np.full((len(queries), 0), -1, np.int64))
        if self.kind == "flat" and allowed is None and len(queries) < SMALL_BATCH:
            return self._blas_flat_search(queries, k)
        params = None
        if self.kind == "flat":
            if allowed is not None:
                params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        else:
            sel = faiss.IDSelectorBatch(allowed) if allowed is not None else None
            params = faiss.SearchParametersIVF(nprobe=self.nprobe, sel=sel) if sel is not None \
                else faiss.SearchParametersIVF(nprobe=self.nprobe)
        scores, keys = self._index.search(queries, k, params=params)
        return scores, keys

    def _blas_flat_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k for a few queries by a BLAS matvec over the flat index's own storage (no
        copy). FAISS scans a lone query on one thread and then opens an OpenMP region just to map
        ids, which stalls on a busy machine; sgemv uses every BLAS thread at memory bandwidth."""
        faiss = _faiss()
        n = self.ntotal
        flat = faiss.downcast_index(self._index.index)
        xb = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)
        if self._ids is None or len(self._ids) != n:
            self._ids = faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
        scores = (xb @ queries[0])[None] if len(queries) == 1 else (xb @ queries.T).T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best = np.take_along_axis(scores, top, 1)
        order = np.argsort(-best, axis=1, kind="stable")
        return (np.ascontiguousarray(np.take_along_axis(best, order, 1)),
                self._ids[np.take_along_axis(top, order, 1)])

    # -- persistence ---------------------------------------------------------------------------
    def save(self, folder: Path, table_version: int) -> None:
        """Write index then sidecar, each atomically; the sidecar names the index file's hash."""
        faiss = _faiss()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = faiss.serialize_index(self._index).tobytes()
        digest = hashlib.sha256(data).hexdigest()
        # A new file name per save: the sidecar switches to it in one atomic rename, so a crash
        # at any point leaves a matching (sidecar, index) pair behind.
        name = f"{INDEX_STEM}-{digest[:16]}.faiss"
        atomic_write_bytes(folder / name, data)
        keys = self.keys()
        sidecar = Sidecar(table_version, len(keys), keys_checksum(keys), digest, self.kind, self.dim,
                          self.nprobe, name)
        atomic_write_bytes(folder / SIDECAR_FILE, json.dumps(asdict(sidecar)).encode())
        _write_stamp(folder, sidecar, folder / name)
        for old in folder.glob(f"{INDEX_STEM}-*.faiss"):
            if old.name != name:
                old.unlink(missing_ok=True)
        self.dirty = False

    @classmethod
    def load(cls, folder: Path) -> tuple["VectorIndex", Sidecar] | None:
        """The saved index, or None (with a warning) when it is missing, torn or unreadable."""
        faiss = _faiss()
        folder = Path(folder)
        sidecar_path = folder / SIDECAR_FILE
        if not sidecar_path.exists():
            return None
        try:
            sidecar = Sidecar(**json.loads(sidecar_path.read_text()))
            path = folder / sidecar.file
            if not _stamp_matches(folder, sidecar, path):
                with open(path, "rb") as fh:
                    if hashlib.file_digest(fh, "sha256").hexdigest() != sidecar.file_sha256:
                        raise ValueError("index file checksum does not match its sidecar")
                _write_stamp(folder, sidecar, path)
            raw = faiss.read_index(str(path))
        except Exception as exc:  # torn, truncated or foreign file: the table can rebuild it
            log.warning("vector index in %s is unusable (%s); rebuilding it from the table", folder, exc)
            return None
        index = cls(sidecar.dim, sidecar.kind, sidecar.nprobe)
        index._index = raw
        if index.ntotal != sidecar.count:
            log.warning("vector index in %s holds %d vectors, sidecar says %d; rebuilding",
                        folder, index.ntotal, sidecar.count)
            return None
        return index, sidecar


def _stamp(path: Path) -> list[int]:
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _stamp_matches(folder: Path, sidecar: Sidecar, path: Path) -> bool:
    """Whether ``path`` is the very file whose hash was checked (same name, hash, size, mtime and
    inode; files are written under a new name per save and renamed atomically), so opening a large
    index does not hash it again (sha256 of a 1.5 GB index costs seconds)."""
    try:
        record = json.loads((Path(folder) / STAMP_FILE).read_text())
        return bool(record["file"] == sidecar.file and record["sha256"] == sidecar.file_sha256
                    and record["stamp"] == _stamp(path))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_stamp(folder: Path, sidecar: Sidecar, path: Path) -> None:
    """Record the stamp of a file whose hash was just checked or written (a separate file, so
    sidecars stay readable by older versions)."""
    try:
        atomic_write_bytes(Path(folder) / STAMP_FILE, json.dumps(
            {"file": sidecar.file, "sha256": sidecar.file_sha256, "stamp": _stamp(path)}).encode())
    except OSError:
        pass


def remove_files(folder: Path) -> None:
    """Delete the saved index (it is rebuilt from the table on the next open)."""
    for path in [Path(folder) / SIDECAR_FILE, Path(folder) / STAMP_FILE, *Path(folder).glob(f"{INDEX_STEM}-*.faiss")]:
        path.unlink(missing_ok=True)
