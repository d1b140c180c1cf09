"""A text query is encoded on one torch thread (a few tokens gain nothing from intra-op threads and
lose much to their barriers on a busy machine); the thread count is restored afterwards, also when
recalls overlap in several threads."""

from __future__ import annotations

import threading

import pytest
from conftest import ColourEncoder

from aimemory import MemoryStore

torch = pytest.importorskip("torch")


class ThreadCountingEncoder(ColourEncoder):
    def __init__(self):
        super().__init__()
        self.seen: list[int] = []

    def embed_texts(self, texts):
        self.seen.append(torch.get_num_threads())
        return super().embed_texts(texts)


def test_text_queries_encode_on_one_thread_and_restore_the_count(tmp_path):
    enc = ThreadCountingEncoder()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with MemoryStore(tmp_path / "mem", model=enc) as store:
            store.remember_many(["a red note", "a blue note"])
            enc.seen.clear()
            assert store.recall("red", k=1)[0].memory.content == "a red note"
            assert enc.seen == [1]
            assert torch.get_num_threads() == 2
            threads = [threading.Thread(target=store.recall, args=("blue",)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert set(enc.seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
