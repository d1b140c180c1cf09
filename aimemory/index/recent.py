"""Vectors added to a memory-mapped FAISS index, kept beside it until they are worth a save.

FAISS cannot grow a memory-mapped index. Reading it into RAM for one added vector copies every
vector (0.14 s at 100k x 384, measured; ten times that at 1M), and the copy then had to be written
back whole when the store closed (0.2-0.5 s at 100k). An agent, or a CLI ``remember``, paid both for
one memory. So :class:`.faiss.VectorIndex` keeps what it adds while mapped in a small exact index of
its own, searched beside the mapped one with the results merged by score, and folds it in only when
it grows past :data:`RECENT_MAX` or a save finds :data:`SAVE_FOLD_MIN` of them. Below that, a save
writes them alone, beside the index file (:func:`.faiss_file.write_recent`): a write then costs its
own rows on close, not a rewrite of every vector. An open whose saved index lacks the table's newest
rows (a crash, another process's writes) catches up just those: a store hands keys out in increasing
order, so the saved index holds a prefix of the table's sorted keys, and one checksum says so.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

#: vectors kept apart from a mapped index; one more and they are folded in (one copy of the index).
#: A lone query scans them exactly: ~1 ms per 10k x 384 on one core
RECENT_MAX = 16_384
#: a save folds the recent vectors into the index file (rewriting every vector) from this many; below
#: it they are saved on their own (6 MB at 384-d)
SAVE_FOLD_MIN = 4_096


def merge_top(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray], k: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of two searches' (scores (q, a), keys (q, a)) and (scores (q, b), keys (q, b))
    over disjoint vectors -> (scores (q, m), keys (q, m)), m = min(k, a + b): best first, ties by
    key, -1 keys (no result) last."""
    scores = np.concatenate([first[0], second[0]], axis=1).astype(np.float32, copy=False)  # (q, a + b)
    keys = np.concatenate([first[1], second[1]], axis=1).astype(np.int64, copy=False)
    scores = np.where(keys >= 0, scores, -np.inf)
    order = np.lexsort((np.where(keys >= 0, keys, np.iinfo(np.int64).max), -scores), axis=1)[:, :k]
    return (np.ascontiguousarray(np.take_along_axis(scores, order, 1)),
            np.ascontiguousarray(np.take_along_axis(keys, order, 1)))


def prefix_missing(table_keys: np.ndarray, saved_count: int, saved_checksum: str, recent_keys: np.ndarray,
                   checksum: Callable[[np.ndarray], str]) -> np.ndarray | None:
    """The keys a loaded index lacks when it holds exactly a prefix of the sorted ``table_keys``
    (n,): its file's ``saved_count`` keys first (``saved_checksum`` is theirs under ``checksum``),
    then the sorted ``recent_keys`` saved beside it. None when it does not (only a comparison of
    every key then tells what changed)."""
    held = saved_count + len(recent_keys)
    if held > len(table_keys) or checksum(table_keys[:saved_count]) != saved_checksum \
            or not np.array_equal(table_keys[saved_count:held], recent_keys):
        return None
    return table_keys[held:]
