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
