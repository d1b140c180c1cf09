"""Lance's native ANN index for stores that are shared (on S3) or larger than RAM.

FAISS keeps every vector in each reader's RAM and is per machine; a Lance index lives in the table
itself, so every reader of an ``s3://`` store shares one, built once, read in pages. Rows appended
after the index was built are searched exactly by Lance until the index is refreshed, so results
never miss new memories; deleted rows are excluded by Lance.

Defaults are sized from the row count and were measured on clustered, embedding-shaped data
(tests/test_index_lance.py, benchmarks/bench_scale.py): Lance's own defaults (nprobes 20, no
refine) give recall@10 as low as 0.16 with PQ because 8-bit PQ codes alone cannot order close
neighbours; re-ranking ``refine_factor`` x k candidates with the full vectors fixes that. Those
defaults are a starting point, not a promise: after each build the search settings are tuned on
queries drawn near stored vectors against exact search (one streamed pass over the table) until
recall@10 reaches the target, then kept beside the store (``lance_ann.json``; on an object store, in
the bucket, so every reader uses them).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..storage.manifest import atomic_write_bytes
from .tuning import LANCE_TUNING_QUERIES, TARGET_RECALL, TUNING_MARGIN, near_queries, recall_at_k

if TYPE_CHECKING:  # pragma: no cover
    from ..storage.table import VectorTable

log = logging.getLogger("aimemory.index")

INDEX_NAME = "vector_idx"
MIN_ROWS = 5_000  # below this an exact scan is as fast as an index and needs no training
REFRESH_FRACTION = 0.10  # fold unindexed rows into the index past this fraction of the table
RETRAIN_GROWTH = 4.0  # retrain centroids when the table has grown this much since training
INDEX_TYPES = ("IVF_PQ", "IVF_HNSW_SQ", "IVF_FLAT")
DEFAULT_TYPE = "IVF_PQ"
TUNED_FILE = "lance_ann.json"
TUNED_OBJECT = "_aimemory/" + TUNED_FILE
EXACT_BATCH_ROWS = 65_536


def choose_index(choice: str, root: Path) -> tuple[str, str]:
    """``index=`` ("auto" | "faiss" | "lance" | "lance:<type>") and the store's root -> (kind, why).
    The Lance index type itself is read by :func:`lance_index_type`."""
    remote = getattr(root, "remote", None) is not None
    if choice == "faiss":
        return "faiss", "FAISS in this process's RAM, chosen with index='faiss'"
    if choice == "lance" or choice.startswith("lance:"):
        lance_index_type(choice)  # a bad type fails here, before anything is opened
        return "lance", f"Lance ANN index inside the table, chosen with index={choice!r}"
    if choice != "auto":
        raise ValueError(f"index= must be 'auto', 'faiss', 'lance' or 'lance:<type>' (type one of "
                         f"{', '.join(INDEX_TYPES)}); got {choice!r}")
    if remote:
        return "lance", ("auto: the store is on an object store, so readers share Lance's ANN index "
                         "kept in the table (a FAISS copy would need every vector in each reader's RAM)")
    return "faiss", ("auto: local store, so FAISS (exact below ann_threshold, IVF above, memory-mapped "
                     "from its saved file) is fastest; pass index='lance' for stores larger than RAM")


def lance_index_type(choice: str) -> str | None:
    """``"lance:IVF_HNSW_SQ"`` -> ``"IVF_HNSW_SQ"``; None when ``index=`` names no type."""
    if not choice.startswith("lance:"):
        return None
    itype = choice.split(":", 1)[1].upper()
    if itype not in INDEX_TYPES:
        raise ValueError(f"Lance index type must be one of {', '.join(INDEX_TYPES)}; got {itype!r}")
    return itype


@dataclass
class AnnParams:
    """How the index is built and searched."""

    index_type: str = "IVF_PQ"
    num_partitions: int = 0
    num_sub_vectors: int = 0
    nprobes: int = 0
    refine_factor: int = 0
    ef: int = 0

    @classmethod
    def for_size(cls, n: int, dim: int, index_type: str = "IVF_PQ") -> "AnnParams":
        """Defaults measured to reach recall@10 >= 0.95 on clustered embeddings (see module doc)."""
        if index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {INDEX_TYPES}")
        if index_type == "IVF_HNSW_SQ":
            # HNSW inside each partition: few, large partitions; ef sets the search breadth
            parts = max(1, min(256, n // 200_000))
            return cls(index_type, parts, 0, nprobes=max(1, min(parts, 8)), refine_factor=0, ef=160)
        # ~sqrt(n) lists; Lance trains at most n/256 (it wants 256 rows per centroid)
        parts = int(max(1, min(8192, round(math.sqrt(n)), n // 256)))
        nprobes = int(min(parts, max(24, math.ceil(parts * 0.06))))
        if index_type == "IVF_FLAT":
            return cls(index_type, parts, 0, nprobes, 0)
        # 8 dims per 1-byte code (64 B per 512-d vector); must divide dim
        m = next(d for d in range(max(1, dim // 8), 0, -1) if dim % d == 0)
        return cls(index_type, parts, m, nprobes, refine_factor=20)  # 10 gave 0.94 at 100k x 512


def search_ladder(base: AnnParams) -> list[AnnParams]:
    """Search settings to try, cheapest first: more re-ranking, then more partitions probed."""
    parts = max(1, base.num_partitions)

    def probes(x: int) -> int:
        return min(parts, base.nprobes * x)

    if base.index_type == "IVF_PQ":
        steps = [(1, 1), (1, 2), (2, 2), (2, 4), (4, 4), (8, 8)]  # (x nprobes, x refine_factor)
        return [replace(base, nprobes=probes(a), refine_factor=base.refine_factor * b) for a, b in steps]
    if base.index_type == "IVF_HNSW_SQ":  # 8-bit SQ caps recall; a small refine lifts it
        return [base, replace(base, refine_factor=5), replace(base, refine_factor=10, ef=2 * base.ef),
                replace(base, nprobes=probes(2), refine_factor=20, ef=2 * base.ef)]
    return [replace(base, nprobes=probes(x)) for x in (1, 2, 4, 8)]


def _quiet(query: Any) -> Any:
    """Ask for ``_distance`` explicitly (Lance warns on every query otherwise)."""
    return query.disable_scoring_autoprojection() if hasattr(query, "disable_scoring_autoprojection") \
        else query


class LanceIndex:
    """The store's vector index interface (search/add/remove/save) over Lance's ANN index."""

    search_device = "cpu"  # Lance searches in its own engine, on the CPU

    def __init__(self, table: "VectorTable", dim: int, ntotal: int, index_type: str = DEFAULT_TYPE):
        self.table = table
        self.dim = dim
        self._n = int(ntotal)
        self.index_type = index_type
        self.params: AnnParams | None = None  # None: no ANN index yet (exact scans)
        self.dirty = False

    @classmethod
    def open(cls, table: "VectorTable", ntotal: int, index_type: str | None = None,
             rebuild: bool = False) -> "LanceIndex":
        """The index of ``table`` (``ntotal`` live vectors), refreshed; ``rebuild``: retrained."""
        index = cls(table, table.dim, ntotal, index_type or DEFAULT_TYPE)
        index.refresh(retrain=rebuild)
        return index

    # -- what the store reads ------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return f"lance-{self.params.index_type.lower()}" if self.params else "lance-exact"

    @property
    def nprobe(self) -> int:
        return self.params.nprobes if self.params else 0

    @property
    def ntotal(self) -> int:
        return self._n

    def keys(self) -> np.ndarray:
        keys: np.ndarray = self.table.scan(["vkey"]).column("vkey").to_numpy().astype(np.int64)
        return keys

    # -- mutation: the rows are already in the table; only the count changes -------------------
    def add(self, vectors: np.ndarray, vkeys: np.ndarray) -> None:
        self._n += len(vkeys)
        self.dirty = self.dirty or len(vkeys) > 0

    def remove(self, vkeys: np.ndarray) -> int:
        self._n -= len(vkeys)
        return len(vkeys)

    # -- search --------------------------------------------------------------------------------
    def scores_of(self, query: np.ndarray, allowed: np.ndarray, keys: np.ndarray) -> np.ndarray | None:
        """Lance keeps no scores between searches: None (the caller reads the vectors)."""
        return None

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as ``VectorIndex.search``: cosine scores and vkeys, -1 padded."""
        from lancedb.expr import col

        queries = np.asarray(queries, dtype=np.float32)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        keys = np.full((len(queries), k), -1, np.int64)
        for i, q in enumerate(queries):
            query = _quiet(self.table.vector_query(q).distance_type("cosine")).select(["vkey", "_distance"]).limit(k)
            if self.params is not None:
                query = query.nprobes(self.params.nprobes)
                if self.params.refine_factor:
                    query = query.refine_factor(self.params.refine_factor)
                if self.params.ef:
                    query = query.ef(self.params.ef)
            if allowed is not None:  # prefilter, so a namespace still gets k results
                query = query.where(col("vkey").isin([int(x) for x in allowed]), prefilter=True)
            got = query.to_arrow()
            n = got.num_rows
            keys[i, :n] = got.column("vkey").to_numpy()
            scores[i, :n] = 1.0 - got.column("_distance").to_numpy()
        return scores, keys

    def exact_stream(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Exact top-k vkeys of many queries in ONE streamed pass over the table (memory bounded by
        a batch, not the table): the ground truth for tuning."""
        queries = np.asarray(queries, np.float32)
        best_s = np.full((len(queries), k), -np.inf, np.float32)
        best_k = np.full((len(queries), k), -1, np.int64)
        for batch in self.table.batches(["vkey", "vector"], EXACT_BATCH_ROWS):
            vkeys = batch.column("vkey").to_numpy().astype(np.int64)
            vecs = batch.column("vector").flatten().to_numpy(zero_copy_only=False).reshape(-1, self.dim)
            norms = np.maximum(np.linalg.norm(vecs, axis=1), 1e-12)
            scores = np.concatenate([best_s, (queries @ vecs.T) / norms], axis=1)
            keys = np.concatenate([best_k, np.broadcast_to(vkeys, (len(queries), len(vkeys)))], axis=1)
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else \
                np.argsort(-scores, axis=1)
            best_s = np.take_along_axis(scores, top, axis=1)
            best_k = np.take_along_axis(keys, top, axis=1)
        return best_k

    def tune(self) -> float:
        """Walk :func:`search_ladder` until recall@10 against exact search reaches the target (plus
        a margin) on queries near stored vectors; keep the first setting that does. -> its recall."""
        rng = np.random.default_rng(0)
        all_keys = self.keys()
        picked = rng.choice(all_keys, size=min(LANCE_TUNING_QUERIES, len(all_keys)), replace=False)
        queries = near_queries(self.table.vectors_for(picked)[1], rng)
        truth = self.exact_stream(queries, 10)
        recall = 0.0
        assert self.params is not None, "tune() runs after build()"
        for params in search_ladder(self.params):
            self.params = params
            recall = recall_at_k(self.search(queries, 10)[1], truth)
            if recall >= TARGET_RECALL + TUNING_MARGIN:
                break
        log.info("Lance %s tuned: %s (recall@10 %.3f on %d queries)", self.params.index_type, self.params,
                 recall, len(queries))
        return recall

    def _load_tuned(self) -> AnnParams | None:
        try:
            if self.table.remote is not None:
                got = self.table.remote.get(TUNED_OBJECT)
                record = json.loads(got[0]) if got else None
            else:
                file = self.table.folder / "index" / TUNED_FILE
                record = json.loads(file.read_text()) if file.is_file() else None
            params = AnnParams(**record["params"]) if record else None
        except (OSError, ValueError, TypeError, KeyError):
            return None  # unreadable: the size-based defaults serve until the next build
        return params if params is not None and params.index_type == self.index_type else None

    def _save_tuned(self, recall: float, rows: int) -> None:
        assert self.params is not None, "saved after a build"
        record = json.dumps({"params": asdict(self.params), "recall_at_10": round(recall, 4),
                             "indexed_rows": rows}, indent=2).encode()
        if self.table.remote is not None:
            self.table.remote.put(TUNED_OBJECT, record)
            return
        folder = self.table.folder / "index"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / TUNED_FILE, record)

    # -- building and refreshing ---------------------------------------------------------------
    def _stats(self) -> Any:
        try:
            return self.table.index_stats(INDEX_NAME)
        except Exception:  # no such index
            return None

    def refresh(self, retrain: bool = False) -> None:
        """Build the index past MIN_ROWS, fold new rows in past REFRESH_FRACTION, retrain after
        RETRAIN_GROWTH x growth (or when asked). Failures leave search exact, never wrong."""
        rows = self.table.count_rows()
        stats = self._stats()
        try:
            if rows < MIN_ROWS:
                self.params = None
                return
            indexed = stats.num_indexed_rows if stats is not None else 0
            other_type = stats is not None and str(getattr(stats, "index_type", self.index_type)).upper() \
                not in (self.index_type, "")  # index= asked for another type than the table holds
            if stats is None or retrain or other_type or rows >= RETRAIN_GROWTH * max(indexed, 1):
                self.build(AnnParams.for_size(rows, self.dim, self.index_type))
                return
            self.params = self._load_tuned() or AnnParams.for_size(indexed, self.dim, self.index_type)
            if stats.num_unindexed_rows > REFRESH_FRACTION * rows:
                self.table.optimize()  # merges new rows into the existing partitions
        except Exception as exc:
            log.warning("refreshing the Lance ANN index failed (%s); searches stay correct (new rows "
                        "are scanned exactly) and the refresh is retried on the next save", exc)

    def build(self, params: AnnParams, tune: bool = True) -> None:
        kwargs = dict(metric="cosine", vector_column_name="vector", replace=True, name=INDEX_NAME,
                      index_type=params.index_type, num_partitions=params.num_partitions)
        if params.num_sub_vectors:
            kwargs["num_sub_vectors"] = params.num_sub_vectors
        self.table.create_index(**kwargs)
        self.params = params
        log.info("built Lance %s index: %s", params.index_type, params)
        if tune:
            self._save_tuned(self.tune(), self.table.count_rows())

    def save(self, folder: Path, table_version: int) -> None:
        """The store's periodic save: for Lance, refresh the index in the table."""
        self.refresh()
        self.dirty = False
