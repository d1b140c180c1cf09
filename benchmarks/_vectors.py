"""Embedding-shaped test vectors: unit vectors around many cluster centres (like CLIP embeddings
of a photo collection: topics, with near-duplicates inside each), and an encoder that maps the
texts "v123" to them, so stores can be filled with known vectors at benchmark speed."""

from __future__ import annotations

import numpy as np

from aimemory.encoders.base import Encoder, l2_normalize


def clustered(n: int, dim: int, clusters: int | None = None, spread: float = 0.5, seed: int = 0
              ) -> np.ndarray:
    """(n, dim) float32 unit rows: ``clusters`` centres (default ~sqrt(n)), each point its centre
    plus isotropic noise of norm ~``spread`` (cosine to the centre ~0.9 at 0.5)."""
    rng = np.random.default_rng(seed)
    clusters = clusters or max(8, int(np.sqrt(n)))
    centres = l2_normalize(rng.standard_normal((clusters, dim)))
    which = rng.integers(0, clusters, n)
    noise = rng.standard_normal((n, dim)).astype(np.float32) * (spread / np.sqrt(dim))
    return l2_normalize(centres[which] + noise)


def clustered_blocks(n: int, dim: int, block: int = 100_000, clusters: int | None = None,
                     spread: float = 0.5, seed: int = 0):
    """``clustered``'s distribution made ``block`` rows at a time, in float32 throughout, so 10M rows
    never sit in memory at once: yields (start row, (rows, dim) float32 unit rows)."""
    clusters = clusters or max(8, int(np.sqrt(n)))
    centres = l2_normalize(np.random.default_rng(seed).standard_normal((clusters, dim)).astype(np.float32))
    for i, start in enumerate(range(0, n, block)):
        rng = np.random.default_rng([seed, i])  # each block its own stream: the same rows in any order
        m = min(block, n - start)
        noise = rng.standard_normal((m, dim), dtype=np.float32) * np.float32(spread / np.sqrt(dim))
        yield start, l2_normalize(centres[rng.integers(0, clusters, m)] + noise).astype(np.float32)


def exact_top(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best cosine matches in ``base`` for each query (ground truth)."""
    out = []
    for start in range(0, len(queries), 256):
        s = queries[start:start + 256] @ base.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, top, 1), axis=1)
        out.append(np.take_along_axis(top, order, 1))
    return np.concatenate(out)


class LookupEncoder(Encoder):
    """Texts "v<i>" -> row i of a fixed matrix (any other text -> a hash-seeded vector)."""

    modalities = frozenset({"text"})

    def __init__(self, vectors: np.ndarray, model_id: str = "lookup-v1"):
        self.vectors = np.asarray(vectors, np.float32)
        self.dim = self.vectors.shape[1]
        self.model_id = model_id

    def embed_texts(self, texts):
        rows = []
        for t in texts:
            if t.startswith("v") and t[1:].isdigit():
                rows.append(self.vectors[int(t[1:])])
            else:
                rng = np.random.default_rng(abs(hash(t)) % 2**32)
                rows.append(rng.standard_normal(self.dim).astype(np.float32))
        return l2_normalize(np.stack(rows))


def view_rows(vectors: np.ndarray, start_vkey: int = 1, namespace: str = "default"):
    """Table rows (the store's schema) holding ``vectors`` as text memories "v<i>", written
    straight to Lance: the fast way to make a large store for index benchmarks."""
    import pyarrow as pa

    from aimemory.records import table_schema

    n, dim = vectors.shape
    keys = np.arange(start_vkey, start_vkey + n, dtype=np.int64)
    ids = [f"{k:024x}" for k in keys]
    texts = [f"v{k - 1}" for k in keys]
    schema = table_schema(dim)
    cols = {
        "vkey": keys, "id": ids, "view": np.zeros(n, np.int32), "namespace": [namespace] * n,
        "modality": ["text"] * n, "kind": ["text"] * n,
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
        "created_at": pa.array(np.full(n, 1_700_000_000_000_000, np.int64), pa.timestamp("us", tz="UTC")),
        "text": texts, "mime": ["text/plain"] * n, "content_hash": [f"h{k}" for k in keys],
        "metadata": ["{}"] * n, "tags": [[] for _ in range(n)],
    }
    arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in schema]
    return pa.table(arrays, schema=schema)


EXACT_BLOCK_ROWS = 500_000  # ground truth scans (memory-mapped) vectors this many rows at a time


class ExactIndex:
    """The store's index protocol by exact search over the stored vectors (keys are row + 1):
    the ground truth the store's recall is compared with, through the same recall code. The vectors
    may be memory-mapped and are scanned in blocks, never copied whole; ``prime`` answers known
    queries in one batched pass, so ground truth at 10M rows is one scan, not one per query."""

    dirty, kind, nprobe = False, "exact", 0
    CACHED_TOP = 1024  # per primed query: enough for recall's over-fetch

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors
        self.ntotal = len(self.vectors)
        self.primed: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self.hits = self.scans = 0

    def _blocks(self):
        for s in range(0, self.ntotal, EXACT_BLOCK_ROWS):
            yield s, np.asarray(self.vectors[s:s + EXACT_BLOCK_ROWS], np.float32)

    def prime(self, queries: np.ndarray) -> None:
        """The top CACHED_TOP rows of each of ``queries`` (q, d), in one pass over the vectors."""
        q = np.ascontiguousarray(queries, np.float32)
        top_s = np.full((len(q), 0), -np.inf, np.float32)
        top_r = np.zeros((len(q), 0), np.int64)
        for s, block in self._blocks():
            scores = q @ block.T  # (q, rows)
            keep = min(self.CACHED_TOP, scores.shape[1])
            part = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
            top_s = np.concatenate([top_s, np.take_along_axis(scores, part, 1)], 1)
            top_r = np.concatenate([top_r, part + s], 1)
            best = np.argsort(-top_s, axis=1, kind="stable")[:, :self.CACHED_TOP]
            top_s, top_r = np.take_along_axis(top_s, best, 1), np.take_along_axis(top_r, best, 1)
        for i, vec in enumerate(q):
            self.primed[vec.tobytes()] = (top_s[i], top_r[i])

    def search(self, queries, k, allowed=None):
        q = np.asarray(queries, np.float32)[0]
        k = min(k, self.ntotal)
        got = self.primed.get(np.ascontiguousarray(q).tobytes()) if k <= self.CACHED_TOP else None
        if allowed is not None and got is not None:
            # the allowed rows among a primed query's global top, in order, are its allowed top
            ok = np.isin(got[1] + 1, np.asarray(allowed, np.int64))
            if ok.sum() >= k:
                self.hits += 1
                return got[0][ok][:k][None], (got[1][ok][:k] + 1)[None]
        if allowed is not None:  # score only the allowed rows
            self.scans += 1
            rows = np.sort(np.asarray(allowed, np.int64) - 1)
            scores = np.asarray(self.vectors[rows], np.float32) @ q
            top = np.argsort(-scores, kind="stable")[:k]
            out_s, out_k = scores[top], rows[top] + 1
            pad = k - len(top)
            return (np.concatenate([out_s, np.full(pad, -np.inf, np.float32)])[None],
                    np.concatenate([out_k, np.full(pad, -1, np.int64)])[None])
        if got is not None:
            self.hits += 1
            return got[0][:k][None], (got[1][:k] + 1)[None]
        self.scans += 1
        scores = np.concatenate([block @ q for _, block in self._blocks()])
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return scores[top][None], (top + 1)[None]
