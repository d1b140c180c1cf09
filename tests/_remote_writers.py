"""Two writers on one object-store URI, as two machines (separate cache folders, so no shared
flock): shared by the S3 and Azure store tests."""

from __future__ import annotations

import threading

import numpy as np
from conftest import ColourEncoder


def two_writers_check(uri: str, options: dict, tmp_path, monkeypatch, rounds: int) -> None:
    """Both write ``rounds`` batches of two at once; the lease must keep keys unique and every memory
    must land."""
    from aimemory import MemoryStore

    stores = []
    for i in range(2):
        monkeypatch.setenv("AIMEMORY_CACHE_DIR", str(tmp_path / f"machine{i}"))
        stores.append(MemoryStore(uri, model=ColourEncoder(), storage_options=options))
    errors = []

    def write(store, who):
        try:
            for j in range(rounds):
                store.remember_many([f"{who} red note {j}", f"{who} blue note {j}"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, f"w{i}")) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for s in stores:
        s.close()
    with MemoryStore(uri, model=ColourEncoder(), storage_options=options) as final:
        keys = final.catalog.array("vkey")[final.catalog.alive]
        assert len(final) == len(keys) == len(np.unique(keys)) == 4 * rounds
        last = f"w1 blue note {rounds - 1}"
        assert final.recall(last, k=3)[0].memory.content == last
