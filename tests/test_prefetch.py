"""Decoding ahead on threads: order, errors in place, early exit, the thread setting, inputs
prepared ahead, and the store's results unchanged by the threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aimemory import prefetch
from aimemory.errors import InputError
from aimemory.prefetch import ReadyInputs, decode_threads, ordered, thread_map
from aimemory.preprocess.image import ImagePreprocessor

SAMPLES = Path(__file__).resolve().parents[1] / "aimemory" / "samples" / "real"


def _slow_square(x: int) -> int:
    time.sleep(0.002 * (x % 3))  # finish out of order
    if x == 5:
        raise InputError("five is bad")
    return x * x


@pytest.mark.parametrize("threads", [1, 4])
def test_results_come_in_input_order_with_errors_in_place(threads):
    out = list(ordered(_slow_square, list(range(9)), threads=threads, ahead=3))
    assert [r for r, _ in out] == [0, 1, 4, 9, 16, None, 36, 49, 64]
    assert isinstance(out[5][1], InputError) and all(e is None for i, (_, e) in enumerate(out) if i != 5)


def test_leaving_early_stops_the_work_ahead():
    started = []
    lock = threading.Lock()

    def work(x):
        with lock:
            started.append(x)
        time.sleep(0.01)
        return x

    gen = ordered(work, list(range(200)), threads=4, ahead=6)
    assert next(gen) == (0, None)
    gen.close()  # cancels what has not started, waits for what has
    n = len(started)
    time.sleep(0.05)
    assert n == len(started) and n <= 8  # nothing started after close; at most ahead + 1 + threads


def test_thread_map_is_map_and_raises_the_first_error():
    assert thread_map(lambda x: x + 1, list(range(50)), threads=4) == list(range(1, 51))
    with pytest.raises(InputError, match="five"):
        thread_map(_slow_square, list(range(9)), threads=3)


def test_thread_setting(monkeypatch):
    monkeypatch.delenv(prefetch.THREADS_ENV, raising=False)
    assert 1 <= decode_threads() <= prefetch.MAX_THREADS
    monkeypatch.setenv(prefetch.THREADS_ENV, "1")
    assert decode_threads() == 1
    for bad in ("0", "two", "-3"):
        monkeypatch.setenv(prefetch.THREADS_ENV, bad)
        with pytest.raises(InputError, match="AIMEMORY_DECODE_THREADS"):
            decode_threads()


def test_ready_inputs_are_taken_once_and_bounded(monkeypatch):
    ready = ReadyInputs()
    a, b = Image.new("RGB", (4, 4)), Image.new("RGB", (4, 4))
    ready.put("p", a, 1)
    assert ready.take("q", a) is None and ready.take("p", b) is None
    assert ready.take("p", a) == 1 and ready.take("p", a) is None
    monkeypatch.setattr(prefetch, "MAX_READY", 3)
    keep = [Image.new("RGB", (2, 2)) for _ in range(5)]
    for i, im in enumerate(keep):
        ready.put("p", im, i)
    assert [ready.take("p", im) for im in keep] == [None, None, 2, 3, 4]  # the oldest were dropped
    gone = Image.new("RGB", (2, 2))
    ready.put("p", gone, np.zeros(1000))
    assert len(ready) == 1
    del gone  # an item that is never embedded (already stored) does not keep its input alive
    assert len(ready) == 0


def test_prepared_input_equals_the_direct_one_and_the_reference_resize():
    from aimemory.preprocess.image import center_crop

    pre = ImagePreprocessor.for_size(224)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8))
    direct = pre.to_uint8(photo)
    pre.prepare(photo)
    assert np.array_equal(pre.to_uint8(photo), direct)
    exact = np.asarray(photo.resize(pre.resized_size(*photo.size), Image.Resampling.BICUBIC))
    assert np.array_equal(direct, center_crop(exact, 224, 224))  # one bicubic pass, as the reference


def test_a_reduced_jpeg_decode_stays_close_to_the_full_one(tmp_path):
    from aimemory.inputs import to_item

    pre = ImagePreprocessor.for_size(224)
    rng = np.random.default_rng(3)
    cat = Image.open(SAMPLES / "cat.jpg").convert("RGB").resize((1600, 1200), Image.Resampling.BICUBIC)
    noisy = np.asarray(cat).astype(np.int16) + rng.integers(-6, 7, (1200, 1600, 3), dtype=np.int16)
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(tmp_path / "p.jpg", quality=90)
    full_decode = to_item(tmp_path / "p.jpg").payload
    reduced_decode = to_item(tmp_path / "p.jpg", image_side=448).payload
    assert (full_decode.size, reduced_decode.size) == ((1600, 1200), (800, 600))
    diff = np.abs(pre.to_uint8(full_decode).astype(int) - pre.to_uint8(reduced_decode).astype(int))
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 2 and diff.max() <= 8  # of 255 levels


def test_threads_do_not_change_what_is_stored(tmp_path, monkeypatch, encoder):
    from aimemory import MemoryStore

    files = []
    for i in range(13):
        f = tmp_path / f"p{i}.png"
        Image.new("RGB", (40 + i, 30), (20 * i, 255 - 15 * i, 90)).save(f)
        files.append(f)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    files.insert(6, tmp_path / "bad.png")
    got = {}
    for threads in ("1", "4"):
        monkeypatch.setenv(prefetch.THREADS_ENV, threads)
        with MemoryStore(tmp_path / f"s{threads}", model=encoder) as store:
            result = store.remember_many(files, batch_size=4, errors="skip")
            got[threads] = ([m.source for m in result], [i for i, _, _ in result.skipped],
                            [(h.memory.source, round(h.score, 6)) for h in store.recall(Image.open(files[3]), k=3)])
        with MemoryStore(tmp_path / f"r{threads}", model=encoder) as store, pytest.raises(InputError, match="#6"):
            store.remember_many(files, batch_size=4)  # errors="raise": nothing stored
        with MemoryStore(tmp_path / f"r{threads}", model=encoder) as store:
            assert len(store) == 0
    assert got["1"] == got["4"] and got["1"][1] == [6] and len(got["1"][0]) == 13


def test_normalising_elsewhere_gives_the_same_pixels():
    import torch

    from aimemory.device import CPU, Placement

    pre = ImagePreprocessor.for_size(32)
    images = [Image.new("RGB", (40 + i, 33), (9 * i, 200, 31)) for i in range(3)]
    assert torch.equal(pre(images, device=torch.device("cpu")), pre(images))
    assert CPU.arithmetic_device is None and Placement("mps", "fp16").arithmetic_device is None
    assert Placement("cuda:1", "fp16").arithmetic_device == torch.device("cuda:1")


def test_the_store_decodes_photos_to_the_side_its_encoder_asks_for(tmp_path, monkeypatch):
    from conftest import ColourEncoder

    from aimemory import MemoryStore

    seen = []

    class Asks(ColourEncoder):
        image_decode_side = 150

        def embed_images(self, images):
            seen.extend(im.size for im in images)
            return super().embed_images(images)

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)).save(tmp_path / "p.jpg")
    monkeypatch.setenv(prefetch.THREADS_ENV, "2")
    with MemoryStore(tmp_path / "s", model=Asks(), ocr=False) as store:
        memory = store.remember(tmp_path / "p.jpg")
        assert seen == [(200, 150)] and store.ocr is None
        assert memory.content == (tmp_path / "p.jpg").read_bytes()  # the original bytes are kept
