"""A text query, and a remember of a few texts, are encoded on one torch thread (a few tokens gain
nothing from intra-op threads and lose much to their barriers on a busy machine); the thread count
is restored afterwards, also when recalls overlap in several threads. A query's plans run side by
side."""

from __future__ import annotations

import threading

import pytest
from conftest import ColourEncoder

from aimemory import MemoryStore
from aimemory.encoders.base import QueryPlan
from aimemory.encoders.offline import DeferredVector
from aimemory.recall import side_by_side

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


def test_small_text_writes_encode_on_one_thread_and_large_batches_on_all(tmp_path):
    """A remember of a few texts (what agents do, two such calls at once) runs on one torch thread;
    a bulk batch keeps torch's count, and the count is restored either way."""
    from aimemory.store import SMALL_TEXT_ENCODE

    enc = ThreadCountingEncoder()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with MemoryStore(tmp_path / "mem", model=enc) as store:
            store.remember("a red note")
            store.remember_many([f"note {i}" for i in range(SMALL_TEXT_ENCODE)])
            assert enc.seen == [1, 1] and torch.get_num_threads() == 2
            enc.seen.clear()
            store.remember_many([f"bulk note {i}" for i in range(SMALL_TEXT_ENCODE + 1)])
            assert enc.seen and set(enc.seen) == {2}
    finally:
        torch.set_num_threads(before)


# -- a query's plans run side by side --------------------------------------------------------------


class TwoDeferredPlansEncoder(ColourEncoder):
    """Text queries as two plans whose vectors are computed on first use; each compute waits at a
    barrier for the other, so recall only answers when both run at the same time."""

    def __init__(self):
        super().__init__()
        self.meet = threading.Barrier(2, timeout=10)
        self.computed_on: list[tuple[str, int]] = []

    def query_plans(self, modality, payload):
        if modality != "text":
            return super().query_plans(modality, payload)

        def compute(name):
            def run():
                self.computed_on.append((name, threading.get_ident()))
                self.meet.wait()
                return self.embed_texts([payload])[0]
            return run

        return [QueryPlan(DeferredVector(compute("first"))),
                QueryPlan(DeferredVector(compute("second")), penalty=0.5)]


def test_a_querys_plans_are_searched_at_the_same_time(tmp_path):
    enc = TwoDeferredPlansEncoder()
    with MemoryStore(tmp_path / "mem", model=enc) as store:
        store.remember_many(["a red note", "a blue note"])
        hits = store.recall("red", k=1)  # a barrier timeout (plans run one after the other) raises
        assert hits[0].memory.content == "a red note"
        first, second = dict(enc.computed_on)["first"], dict(enc.computed_on)["second"]
        assert first == threading.get_ident() and second != first  # the first plan on the caller's thread


def test_side_by_side_keeps_order_waits_for_all_and_raises_the_first_error():
    done: list[int] = []

    def work(i):
        if i == 1:
            raise ValueError("one")
        if i == 2:
            threading.Event().wait(0.2)  # finishes after the caller's own item has failed
            done.append(i)
            raise KeyError("two")
        return i * 10

    assert side_by_side(work, [0, 3, 4]) == [0, 30, 40]
    assert side_by_side(work, [5]) == [50]
    with pytest.raises(ValueError, match="one"):
        side_by_side(work, [1, 2])
    assert done == [2]  # the other item had finished before the error reached the caller
    with pytest.raises(ValueError, match="one"):
        side_by_side(work, [0, 1, 2])  # errors in item order, not in finishing order
