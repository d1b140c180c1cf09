"""What both vector indexes tune against: the recall target, the tuning queries (drawn near stored
vectors, which is where real queries land) and recall@k against exact search."""

from __future__ import annotations

import numpy as np

TARGET_RECALL = 0.95  # recall@10 against exact search that tuned search settings must reach...
TUNING_MARGIN = 0.02  # ...plus this, so unseen queries still clear it
TUNING_NOISE = 0.05  # tuning queries: stored vectors plus this much noise, renormalised
FAISS_TUNING_QUERIES = 200
LANCE_TUNING_QUERIES = 40  # each costs one ANN search per candidate setting; the exact side is one scan


def recall_at_k(got: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` (q, k) found in the same row of ``got`` (q, k)."""
    k = truth.shape[1]
    return float(np.mean([len(set(g.tolist()) & set(t.tolist())) / k for g, t in zip(got, truth)]))


def near_queries(picks: np.ndarray, rng: np.random.Generator, noise: float = TUNING_NOISE) -> np.ndarray:
    """Tuning queries near stored vectors: ``picks`` (q, d) plus noise, unit rows (q, d) float32."""
    queries = picks + rng.standard_normal(picks.shape).astype(np.float32) * noise
    return np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True))


def far_queries(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Tuning queries far from stored vectors: random unit directions (n, dim) float32 (a text query
    among photos lands about as far from every stored vector)."""
    queries = rng.standard_normal((n, dim)).astype(np.float32)
    return np.ascontiguousarray(queries / np.linalg.norm(queries, axis=1, keepdims=True))
