"""Migration to another model: every memory re-embedded from its kept content with its id, time,
metadata and namespace; resumable; writes made meanwhile carried over; unmigratable memories listed;
rollback and drop-old; a writer still on the old generation is refused after the switch; and a
migrating process SIGKILLed halfway while another process keeps recalling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _encoder_v2 import ColourEncoderV2
from conftest import ColourEncoder, solid, tone

from aimemory import MemoryStore
from aimemory.errors import InputError, ModelMismatchError, StoreError
from aimemory.migrate import ACTIVE_FILE, STATE_FILE, drop_old, rollback

TESTS = Path(__file__).parent



@pytest.fixture
def old_store(tmp_path):
    store = MemoryStore(tmp_path / "mem", model=ColourEncoder(), speech_model=None)
    store.remember(solid("red"), metadata={"tags": ["warm"], "where": "kitchen"})
    store.remember(solid("blue"))
    store.remember("a green leaf in the rain", metadata={"n": 1})
    clip = tone("green")
    wav = tmp_path / "green.wav"
    sf.write(wav, clip.samples, clip.sample_rate)
    store.remember(wav)
    store.remember("red wine in another namespace", namespace="other")
    yield store
    store.close()


def _memories(store: MemoryStore) -> dict:
    table = store.to_arrow(namespace=None)
    return {(r["namespace"], r["id"]): (r["modality"], r["created_at"], r["tags"], r["metadata"], r["source"])
            for r in table.to_pylist()}


def test_migrate_keeps_every_memory_and_switches(old_store):
    before = _memories(old_store)
    seen = []
    report = old_store.migrate(ColourEncoderV2(), batch_size=2, progress=lambda d, t: seen.append((d, t)))
    assert report.switched and report.migrated == 5 and not report.not_migrated
    assert seen[-1] == (5, 5) and "migrated 5 memories" in str(report)
    assert old_store.model_id == "test-colour-v2"
    assert _memories(old_store) == before  # ids, times, tags, metadata, sources, namespaces
    hits = old_store.recall("red", k=1, modality="image")
    assert hits[0].memory.metadata["where"] == "kitchen"
    assert old_store.recall("wine", namespace="other")[0].memory.namespace == "other"
    root = old_store.root
    old_store.close()
    with pytest.raises(ModelMismatchError):
        MemoryStore(root, model=ColourEncoder(), speech_model=None)
    with MemoryStore(root, model=ColourEncoderV2(), speech_model=None) as again:
        assert again.count("default") == 4 and again.count("other") == 1
        vec = again.embed("red")
        assert not np.allclose(vec, ColourEncoder().embed_texts(["red"])[0])  # really the new space
    assert not (root / STATE_FILE).exists()


def test_speech_segments_are_reused_not_transcribed(tmp_path):
    class FakeSpeech:
        calls = 0

        def transcribe(self, audio):
            from aimemory.speech import Segment, Transcript

            FakeSpeech.calls += 1
            return Transcript("red alert", "en", [Segment(0.0, 0.4, "red alert")], no_speech=False,
                              language_prob=1.0, duration=0.5)

    store = MemoryStore(tmp_path / "s", model=ColourEncoder(), speech_model=FakeSpeech())
    memory = store.remember(tone("blue"))
    assert FakeSpeech.calls == 1
    store.migrate(ColourEncoderV2())
    assert FakeSpeech.calls == 1
    assert store.get(memory.id).text == "red alert"
    hit = store.recall("red alert", k=1)[0]
    assert hit.id == memory.id and hit.kind == "audio.speech" and hit.end == pytest.approx(0.4)
    store.close()


def test_content_not_kept_is_listed_and_blocks_the_switch(tmp_path):
    store = MemoryStore(tmp_path / "s", model=ColourEncoder(), speech_model=None, keep_content=False)
    image = store.remember(solid("red"))
    text = store.remember("a red kite")  # text is its own content: always migratable
    report = store.migrate(ColourEncoderV2())
    assert not report.switched and "allow_loss" in report.why_not_switched
    assert [(mid, why.split(" (")[0]) for _, mid, _, why in report.not_migrated] == \
        [(image.id, "its bytes were not kept")]
    assert store.model_id == ColourEncoder.model_id  # still serving the old model
    report = store.migrate(ColourEncoderV2(), allow_loss=True)
    assert report.switched and store.model_id == "test-colour-v2"
    assert text.id in store and image.id not in store
    store.close()


def test_resume_after_interrupt_carries_writes_made_meanwhile(old_store):
    class Stop(Exception):
        pass

    def stop_after_first_batch(done, total):
        if done >= 2:
            raise Stop

    with pytest.raises(Stop):
        old_store.migrate(ColourEncoderV2(), batch_size=2, progress=stop_after_first_batch)
    assert (old_store.root / STATE_FILE).exists() and old_store.model_id == ColourEncoder.model_id
    # the old model keeps serving and taking writes
    assert old_store.recall("red", k=1)
    added = old_store.remember("a blue whale")
    victim = next(r["id"] for r in old_store.to_arrow().to_pylist() if "leaf" in (r["text"] or ""))
    old_store.forget(victim)
    changed = old_store.recall("red", k=1, modality="image")[0].memory.id
    old_store.update(changed, metadata={"where": "garden"})
    with pytest.raises(InputError, match="in progress"):
        old_store.migrate(ColourEncoder.__new__(type("Other", (ColourEncoder,), {"model_id": "test-colour-v3"})))
    report = old_store.migrate(ColourEncoderV2(), batch_size=2)
    assert report.switched
    assert added.id in old_store and victim not in old_store
    assert old_store.get(changed).metadata["where"] == "garden"
    assert old_store.count("default") == 4


def test_rollback_and_drop_old(old_store):
    ids = {m.id for m in old_store.recall("red", k=10)}
    root = old_store.root
    old_store.migrate(ColourEncoderV2())
    old_store.close()
    report = rollback(root)
    assert report.switched and report.folder == "." and report.migrated == report.removed == 0
    with MemoryStore(root, model=ColourEncoder(), speech_model=None) as back:
        assert {m.id for m in back.recall("red", k=10)} == ids
    rollback(root)  # and forward again
    assert json.loads((root / ACTIVE_FILE).read_text())["model"] == "test-colour-v2"
    (root / "notes.txt").write_text("a file of the user's, not the store's")
    assert (root / "tables").is_dir()
    freed = drop_old(root)
    assert freed > 0 and not (root / "tables").exists() and not (root / "aimemory.json").exists()
    assert (root / "notes.txt").exists() and (root / "generations").is_dir()
    with pytest.raises(InputError, match="no previous generation"):
        rollback(root)
    with MemoryStore(root, model=ColourEncoderV2(), speech_model=None) as now:
        assert now.count("default") == 4


def test_rollback_carries_what_changed_since_the_switch(tmp_path):
    """Remembered, updated and forgotten after the switch: a rollback re-embeds the new and changed
    memories with the previous model and forgets the forgotten there (they came back before); a
    memory the migration left behind stays; rolling forward again carries the other way."""
    store = MemoryStore(tmp_path / "s", model=ColourEncoder(), speech_model=None, keep_content=False)
    behind = store.remember(solid("blue"))  # bytes not kept: left behind by the migration
    apples = store.remember("a red apple on the table")
    kept = store.remember("a green note to keep", metadata={"n": 1})
    assert store.migrate(ColourEncoderV2(), allow_loss=True).switched
    bananas = store.remember("a yellow banana after the switch")
    store.forget(apples.id)
    store.update(kept.id, metadata={"n": 2})
    root = store.root
    store.close()
    with pytest.raises(Exception, match="test-colour-v1"):  # something to re-embed: the old model is needed
        rollback(root)
    assert json.loads((root / ACTIVE_FILE).read_text())["model"] == "test-colour-v2"  # nothing switched
    report = rollback(root, ColourEncoder())
    assert report.switched and report.migrated == 2 and report.removed == 1, str(report)
    assert "rolled back to test-colour-v1" in str(report) and "2 re-embedded, 1 forgotten" in str(report)
    with MemoryStore(root, model=ColourEncoder(), speech_model=None, keep_content=False) as back:
        assert bananas.id in back and apples.id not in back and behind.id in back
        assert back.get(kept.id).metadata["n"] == 2
        assert back.recall("yellow", k=1, modality="text")[0].id == bananas.id
        later = back.remember("a purple plum after the rollback")
    forward = rollback(root, ColourEncoderV2())
    assert forward.switched and forward.migrated == 1 and forward.removed == 0
    with MemoryStore(root, model=ColourEncoderV2(), speech_model=None, keep_content=False) as again:
        assert later.id in again and bananas.id in again and behind.id not in again


def test_a_writer_on_the_old_generation_is_refused_after_the_switch(old_store, tmp_path):
    other = MemoryStore(old_store.root, model=ColourEncoder(), speech_model=None)
    old_store.migrate(ColourEncoderV2())
    with pytest.raises(StoreError, match="Reopen it"):
        other.remember("written to the old model after the switch")
    assert other.recall("red", k=1)  # reads still answer from what it has open
    other.close()
    with MemoryStore(old_store.root, model=ColourEncoderV2(), speech_model=None) as now:
        assert not any("after the switch" in (m.memory.text or "") for m in now.recall("switch", k=10))


def test_nothing_to_migrate(old_store):
    with pytest.raises(InputError, match="already uses"):
        old_store.migrate(ColourEncoder())


MIGRATOR = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from _encoder_v2 import ColourEncoderV2
    from conftest import ColourEncoder
    from aimemory import MemoryStore

    class Slow(ColourEncoderV2):
        def embed_texts(self, texts):
            time.sleep(0.05)
            return super().embed_texts(texts)

    store = MemoryStore({path!r}, model=ColourEncoder(), speech_model=None)
    store.migrate(Slow(), batch_size=4, progress=lambda d, t: print("DONE", d, t, flush=True))
    print("SWITCHED", flush=True)
""")


def test_sigkill_midway_while_another_process_recalls(tmp_path):
    path = tmp_path / "mem"
    with MemoryStore(path, model=ColourEncoder(), speech_model=None) as store:
        store.remember_many([f"red note {i}" for i in range(60)])
    script = tmp_path / "migrate.py"
    script.write_text(MIGRATOR.format(tests=str(TESTS), path=str(path)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    reader = MemoryStore(path, model=ColourEncoder(), speech_model=None)
    answered = 0
    try:
        for line in proc.stdout:  # kill once a few batches are committed
            assert reader.recall("red", k=3)
            answered += 1
            if line.startswith("DONE") and int(line.split()[1]) >= 16:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and answered >= 2
    assert reader.recall("red note 5", k=1)  # the old model still answers after the kill
    assert (path / STATE_FILE).exists() and not (path / ACTIVE_FILE).exists()
    reader.close()
    with MemoryStore(path, model=ColourEncoder(), speech_model=None) as store:
        t = time.monotonic()
        report = store.migrate(ColourEncoderV2(), batch_size=16)
        assert report.switched and report.migrated < 60  # resumed: the committed batches were kept
        assert time.monotonic() - t < 30
        assert len(store) == 60 and store.model_id == "test-colour-v2"
        assert store.recall("red note 5", k=1)


def test_cli_migrate_rollback_and_drop_old(tmp_path, capsys, monkeypatch):
    import aimemory.cli.commands as commands
    from aimemory.cli import main

    path = tmp_path / "mem"
    with MemoryStore(path, model=ColourEncoder(), speech_model=None) as store:
        store.remember(solid("red"))
        store.remember("a red kite over the beach")
    monkeypatch.setattr(commands, "_TEST_STORE_KWARGS", {"model": ColourEncoder(), "speech_model": None})
    assert main(["migrate", "--model", "aimemory-mini", "--store", str(path), "--batch-size", "1"]) == 0
    out = capsys.readouterr().out
    assert "migrated 2 memories to aimemory-mini" in out and "switched" in out
    monkeypatch.setattr(commands, "_TEST_STORE_KWARGS", {"speech_model": None})
    assert main(["recall", "kite", "--store", str(path), "--json"]) == 0
    assert "a red kite" in capsys.readouterr().out
    assert main(["migrate", "--rollback", "--store", str(path)]) == 0
    assert "rolled back to test-colour-v1 (.)" in capsys.readouterr().out
    assert main(["migrate", "--rollback", "--store", str(path)]) == 0
    assert main(["migrate", "--drop-old", "--store", str(path)]) == 0
    assert "MB freed" in capsys.readouterr().out
    assert main(["migrate", "--rollback", "--store", str(path)]) == 1
    assert "no previous generation" in capsys.readouterr().err
    assert main(["migrate", "--store", str(path)]) == 1  # no --model
