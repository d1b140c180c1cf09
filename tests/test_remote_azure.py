"""Stores on Azure Blob Storage: Azurite (Microsoft's emulator, installed from npm by the Makefile)
on 127.0.0.1; the same API as a local store, a reopened store, two writers, the lease's
conditional writes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from _remote_writers import two_writers_check
from conftest import ColourEncoder, solid, tone

pytest.importorskip("azure.storage.blob",
                    reason="Azure stores need azure-storage-blob: pip install 'aimemory-multimodal[azure]'")

ROOT = Path(__file__).resolve().parents[1]
AZURITE = ROOT / ".venv" / "node" / "node_modules" / ".bin" / "azurite-blob"


def _azurite() -> str | None:
    return str(AZURITE) if AZURITE.exists() else shutil.which("azurite-blob")


@pytest.fixture(scope="module")
def azurite():
    exe = _azurite()
    if exe is None:
        pytest.skip("Azurite is not installed (make test installs it with npm)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--silent", "--inMemoryPersistence", "--blobHost", "127.0.0.1",
                             "--blobPort", str(port), "--skipApiVersionCheck", "--loose"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("Azurite did not start within 30 s")
    yield f"http://127.0.0.1:{port}/devstoreaccount1"
    proc.kill()
    proc.wait()


@pytest.fixture
def az(azurite, tmp_path, monkeypatch, request):
    """A fresh container; returns (uri, storage_options)."""
    from azure.storage.blob import BlobServiceClient

    from aimemory.storage.objects import AZURITE_ACCOUNT

    monkeypatch.setenv("AIMEMORY_CACHE_DIR", str(tmp_path / "cache"))
    key = os.environ.get("AZURITE_KEY", "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZ"
                                        "FPTOtr/KBHBeksoGMGw==")  # Azurite's published dev key
    options = {"azure_storage_account_name": AZURITE_ACCOUNT, "azure_storage_account_key": key,
               "azure_storage_endpoint": azurite, "allow_http": "true"}
    container = "mem-" + request.node.name.replace("_", "-")[:40].lower().strip("-")
    BlobServiceClient(azurite, credential={"account_name": AZURITE_ACCOUNT, "account_key": key}) \
        .create_container(container)
    return f"az://{container}/stores/one", options


def test_same_api_and_reopen(az):
    from aimemory import MemoryStore

    uri, options = az
    with MemoryStore(uri, model=ColourEncoder(), storage_options=options) as store:
        assert store.stats()["index"]["kind"].startswith("lance")
        apple = store.remember("a red apple")
        store.remember(solid("green"))
        store.remember(tone("blue"))
        assert store.recall("red", k=1)[0].id == apple.id
        assert store.remember("a red apple").id == apple.id  # dedup across the object store
    with MemoryStore(uri, model=ColourEncoder(), storage_options=options) as again:
        assert len(again) == 3 and again.get(apple.id).content == "a red apple"
        again.forget(apple.id)
        assert len(again) == 2


def test_two_writers_keep_keys_unique(az, tmp_path, monkeypatch):
    two_writers_check(*az, tmp_path, monkeypatch, rounds=4)


def test_lease_conditions(az):
    from aimemory.storage.remote import RemoteLocation

    uri, options = az
    a, b = RemoteLocation(uri, options), RemoteLocation(uri, options)
    assert a.put("_aimemory/x", b"1", create_only=True)
    assert not b.put("_aimemory/x", b"2", create_only=True)  # If-None-Match: *
    body, etag = a.get("_aimemory/x")
    assert body == b"1"
    assert a.put("_aimemory/x", b"3", if_match=etag)
    assert not b.put("_aimemory/x", b"4", if_match=etag)  # stale etag
    assert a.get("_aimemory/missing") is None
    with a.lease(timeout_s=5):
        from aimemory.errors import StoreError

        with pytest.raises(StoreError, match="timed out"):
            with b.lease(timeout_s=0.5):
                pass
    with b.lease(timeout_s=5):  # released: free again
        pass
