"""Bad input: a corpus generated in code (corrupt, truncated and huge-dimension images,
decompression bombs, fake and truncated audio, empty and over-long audio, binary that is not text, 10 MB text,
NaN and wrong-width vectors from an encoder, SQL-ish filters and queries, path traversal, bad
namespaces). Each gets a typed error in bounded time and memory, and nothing stored is harmed.
A Hypothesis fuzz target mutates valid PNG/WAV/FLAC/text bytes through ``aimemory.inputs.to_item``:
only :class:`InputError` subclasses may escape, each within a time bound.

Checkpoints (pickle payloads, wrong shapes, truncated safetensors) are covered in
``tests/test_weights.py``; MCP path confinement in ``tests/test_mcp.py``; namespace names with
``/`` and ``..`` in ``tests/test_reliability_state.py``."""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ColourEncoder, solid, tone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aimemory.inputs as inputs
from aimemory import Audio, MemoryStore
from aimemory.encoders.base import View
from aimemory.errors import (
    DecodeError,
    FilterError,
    InputError,
    InputTooLargeError,
    ModelError,
    UnsupportedInputError,
)

TIME_BOUND_S = 10.0  # per item, on a loaded 2-core machine
RSS_BOUND_MB = 600  # growth allowed while decoding one hostile item


def png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with one tiny compressed row of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def bomb_png(side: int = 9000) -> bytes:
    """A real decompression bomb: side x side zero pixels, a few hundred KB compressed, built from
    one zero row streamed through zlib (never the whole image in memory)."""
    comp = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def wav(audio: Audio) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio.samples, audio.sample_rate, format="WAV")
    return buf.getvalue()


def flac(audio: Audio) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio.samples, audio.sample_rate, format="FLAC")
    return buf.getvalue()


def wav_claiming(seconds: float, rate: int = 16000) -> bytes:
    """A WAV header whose data chunk claims ``seconds`` of 16-bit mono, followed by 1 s of data."""
    n = int(seconds * rate) * 2
    head = (b"RIFF" + struct.pack("<I", min(36 + n, 2**32 - 1)) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", min(n, 2**32 - 1)))
    return head + b"\0\1" * rate


def corpus() -> list[tuple[str, object, type]]:
    """(name, input, the error it must raise). Built lazily, a few MB at most."""
    red = png(solid("red"))
    t = tone("red", seconds=1.0)
    items = [
        ("png truncated", red[: len(red) // 2], DecodeError),
        ("png header only", red[:40], DecodeError),
        ("png bad crc", red[:30] + b"\xff" + red[31:], DecodeError),
        ("png zeroed body", red[:16] + b"\0" * (len(red) - 16), DecodeError),
        ("png 100k x 100k header", png_header_only(100_000, 100_000), InputTooLargeError),
        ("png 2^31 wide header", png_header_only(2**31 - 1, 1), InputTooLargeError),
        ("png zero size header", png_header_only(0, 0), InputError),
        ("png decompression bomb 9000^2", bomb_png(), InputTooLargeError),
        ("jpeg magic only", b"\xff\xd8\xff" + b"\0" * 100, DecodeError),
        ("gif magic only", b"GIF89a" + b"\xff" * 20, DecodeError),
        ("bmp magic only", b"BM" + b"\0" * 50, DecodeError),
        ("tiff magic only", b"II*\x00" + b"\xff" * 50, DecodeError),
        ("wav named but text", Path("fake.wav"), None),  # filled in by the test with a file
        ("wav magic, garbage", b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk", DecodeError),
        ("wav zero frames", wav(Audio(np.zeros(0, np.float32), 16000)) if False else
         (b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
          + b"data" + struct.pack("<I", 0)), InputError),
        ("wav claims 5 hours", wav_claiming(5 * 3600), None),  # typed error or a short decode
        ("flac truncated", flac(t)[:200], InputError),
        ("flac magic only", b"fLaC" + b"\0" * 30, DecodeError),
        ("ogg magic only", b"OggS" + b"\0" * 30, DecodeError),
        ("mp3 magic only", b"ID3" + b"\0" * 30, DecodeError),
        ("empty bytes", b"", InputError),
        ("binary, not text", bytes(range(1, 256)) * 4, UnsupportedInputError),  # Latin-1 text is text
        ("nul bytes", b"\0" * 100, UnsupportedInputError),
        ("10 MB text bytes", b"word " * 2_000_000, InputTooLargeError),
        ("10 MB str", "word " * 2_000_000, InputTooLargeError),
        ("whitespace text", " \n\t ", InputError),
        ("empty audio", Audio(np.zeros(0, np.float32), 16000), InputError),
        ("NaN audio", Audio(np.full(16000, np.nan, np.float32), 16000), DecodeError),
        ("float64 array", np.zeros((4, 4)), UnsupportedInputError),
        ("5-channel array", np.zeros((4, 4, 5), np.uint8), UnsupportedInputError),
        ("object", object(), UnsupportedInputError),
        ("missing file", Path("/nonexistent/really/not/here.png"), InputError),
        ("a folder", Path("/"), InputError),
    ]
    return items


CORPUS = corpus()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture
def guarded(store):
    """A store with a survivor in it, checked intact afterwards."""
    keep = store.remember("red survivor")
    yield store
    assert len(store) == 1 and store.get(keep.id).content == "red survivor"
    assert store.recall("red", k=5)[0].id == keep.id


@pytest.mark.parametrize("name,x,error", CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_item_is_refused_with_a_typed_error(guarded, tmp_path, name, x, error):
    if name == "wav named but text":
        x = tmp_path / "fake.wav"
        x.write_bytes(b"\x00\x01binary that is not audio")
        error = UnsupportedInputError
    rss0 = _rss_mb()
    t0 = time.monotonic()
    if error is None:  # may decode (to a bounded length) or be refused; never anything else
        try:
            m = guarded.remember(x)
        except InputError:
            pass
        else:
            assert m.modality == "audio"
            guarded.forget(m.id)
    else:
        with pytest.raises(error):
            guarded.remember(x)
        with pytest.raises(error):
            guarded.remember_many(["red fine", x])
    assert time.monotonic() - t0 < TIME_BOUND_S, f"{name} took too long"
    assert _rss_mb() - rss0 < RSS_BOUND_MB, f"{name} used too much memory"


# -- phone-sized photos: reduced while decoding, stored whole -----------------------------------
PHONE_SIDE = 12_000  # 144 MP, over MAX_IMAGE_PIXELS: phones take 100-200 MP photos


@pytest.fixture(scope="module")
def phone_jpeg() -> bytes:
    """A 12000 x 12000 colour JPEG (~2.5 MB at quality 5, ~3 s to make): coloured noise blown up."""
    from PIL import Image

    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 255, (375, 375, 3), dtype=np.uint8))
    small.paste((220, 20, 20), (0, 0, 375, 375))  # mostly red, so the colour encoder recalls it as red
    buf = io.BytesIO()
    small.resize((PHONE_SIDE, PHONE_SIDE), Image.NEAREST).save(buf, format="JPEG", quality=5)
    return buf.getvalue()


def jpeg_claiming(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a baseline JPEG) with its frame header rewritten to claim ``width`` x ``height``."""
    sof = data.index(b"\xff\xc0")
    return data[:sof + 5] + struct.pack(">HH", height, width) + data[sof + 9:]


def test_phone_sized_jpeg_is_reduced_on_decode_and_stored(store, phone_jpeg, tmp_path):
    from aimemory.display import thumbnail_png

    assert PHONE_SIDE**2 > inputs.MAX_IMAGE_PIXELS
    path = tmp_path / "phone.jpg"
    path.write_bytes(phone_jpeg)
    rss0, t0 = _rss_mb(), time.monotonic()
    item = inputs.to_item(path)
    w, h = item.payload.size
    assert w * h <= inputs.MAX_IMAGE_PIXELS and w == h >= PHONE_SIDE // 8
    assert item.content == phone_jpeg and item.mime == "image/jpeg"  # the original is kept whole
    m = store.remember(path)
    assert time.monotonic() - t0 < 2 * TIME_BOUND_S and _rss_mb() - rss0 < RSS_BOUND_MB
    assert m.modality == "image" and m.content == phone_jpeg
    assert store.recall("red", k=1, modality="image")[0].id == m.id
    assert m.image().size == (PHONE_SIDE, PHONE_SIDE)  # the stored photo opens at full size
    assert max(__import__("PIL.Image").Image.open(io.BytesIO(thumbnail_png(m, 64))).size) == 64
    assert store.remember(phone_jpeg).id == m.id  # the same bytes are the same memory


def test_absurd_jpeg_headers_are_still_refused(store, phone_jpeg):
    """Over a gigapixel (a header no camera writes) is refused before any decoding."""
    assert jpeg_claiming(phone_jpeg, PHONE_SIDE, PHONE_SIDE) == phone_jpeg
    for side in (40_000, 65_535):
        t0 = time.monotonic()
        with pytest.raises(InputTooLargeError, match="pixel"):
            store.remember(jpeg_claiming(phone_jpeg, side, side))
        assert time.monotonic() - t0 < TIME_BOUND_S
    assert len(store) == 0


def test_images_that_cannot_be_reduced_on_decode_keep_the_limit(store):
    """PNG (and other formats without reduced decoding) over the pixel limit are refused."""
    with pytest.raises(InputTooLargeError, match="downscale"):
        store.remember(bomb_png())
    assert len(store) == 0


def test_skip_mode_stores_the_good_and_lists_every_bad(store):
    bad = [x for name, x, err in CORPUS if err is not None and not isinstance(x, Path)]
    result = store.remember_many(["red one", *bad, "blue two"], errors="skip")
    assert len(result) == 2 and len(result.skipped) == len(bad)
    assert all(isinstance(e, InputError) for _, _, e in result.skipped)
    assert sorted(m.content for m in result) == ["blue two", "red one"]


def test_hour_long_audio_hits_the_limit_without_decoding_it(store, monkeypatch):
    """The duration limit is checked from the header, before samples are read."""
    monkeypatch.setattr(inputs, "MAX_AUDIO_SECONDS", 2)
    with pytest.raises(InputTooLargeError, match="over the 2 s limit"):
        store.remember(wav(tone("red", seconds=3.0)))
    with pytest.raises(InputTooLargeError):
        store.remember(flac(tone("red", seconds=3.0)))
    with pytest.raises(InputTooLargeError):
        store.remember(tone("red", seconds=3.0))
    assert len(store) == 0


# -- encoders that misbehave --------------------------------------------------------------------
class BadEncoder(ColourEncoder):
    """Returns NaN, inf, or wrongly shaped vectors on demand."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def views(self, modality, payloads):
        good = super().views(modality, payloads)
        if self.mode == "ok":
            return good
        out = []
        for views in good:
            v = views[0].vector.copy()
            if self.mode == "nan":
                v[0] = np.nan
                out.append([View(views[0].kind, v)])
            elif self.mode == "inf":
                v[1] = np.inf
                out.append([View(views[0].kind, v)])
            elif self.mode == "short":
                out.append([View(views[0].kind, v[:8])])
            elif self.mode == "recut":  # 8 + 24 = 2 x 16: would be silently re-cut into two rows
                out.append([View("text", v[:8]), View("text", np.concatenate([v, v[:8]]))])
        return out


@pytest.mark.parametrize("mode", ["nan", "inf", "short", "recut"])
def test_bad_vectors_from_an_encoder_are_refused(tmp_path, mode):
    path = tmp_path / "m"
    enc = BadEncoder("ok")
    with MemoryStore(path, model=enc) as s:
        keep = s.remember("red survivor")
        enc.mode = mode
        with pytest.raises(ModelError, match="nothing was stored"):
            s.remember("blue poison")
        with pytest.raises(ModelError):
            s.remember_many(["green a", "green b"])
        s.flush()  # the write-ahead segment into the table
        assert len(s) == 1 and s.table.count_rows() == 1
        enc.mode = "ok"
        assert s.recall("red", k=3)[0].id == keep.id
    with MemoryStore(path, model=ColourEncoder()) as s:
        assert list(s.catalog.by_id) == [keep.id]
        _, vecs = s.table.vectors_for(None)
        assert np.isfinite(vecs).all()


# -- filters and queries that look like SQL -------------------------------------------------------
EVIL = ["x' OR '1'='1", "'; DROP TABLE memories; --", '" OR 1=1 --', "\\", "%", "_", "tags LIKE '%'",
        "namespace = 'other'", "\0", "') OR (1=1", "*", "a:b AND (", '"unbalanced', "NOT", "~~~"]


@pytest.mark.parametrize("evil", EVIL)
def test_sql_in_filters_and_queries_matches_only_literally(store, evil):
    a = store.remember("red apple", metadata={"tags": ["fruit"], "k": "v"})
    other = store.remember("red secret", namespace="other")
    for where in ({"tags": evil}, {"k": evil}, {evil: "v"}, {"source": evil}, {"id": evil}):
        assert store.recall("red", k=5, where=where) == [] or \
            all(h.id == a.id for h in store.recall("red", k=5, where=where))
    hits = store.recall(evil if evil.strip("\0") else "red", k=5, hybrid=True)
    assert other.id not in {h.id for h in hits}
    with pytest.raises(FilterError):
        store.recall("red", where={"k": {"$ne": evil}})
    assert store.count("default") == 1 and store.count("other") == 1


# -- file ingestion: traversal and links -----------------------------------------------------------
def test_mcp_remember_file_refuses_traversal_and_hidden(tmp_path):
    """The rule MCP's remember_file applies (its end-to-end tests are in tests/test_mcp.py)."""
    from aimemory.mcp_server import _allowed

    root = (tmp_path / "files").resolve()
    root.mkdir()
    (root / "ok.txt").write_text("red fine")
    (tmp_path / "secret.txt").write_text("red secret")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    assert _allowed((root / "ok.txt").resolve(), [root])
    for name in ("../secret.txt", "link.txt", ".env", "sub/.ssh/id_rsa", "../../etc/passwd",
                 "./../files/../secret.txt"):
        assert not _allowed((root / name).resolve(), [root]), name


def test_cli_remember_of_a_traversal_path_reads_only_what_it_names(tmp_path):
    """Plain Python paths are the caller's to choose; what is stored is the file named, sniffed by
    its bytes, never a path string evaluated elsewhere."""
    from aimemory.inputs import to_item

    (tmp_path / "a").mkdir()
    target = tmp_path / "a" / ".." / "note.txt"
    (tmp_path / "note.txt").write_text("red through dots")
    item = to_item(target)
    assert item.payload == "red through dots" and item.source == str(target)


# -- the fuzz target -----------------------------------------------------------------------------
SEEDS = {
    "png": png(solid("green", size=(6, 5), noise_seed=1)),
    "wav": wav(tone("blue", seconds=0.2)),
    "flac": flac(tone("green", seconds=0.2)),
    "text": "red caf\u00e9 \u4e2d\u6587 note".encode(),
}
FUZZ = {"examples": 0, "typed_errors": 0, "decoded": 0, "max_seconds": 0.0}


@st.composite
def mutated(draw):
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "splice"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 64))]
        else:
            data[i:i + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, 65535])))
    return bytes(data)


def _fuzz_one(data: bytes) -> None:
    FUZZ["examples"] += 1
    t0 = time.monotonic()
    try:
        item = inputs.to_item(data)
        FUZZ["decoded"] += 1
        assert item.modality in inputs.MODALITIES
    except InputError:
        FUZZ["typed_errors"] += 1
    took = time.monotonic() - t0
    FUZZ["max_seconds"] = max(FUZZ["max_seconds"], took)
    assert took < TIME_BOUND_S, f"{len(data)} bytes took {took:.1f} s"


def _fuzz(examples: int) -> dict:
    for k in FUZZ:
        FUZZ[k] = 0
    run = settings(max_examples=examples, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))(given(mutated())(_fuzz_one))
    run()
    figures = {**FUZZ, "corpus_items": len(CORPUS), "evil_filters": len(EVIL)}
    out = os.environ.get("AIMEMORY_RELIABILITY_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"suite": "inputs_fuzz", **figures}) + "\n")
    return figures


@pytest.mark.heavy
def test_fuzz_to_item_only_typed_errors():
    figures = _fuzz(150)
    assert figures["examples"] >= 100


@pytest.mark.slow
def test_fuzz_to_item_long():
    figures = _fuzz(int(os.environ.get("AIMEMORY_FUZZ_EXAMPLES", "5000")))
    assert figures["examples"] >= 5000
