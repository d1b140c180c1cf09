"""MemoryStore end to end with the deterministic colour encoder (see conftest)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ColourEncoder, solid, tone

from aimemory import (
    Audio,
    DecodeError,
    InputError,
    InputTooLargeError,
    MemoryStore,
    ModelMismatchError,
    NotFoundError,
    StoreClosedError,
    UnsupportedInputError,
)
from aimemory.encoders.base import Encoder


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(audio: Audio) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio.samples, audio.sample_rate, format="WAV")
    return buf.getvalue()


# -- round trips ---------------------------------------------------------------------------------
def test_round_trip_each_modality(store):
    img = solid("red")
    m_img = store.remember(img, metadata={"tags": ["pets"], "room": "kitchen"})
    m_txt = store.remember("a green bicycle")
    m_aud = store.remember(tone("blue"))
    assert len(store) == 3
    got = store.get(m_img.id)
    assert got.modality == "image" and got.tags == ["pets"] and got.metadata["room"] == "kitchen"
    assert np.array_equal(np.asarray(got.image().convert("RGB")), np.asarray(img))
    assert store.get(m_txt.id).content == "a green bicycle"
    assert store.get(m_txt.id).text == "a green bicycle"
    audio = store.get(m_aud.id).audio()
    assert abs(audio.duration - 0.5) < 0.01
    assert got.created_at.tzinfo is not None


def test_inputs_paths_bytes_arrays(store, tmp_path):
    p = tmp_path / "photo.dat"  # wrong extension: modality comes from content
    p.write_bytes(png_bytes(solid("green")))
    m = store.remember(p)
    assert m.modality == "image" and m.source == str(p)
    m2 = store.remember(wav_bytes(tone("red")))
    assert m2.modality == "audio"
    m3 = store.remember(np.zeros((8, 8, 3), np.uint8) + 200)
    assert m3.modality == "image"
    m4 = store.remember("plain words".encode())
    assert m4.modality == "text" and store.get(m4.id).content == "plain words"


def test_reopen_keeps_everything(tmp_path):
    enc = ColourEncoder()
    with MemoryStore(tmp_path / "m", model=enc) as s:
        ids = [s.remember(solid(c)).id for c in ("red", "green", "blue")]
    with MemoryStore(tmp_path / "m", model=enc) as s:
        assert len(s) == 3
        assert s.recall(solid("green"), k=1)[0].id == ids[1]
        new = s.remember("a blue note")
        assert new.id not in ids


# -- recall ----------------------------------------------------------------------------------------
def test_cross_modal_recall_and_ordering(store):
    red = store.remember(solid("red"))
    green = store.remember(solid("green"))
    blue_tone = store.remember(tone("blue"))
    store.remember("notes about lunch")
    hits = store.recall("something red", k=4)
    assert hits[0].id == red.id
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert store.recall("blue", k=1, modality="audio")[0].id == blue_tone.id
    assert store.recall(tone("green"), k=1, modality="image")[0].id == green.id
    assert store.recall(solid("blue"), k=1, modality=["audio", "text"])[0].id == blue_tone.id


@pytest.mark.parametrize("make", [lambda: solid("red", noise_seed=3), lambda: "a lone sentence",
                                  lambda: tone("green", 0.7)])
def test_exact_self_recall(store, make):
    for seed in range(5):
        store.remember(solid("red", noise_seed=100 + seed))
        store.remember(f"filler text number {seed}")
    item = make()
    mem = store.remember(item)
    hit = store.recall(item, k=1)[0]
    assert hit.id == mem.id and hit.score == pytest.approx(1.0, abs=1e-5)


def test_recall_returns_k_even_with_filters(store):
    for i in range(30):
        store.remember(f"red note {i}", metadata={"tags": ["even" if i % 2 == 0 else "odd"]})
    hits = store.recall("red", k=10, where={"tags": "odd"})
    assert len(hits) == 10 and all("odd" in h.memory.tags for h in hits)


def test_time_range(store):
    a = store.remember("red early")
    time.sleep(0.02)
    cut = time.time()
    b = store.remember("red late")
    assert [h.id for h in store.recall("red", since=cut)] == [b.id]
    assert [h.id for h in store.recall("red", until=cut)] == [a.id]
    assert {h.id for h in store.recall("red", since="1h")} == {a.id, b.id}  # an age, as the CLI takes
    assert store.recall("red", until="1h") == []
    for bad in ("yesterday", "", float("nan"), True):
        with pytest.raises(InputError, match="since"):
            store.recall("red", since=bad)


def test_hybrid_finds_exact_names(store):
    for i in range(20):
        store.remember(f"green memo {i}")
    target = store.remember("invoice ZX-9931 for the green paint")
    hits = store.recall("ZX-9931", k=3, hybrid=True)
    assert hits[0].id == target.id


def test_hybrid_takes_quoted_phrases_and_a_second_handle_in_the_process(store, encoder):
    """A quoted query raised Lance's "position is not found" (phrases need word positions); a second
    store on the folder in the same process failed every hybrid recall on an index commit conflict."""
    target = store.remember("invoice ZX-9931 for the green paint", id="x")
    for query in ('"ZX-9931"', '"green paint"', '""'):
        assert store.recall(query, k=3, hybrid=True), query
    assert store.recall('"ZX-9931"', k=1, hybrid=True)[0].id == target.id
    other = MemoryStore(store.path, model=encoder)
    try:
        other.update("x", metadata={"m": 1})
        assert store.recall("invoice", hybrid=True) and other.recall("invoice", hybrid=True)
    finally:
        other.close()


def test_hybrid_scores_are_cosines_and_fusion_is_separate(store):
    for i in range(30):
        store.remember(f"red memo {i}")
    target = store.remember("invoice ZX-9931 for the green paint")  # far from "red": keyword-only
    cosine = {h.id: h.score for h in store.recall("red ZX-9931", k=100)}
    hits = store.recall("red ZX-9931", k=31, hybrid=True)
    assert target.id in {h.id for h in hits}
    for h in hits:  # every hit, vector or keyword-only, shows its best view's cosine
        assert h.score == pytest.approx(cosine[h.id], abs=1e-5)
        assert h.fusion is not None and 0 < h.fusion < 0.05
    fusions = [h.fusion for h in hits]
    assert fusions == sorted(fusions, reverse=True)  # ordered by the fusion
    assert all(h.fusion is None for h in store.recall("red", k=3))
    assert "fusion" in hits.to_arrow().column_names


def test_hybrid_prints_no_lance_warning(store, capfd):
    store.remember("invoice ZX-9931 for the green paint")
    store.remember("red memo")
    capfd.readouterr()
    store.recall("ZX-9931", k=2, hybrid=True)
    err = capfd.readouterr().err
    assert "_score" not in err and "Deprecation" not in err, err


def test_long_text_is_chunked(store):
    words = " ".join(f"word{i}" for i in range(200)) + " red"
    mem = store.remember(words)
    assert store.stats()["views"].get("text.chunk", 0) >= 4
    hits = store.recall(words, k=1)
    assert hits[0].id == mem.id and hits[0].kind == "text.chunk"


# -- forget, dedup ---------------------------------------------------------------------------------
def test_forget(store):
    mems = [store.remember(f"red item {i}") for i in range(8)]
    assert store.forget(mems[0].id) == 1
    hits = store.recall("red item 0", k=8)
    assert mems[0].id not in {h.id for h in hits} and len(hits) == 7
    with pytest.raises(NotFoundError):
        store.get(mems[0].id)
    with pytest.raises(NotFoundError):
        store.forget(mems[0].id)
    with pytest.raises(NotFoundError):  # one unknown id: nothing deleted
        store.forget([mems[1].id, "nope"])
    assert len(store) == 7


def test_dedup(store):
    a = store.remember(solid("red"))
    b = store.remember(solid("red"))
    assert a.id == b.id and len(store) == 1
    c = store.remember(solid("red"), dedup=False)
    assert c.id != a.id and len(store) == 2
    other_ns = store.remember(solid("red"), namespace="alice")
    assert other_ns.id != a.id
    batch = store.remember_many(["same", "same", "different"])
    assert batch[0].id == batch[1].id and len(store) == 5


# -- filters, tenants ------------------------------------------------------------------------------
@pytest.mark.parametrize("evil", ["x' OR '1'='1", "') OR 1=1 --", "%", "*", "a\"b", "tag\x00",
                                  "' ; DROP TABLE memories; --"])
def test_injection_strings_match_only_literally(store, evil):
    store.remember("red one", metadata={"tags": ["safe"], "owner": "bob"})
    literal = store.remember("red two", metadata={"tags": [evil], "owner": evil})
    for where in ({"tags": evil}, {"owner": evil}):
        hits = store.recall("red", k=5, where=where)
        assert [h.id for h in hits] == [literal.id]
    with pytest.raises(NotFoundError):
        store.forget(evil)
    assert len(store) == 2


def test_where_on_columns_and_bad_filters(store, tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("red file")
    m = store.remember(p)
    store.remember("red other")
    assert [h.id for h in store.recall("red", where={"source": str(p)})] == [m.id]
    from aimemory import FilterError

    with pytest.raises(FilterError):
        store.recall("red", where={"tags": {"nested": 1}})
    with pytest.raises(FilterError):
        store.recall("red", where="tags = 'x'")


def test_namespaces_are_a_hard_boundary(store):
    a = store.remember("red secret of alice", namespace="alice")
    b = store.remember("red secret of bob", namespace="bob")
    assert [h.id for h in store.recall("red", k=10, namespace="alice")] == [a.id]
    assert [h.id for h in store.recall("red", k=10, namespace="bob")] == [b.id]
    assert store.recall("red", k=10) == []
    with pytest.raises(NotFoundError):
        store.get(a.id, namespace="bob")
    with pytest.raises(NotFoundError):
        store.forget(a.id, namespace="bob")
    assert store.get(a.id, namespace="alice").content == "red secret of alice"
    assert store.count("alice") == 1 and len(store) == 2
    with pytest.raises(InputError):
        store.recall("red", namespace="bad name!")


# -- model identity --------------------------------------------------------------------------------
class OtherEncoder(ColourEncoder):
    model_id = "test-other-v1"


def test_model_mismatch_is_an_error(tmp_path):
    with MemoryStore(tmp_path / "m", model=ColourEncoder()) as s:
        s.remember("red")
    with pytest.raises(ModelMismatchError, match="test-colour-v1"):
        MemoryStore(tmp_path / "m", model=OtherEncoder())
    with MemoryStore(tmp_path / "m", model=ColourEncoder()) as s:  # still fine
        assert len(s) == 1


@pytest.mark.parametrize("model", ["openai/clip-vit-base-patch32", "aimemory-mini"])
def test_model_mismatch_is_found_before_loading_the_model(tmp_path, monkeypatch, model):
    import aimemory.encoders.registry as registry

    with MemoryStore(tmp_path / "m", model=ColourEncoder()) as s:
        s.remember("red")

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded (or downloaded) before the manifest was checked")

    monkeypatch.setattr(registry, "load_encoder", no_loading)
    with pytest.raises(ModelMismatchError, match=f"test-colour-v1.*{model}"):
        MemoryStore(tmp_path / "m", model=model)


# -- index as a derived cache ----------------------------------------------------------------------
def test_index_catches_up_with_rows_added_behind_its_back(tmp_path):
    enc = ColourEncoder()
    with MemoryStore(tmp_path / "m", model=enc) as s:
        s.remember("red first")
    other = MemoryStore(tmp_path / "m", model=enc)
    added = other.remember(solid("green"))
    other.index.dirty = False  # simulate a writer that never saved its index
    other.table.close()
    other.state.closed = True
    with MemoryStore(tmp_path / "m", model=enc) as s:
        assert len(s) == 2
        assert s.recall(solid("green"), k=1)[0].id == added.id


@pytest.mark.parametrize("damage", ["delete", "truncate", "zero", "sidecar"])
def test_index_rebuilt_from_damaged_file(tmp_path, damage, caplog):
    enc = ColourEncoder()
    with MemoryStore(tmp_path / "m", model=enc) as s:
        mems = [s.remember(solid(c, noise_seed=i)) for i, c in enumerate(["red", "green", "blue"] * 3)]
    sidecar = tmp_path / "m" / "index" / "vectors.json"
    (index_file,) = (tmp_path / "m" / "index").glob("vectors-*.faiss")
    if damage == "delete":
        index_file.unlink()
    elif damage == "truncate":
        index_file.write_bytes(index_file.read_bytes()[:50])
    elif damage == "zero":
        index_file.write_bytes(b"\0" * index_file.stat().st_size)
    else:
        sidecar.write_text("{not json")
    with MemoryStore(tmp_path / "m", model=enc) as s:
        assert s.index.ntotal == 9
        assert s.recall(solid("blue", noise_seed=2), k=1)[0].id == mems[2].id


def test_concurrent_writer_is_seen(tmp_path):
    enc = ColourEncoder()
    a = MemoryStore(tmp_path / "m", model=enc)
    b = MemoryStore(tmp_path / "m", model=enc)
    a.remember("red from a")
    b.remember("green from b")  # b refreshes before writing, so it sees a's row
    assert len(b) == 2
    a.remember("blue from a")
    assert len(a) == 3
    import aimemory.store as store_mod

    b.state.last_refresh -= store_mod.REFRESH_INTERVAL_S  # a reader re-checks after the interval
    assert b.recall("blue", k=1)[0].memory.content == "blue from a"
    a.close()
    b.close()


def test_hits_carry_snippets(store):
    long = "red " + "words " * 100
    store.remember(long)
    store.remember("a short red note")
    hits = store.recall("red note", k=2)
    assert {h.snippet for h in hits} >= {"a short red note"}
    assert all(h.snippet and len(h.snippet) <= 160 for h in hits)


def test_ann_index_past_threshold(tmp_path):
    from aimemory.index import recall_at_k

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((40, 16)).astype(np.float32)

    class VecEncoder(Encoder):  # texts are "v<i>" -> a clustered vector
        model_id, dim, modalities = "test-vec", 16, frozenset({"text"})

        def embed_texts(self, texts):
            out = []
            for t in texts:
                i = int(t[1:])
                r = np.random.default_rng(i)
                out.append(centers[i % 40] + 0.3 * r.standard_normal(16).astype(np.float32))
            out = np.stack(out)
            return out / np.linalg.norm(out, axis=1, keepdims=True)

    enc = VecEncoder()
    with MemoryStore(tmp_path / "m", model=enc, ann_threshold=2000) as s:
        s.remember_many([f"v{i}" for i in range(3000)], batch_size=1000)
        s.rebuild_index()
        assert s.index.kind == "ivf" and s.index.nprobe > 0
        queries = [f"v{i}" for i in range(0, 3000, 60)]
        qv = enc.embed_texts(queries)
        keys, vecs = s.table.vectors_for(None)
        truth = keys[np.argsort(-(qv @ vecs.T), axis=1)[:, :10]]
        _, got = s.index.search(qv, 10)
        assert recall_at_k(got, truth) >= 0.95
    with MemoryStore(tmp_path / "m", model=enc, ann_threshold=2000) as s:
        assert s.index.kind == "ivf"  # reloaded, not rebuilt as flat


# -- bad input -------------------------------------------------------------------------------------
def test_bad_inputs_raise_typed_errors_and_store_nothing(store, tmp_path):
    store.remember("red survivor")
    corrupt = png_bytes(solid("red"))[:40]
    with pytest.raises(DecodeError):
        store.remember(corrupt)
    with pytest.raises(InputError):
        store.remember(Audio(np.zeros(0, np.float32), 16000))
    with pytest.raises(InputTooLargeError):
        store.remember("x" * 2_000_001)
    with pytest.raises(UnsupportedInputError):
        store.remember(3.14)
    with pytest.raises(UnsupportedInputError):
        store.remember(np.zeros((4, 4), np.float64))
    with pytest.raises(UnsupportedInputError):
        store.remember(b"\x00\x01\x02binary junk")
    with pytest.raises(InputError):
        store.remember("   ")
    with pytest.raises(InputError):
        store.remember(tmp_path / "missing.png")
    with pytest.raises(InputError):
        store.remember("red", metadata={"tags": [1, 2]})
    assert len(store) == 1


def test_decompression_bomb_refused(store, monkeypatch):
    import aimemory.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(InputTooLargeError):
        store.remember(png_bytes(solid("red", size=(50, 50))))


def test_remember_many_raise_writes_nothing(store):
    with pytest.raises(DecodeError, match="item #2"):
        store.remember_many(["red a", "red b", b"\x89PNG\r\n\x1a\nbroken"])
    assert len(store) == 0


def test_remember_many_skip_reports(store):
    done = []
    result = store.remember_many(["red a", 1.5, "red b", b"\x89PNG\r\n\x1a\nbroken"], errors="skip",
                                 batch_size=1, progress=done.append)
    assert len(result) == 2 and [i for i, _, _ in result.skipped] == [1, 3]
    assert len(store) == 2 and done


def test_closed_store(tmp_path):
    s = MemoryStore(tmp_path / "m", model=ColourEncoder())
    s.close()
    s.close()
    with pytest.raises(StoreClosedError):
        s.remember("red")


def test_stats_and_memory_repr(store):
    m = store.remember("red", metadata={"tags": ["a"]})
    st = store.stats()
    assert st["memories"] == 1 and st["model"] == "test-colour-v1" and st["index"]["kind"] == "flat"
    assert m.id in repr(m)
    assert Path(st["path"]).exists()


# -- speech views ----------------------------------------------------------------------------------
class FakeSpeech:
    """Stands in for Whisper in store tests: a red tone 'says' two sentences, other clips nothing."""

    def transcribe(self, audio):
        from types import SimpleNamespace as NS

        spectrum = np.abs(np.fft.rfft(audio.samples))
        freq = np.argmax(spectrum) * audio.sample_rate / len(audio.samples)
        if abs(freq - 440) > 50:
            return NS(text="", segments=[], no_speech=True, language=None)
        segs = [NS(start=0.0, end=0.4, text=" the parrot is green"),
                NS(start=0.4, end=0.9, text=" invoice number 4471 is due")]
        return NS(text="the parrot is green invoice number 4471 is due", segments=segs,
                  no_speech=False, language="en")


class WindowedSpeech(FakeSpeech):
    """FakeSpeech that reports its progress the way Whisper does, once per window."""

    def transcribe(self, audio, progress=None):
        for done in (audio.duration / 2, audio.duration):
            if progress is not None:
                progress(done, audio.duration)
        return super().transcribe(audio)


def test_item_progress_reports_decoding_and_transcription(tmp_path):
    events = []
    with MemoryStore(tmp_path / "m", model=ColourEncoder(), speech_model=WindowedSpeech()) as s:
        s.remember_many(["red note", tone("red", seconds=1.0), tone("green", seconds=2.0)], batch_size=2,
                        item_progress=lambda *e: events.append(e))
        assert len(s) == 3
    assert [e[0] for e in events if e[1] == "decoding"] == [0, 1, 2]
    assert [e[::2] for e in events if e[1] == "transcribing"] == [(1, 0.5), (1, 1.0), (2, 1.0), (2, 2.0)]
    assert all(e[3] in (1.0, 2.0) for e in events if e[1] == "transcribing")  # (index, what, done, total)


def test_speech_views_are_time_coded_and_searchable(tmp_path):
    with MemoryStore(tmp_path / "m", model=ColourEncoder(), speech_model=FakeSpeech()) as s:
        talk = s.remember(tone("red", seconds=1.0))
        quiet = s.remember(tone("blue", seconds=1.0))
        assert talk.transcript.startswith("the parrot") and quiet.transcript is None
        assert s.get(talk.id).transcript == talk.transcript
        assert s.stats()["views"] == {"audio.sound": 2, "audio.speech": 2}
        hit = s.recall("the parrot is green", k=1, modality="audio")[0]
        assert hit.id == talk.id and hit.kind == "audio.speech"
        assert (hit.start, hit.end) == (0.0, 0.4) and "parrot" in hit.snippet
        assert hit.memory.transcript == talk.transcript
        assert s.recall("4471", k=1, hybrid=True)[0].id == talk.id


def test_speech_only_store_without_sound_tower(tmp_path):
    class TextOnly(ColourEncoder):
        modalities = frozenset({"image", "text"})

    with MemoryStore(tmp_path / "m", model=TextOnly(), speech_model=FakeSpeech()) as s:
        talk = s.remember(tone("red", seconds=1.0))
        assert s.stats()["views"] == {"audio.speech": 2}
        assert s.recall("parrot green", k=1)[0].id == talk.id
        with pytest.raises(InputError, match="no speech"):
            s.remember(tone("blue", seconds=1.0))
        assert len(s) == 1


def test_forget_counts_each_id_once_recent_checks_n_and_stats_after_close(tmp_path, encoder):
    from aimemory.errors import StoreClosedError

    store = MemoryStore(tmp_path / "m", model=encoder)
    a = store.remember("red one")
    store.remember("red two")
    assert store.forget([a.id, a.id]) == 1 and store.count() == 1  # it said 2
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(InputError, match="n must be"):
            store.recent(bad)  # -1 gave all but the last one
    assert store.recent(0) == []
    store.close()
    with pytest.raises(StoreClosedError):
        store.stats()  # an AttributeError from the released table
