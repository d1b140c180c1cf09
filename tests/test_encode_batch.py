"""Small text writes from many threads share encoder calls (aimemory.encode_batch): each caller gets
its own item's result, errors stay with their item, a lone caller encodes at once in its own thread,
and the store's remember keeps dedup and writes each memory with its own vector."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import ColourEncoder

from aimemory import MemoryStore
from aimemory.encode_batch import EncodeBatcher, small_texts
from aimemory.inputs import to_item

THREADS = 8


def _items(n: int, prefix: str = "note") -> list:
    return [to_item(f"{prefix} {i}: the user prefers green tea") for i in range(n)]


class Gate:
    """An encode function that records its calls and holds the first one until released."""

    def __init__(self, fail_on: str | None = None, hold_first: bool = True):
        self.calls: list[list[str]] = []
        self.threads: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.hold_first = hold_first
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, items):
        with self.lock:
            first = not self.calls
            self.calls.append([it.payload for it in items])
            self.threads.append(threading.current_thread().name)
        if first and self.hold_first:
            self.entered.set()
            assert self.release.wait(10)
        if self.fail_on is not None and any(self.fail_on in it.payload for it in items):
            raise ValueError(f"cannot encode {self.fail_on!r}")
        return [f"vec:{it.payload}" for it in items]


def _run_concurrently(batcher: EncodeBatcher, gate: Gate, items) -> tuple[dict, dict]:
    """The first item's caller leads and is held in its call; the others queue behind it."""
    results, errors = {}, {}

    def call(i):
        try:
            results[i] = batcher.encode([items[i]])[0]
        except Exception as exc:  # noqa: BLE001
            errors[i] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert gate.entered.wait(10)
    rest = [threading.Thread(target=call, args=(i,)) for i in range(1, len(items))]
    for t in rest:
        t.start()
    deadline = time.monotonic() + 10
    while batcher.queued() < len(rest) and time.monotonic() < deadline:
        time.sleep(0.001)
    gate.release.set()
    for t in [first, *rest]:
        t.join(10)
    return results, errors


def test_waiting_callers_share_one_call_and_get_their_own_results():
    gate = Gate()
    batcher = EncodeBatcher(gate)
    items = _items(THREADS)
    results, errors = _run_concurrently(batcher, gate, items)
    assert not errors
    assert results == {i: f"vec:{items[i].payload}" for i in range(THREADS)}
    assert len(gate.calls) == 2 and len(gate.calls[1]) == THREADS - 1  # all the waiting ones at once
    assert batcher.calls == 2 and batcher.items == THREADS


def test_an_error_fails_only_the_caller_whose_item_fails():
    gate = Gate(fail_on="note 3:")
    batcher = EncodeBatcher(gate)
    items = _items(6)
    results, errors = _run_concurrently(batcher, gate, items)
    assert set(errors) == {3} and "cannot encode" in str(errors[3])
    assert results == {i: f"vec:{items[i].payload}" for i in range(6) if i != 3}
    # the shared call failed, then each of its items was encoded alone
    assert [len(c) for c in gate.calls] == [1, 5, 1, 1, 1, 1, 1]


def test_a_lone_caller_encodes_at_once_in_its_own_thread():
    gate = Gate(hold_first=False)
    batcher = EncodeBatcher(gate)
    before = threading.active_count()
    items = _items(3)
    assert batcher.encode(items[:1]) == [f"vec:{items[0].payload}"]
    assert batcher.encode(items[1:]) == [f"vec:{it.payload}" for it in items[1:]]  # one call for both
    assert gate.calls == [[items[0].payload], [it.payload for it in items[1:]]]
    assert gate.threads == [threading.current_thread().name] * 2 and threading.active_count() == before


def test_an_interrupted_leader_leaves_the_batcher_usable():
    calls = []

    def encode(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise KeyboardInterrupt
        return [it.payload for it in items]

    batcher = EncodeBatcher(encode)
    with pytest.raises(KeyboardInterrupt):
        batcher.encode(_items(2))
    assert batcher.encode(_items(1)) == [_items(1)[0].payload] and batcher.queued() == 0


def test_up_to_max_parallel_calls_run_at_once():
    inside, peak, lock = [0], [0], threading.Lock()

    def encode(items):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        return [it.payload for it in items]

    batcher = EncodeBatcher(encode, max_parallel=2)
    threads = [threading.Thread(target=batcher.encode, args=(_items(1, f"t{i}"),)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 2 and batcher.items == 6


def test_small_texts_are_few_short_texts():
    assert small_texts(_items(1)) and small_texts(_items(8))
    assert not small_texts(_items(9)) and not small_texts([])
    assert not small_texts([to_item("word " * 2000)])


# -- the store ------------------------------------------------------------------------------------
class SlowEncoder(ColourEncoder):
    """Takes a while per call, so writers overlap; may refuse texts holding ``poison``."""

    def __init__(self, poison: str | None = None):
        super().__init__()
        self.poison = poison
        self.batches: list[int] = []

    def embed_texts(self, texts):
        self.batches.append(len(texts))
        time.sleep(0.03)
        if self.poison is not None and any(self.poison in t for t in texts):
            raise ValueError(f"the encoder cannot take {self.poison!r}")
        return super().embed_texts(texts)


def _write_concurrently(store: MemoryStore, texts: list[str]) -> tuple[dict, dict]:
    out, errors = {}, {}
    start = threading.Barrier(len(texts))

    def work(i):
        start.wait()
        try:
            out[i] = store.remember(texts[i])
        except Exception as exc:  # noqa: BLE001
            errors[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out, errors


def test_concurrent_remembers_share_encodes_and_keep_their_own_vectors(tmp_path):
    encoder = SlowEncoder()
    with MemoryStore(tmp_path / "mem", model=encoder) as store:
        texts = [f"red note {i} from writer {i}" for i in range(THREADS)]
        out, errors = _write_concurrently(store, texts)
        assert not errors and all(out[i].status == "new" for i in range(THREADS))
        assert len(encoder.batches) < THREADS and max(encoder.batches) > 1  # calls were shared
        rows = store.to_arrow(vectors=True).to_pylist()
        by_id = {r["id"]: np.asarray(r["vector"], np.float32) for r in rows}
        want = ColourEncoder().embed_texts(texts)
        for i in range(THREADS):
            assert out[i].content == texts[i]
            np.testing.assert_allclose(by_id[out[i].id], want[i], atol=1e-6)
            assert store.recall(texts[i], k=1)[0].id == out[i].id


def test_concurrent_duplicates_are_one_memory(tmp_path):
    with MemoryStore(tmp_path / "mem", model=SlowEncoder()) as store:
        stored = store.remember("blue kept note")
        out, errors = _write_concurrently(store, ["green same note"] * 4 + ["blue kept note"] * 2)
        assert not errors
        assert len({out[i].id for i in range(4)}) == 1
        assert sorted(out[i].status for i in range(4)) == ["existing", "existing", "existing", "new"]
        assert out[4].id == out[5].id == stored.id and out[4].status == out[5].status == "existing"
        assert store.count() == 2


def test_an_encode_error_fails_only_that_remember(tmp_path):
    with MemoryStore(tmp_path / "mem", model=SlowEncoder(poison="poison")) as store:
        texts = [f"red note {i}" for i in range(5)] + ["red poison note"]
        out, errors = _write_concurrently(store, texts)
        assert set(errors) == {5} and "cannot take 'poison'" in str(errors[5])
        assert store.count() == 5 and all(out[i].content == texts[i] for i in range(5))


def test_a_lone_writer_encodes_each_text_at_once(tmp_path):
    encoder = SlowEncoder()
    with MemoryStore(tmp_path / "mem", model=encoder) as store:
        for i in range(3):
            assert store.remember(f"green note {i}").status == "new"
        assert encoder.batches == [1, 1, 1]
        assert store.encode_batcher.calls == 3


def test_batching_off_and_other_writes_encode_under_the_lock(tmp_path):
    encoder = SlowEncoder()
    with MemoryStore(tmp_path / "mem", model=encoder) as store:
        store.batch_encodes = False
        out, errors = _write_concurrently(store, [f"red note {i}" for i in range(3)])
        assert not errors and store.count() == 3 and encoder.batches == [1, 1, 1]
        store.batch_encodes = True
        store.remember_many([f"blue many {i}" for i in range(20)], batch_size=20)  # a large batch
        assert store.encode_batcher.calls == 0 and store.count() == 23


def test_near_duplicate_checks_use_the_shared_encode(tmp_path):
    encoder = SlowEncoder()
    with MemoryStore(tmp_path / "mem", model=encoder) as store:
        first = store.remember("red apple on the table")
        again = store.remember("red apple on the table!", near_duplicate=0.5)
        assert again.status == "new" and again.near_duplicate_of == first.id
        merged = store.remember("red apple on a table", near_duplicate=0.5, on_near_duplicate="merge",
                                metadata={"tags": ["fruit"]})
        assert merged.status == "merged" and store.count() == 2
        assert encoder.batches == [1, 1, 1]  # one encode per write, none under the lock


def test_stores_run_two_calls_at_once_only_for_gil_free_text_forwards(monkeypatch):
    from aimemory import encode_batch
    from aimemory.encoders.base import Encoder
    from aimemory.encoders.offline import OfflineEncoder
    from aimemory.encoders.sentence import SentenceEncoder

    class Eager:  # no attribute: an eager forward, one call at a time
        pass

    monkeypatch.setattr(encode_batch.os, "cpu_count", lambda: 8)
    assert encode_batch.parallel_encodes(Eager()) == 1
    assert Encoder.parallel_text_calls == 1
    from aimemory.device import Placement

    class Text:  # a stand-in text tower, placed and answering like a SentenceEncoder
        placement = Placement()
        parallel_text_calls = SentenceEncoder.parallel_text_calls

    text = Text()
    assert text.parallel_text_calls == 2  # CPU, fp32: the GIL-free trace
    text.placement = Placement("cuda", "fp16")
    assert text.parallel_text_calls == 1  # eager on a GPU
    offline = OfflineEncoder.__new__(OfflineEncoder)
    offline.text = text
    assert offline.parallel_text_calls == 1
    text.placement = Placement()
    assert offline.parallel_text_calls == 2
    fake = Eager()
    fake.parallel_text_calls = 2  # type: ignore[attr-defined]
    assert encode_batch.parallel_encodes(fake) == 2
    monkeypatch.setattr(encode_batch.os, "cpu_count", lambda: 1)
    assert encode_batch.parallel_encodes(fake) == 1  # never more than the cores
    monkeypatch.setattr(encode_batch.os, "cpu_count", lambda: None)
    assert encode_batch.parallel_encodes(fake) == 1
