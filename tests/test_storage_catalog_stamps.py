"""Saved catalog files are checksummed once: a reopen skips the CRC pass over files whose name, size,
mtime and inode match the stamp recorded when they were written or checked; a file changed in place
is checked again (and rebuilt when it fails)."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

from conftest import ColourEncoder

from aimemory import MemoryStore
from aimemory.storage import catalog_file


def _fill(path, n=12):
    with MemoryStore(path, model=ColourEncoder()) as s:
        s.remember_many([f"note {i} red" for i in range(n)])


def test_reopen_skips_the_crc_of_stamped_files(tmp_path, monkeypatch):
    path = tmp_path / "mem"
    _fill(path)
    assert (path / "catalog" / catalog_file.STAMPS).exists()
    calls = []
    real = catalog_file.zlib.crc32
    # the catalog's own checksum calls only (the write-ahead segment checks its header's CRC too)
    counting = SimpleNamespace(crc32=lambda data, *a: calls.append(1) or real(data, *a))
    monkeypatch.setattr(catalog_file, "zlib", counting)
    with MemoryStore(path, model=ColourEncoder()) as s:
        assert len(s) == 12
    assert calls == []


def test_a_file_changed_in_place_is_checked_again(tmp_path, caplog):
    path = tmp_path / "mem"
    _fill(path)
    side = json.loads((path / "catalog" / "catalog.json").read_text())
    rows = path / "catalog" / side["files"]["rows"]["name"]
    data = bytearray(rows.read_bytes())
    data[len(data) // 2] ^= 0xFF
    rows.write_bytes(bytes(data))  # same name, size and inode; a new mtime
    with caplog.at_level(logging.WARNING, logger="aimemory.storage"), MemoryStore(path, model=ColourEncoder()) as s:
        assert len(s) == 12
    assert any("checksum" in r.message for r in caplog.records)
