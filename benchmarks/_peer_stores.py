"""The stores bench_peers.py compares, behind one small interface, and the worker that measures one
of them in its own process (so RSS and cold-open times are per store, not shared).

Every adapter takes the same precomputed vectors and per-row metadata ``{"bucket": i % 100,
"parity": "even"|"odd"}``; ``bucket == FILTER_BUCKET`` selects 1% of rows. Adapters import their
library lazily: a worker for Chroma may run from another virtual environment that has only numpy and
chromadb, so nothing here imports aimemory at module level.

    python _peer_stores.py '{"store": "faiss-flat", "phase": "build", ...}'   # prints one JSON line
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

K = 10
BUCKETS = 100  # metadata "bucket" takes 100 values: one of them selects 1% of rows
FILTER_BUCKET = 7
COLLECTION = "bench"
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 16, 100, 100  # Chroma's defaults, used for FAISS HNSW too
DISTRIBUTIONS = {"faiss-flat": "faiss-cpu", "faiss-hnsw": "faiss-cpu", "faiss-ivf": "faiss-cpu",
                 "lancedb": "lancedb", "lancedb-ivfpq": "lancedb", "chroma": "chromadb",
                 "qdrant-local": "qdrant-client", "aimemory": "aimemory-multimodal",
                 "aimemory-ivf": "aimemory-multimodal"}


def meta_of(i: int) -> dict:
    return {"bucket": int(i % BUCKETS), "parity": "even" if i % 2 == 0 else "odd"}


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(n, start + size)


# -- raw FAISS -------------------------------------------------------------------------------------
class Faiss:
    """Raw FAISS: one index file plus the bucket column as .npy (FAISS keeps no metadata, so a user
    keeps it beside the index and filters with an id selector). Inserts are in memory only."""

    durable_insert = False

    def __init__(self, kind: str):
        import faiss

        self.faiss, self.kind = faiss, kind

    def _new(self, dim: int, n: int):
        f = self.faiss
        if self.kind == "flat":
            return f.IndexFlatIP(dim)
        if self.kind == "hnsw":
            index = f.IndexHNSWFlat(dim, HNSW_M, f.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            return index
        nlist = max(1, int(min(max(64, 4 * np.sqrt(n)), n // 39)))  # aimemory's IVF recipe
        return f.IndexIVFFlat(f.IndexFlatIP(dim), dim, nlist, f.METRIC_INNER_PRODUCT)

    def build(self, path: Path, vectors: np.ndarray, buckets: np.ndarray, batch: int) -> dict:
        n, dim = vectors.shape
        index = self._new(dim, n)
        extra = {}
        if self.kind == "ivf":
            t = time.perf_counter()
            rng = np.random.default_rng(0)
            train = np.ascontiguousarray(vectors[np.sort(rng.choice(n, min(n, index.nlist * 64), replace=False))])
            index.train(train)
            extra["train_s"] = time.perf_counter() - t
        for a, b in _batches(n, max(batch, 50_000)):
            index.add(np.ascontiguousarray(vectors[a:b]))
        self.faiss.write_index(index, str(path / "index.faiss"))
        np.save(path / "bucket.npy", np.asarray(buckets, np.int16))
        return extra

    def open(self, path: Path) -> None:
        self.index = self.faiss.read_index(str(path / "index.faiss"))
        self.buckets = np.load(path / "bucket.npy")
        if self.kind == "hnsw":
            self.params = self.faiss.SearchParametersHNSW(efSearch=HNSW_EF_SEARCH)
        elif self.kind == "ivf":
            self.params = self.faiss.SearchParametersIVF(nprobe=16)
        else:
            self.params = None

    def search(self, q: np.ndarray, k: int) -> list[int]:
        return self.index.search(q[None], k, params=self.params)[1][0].tolist()

    def search_where(self, q: np.ndarray, k: int, bucket: int) -> list[int]:
        sel = self.faiss.IDSelectorBatch(np.flatnonzero(self.buckets == bucket).astype(np.int64))
        f = self.faiss
        if self.kind == "hnsw":
            params = f.SearchParametersHNSW(efSearch=HNSW_EF_SEARCH, sel=sel)
        elif self.kind == "ivf":
            params = f.SearchParametersIVF(nprobe=16, sel=sel)
        else:
            params = f.SearchParameters(sel=sel)
        return self.index.search(q[None], k, params=params)[1][0].tolist()

    def insert(self, row_id: int, vec: np.ndarray, meta: dict) -> None:
        self.index.add(vec[None])
        self.buckets = np.append(self.buckets, np.int16(meta["bucket"]))

    def close(self) -> None:
        pass


# -- LanceDB ---------------------------------------------------------------------------------------
class Lance:
    """LanceDB used directly: (id, vector, bucket, parity) rows; optionally an IVF_PQ index built with
    LanceDB's defaults (metric cosine). Filters are SQL ``where`` with prefiltering."""

    durable_insert = True

    def __init__(self, indexed: bool):
        import lancedb
        import pyarrow as pa

        self.lancedb, self.pa, self.indexed = lancedb, pa, indexed

    def build(self, path: Path, vectors: np.ndarray, buckets: np.ndarray, batch: int) -> dict:
        pa = self.pa
        n, dim = vectors.shape
        schema = pa.schema([pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float32(), dim)),
                            pa.field("bucket", pa.int32()), pa.field("parity", pa.string())])

        def gen():
            for a, b in _batches(n, max(batch, 50_000)):
                ids = np.arange(a, b, dtype=np.int64)
                yield pa.record_batch([pa.array(ids), pa.FixedSizeListArray.from_arrays(
                    pa.array(np.ascontiguousarray(vectors[a:b]).ravel()), dim),
                    pa.array(buckets[a:b].astype(np.int32)),
                    pa.array(np.where(ids % 2 == 0, "even", "odd"))], schema=schema)

        db = self.lancedb.connect(str(path))
        tbl = db.create_table(COLLECTION, data=pa.RecordBatchReader.from_batches(schema, gen()))
        extra = {}
        if self.indexed:
            t = time.perf_counter()
            tbl.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_PQ")
            extra["index_s"] = time.perf_counter() - t
        return extra

    def open(self, path: Path) -> None:
        self.tbl = self.lancedb.connect(str(path)).open_table(COLLECTION)

    def _query(self, q: np.ndarray, k: int):
        return self.tbl.search(q).limit(k).select(["id"])

    def search(self, q: np.ndarray, k: int) -> list[int]:
        return self._query(q, k).to_arrow().column("id").to_pylist()

    def search_where(self, q: np.ndarray, k: int, bucket: int) -> list[int]:
        return self._query(q, k).where(f"bucket = {bucket}", prefilter=True).to_arrow().column("id").to_pylist()

    def insert(self, row_id: int, vec: np.ndarray, meta: dict) -> None:
        self.tbl.add([{"id": row_id, "vector": vec.tolist(), **meta}])

    def close(self) -> None:
        pass


# -- Chroma ----------------------------------------------------------------------------------------
class Chroma:
    """chromadb PersistentClient, one collection, HNSW with its defaults and inner-product space."""

    durable_insert = True

    def __init__(self):
        import chromadb

        self.chromadb = chromadb

    def _client(self, path: Path):
        from chromadb.config import Settings

        return self.chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))

    def build(self, path: Path, vectors: np.ndarray, buckets: np.ndarray, batch: int) -> dict:
        client = self._client(path)
        col = client.create_collection(COLLECTION, metadata={"hnsw:space": "ip"}, embedding_function=None)
        size = min(batch * 5, client.get_max_batch_size())
        for a, b in _batches(len(vectors), size):
            col.add(ids=[str(i) for i in range(a, b)], embeddings=np.ascontiguousarray(vectors[a:b]),
                    metadatas=[meta_of(i) for i in range(a, b)])
        return {"batch": size}

    def open(self, path: Path) -> None:
        self.col = self._client(path).get_collection(COLLECTION, embedding_function=None)

    def search(self, q: np.ndarray, k: int) -> list[int]:
        return [int(i) for i in self.col.query(query_embeddings=[q], n_results=k, include=[])["ids"][0]]

    def search_where(self, q: np.ndarray, k: int, bucket: int) -> list[int]:
        out = self.col.query(query_embeddings=[q], n_results=k, where={"bucket": bucket}, include=[])
        return [int(i) for i in out["ids"][0]]

    def insert(self, row_id: int, vec: np.ndarray, meta: dict) -> None:
        self.col.add(ids=[str(row_id)], embeddings=[vec], metadatas=[meta])

    def close(self) -> None:
        pass


# -- Qdrant local mode -----------------------------------------------------------------------------
class Qdrant:
    """qdrant-client's local mode (``QdrantClient(path=...)``): no server; points pickled into SQLite
    and searched by numpy in the client process."""

    durable_insert = True

    def __init__(self):
        from qdrant_client import QdrantClient, models

        self.Client, self.models = QdrantClient, models

    def build(self, path: Path, vectors: np.ndarray, buckets: np.ndarray, batch: int) -> dict:
        m = self.models
        client = self.Client(path=str(path))
        client.create_collection(COLLECTION, vectors_config=m.VectorParams(size=vectors.shape[1],
                                                                         distance=m.Distance.DOT))
        for a, b in _batches(len(vectors), batch):
            client.upsert(COLLECTION, points=m.Batch(ids=list(range(a, b)), vectors=vectors[a:b].tolist(),
                                                     payloads=[meta_of(i) for i in range(a, b)]))
        client.close()
        return {}

    def open(self, path: Path) -> None:
        self.client = self.Client(path=str(path))
        m = self.models
        self.filters = {b: m.Filter(must=[m.FieldCondition(key="bucket", match=m.MatchValue(value=b))])
                        for b in range(BUCKETS)}

    def search(self, q: np.ndarray, k: int, flt=None) -> list[int]:
        res = self.client.query_points(COLLECTION, query=q.tolist(), limit=k, query_filter=flt)
        return [int(p.id) for p in res.points]

    def search_where(self, q: np.ndarray, k: int, bucket: int) -> list[int]:
        return self.search(q, k, self.filters[bucket])

    def insert(self, row_id: int, vec: np.ndarray, meta: dict) -> None:
        self.client.upsert(COLLECTION, points=[self.models.PointStruct(id=row_id, vector=vec.tolist(), payload=meta)])

    def close(self) -> None:
        self.client.close()


# -- aimemory --------------------------------------------------------------------------------------
def _lookup_encoder(tables: dict[str, np.ndarray]):
    """A benchmark-only Encoder: the text "<p><i>" is row i of ``tables[p]`` (p: "v" data, "q" queries,
    "s" single inserts), so no model runs and the store's cost is everything after the embedding."""
    from aimemory.encoders.base import Encoder

    dim = next(iter(tables.values())).shape[1]

    class PrecomputedEncoder(Encoder):
        model_id, modalities = "bench-precomputed-v1", frozenset({"text"})

        def __init__(self):
            self.dim = dim

        def embed_texts(self, texts):
            # modulo: a second pass inserts new texts ("s200"...) that reuse the insert vectors
            rows = [tables[t[0]][int(t[1:]) % len(tables[t[0]])] for t in texts]
            return np.stack(rows).astype(np.float32, copy=False)

    return PrecomputedEncoder()


class Aimemory:
    """aimemory's MemoryStore fed through a precomputed-vector encoder; one text memory per row with
    its metadata dict. ``recall`` is end to end (mask, FAISS, collapse to memories, hit hydration)."""

    durable_insert = True

    def __init__(self, vectors_of: dict[str, np.ndarray], rebuild: bool = False):
        import faiss  # noqa: F401  (imported lazily by the store's open: counted as import, like the peers)
        import lancedb  # noqa: F401

        from aimemory import MemoryStore

        self.MemoryStore, self.encoder, self.rebuild = MemoryStore, _lookup_encoder(vectors_of), rebuild

    def build(self, path: Path, vectors: np.ndarray, buckets: np.ndarray, batch: int) -> dict:
        store = self.MemoryStore(path, model=self.encoder, speech_model=None, sound_model=None)
        n = len(vectors)
        store.remember_many([f"v{i}" for i in range(n)], metadata=[meta_of(i) for i in range(n)], batch_size=batch)
        extra = {}
        if self.rebuild:  # what a user runs past ann_threshold to get the IVF index
            t = time.perf_counter()
            store.rebuild_index()
            extra["index_s"] = time.perf_counter() - t
        store.close()
        return extra

    def open(self, path: Path) -> None:
        self.store = self.MemoryStore(path, model=self.encoder, speech_model=None, sound_model=None)

    @staticmethod
    def _rows(hits) -> list[int]:
        return [int(h.memory.content[1:]) for h in hits]

    def search(self, q_index: int, k: int) -> list[int]:
        return self._rows(self.store.recall(f"q{q_index}", k=k))

    def search_where(self, q_index: int, k: int, bucket: int) -> list[int]:
        return self._rows(self.store.recall(f"q{q_index}", k=k, where={"bucket": bucket}))

    def insert(self, row_id: int, vec_index: int, meta: dict) -> None:
        self.store.remember(f"s{vec_index}", metadata=meta)

    def close(self) -> None:
        self.store.close()


def make_store(name: str, work: Path):
    """Adapter for ``name``; aimemory's encoder reads the vectors saved in ``work``."""
    if name.startswith("faiss-"):
        return Faiss(name.split("-", 1)[1])
    if name in ("lancedb", "lancedb-ivfpq"):
        return Lance(indexed=name.endswith("ivfpq"))
    if name == "chroma":
        return Chroma()
    if name == "qdrant-local":
        return Qdrant()
    if name in ("aimemory", "aimemory-ivf"):
        tables = {p: np.load(work / f"{f}.npy", mmap_mode="r")
                  for p, f in (("v", "vectors"), ("q", "queries"), ("s", "inserts"))}
        return Aimemory(tables, rebuild=name.endswith("ivf"))
    raise ValueError(f"unknown store {name!r}")


# -- the worker ------------------------------------------------------------------------------------
def _proc_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _rss() -> int:
    return _proc_kib("VmRSS") * 1024


def _peak() -> int:
    return _proc_kib("VmHWM") * 1024


def _profiled(prof_dir: str | None, name: str, fn):
    """Run ``fn`` under cProfile when ``prof_dir`` is set; the top 25 cumulative costs go to a file."""
    if not prof_dir:
        return fn()
    prof = cProfile.Profile()
    out = prof.runcall(fn)
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(25)
    Path(prof_dir, f"{name}.txt").write_text(text.getvalue())
    return out


def run_worker(cfg: dict) -> dict:
    """One phase for one store: ``build`` (bulk ingest), ``query`` (cold open, queries, filtered
    queries, single inserts) or ``open`` (open, one query, close: a copied store's first open).
    Times in seconds, memory in bytes."""
    t_import = time.perf_counter()
    work, path, name = Path(cfg["work"]), Path(cfg["path"]), cfg["store"]
    store = make_store(name, work)
    out = {"import_s": time.perf_counter() - t_import, "rss_base": _rss(), "python": sys.executable,
           "version": _version(DISTRIBUTIONS.get(name, name)), "load_start": os.getloadavg()[0]}
    if cfg["phase"] == "build":
        vectors = np.load(work / "vectors.npy", mmap_mode="r")
        buckets = np.load(work / "buckets.npy")
        path.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        out.update(store.build(path, vectors, buckets, cfg["batch"]))
        out["ingest_s"] = time.perf_counter() - t
        out["rss_end"], out["rss_peak"], out["load_end"] = _rss(), _peak(), os.getloadavg()[0]
        return out
    queries = np.load(work / "queries.npy")
    inserts = np.load(work / "inserts.npy")
    by_index = name.startswith("aimemory")  # its encoder looks vectors up by text id
    prof = cfg.get("profile_dir")
    t = time.perf_counter()
    _profiled(prof, "open", lambda: store.open(path))
    out["open_s"] = time.perf_counter() - t
    out["rss_open"] = _rss()
    if cfg["phase"] == "open":  # a copied store's first open checks its saved files once: done here, untimed
        store.search(0 if by_index else queries[0], K)
        store.close()
        return out
    t = time.perf_counter()
    store.search(0 if by_index else queries[0], K)
    out["first_query_s"] = time.perf_counter() - t
    lat, ids = [], []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        ids.append(store.search(i if by_index else q, K))
        lat.append(time.perf_counter() - t)
    out["query_ms"], out["query_ids"] = [x * 1e3 for x in lat], ids
    flat, fids = [], []

    def filtered():
        for i, q in enumerate(queries[:cfg["filtered_queries"]]):
            t = time.perf_counter()
            fids.append(store.search_where(i if by_index else q, K, FILTER_BUCKET))
            flat.append(time.perf_counter() - t)

    _profiled(prof, "filtered_query", filtered)
    out["filtered_ms"], out["filtered_ids"] = [x * 1e3 for x in flat], fids
    out["rss_queries"] = _rss()
    n0 = cfg["n"] + cfg.get("insert_offset", 0)  # rows a later round inserts are new rows too

    def singles():
        times = []
        for j in range(cfg["single"]):
            t = time.perf_counter()
            store.insert(n0 + j, j + cfg.get("insert_offset", 0) if by_index else inserts[j], meta_of(n0 + j))
            times.append(time.perf_counter() - t)
        return times

    out["single_ms"] = [x * 1e3 for x in _profiled(prof, "single_insert", singles)]
    out["durable_insert"] = store.durable_insert
    store.close()
    out["rss_end"], out["rss_peak"], out["load_end"] = _rss(), _peak(), os.getloadavg()[0]
    return out


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    if config.get("aimemory_root"):
        sys.path.insert(0, config["aimemory_root"])
    os.environ.setdefault("AIMEMORY_SPEECH", "0")
    result = run_worker(config)
    print("RESULT " + json.dumps(result))
