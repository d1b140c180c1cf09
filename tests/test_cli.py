"""The ``aimemory`` CLI: in-process through ``main(argv)`` with the ColourEncoder fixture, plus real
subprocesses for start-up cost and (when its weights are installed) the built-in mini model."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ColourEncoder, solid, tone

import aimemory.cli.commands as commands
from aimemory.cli import main

MINI_DIR = Path(commands.__file__).resolve().parent.parent / "models" / "aimemory-mini"
needs_mini = pytest.mark.skipif(not (MINI_DIR.is_dir() and any(MINI_DIR.iterdir())),
                                reason="aimemory-mini weights are not installed (aimemory/models/aimemory-mini)")


@pytest.fixture
def enc(monkeypatch):
    encoder = ColourEncoder()
    monkeypatch.setattr(commands, "_TEST_STORE_KWARGS", {"model": encoder, "speech_model": None})
    return encoder


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    solid("red").save(d / "red.png")
    solid("blue").save(d / "sub" / "blue.png")
    t = tone("green")
    sf.write(d / "green.wav", t.samples, t.sample_rate)
    (d / "note.txt").write_text("a green leaf")
    (d / ".hidden.txt").write_text("red secret")
    return d


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_starts_fast_without_heavy_imports():
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "aimemory", "--help"],
                          capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    assert "remember" in proc.stdout and "recall" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "import time:" in line}
    for heavy in ("mcp", "pandas", "torch", "lancedb", "numpy", "pyarrow", "PIL"):
        assert heavy not in imported, f"--help imported {heavy}"
    assert elapsed < 10  # generous: a loaded CI box; typically ~0.3 s


def test_recall_with_another_model_is_a_mismatch_not_a_download(capsys, tmp_path, monkeypatch):
    from aimemory import MemoryStore

    monkeypatch.setenv("AIMEMORY_OFFLINE", "1")
    with MemoryStore(tmp_path / "s", model=ColourEncoder()) as s:
        s.remember("red")
    code, _, err = run(capsys, "recall", "red", "--store", tmp_path / "s", "--model", "openai/clip-vit-base-patch32")
    assert code == 1, err
    assert "holds vectors from model 'test-colour-v1'" in err and "offline" not in err.lower()


def test_remember_folder_then_recall_json(capsys, enc, files, tmp_path):
    store = tmp_path / "s"
    code, out, err = run(capsys, "remember", files, "--store", store, "--tag", "trip", "--meta", "year=2024")
    assert code == 0, err
    assert "4 new, 0 already stored, 0 skipped" in out  # the hidden file is not walked
    code, out, _ = run(capsys, "recall", "red", "--store", store, "--json", "-k", "2")
    assert code == 0
    hits = json.loads(out)
    assert [h["rank"] for h in hits] == [1, 2]
    top = hits[0]
    assert top["modality"] == "image" and top["source"].endswith("red.png")
    assert {"id", "score", "modality", "source", "metadata", "kind", "start", "end", "snippet"} <= set(top)
    assert top["metadata"]["year"] == 2024 and top["tags"] == ["trip"]
    code, out, _ = run(capsys, "recall", "green", "--store", store, "--json", "--modality", "audio")
    hits = json.loads(out)
    assert [h["modality"] for h in hits] == ["audio"] and hits[0]["end"] == pytest.approx(0.5)
    code, out, _ = run(capsys, "recall", "red", "--store", store, "--json", "--where", "year=1999")
    assert code == 0 and json.loads(out) == []
    code, out, _ = run(capsys, "recall", "--file", files / "sub" / "blue.png", "--store", store, "--json",
                       "--tag", "trip", "--since", "1h", "--until", "2999-01-01")
    assert json.loads(out)[0]["source"].endswith("blue.png")


def test_rerun_resumes_without_encoding_again(capsys, enc, files, tmp_path, monkeypatch):
    from aimemory.store import MemoryStore

    store = tmp_path / "s"
    assert run(capsys, "remember", files, "--store", store)[0] == 0
    calls = enc.calls
    code, out, _ = run(capsys, "remember", files, "--store", store)
    assert code == 0
    assert "0 new, 4 already stored, 0 skipped" in out
    assert enc.calls == calls  # dedup by content hash: nothing was encoded

    def must_not_run(*a, **kw):
        raise AssertionError("stored files were decoded again")

    monkeypatch.setattr(MemoryStore, "remember_many", must_not_run)  # not even decoded
    code, out, _ = run(capsys, "remember", files, "--store", store, "--json")
    assert code == 0 and json.loads(out)["already_stored"] == 4
    # the same files in another namespace are new there
    monkeypatch.undo()
    monkeypatch.setattr(commands, "_TEST_STORE_KWARGS", {"model": enc, "speech_model": None})
    code, out, _ = run(capsys, "remember", files, "--store", store, "-n", "other")
    assert "4 new, 0 already stored" in out


def test_remembering_again_with_new_tags_merges_them(capsys, enc, files, tmp_path):
    store = tmp_path / "s"
    red = files / "red.png"
    assert run(capsys, "remember", red, "--store", store, "--tag", "trip")[0] == 0
    code, out, _ = run(capsys, "remember", red, files / "note.txt", "--store", store, "--tag", "pets",
                       "--meta", "year=2024")
    assert code == 0
    assert "updated" in out and "1 new, 1 already stored (new tags/metadata merged into 1)" in out
    code, out, _ = run(capsys, "recall", "red", "--tag", "pets", "--store", store, "--json", "-k", "3")
    hits = json.loads(out)
    assert hits and hits[0]["source"].endswith("red.png") and hits[0]["tags"] == ["trip", "pets"]
    assert hits[0]["metadata"]["year"] == 2024
    code, out, _ = run(capsys, "remember", red, "--store", store, "--tag", "pets", "--json")
    assert json.loads(out)["updated"] == 0 and json.loads(out)["items"][0]["status"] == "already stored"


def test_tag_command_adds_removes_and_sets_metadata(capsys, enc, files, tmp_path):
    store = tmp_path / "s"
    run(capsys, "remember", files / "red.png", "--store", store, "--tag", "old", "--tag", "keep")
    mid = json.loads(run(capsys, "recall", "red", "--store", store, "--json", "-k", "1")[1])[0]["id"]
    code, out, err = run(capsys, "tag", mid, "--add", "new", "--remove", "old", "--meta", "place=Oslo",
                         "--store", store)
    assert code == 0, err
    assert f"updated  {mid}" in out and "keep, new" in out
    shown = json.loads(run(capsys, "show", mid, "--store", store, "--json")[1])
    assert shown["tags"] == ["keep", "new"] and shown["metadata"]["place"] == "Oslo"
    code, out, _ = run(capsys, "tag", mid, "--add", "new", "--store", store, "--json")
    assert code == 0 and json.loads(out)[0]["status"] == "existing"
    code, out, _ = run(capsys, "tag", mid, "--add", "only", "--replace", "--store", store, "--json")
    assert json.loads(out)[0]["tags"] == ["only"] and json.loads(out)[0]["metadata"] == {"tags": ["only"]}
    code, _, err = run(capsys, "tag", mid, "--add", "x", "--store", store, "-n", "other")
    assert code == 1 and "no memory" in err  # another namespace: not found
    code, _, err = run(capsys, "tag", mid, "--store", store)
    assert code == 2  # nothing to change is a usage error
    code, out, err = run(capsys, "tag", mid, "--ttl", "2h", "--store", store, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["status"] == "updated" and json.loads(out)[0]["expires_at"] is not None
    code, out, _ = run(capsys, "tag", mid, "--expires-at", "never", "--store", store)
    assert code == 0 and f"updated  {mid}" in out and "expires" not in out
    code, _, err = run(capsys, "tag", mid, "--expires-at", "2001-01-01", "--store", store)
    assert code == 1 and "not in the future" in err


def test_progress_shows_the_current_file_inside_long_items(capsys, enc, files, tmp_path, monkeypatch):
    """A long recording moves the bar while it is transcribed, and the bar names the file."""
    import aimemory.cli.ingest as ingest

    class Speech:
        def transcribe(self, audio, progress=None):
            from types import SimpleNamespace as NS

            for done in (30.0, 60.0, 90.0):
                progress(done, 180.0)
            return NS(text="", segments=[], no_speech=True, language=None)

    updates = []

    class Bar:
        def __init__(self, total):
            self.total = total

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def add_task(self, *a, **kw):
            return 0

        def update(self, task, **kw):
            updates.append(kw)

        def stop(self):
            pass

    monkeypatch.setattr(ingest, "_progress", Bar)
    monkeypatch.setattr(commands, "_TEST_STORE_KWARGS", {"model": enc, "speech_model": Speech()})
    code, out, err = run(capsys, "remember", files / "note.txt", files / "green.wav", "--store", tmp_path / "s")
    assert code == 0, err
    shown = [u["current"] for u in updates if u.get("current")]
    assert any("green.wav" in c and "transcribing 1:00 / 3:00" in c for c in shown), shown
    inside = [u["completed"] for u in updates if "transcribing" in (u.get("current") or "")]
    assert inside == sorted(inside) and 1 < inside[0] < inside[-1] < 2  # item 2 of 2, part done


def test_skipped_files_are_listed_with_reasons(capsys, enc, files, tmp_path):
    (files / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (files / "blob.bin").write_bytes(b"\x00\x01\x02\x03" * 10)
    code, out, err = run(capsys, "remember", files, files / "nope.jpg", "--store", tmp_path / "s")
    assert code == 1  # one rule: anything skipped for an error is a failure...
    assert "4 new, 0 already stored, 3 skipped (errors)" in out
    assert "broken.png: image" in err and "does not decode" in err
    assert "blob.bin" in err and "nope.jpg: no such file or folder" in err
    assert "--allow-partial" in err and "Traceback" not in err
    # ...unless partial success is accepted
    code, out, err = run(capsys, "remember", files, "--store", tmp_path / "s", "--allow-partial")
    assert code == 0 and "0 new, 4 already stored, 2 skipped (errors)" in out
    code, out, _ = run(capsys, "remember", files, "--store", tmp_path / "s", "--allow-partial", "--json")
    assert code == 0 and json.loads(out)["skipped"] == 2
    code, out, _ = run(capsys, "remember", files, "--store", tmp_path / "s", "--json")
    assert code == 1 and json.loads(out)["skipped"] == 2
    # nothing usable at all -> exit 1, partial or not
    for extra in ([], ["--allow-partial"]):
        code, out, err = run(capsys, "remember", files / "broken.png", "--store", tmp_path / "s", *extra)
        assert code == 1 and "broken.png" in err


def test_text_stdin_and_glob(capsys, enc, files, tmp_path, monkeypatch):
    store = tmp_path / "s"
    monkeypatch.setattr(sys, "stdin", io.StringIO("blue whale notes\n"))
    code, out, _ = run(capsys, "remember", "-", "--text", "red apple", str(files / "**" / "*.png"),
                       "--store", store, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["new"] == 4 and report["skipped"] == 0
    assert {i["input"] for i in report["items"]} >= {"<stdin>", "red apple"}
    code, out, _ = run(capsys, "recall", "blue", "--store", store, "--json", "--modality", "text")
    assert json.loads(out)[0]["text"] == "blue whale notes\n"
    code, _, err = run(capsys, "remember", str(tmp_path / "*.nothing"), "--store", store)
    assert code == 1 and "no files match" in err


def test_ctrl_c_between_batches_keeps_finished_batches_and_rerun_resumes(capsys, enc, tmp_path, monkeypatch):
    from aimemory import remember as remember_mod

    d = tmp_path / "many"
    d.mkdir()
    for i in range(5):
        solid("red", noise_seed=i).save(d / f"img{i}.png")
    real = remember_mod.commit_batch
    calls = {"n": 0}

    def flaky(*a, **kw):  # Ctrl-C while the second batch encodes, inside one store call
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(remember_mod, "commit_batch", flaky)
    code, out, err = run(capsys, "remember", d, "--store", tmp_path / "s", "--batch-size", "2")
    assert code == 130
    assert "2 new" in out and "interrupted" in err  # the committed batch is counted, found by hash
    monkeypatch.setattr(remember_mod, "commit_batch", real)
    code, out, _ = run(capsys, "remember", d, "--store", tmp_path / "s", "--batch-size", "2")
    assert code == 0 and "3 new, 2 already stored, 0 skipped" in out


def test_show_out_forget(capsys, enc, files, tmp_path):
    store = tmp_path / "s"
    run(capsys, "remember", files / "red.png", "--text", "<b>[bold]loud[/bold]</b>", "--store", store)
    hits = json.loads(run(capsys, "recall", "red", "--store", store, "--json", "--modality", "image")[1])
    mid = hits[0]["id"]
    code, out, _ = run(capsys, "show", mid, "--store", store, "--json")
    assert code == 0 and json.loads(out)["source"].endswith("red.png")
    target = tmp_path / "copy.png"
    assert run(capsys, "show", mid, "--store", store, "--out", target)[0] == 0
    assert target.read_bytes() == (files / "red.png").read_bytes()
    # markup inside memories is printed literally, never interpreted
    code, out, _ = run(capsys, "recall", "loud", "--store", store, "--modality", "text")
    assert "[bold]loud[/bold]" in out
    code, out, _ = run(capsys, "forget", mid, "--store", store)
    assert code == 0 and "forgot 1" in out
    code, _, err = run(capsys, "show", mid, "--store", store)
    assert code == 1 and "no memory" in err and "Traceback" not in err
    assert run(capsys, "forget", mid, "--store", store)[0] == 1


def test_stats_and_export(capsys, enc, files, tmp_path):
    import pyarrow.parquet as pq

    store = tmp_path / "s"
    run(capsys, "remember", files, "--store", store)
    run(capsys, "remember", "--text", "red in b", "--store", store, "--namespace", "b")
    code, out, _ = run(capsys, "stats", "--store", store, "--json")
    stats = json.loads(out)
    assert code == 0 and stats["memories"] == 5 and stats["namespaces"] == {"b": 1, "default": 4}
    assert run(capsys, "stats", "--store", store)[0] == 0
    target = tmp_path / "out.parquet"
    assert run(capsys, "export", target, "--store", store, "--all-namespaces")[0] == 0
    table = pq.read_table(target)
    assert table.num_rows == 5 and "vector" not in table.column_names
    assert {"id", "namespace", "modality", "source", "tags", "metadata", "content"} <= set(table.column_names)
    assert run(capsys, "export", target, "--store", store, "--vectors", "--namespace", "b")[0] == 0
    table = pq.read_table(target)
    assert table.num_rows == 1
    vec = np.asarray(table.column("vector")[0].as_py())
    assert vec.shape == (16,) and abs(np.linalg.norm(vec) - 1) < 1e-4


def test_hybrid_recall_shows_the_fusion_beside_the_cosine(capsys, enc, tmp_path):
    store = tmp_path / "s"
    for text in ("invoice ZX-9931 for the green paint", "red memo", "blue memo"):
        run(capsys, "remember", "--text", text, "--store", store)
    code, out, _ = run(capsys, "recall", "ZX-9931", "--hybrid", "--store", store, "--json")
    hits = json.loads(out)
    assert code == 0 and all("fusion" in h and -1 <= h["score"] <= 1 for h in hits)
    code, out, _ = run(capsys, "recall", "ZX-9931", "--hybrid", "--store", store)
    assert code == 0 and "fusion" in out
    code, out, _ = run(capsys, "recall", "red", "--store", store)
    assert code == 0 and "fusion" not in out


def test_export_defaults_to_one_namespace_like_every_command(capsys, enc, tmp_path):
    import pyarrow.parquet as pq

    store = tmp_path / "s"
    run(capsys, "remember", "--text", "red in default", "--store", store)
    run(capsys, "remember", "--text", "red in b", "--store", store, "--namespace", "b")
    target = tmp_path / "out.parquet"
    assert run(capsys, "export", target, "--store", store)[0] == 0
    assert pq.read_table(target).column("namespace").to_pylist() == ["default"]
    assert run(capsys, "export", target, "--store", store, "-n", "b")[0] == 0
    assert pq.read_table(target).column("namespace").to_pylist() == ["b"]
    assert run(capsys, "export", target, "--store", store, "--all-namespaces")[0] == 0
    assert sorted(pq.read_table(target).column("namespace").to_pylist()) == ["b", "default"]
    code, _, err = run(capsys, "export", target, "--store", store, "-n", "b", "--all-namespaces")
    assert code == 2 and "--all-namespaces" in err


def test_export_format_follows_the_extension(capsys, enc, files, tmp_path):
    import base64
    import csv

    import pyarrow.parquet as pq

    store = tmp_path / "s"
    run(capsys, "remember", files, "--store", store, "--tag", "trip")
    for name in ("m.csv", "m.jsonl", "m.parquet", "m.PQ"):
        code, out, err = run(capsys, "export", tmp_path / name, "--store", store, "--vectors")
        assert code == 0, err
    with open(tmp_path / "m.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {"id", "modality", "tags", "content", "vector"} <= set(rows[0])
    assert json.loads(rows[0]["tags"]) == ["trip"] and len(json.loads(rows[0]["vector"])) == 16
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4 and records[0]["tags"] == ["trip"] and isinstance(records[0]["metadata"], dict)
    image = next(r for r in records if r["modality"] == "image")
    assert base64.b64decode(image["content"]).startswith(b"\x89PNG")
    assert pq.read_table(tmp_path / "m.parquet").num_rows == 4
    assert (tmp_path / "m.PQ").read_bytes()[:4] == b"PAR1"
    code, _, err = run(capsys, "export", tmp_path / "m.txt", "--store", store)
    assert code == 2 and ".csv" in err and ".jsonl" in err and ".parquet" in err
    assert not (tmp_path / "m.txt").exists()


def test_namespaces_are_separate(capsys, enc, tmp_path):
    store = tmp_path / "s"
    run(capsys, "remember", "--text", "red secret", "--store", store, "--namespace", "alice")
    assert json.loads(run(capsys, "recall", "red", "--store", store, "--json", "-n", "bob")[1]) == []
    assert len(json.loads(run(capsys, "recall", "red", "--store", store, "--json", "-n", "alice")[1])) == 1


@pytest.mark.parametrize("argv", [
    ["recall"],
    ["recall", "x", "--file", "y.png"],
    ["recall", "x", "--modality", "smell"],
    ["recall", "x", "--since", "yesterday"],
    ["remember", "--text", "x", "--meta", "novalue"],
    ["remember"],
    ["frobnicate"],
    ["recall", "x", "-k", "0"],
])
def test_usage_errors_exit_2(capsys, enc, tmp_path, argv):
    code, _, err = run(capsys, *argv, "--store", tmp_path / "s") if argv[0] != "frobnicate" else run(capsys, *argv)
    assert code == 2, err
    assert "Traceback" not in err


def test_missing_store_and_unknown_model(capsys, tmp_path, monkeypatch):
    code, _, err = run(capsys, "recall", "x", "--store", tmp_path / "absent")
    assert code == 1 and "no memory store at" in err
    assert not (tmp_path / "absent").exists()
    code, _, err = run(capsys, "remember", "--text", "x", "--store", tmp_path / "s", "--model", "no-such-model")
    assert code == 3 and "unknown model" in err and "Traceback" not in err
    code, _, err = run(capsys, "remember", "--text", "x", "--store", tmp_path / "s", "--model", "no-such-model",
                       "--debug")
    assert code == 3 and "Traceback" in err


def test_default_store_path(monkeypatch, tmp_path):
    monkeypatch.setenv("AIMEMORY_HOME", str(tmp_path / "home"))
    assert commands.default_store_path() == tmp_path / "home"
    monkeypatch.delenv("AIMEMORY_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert commands.default_store_path() == tmp_path / "xdg" / "aimemory"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert commands.default_store_path() == Path("~/.local/share/aimemory").expanduser()


def test_store_from_environment(capsys, enc, tmp_path, monkeypatch):
    monkeypatch.setenv("AIMEMORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIMEMORY_NAMESPACE", "agent7")
    assert run(capsys, "remember", "--text", "blue note")[0] == 0
    stats = json.loads(run(capsys, "stats", "--json")[1])
    assert stats["namespaces"] == {"agent7": 1}


def test_demo_calls_run_demo(capsys, monkeypatch, tmp_path):
    seen = {}
    fake = types.ModuleType("aimemory.demo")
    def run_demo(store_path=None, *, model="auto", out=None):
        seen.update(path=store_path, model=model)
        return seen.get("wrong", 0)

    fake.run_demo = run_demo
    monkeypatch.setitem(sys.modules, "aimemory.demo", fake)
    assert run(capsys, "demo", "--store", tmp_path / "d")[0] == 0
    assert seen == {"path": str(tmp_path / "d"), "model": "auto"}
    seen["wrong"] = 2
    code, _, err = run(capsys, "demo", "--model", "other")
    assert code == 1 and "2 answers were wrong" in err and seen["path"] is None and seen["model"] == "other"
    monkeypatch.setitem(sys.modules, "aimemory.demo", None)  # import fails like a missing module
    code, _, err = run(capsys, "demo")
    assert code == 1 and "demo" in err


def test_models_list_json(capsys):
    code, out, _ = run(capsys, "models", "list", "--json")
    rows = {r["id"]: r for r in json.loads(out)}
    assert code == 0 and list(rows)[:2] == ["aimemory-mini", "aimemory-base"]
    from aimemory.encoders.registry import offline_tier_missing

    assert rows["aimemory-base"]["available"] == (offline_tier_missing() is None)  # auto's choice when installed
    code, out, _ = run(capsys, "models", "download", "aimemory-mini")
    assert code == 0 and "built in" in out


@pytest.mark.heavy
@needs_mini
def test_real_entry_point_with_mini_model(tmp_path, files):
    exe = Path(sys.executable).parent / "aimemory"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "aimemory"]
    store = str(tmp_path / "real")
    env = {**os.environ, "AIMEMORY_OFFLINE": "1"}

    def cli(*args):
        return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)

    p = cli("remember", files, "--text", "a photo of a red square", "--store", store, "--model", "aimemory-mini",
            "--speech", "none")  # this test is about the entry point and the model, not transcription
    assert p.returncode == 0, p.stderr
    assert "5 new" in p.stdout
    p = cli("recall", "red", "--store", store, "--json", "-k", "3")
    assert p.returncode == 0, p.stderr
    hits = json.loads(p.stdout)
    assert len(hits) == 3 and all({"id", "score", "modality", "source"} <= set(h) for h in hits)
    p = cli("remember", files, "--store", store)
    assert p.returncode == 0 and "0 new, 4 already stored" in p.stdout


def test_mcp_rejects_a_bad_namespace_before_serving(capsys, enc, tmp_path):
    code, _, err = run(capsys, "mcp", "--store", tmp_path / "s", "--namespace", "no spaces allowed")
    assert code == 1 and "namespace" in err
    assert not (tmp_path / "s").exists()


def test_download_offline_is_model_not_available(capsys, monkeypatch):
    monkeypatch.setenv("AIMEMORY_OFFLINE", "1")
    code, _, err = run(capsys, "models", "download", "openai/clip-vit-base-patch32-not-cached")
    assert code == 3 and "offline" in err and "Traceback" not in err


def test_error_mid_ingest_reports_what_is_stored(capsys, enc, tmp_path, monkeypatch):
    from aimemory import remember as remember_mod
    from aimemory.errors import CheckpointError

    for i in range(3):
        (tmp_path / f"n{i}.txt").write_text(f"red note {i}")
    real = remember_mod.commit_batch
    calls = {"n": 0}

    def failing(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise CheckpointError("speech model is corrupt")
        return real(*a, **kw)

    monkeypatch.setattr(remember_mod, "commit_batch", failing)
    code, out, err = run(capsys, "remember", *sorted(tmp_path.glob("n*.txt")), "--store", tmp_path / "s",
                         "--batch-size", "1")
    assert code == 3 and "1 new" in out and "speech model is corrupt" in err


def test_nothing_found_does_not_create_a_store(capsys, enc, tmp_path):
    code, out, err = run(capsys, "remember", tmp_path / "missing.png", "--store", tmp_path / "s")
    assert code == 1 and "0 new, 0 already stored, 1 skipped" in out and "missing.png" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.heavy
def test_remember_with_a_sound_model(capsys, enc, files, tmp_path):
    from _wav2clip import make_checkpoint
    from conftest import DIM

    sound = make_checkpoint(tmp_path / "w2c" / "model.pt", head=(512, 64, DIM))
    store = tmp_path / "s"
    code, _, err = run(capsys, "remember", files / "green.wav", "--store", store, "--sound", sound)
    assert code == 0, err
    stats = json.loads(run(capsys, "stats", "--store", store, "--json")[1])
    assert stats["views"] == {"audio.sound": 1}
    code, _, err = run(capsys, "remember", files / "green.wav", "--store", tmp_path / "bad", "--sound", "nope")
    assert code != 0 and "wav2clip" in err
    wide = make_checkpoint(tmp_path / "w2c-wide" / "model.pt")  # 512-d: proves --sound reaches the store
    code, _, err = run(capsys, "remember", files / "green.wav", "--store", tmp_path / "bad2", "--sound", wide)
    assert code != 0 and "512-d" in err


def test_models_download_wav2clip_uses_the_local_copy_and_lists_it(capsys, tmp_path, monkeypatch):
    from _wav2clip import make_checkpoint

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = make_checkpoint(tmp_path / "torch" / "hub" / "checkpoints" / "Wav2CLIP.pt")
    code, out, _ = run(capsys, "models", "download", "wav2clip")
    assert code == 0 and str(cached) in out  # found: nothing fetched
    rows = json.loads(run(capsys, "models", "list", "--json")[1])
    assert any(r["id"] == "wav2clip" and r["where"] == str(cached) for r in rows)
    monkeypatch.setenv("AIMEMORY_OFFLINE", "1")
    code, _, err = run(capsys, "models", "download", "wav2clip", "--force")  # force: fetch again
    assert code != 0 and "downloads are off" in err and cached.exists()  # the old copy is kept


def test_stdin_in_latin1_binary_stdin_and_odd_files_in_a_folder(capsys, enc, files, tmp_path, monkeypatch):
    """Piped Latin-1 text is decoded as files are; binary stdin is reported, not a traceback; in a
    folder, a file whose name is not UTF-8 is stored and an unreadable file is skipped, the rest kept."""
    store = tmp_path / "s"
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO("café au lait".encode("latin-1"))))
    code, out, _ = run(capsys, "remember", "-", "--store", store, "--json")
    assert code == 0 and json.loads(out)["new"] == 1
    code, out, _ = run(capsys, "recall", "café", "--store", store, "--json", "--modality", "text")
    assert json.loads(out)[0]["text"] == "café au lait"
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(bytes(range(256)) * 4)))
    code, _, err = run(capsys, "remember", "-", "--store", store)
    assert code == 1 and "not text" in err
    (files / os.fsdecode(b"caf\xe9.txt")).write_text("a red cafe")
    (files / "locked.txt").write_text("a blue secret")
    real = Path.read_bytes

    def read_bytes(self):  # chmod 000 does not stop root, who runs CI
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    code, out, _ = run(capsys, "remember", files, "--store", store, "--json", "--allow-partial")
    report = json.loads(out)
    assert code == 0 and report["new"] == 5 and report["skipped"] == 1
    inputs = {i["input"]: i for i in report["items"]}
    assert any(name.endswith("caf\\xe9.txt") for name in inputs)
    assert "permission denied" in json.dumps(report)
    real_scandir = os.scandir

    def scandir(path="."):  # a subfolder this user may not list
        if os.fspath(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, _, err = run(capsys, "remember", files, "--store", tmp_path / "s2")
    assert code == 1 and "folder cannot be read (permission denied)" in err
