"""Memory semantics for agent frameworks: caller ids (upsert), expiry, recency, near duplicates,
provenance and namespace transfer (see aimemory/semantics.py)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from conftest import ColourEncoder

from aimemory import InputError, MemoryStore, NotFoundError


# -- caller ids and upsert ------------------------------------------------------------------------
def test_named_memory_is_created_then_replaced_in_one_commit(store):
    first = store.remember("red cat on the sofa", id="doc-1", metadata={"tags": ["pets"], "v": 1})
    assert first.id == "doc-1" and first.status == "new"
    again = store.remember("red cat on the sofa", id="doc-1", metadata={"tags": ["pets"], "v": 1})
    assert again.status == "existing"
    store.flush()  # the write-ahead segment into the table: the replace below is then one commit
    version = store.table.version
    new = store.remember("blue sky over the sea", id="doc-1", metadata={"v": 2})
    assert new.status == "replaced" and store.table.version == version + 1  # ONE commit
    got = store.get("doc-1")
    assert got.content == "blue sky over the sea" and got.metadata == {"v": 2, "tags": []}
    assert len(store) == 1 and store.count() == 1
    assert [h.id for h in store.recall("red cat", k=5)] == ["doc-1"]
    assert store.recall("blue", k=1)[0].score > store.recall("red", k=1)[0].score + 0.3  # new vectors
    assert store.index.ntotal == int(store.catalog.alive.sum())


def test_replacing_metadata_only_is_a_replace_too(store):
    store.remember("red", id="a", metadata={"tags": ["x"], "k": 1})
    m = store.remember("red", id="a", metadata={"k": 2})
    assert m.status == "replaced" and store.get("a").metadata == {"k": 2, "tags": []}


def test_ids_are_unique_per_namespace(store):
    a = store.remember("red apple", id="same", namespace="t1")
    b = store.remember("green leaf", id="same", namespace="t2")
    assert a.status == b.status == "new"
    assert len(store) == 2 and store.count("t1") == store.count("t2") == 1
    assert store.get("same", namespace="t1").content == "red apple"
    assert store.get("same", namespace="t2").content == "green leaf"
    store.remember("blue", id="same", namespace="t1")  # replacing one leaves the other alone
    assert store.get("same", namespace="t2").content == "green leaf"
    store.update("same", namespace="t2", tags=["kept"])
    assert store.get("same", namespace="t2").tags == ["kept"] and store.get("same", namespace="t1").tags == []
    store.forget("same", namespace="t2")
    assert store.get("same", namespace="t1").content == "blue" and len(store) == 1
    with pytest.raises(NotFoundError):
        store.get("same", namespace="t2")
    assert [h.id for h in store.recall("green", k=3, namespace="t2")] == []


def test_named_memories_survive_reopen(tmp_path):
    with MemoryStore(tmp_path / "m", model=ColourEncoder()) as s:
        s.remember_many(["red one", "green two", "blue three"], ids=["1", None, "3"])
        s.remember("yellow", id="1")
        s.remember("cyan", id="1", namespace="other")
    with MemoryStore(tmp_path / "m", model=ColourEncoder()) as s:
        assert s.get("1").content == "yellow" and s.get("3").content == "blue three"
        assert s.get("1", namespace="other").content == "cyan"
        assert len(s) == 4 and s.index.ntotal == 4


def test_remember_many_mixes_named_and_generated_ids(store):
    got = store.remember_many(["red a", "green b", "red a"], ids=["x", None, None])
    assert got[0].id == "x" and len(got[1].id) == 24 and got[2].id != "x"  # named: no content dedup
    again = store.remember_many(["blue a", "green b"], ids=["x", None])
    assert again[0].status == "replaced" and again[1].id == got[1].id  # unnamed still dedups
    assert store.get("x").content == "blue a"


def test_named_replace_does_not_swallow_unnamed_content_in_same_batch(store):
    store.remember("red old", id="x")
    got = store.remember_many(["blue new", "red old"], ids=["x", None])
    assert got[0].status == "replaced" and got[1].id != "x" and got[1].status == "new"
    assert store.get(got[1].id).content == "red old" and store.get("x").content == "blue new"


@pytest.mark.parametrize("bad", ["", "   ", "x" * 257, 7, b"bytes", "a\0b"])
def test_bad_ids_are_refused_before_anything_is_stored(store, bad):
    with pytest.raises(InputError):
        store.remember("red", id=bad)
    with pytest.raises(InputError):
        store.remember_many(["red", "blue"], ids=["ok", bad])
    assert len(store) == 0


def test_id_list_must_match_and_be_distinct(store):
    with pytest.raises(InputError, match="2 entries for 3"):
        store.remember_many(["a", "b", "c"], ids=["1", "2"])
    with pytest.raises(InputError, match="twice"):
        store.remember_many(["a", "b"], ids=["1", "1"])
    with pytest.raises(InputError, match="one id per item"):
        store.remember_many(["a"], ids="1")
    assert store.remember("red", id="x" * 256).id == "x" * 256


def test_readers_never_see_neither_or_both_during_upserts(store, monkeypatch):
    """Reader threads poll while a writer replaces the same id: the writer's own store (catalog)
    and a second store on the same folder (reloading from the table on every new version) always
    see exactly one memory named "doc"."""
    import aimemory.store_state as state_mod

    monkeypatch.setattr(state_mod, "REFRESH_INTERVAL_S", 0.0)
    store.remember("red 0", id="doc")
    other = MemoryStore(store.path, model=ColourEncoder())
    seen, stop = [], threading.Event()

    def reader(s):
        while not stop.is_set():
            with s.state.lock:
                s.state.fresh()
                seen.append((s.count("default"), len(s.catalog.positions("doc", "default")) > 0))

    threads = [threading.Thread(target=reader, args=(s,)) for s in (store, other)]
    for t in threads:
        t.start()
    for i in range(1, 15):
        store.remember(f"{'red' if i % 2 else 'blue'} {i}", id="doc")
    stop.set()
    for t in threads:
        t.join()
    other.close()
    assert len(seen) > 10 and all(s == (1, True) for s in seen)
    assert store.get("doc").content == "blue 14"


# -- expiry ----------------------------------------------------------------------------------------
def test_expired_memories_are_never_returned_and_compact_purges_them(store, clock):
    from datetime import datetime, timedelta, timezone

    keep = store.remember("red keep", metadata={"tags": ["t"]})
    ttl = store.remember("red short", ttl=60, metadata={"tags": ["t"]})
    at = store.remember("red dated", expires_at=datetime.now(timezone.utc) + timedelta(hours=2))
    iso = store.remember_many(["red iso a", "red iso b"], expires_at="2999-01-01T00:00:00Z")
    assert ttl.expires_at is not None and abs(ttl.expires_at.timestamp() - (datetime.now().timestamp() + 60)) < 30
    assert len(store) == 5 and store.count() == 5
    clock[0] = 3600  # an hour later: the ttl memory has expired
    assert len(store) == 4 and store.count("default") == 4 and store.stats()["namespaces"] == {"default": 4}
    assert ttl.id not in {h.id for h in store.recall("red short", k=10)}
    assert ttl.id not in {h.id for h in store.recall("short", k=10, hybrid=True)}
    assert ttl.id not in {h.id for h in store.recall("red", k=10, where={"tags": "t"})}
    with pytest.raises(NotFoundError):
        store.get(ttl.id)
    assert ttl.id not in store
    assert ttl.id not in store.to_arrow().column("id").to_pylist()
    from aimemory.export import recent

    assert ttl.id not in recent(store, "default")
    with pytest.raises(NotFoundError):
        store.update(ttl.id, tags=["x"])
    # the same content again is a new memory, not the expired one
    again = store.remember("red short")
    assert again.id != ttl.id and again.status == "new"
    clock[0] = 3 * 3600
    assert {h.id for h in store.recall("red", k=10)} == {keep.id, again.id, *[m.id for m in iso]}
    store.flush()  # the write-ahead segment into the table, so its row count says it all
    rows_before = store.table.count_rows()
    store.compact()
    assert store.table.count_rows() == rows_before - 2  # ttl and dated purged from the table
    assert store.index.ntotal == int(store.catalog.alive.sum()) == 4
    assert at.id not in store.catalog.by_id


def test_upsert_of_an_expired_id_replaces_its_rows(store, clock):
    store.remember("red", id="x", ttl=10)
    clock[0] = 100
    m = store.remember("blue", id="x")
    assert m.status == "new" and store.get("x").content == "blue"
    assert store.table.count_rows() == 1 and len(store.catalog.positions("x", "default", expired=True)) == 1


@pytest.mark.parametrize("kwargs", [{"ttl": 0}, {"ttl": -5}, {"ttl": float("nan")}, {"ttl": "10"},
                                    {"expires_at": "yesterday"}, {"expires_at": "2001-01-01T00:00:00"},
                                    {"ttl": 5, "expires_at": "2999-01-01"}, {"expires_at": True}])
def test_bad_expiry_is_refused(store, kwargs):
    with pytest.raises(InputError):
        store.remember("red", **kwargs)
    assert len(store) == 0


# -- recency ---------------------------------------------------------------------------------------
def test_half_life_prefers_recent_memories(store):
    import time

    now = time.time()
    old = store.remember("red apple pie", created_at=now - 30 * 86400)
    new = store.remember("red apple tart", created_at=now - 60)
    plain = store.recall("red apple pie", k=2)
    assert [h.id for h in plain] == [old.id, new.id] and plain[0].recency is None
    weighted = store.recall("red apple pie", k=2, half_life=86400)
    assert [h.id for h in weighted] == [new.id, old.id]
    assert weighted[1].recency == pytest.approx(0.5 ** 30, rel=1e-3)
    assert weighted[1].score == pytest.approx(plain[0].score * weighted[1].recency, rel=1e-4)
    assert [h.id for h in store.recall("red apple pie", k=2, half_life=1e9)] == [old.id, new.id]
    assert store.recall("apple pie", k=2, hybrid=True, half_life=86400)[0].id == new.id
    with pytest.raises(InputError):
        store.recall("red", half_life=0)


def test_half_life_finds_a_recent_memory_far_down_the_cosine_ranking(store):
    import time

    now = time.time()
    store.remember_many([f"red note {i}" for i in range(40)], created_at=now - 365 * 86400)
    fresh = store.remember("blue red", created_at=now)
    assert fresh.id not in {h.id for h in store.recall("red", k=3)}
    assert store.recall("red", k=3, half_life=86400)[0].id == fresh.id


# -- near duplicates -------------------------------------------------------------------------------
def test_near_duplicate_is_reported(store):
    first = store.remember("red cat on the mat", metadata={"tags": ["a"]})
    m = store.remember("red cat on a mat", near_duplicate=0.5)
    assert m.status == "new" and m.near_duplicate_of == first.id and 0.5 <= m.near_duplicate_score <= 1
    far = store.remember("blue sky", near_duplicate=0.5)
    assert far.near_duplicate_of is None and far.near_duplicate_score is None
    plain = store.remember("red cat on the mat!")  # not asked: not checked
    assert plain.near_duplicate_of is None
    assert store.remember("red cat", near_duplicate=0.5, namespace="other").near_duplicate_of is None  # tenants


def test_near_duplicate_merge_keeps_the_old_memory(store):
    first = store.remember("red cat on the mat", metadata={"tags": ["a"], "k": 1})
    m = store.remember("red cat on a mat", metadata={"tags": ["b"], "j": 2}, near_duplicate=0.5,
                       on_near_duplicate="merge")
    assert m.id == first.id and m.status == "merged" and m.near_duplicate_of == first.id
    assert store.get(first.id).metadata == {"k": 1, "j": 2, "tags": ["a", "b"]}
    assert len(store) == 1 and store.get(first.id).content == "red cat on the mat"
    exact = store.remember("red cat on the mat", near_duplicate=0.5, on_near_duplicate="merge")
    assert exact.status == "existing" and exact.near_duplicate_of is None  # exact dedup comes first
    named = store.remember("red cat on one mat", id="n", near_duplicate=0.5, on_near_duplicate="merge")
    assert named.id == "n" and named.status == "new" and named.near_duplicate_of == first.id  # never merged away
    again = store.remember("red cat on two mats", id="n", near_duplicate=0.99)
    assert again.status == "replaced" and again.near_duplicate_of in (None, first.id)  # never itself
    with pytest.raises(InputError):
        store.remember("red", near_duplicate=2)
    with pytest.raises(InputError):
        store.remember("red", near_duplicate=0.9, on_near_duplicate="drop")


def test_near_duplicates_in_a_batch_use_one_encoder_call(store, encoder):
    store.remember("red cat")
    calls = encoder.calls
    got = store.remember_many(["red cat!", "blue sky", "green leaf"], near_duplicate=0.5)
    assert encoder.calls == calls + 1
    assert [m.near_duplicate_of is not None for m in got] == [True, False, False]


# -- provenance ------------------------------------------------------------------------------------
def test_provenance_round_trips(tmp_path):
    with MemoryStore(tmp_path / "m", model=ColourEncoder()) as s:
        a = s.remember("red fact", source="chat:42", created_by="agent:planner")
        b = s.remember("red summary", created_by="agent:summariser", derived_from=[a.id, "elsewhere-7"])
        many = s.remember_many(["x red", "y blue"], created_by=["u1", None], derived_from=[[a.id], None])
        assert (b.created_by, b.derived_from) == ("agent:summariser", [a.id, "elsewhere-7"])
        assert (many[0].derived_from, many[1].derived_from, many[1].created_by) == ([a.id], None, None)
    with MemoryStore(tmp_path / "m", model=ColourEncoder()) as s:
        got = s.get(b.id)
        assert (got.created_by, got.derived_from, got.source) == ("agent:summariser", [a.id, "elsewhere-7"], None)
        assert s.get(a.id).source == "chat:42" and s.get(a.id).derived_from is None
        hit = s.recall("red summary", k=1)[0]
        assert hit.memory.created_by == "agent:summariser"
        table = s.to_arrow()
        row = next(r for r in table.to_pylist() if r["id"] == b.id)
        assert row["created_by"] == "agent:summariser" and row["derived_from"] == [a.id, "elsewhere-7"]
    with pytest.raises(InputError):
        MemoryStore(tmp_path / "m", model=ColourEncoder()).remember("red", derived_from=[""])


def test_stores_of_the_first_schema_stay_readable_and_upgrade_on_write(tmp_path):
    import lancedb

    from aimemory.storage import Manifest

    path = tmp_path / "m"
    with MemoryStore(path, model=ColourEncoder()) as s:
        old = s.remember_many(["red one", "blue two"], metadata={"tags": ["t"]})
    # rewrite the table and manifest as the first schema made them: no expiry or provenance columns
    db = lancedb.connect(str(path / "tables"))
    rows = db.open_table("memories").to_arrow().drop_columns(["expires_at", "created_by", "derived_from"])
    db.create_table("memories", data=rows, mode="overwrite")
    manifest = Manifest.read(path)
    manifest.schema_version = 1
    manifest.write(path)
    with MemoryStore(path, model=ColourEncoder()) as s:
        assert s.table.missing_columns() == ["expires_at", "created_by", "derived_from"]
        got = s.get(old[0].id)
        assert got.content == "red one" and got.created_by is None and got.expires_at is None
        assert s.recall("red", k=1)[0].id == old[0].id and len(s.to_arrow()) == 2
        s.update(old[1].id, tags=["u"])  # a metadata update needs no new columns
        new = s.remember("green three", created_by="me", ttl=3600)
        assert s.table.missing_columns() == [] and Manifest.read(path).schema_version == 2
    with MemoryStore(path, model=ColourEncoder()) as s:
        assert s.get(new.id).created_by == "me" and s.get(old[1].id).tags == ["t", "u"] and len(s) == 3


# -- namespace export / import ---------------------------------------------------------------------
def _table_rows(store, namespace):
    """Every view row of a namespace, keyed by (id, view), without the store-internal vkey."""
    from lancedb.expr import col, lit

    from aimemory.records import table_schema

    names = [n for n in table_schema(store.manifest.dim).names if n != "vkey"]
    rows = store.table.scan(names, col("namespace") == lit(namespace)).to_pylist()
    for r in rows:
        r.pop("namespace")
        r["vector"] = np.asarray(r["vector"], np.float32).tobytes()
    return {(r["id"], r["view"]): r for r in rows}


def test_namespace_export_import_round_trips_bit_exactly(tmp_path, clock):
    import io

    from conftest import solid, tone

    png = io.BytesIO()
    solid("green", noise_seed=3).save(png, format="PNG")
    with MemoryStore(tmp_path / "a", model=ColourEncoder()) as a:
        a.remember("red unrelated", namespace="other")
        a.remember("red fact", id="f1", namespace="agent", source="chat:1", created_by="agent:x",
                   metadata={"tags": ["t1", "t2"], "score": 0.1, "nested": {"k": [1, "two", None]}})
        a.remember(png.getvalue(), namespace="agent", derived_from=["f1"], ttl=7 * 86400)
        a.remember(tone("blue"), namespace="agent", source="clip.wav")
        a.remember("short lived", namespace="agent", ttl=60)
        a.remember("ünïcode 🐱 text\nwith lines", namespace="agent", created_at="2001-02-03T04:05:06.789012Z")
        clock[0] = 120  # "short lived" has expired: it is not exported
        summary = a.export_namespace(tmp_path / "x", namespace="agent")
        assert summary["memories"] == 4 and summary["namespace"] == "agent"
        before = _table_rows(a, "agent")
    assert (tmp_path / "x" / "vectors.npy").exists() and len(list((tmp_path / "x" / "media").iterdir())) == 2
    with pytest.raises(InputError):
        MemoryStore(tmp_path / "a", model=ColourEncoder()).export_namespace(tmp_path / "x", namespace="agent")
    with MemoryStore(tmp_path / "b", model=ColourEncoder()) as b:
        got = b.import_namespace(tmp_path / "x")
        assert len(got) == 4 and {m.status for m in got} == {"new"} and got.skipped == []
        after = _table_rows(b, "agent")
        expired = [k for k, r in before.items() if r["text"] == "short lived"]
        assert after == {k: r for k, r in before.items() if k not in expired}  # every column, bit for bit
        again = b.import_namespace(tmp_path / "x")
        assert {m.status for m in again} == {"existing"} and b.table.count_rows() == len(after)
        moved = b.import_namespace(tmp_path / "x", namespace="copy")
        assert b.count("copy") == 4
        assert b.get("f1", namespace="copy").metadata == b.get("f1", namespace="agent").metadata
        assert b.recall("red fact", k=1, namespace="agent")[0].id == "f1" and moved[0].namespace == "copy"


class OtherColourEncoder(ColourEncoder):
    model_id = "test-colour-other"


def test_namespace_import_into_another_model_embeds_again(tmp_path):
    import io

    from conftest import solid

    png = io.BytesIO()
    solid("red").save(png, format="PNG")
    with MemoryStore(tmp_path / "a", model=ColourEncoder()) as a:
        a.remember("blue note", id="n", created_by="me", metadata={"tags": ["x"]})
        a.remember(png.getvalue(), id="img")
        a.export_namespace(tmp_path / "x")
        created = a.get("n").created_at
    enc = OtherColourEncoder()
    with MemoryStore(tmp_path / "b", model=enc) as b:
        calls = enc.calls
        got = b.import_namespace(tmp_path / "x")
        assert enc.calls > calls and {m.id for m in got} == {"n", "img"}
        n = b.get("n")
        assert (n.content, n.created_by, n.tags) == ("blue note", "me", ["x"])
        assert b.get("img").content == png.getvalue()
        assert n.created_at == created


def test_import_refuses_what_is_not_an_export(tmp_path, store):
    with pytest.raises(InputError, match="not a namespace export"):
        store.import_namespace(tmp_path)


# -- the doors: CLI, MCP, HTTP ---------------------------------------------------------------------
def test_a_damaged_export_is_refused_whole_with_a_typed_error(tmp_path):
    """Each damage a hand edit or a broken copy can do: an InputError naming it, and nothing stored
    (a negative vector row gave every memory the same wrong vector; an unknown modality was kept)."""
    import io
    import shutil

    from conftest import solid

    png = io.BytesIO()
    solid("red").save(png, format="PNG")
    with MemoryStore(tmp_path / "a", model=ColourEncoder()) as a:
        a.remember("a blue note", metadata={"n": 1})
        a.remember(png.getvalue())
        a.remember("a green note")
        a.export_namespace(tmp_path / "good")

    def damaged(name, edit_lines=None, edit_folder=None):
        folder = tmp_path / name
        shutil.copytree(tmp_path / "good", folder)
        if edit_lines is not None:
            lines = [json.loads(t) for t in (folder / "memories.jsonl").read_text().splitlines()]
            edit_lines(lines)
            (folder / "memories.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        if edit_folder is not None:
            edit_folder(folder)
        return folder

    def vectors(folder):
        return np.load(folder / "vectors.npy")

    cases = {
        "id": damaged("id", lambda ls: ls[0].update(id=5)),
        "row negative": damaged("neg", lambda ls: ls[1].update(vector_row=-3)),
        "row too far": damaged("far", lambda ls: ls[1].update(vector_row=10**9)),
        "row text": damaged("rowtext", lambda ls: ls[1].update(vector_row="abc")),
        "views": damaged("views", lambda ls: ls[0].pop("views")),
        "metadata": damaged("meta", lambda ls: ls[0].update(metadata=[1, 2])),
        "modality": damaged("smell", lambda ls: ls[2].update(modality="smell")),
        "not an object": damaged("list", lambda ls: ls.__setitem__(2, [1, 2])),
        "no vectors": damaged("novec", edit_folder=lambda f: (f / "vectors.npy").unlink()),
        "short vectors": damaged("short", edit_folder=lambda f: np.save(f / "vectors.npy", vectors(f)[:1])),
        "nan vectors": damaged("nan", edit_folder=lambda f: np.save(f / "vectors.npy", vectors(f) * np.nan)),
        "no media": damaged("nomedia", edit_folder=lambda f: shutil.rmtree(f / "media")),
        "header": damaged("header", edit_folder=lambda f: (f / "aimemory-export.json").write_text("[1]")),
    }
    with MemoryStore(tmp_path / "b", model=ColourEncoder()) as b:
        for what, folder in cases.items():
            with pytest.raises(InputError):
                b.import_namespace(folder)
            assert b.count() == 0, what
        assert len(b.import_namespace(tmp_path / "good")) == 3


def test_cli_ids_expiry_provenance_half_life_and_namespace_transfer(tmp_path, capsys, monkeypatch):
    import json

    import aimemory.cli.commands as commands
    from aimemory.cli import main

    monkeypatch.setattr(commands, "_TEST_STORE_KWARGS", {"model": ColourEncoder(), "speech_model": None})
    a, b = tmp_path / "a", tmp_path / "b"

    def run(*argv):
        code = main([str(x) for x in argv])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    run("remember", "--text", "red first", "--id", "n1", "--created-by", "me", "--derived-from", "x",
        "--ttl", "2h", "--store", a, "-n", "agent")
    run("remember", "--text", "blue second", "--id", "n1", "--store", a, "-n", "agent")  # replaced
    shown = json.loads(run("show", "n1", "--json", "--store", a, "-n", "agent"))
    assert shown["text"] == "blue second" and "created_by" not in shown  # the replacement has none
    run("remember", "--text", "red third", "--created-by", "me", "--expires-at", "2999-01-01T00:00:00Z",
        "--store", a, "-n", "agent")
    hits = json.loads(run("recall", "red", "--half-life", "7d", "--json", "--store", a, "-n", "agent"))
    assert hits and all("recency" not in h or h["recency"] is None or h["recency"] <= 1 for h in hits)
    code = main(["remember", "--text", "a", "--text", "b", "--id", "x", "--store", str(a)])
    assert code == 2  # --id names one memory
    capsys.readouterr()
    run("export", "--with-content", tmp_path / "x", "--store", a, "-n", "agent")
    assert "imported 2 memories" in run("import", tmp_path / "x", "--store", b)
    with MemoryStore(b, model=ColourEncoder()) as s:
        assert s.get("n1", namespace="agent").content == "blue second" and s.count("agent") == 2


def test_mcp_tools_take_ids_ttl_half_life_and_transfer(tmp_path):
    pytest.importorskip("mcp")
    import asyncio
    import json

    from mcp import Client

    from aimemory.mcp_server import build_server

    root = tmp_path / "files"
    root.mkdir()

    def payload(result):
        assert not result.is_error, result.content
        return json.loads(result.content[0].text)

    with MemoryStore(tmp_path / "m", model=ColourEncoder(), speech_model=None) as mem:
        async def go():
            async with Client(build_server(mem, "agent", [root])) as client:
                one = payload(await client.call_tool("remember_text", {"text": "red note", "id": "k1",
                                                                       "ttl_seconds": 3600, "derived_from": ["p"]}))
                assert one["id"] == "k1" and one["status"] == "new" and one["derived_from"] == ["p"]
                assert one["expires_at"]
                two = payload(await client.call_tool("remember_text", {"text": "blue note", "id": "k1"}))
                assert two["status"] == "replaced"
                near = payload(await client.call_tool("remember_text", {"text": "blue note!", "near_duplicate": 0.5}))
                assert near["near_duplicate_of"] == "k1"
                hits = payload(await client.call_tool("recall", {"query": "blue", "half_life_seconds": 86400}))
                assert hits["hits"][0]["id"] in ("k1", near["id"])
                summary = payload(await client.call_tool("export_memories", {"folder": str(root / "out")}))
                assert summary["memories"] == 2
                outside = await client.call_tool("export_memories", {"folder": str(tmp_path / "elsewhere")})
                assert outside.is_error
                back = payload(await client.call_tool("import_memories", {"folder": str(root / "out")}))
                assert back == {"imported": 2, "skipped_expired": 0}

        asyncio.run(go())


def test_http_fields_half_life_and_export_import(tmp_path):
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from aimemory.web import create_app

    with MemoryStore(tmp_path / "m", model=ColourEncoder(), speech_model=None) as mem:
        client = TestClient(create_app(mem), base_url="http://127.0.0.1")
        r = client.post("/api/memories", json={"text": "red note", "id": "h1", "ttl": 3600, "created_by": "web",
                                               "derived_from": "a,b", "namespace": "ns"})
        assert r.status_code == 201, r.text
        m = r.json()["memories"][0]
        assert (m["id"], m["status"], m["created_by"], m["derived_from"]) == ("h1", "new", "web", ["a", "b"])
        assert m["expires_at"]
        form = {"text": "blue note", "id": "h1", "namespace": "ns", "near_duplicate": "0.99"}
        r = client.post("/api/memories", files={k: (None, v) for k, v in form.items()})  # multipart
        assert r.status_code == 201 and r.json()["memories"][0]["status"] == "replaced", r.text
        assert client.post("/api/memories", json={"text": ["a", "b"], "id": "one"}).status_code == 400
        assert client.post("/api/memories", json={"text": "a", "ttl": -1}).status_code == 400
        hits = client.get("/api/recall", params={"q": "blue", "namespace": "ns", "half_life": 3600}).json()["hits"]
        assert hits[0]["id"] == "h1" and 0 < hits[0]["recency"] <= 1
        assert client.get("/api/recall", params={"q": "blue", "half_life": -1}).status_code == 400
        tar = client.get("/api/export", params={"namespace": "ns"})
        assert tar.status_code == 200 and tar.headers["content-type"] == "application/x-tar"
        r = client.post("/api/import", params={"namespace": "copy"}, content=tar.content,
                        headers={"content-type": "application/x-tar"})
        assert r.status_code == 201 and r.json() == {"imported": 1, "skipped": 0}, r.text
        assert mem.get("h1", namespace="copy").content == "blue note"
        bad = client.post("/api/import", content=b"not a tar", headers={"content-type": "application/x-tar"})
        assert bad.status_code == 400


def test_ttl_takes_the_clis_durations(store):
    """ttl="2h" was read as two items ("ttl= has 2 entries for 1 items")."""
    import time

    m = store.remember("a note for two hours", ttl="2h")
    assert abs(m.expires_at.timestamp() - (time.time() + 7200)) < 60
    later = store.update(m.id, ttl="1d")
    assert abs(later.expires_at.timestamp() - (time.time() + 86400)) < 60
    for bad in ("2 hours", "-2h", "0h"):
        with pytest.raises(InputError, match="duration like '2h'"):
            store.remember("never stored", ttl=bad)


def test_tables_of_a_namespace_no_store_can_hold_are_an_error(store):
    store.remember("a note")
    for bad in ("a/b", "", ".."):
        with pytest.raises(InputError, match="namespace"):
            store.to_arrow(namespace=bad)  # an empty table before
    assert store.to_arrow(namespace="default").num_rows == 1
