"""aimemory.index.faiss_file: the saved index's files; a mapped index file is read ahead into the
page cache on open only when the memory available could keep it."""

from __future__ import annotations

import pytest

import aimemory.index.faiss_file as faiss_file


@pytest.mark.parametrize("available, read", [(10**12, True), (1000, False), (None, True)])
def test_an_index_file_is_read_ahead_only_when_the_memory_can_keep_it(tmp_path, monkeypatch, available, read):
    path = tmp_path / "vectors-0.faiss"
    path.write_bytes(b"\0" * 4096)
    advised = []
    monkeypatch.setattr(faiss_file, "memory_available", lambda: available)
    monkeypatch.setattr(faiss_file.os, "posix_fadvise", lambda *a: advised.append(a), raising=False)
    faiss_file.read_ahead(path)
    assert bool(advised) == read
