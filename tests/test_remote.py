"""Stores on S3: a real S3-compatible server (moto's server mode) on 127.0.0.1, the same API
results as a local store, a reopened store, and two writers."""

from __future__ import annotations

import threading

import pytest
from _remote_writers import two_writers_check
from conftest import ColourEncoder, solid, tone

moto_server = pytest.importorskip("moto.server", reason="S3 tests need moto: pip install 'moto[server]'")
boto3 = pytest.importorskip("boto3", reason="S3 stores need boto3: pip install 'aimemory-multimodal[s3]'")


@pytest.fixture(scope="module")
def s3_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, tmp_path, monkeypatch, request):
    """A fresh bucket; returns (uri, storage_options)."""
    monkeypatch.setenv("AIMEMORY_CACHE_DIR", str(tmp_path / "cache"))
    options = {"aws_endpoint": s3_endpoint, "allow_http": "true", "aws_region": "us-east-1",
               "aws_access_key_id": "test", "aws_secret_access_key": "test"}
    bucket = "mem-" + request.node.name.replace("_", "-")[:40].lower()
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/stores/one", options


def _fill(store):
    store.remember("a red apple", metadata={"tags": ["fruit"]})
    store.remember("blue sky over the sea")
    store.remember(solid("green"))
    store.remember(tone("red"))
    return store


def _answers(store):
    out = {}
    for q in ["red", "blue", "green"]:
        hits = store.recall(q, k=4)
        out[q] = [(h.modality, h.kind, round(h.score, 4)) for h in hits]
    return out


def test_same_results_as_local(s3, tmp_path):
    from aimemory import MemoryStore

    uri, options = s3
    remote = _fill(MemoryStore(uri, model=ColourEncoder(), storage_options=options))
    local = _fill(MemoryStore(tmp_path / "local", model=ColourEncoder()))
    assert len(remote) == len(local) == 4
    assert _answers(remote) == _answers(local)
    stats = remote.stats()
    assert stats["path"] == uri
    assert stats["index"]["kind"].startswith("lance") and "object store" in stats["index"]["why"]
    assert local.stats()["index"]["kind"] == "flat" and "local" in local.stats()["index"]["why"]
    # content round-trips through the object store
    text = remote.recall("red", k=1, modality="text")[0]
    assert text.memory.content == "a red apple" and text.memory.metadata["tags"] == ["fruit"]
    remote.close()
    local.close()


def test_forget_reopen_and_dedup(s3):
    from aimemory import MemoryStore

    uri, options = s3
    store = _fill(MemoryStore(uri, model=ColourEncoder(), storage_options=options))
    sky = store.recall("blue", k=1)[0]
    assert store.forget(sky.id) == 1
    again = store.remember("a red apple")  # dedup across the object store
    assert len(store) == 3
    store.close()
    reopened = MemoryStore(uri, model=ColourEncoder(), storage_options=options)
    assert len(reopened) == 3 and again.id in reopened
    assert sky.id not in reopened
    assert reopened.manifest.model_id == ColourEncoder.model_id
    assert reopened.recall("blue", k=3)[0].modality != "text" or "sky" not in str(
        reopened.recall("blue", k=3)[0].memory.content)
    # a store opened in another "machine" (its own cache folder) sees the same thing
    reopened.close()


def test_named_upsert_and_expiry_on_an_object_store(s3):
    """The one-commit replace (a merge on vkey) and the expiry columns work through the object store."""
    from aimemory import MemoryStore

    uri, options = s3
    with MemoryStore(uri, model=ColourEncoder(), storage_options=options) as store:
        store.remember("a red apple", id="fruit", created_by="me", ttl=3600)
        replaced = store.remember("a green pear", id="fruit", derived_from=["x"])
        assert replaced.status == "replaced" and len(store) == 1
    with MemoryStore(uri, model=ColourEncoder(), storage_options=options) as store:
        got = store.get("fruit")
        assert (got.content, got.derived_from, got.created_by, got.expires_at) == ("a green pear", ["x"], None, None)
        assert store.recall("green", k=2)[0].id == "fruit" and store.table.count_rows() == 1


@pytest.mark.slow  # ~30 s on a busy 2-core machine
def test_two_writers(s3, tmp_path, monkeypatch):
    """Two machines write at once: the object-store lease keeps keys unique, every memory lands."""
    two_writers_check(*s3, tmp_path, monkeypatch, rounds=6)


def test_local_store_rejects_storage_options(tmp_path):
    from aimemory import MemoryStore

    with pytest.raises(ValueError, match="object-store"):
        MemoryStore(tmp_path / "x", model=ColourEncoder(), storage_options={"a": "b"})


class SlowColour(ColourEncoder):
    """Encoding (under the write lease) takes longer than the lease's lifetime, as a big batch on a
    slow machine does; ``encoding`` is set once it has begun."""

    def __init__(self, seconds: float = 1.5):
        super().__init__()
        self.encoding = threading.Event()
        self.seconds = seconds

    def embed_texts(self, texts):
        import time

        self.encoding.set()
        time.sleep(self.seconds)
        return super().embed_texts(texts)


def _rival(uri, options, ttl_s: float = 0.5):
    from aimemory.storage.remote import RemoteLocation

    return RemoteLocation(uri, {**options, "aimemory_lease_ttl_s": str(ttl_s)})


def test_lease_is_renewed_while_a_long_write_runs(s3):
    from aimemory import MemoryStore
    from aimemory.errors import StoreError

    uri, options = s3
    # a lifetime of 1.2 s renewed every 0.4 s: a renewal may run late by most of a second on a busy
    # machine (a full test run) without the lease lapsing; the encode outlasts the rival's wait
    encoder = SlowColour(seconds=3.0)
    store = MemoryStore(uri, model=encoder, storage_options={**options, "aimemory_lease_ttl_s": "1.2"})
    store.batch_encodes = False  # the slow encode runs under the lease, as a long batch's does
    rival, outcome = _rival(uri, options, ttl_s=1.2), []

    def take_over():
        encoder.encoding.wait(10)  # the store holds the lease now
        try:
            with rival.lease(timeout_s=2.4):  # twice the lifetime: it would expire without renewal
                outcome.append("acquired")
        except StoreError as exc:
            outcome.append(str(exc))

    t = threading.Thread(target=take_over)
    t.start()
    store.remember("a red note")
    t.join()
    assert outcome and "timed out" in outcome[0], outcome
    assert len(store) == 1
    with rival.lease(timeout_s=2.0):  # released after the write: free again
        pass
    store.close()


def test_a_writer_whose_lease_was_taken_over_commits_nothing(s3, monkeypatch):
    from aimemory import MemoryStore
    from aimemory.errors import StoreError
    from aimemory.storage.remote import RemoteLocation

    uri, options = s3
    encoder = SlowColour()
    store = MemoryStore(uri, model=encoder, storage_options={**options, "aimemory_lease_ttl_s": "0.5"})
    store.remember_many([])  # nothing: the table exists, the lease is free
    store.batch_encodes = False  # the slow encode runs under the lease, as a long batch's does
    monkeypatch.setattr(RemoteLocation, "_renew_until", lambda self, stop: None)  # a suspended renewer
    rival = _rival(uri, options)

    def take_over():
        import time

        encoder.encoding.wait(10)
        time.sleep(0.7)  # after the store's lease expired, while it is still encoding
        with rival.lease(timeout_s=2.0):
            time.sleep(1.0)  # still held when the store reaches its commit

    t = threading.Thread(target=take_over)
    t.start()
    with pytest.raises(StoreError, match="lease .* was lost"):
        store.remember("a red note")
    t.join()
    assert len(store) == 0
    store.close()
    again = MemoryStore(uri, model=ColourEncoder(), storage_options=options)
    assert len(again) == 0 and again.remember("a blue note") and len(again) == 1
    again.close()


def test_gcs_store_is_refused_clearly(tmp_path, monkeypatch):
    from aimemory import MemoryStore
    from aimemory.errors import StoreError

    monkeypatch.setenv("AIMEMORY_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(StoreError, match="gs:// stores are not supported yet.*s3://.*az://"):
        MemoryStore("gs://bucket/memories", model=ColourEncoder(), storage_options={"x": "y"})
