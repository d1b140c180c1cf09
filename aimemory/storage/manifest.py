"""The store's manifest: which model made the vectors, their width, the schema version, and the
high-water mark of index keys (so keys are never reused after deletes)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ModelMismatchError, StoreCorruptError
from ..records import SCHEMA_VERSION

MANIFEST_NAME = "aimemory.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a torn one:
    temp file in the same folder, fsync, rename, fsync the folder."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries (a rename, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Manifest:
    model_id: str
    dim: int
    precision: str = "fp32"
    schema_version: int = SCHEMA_VERSION
    next_vkey: int = 1
    created_with: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> "Manifest | None":
        remote = getattr(folder, "remote", None)
        if remote is not None:  # an object store: the manifest is an object
            return remote.read_manifest(cls)
        path = Path(folder) / MANIFEST_NAME
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise StoreCorruptError(
                f"store manifest {path} is unreadable ({exc}); restore it from a backup, or delete it "
                "and reopen with the model that made the store to rebuild it") from exc

    def write(self, folder: Path) -> None:
        remote = getattr(folder, "remote", None)
        if remote is not None:
            return remote.write_manifest(self)
        atomic_write_bytes(Path(folder) / MANIFEST_NAME,
                           json.dumps(asdict(self), indent=2, sort_keys=True).encode())

    def check_model(self, model_id: str, dim: int | None, folder: Path) -> None:
        """Refuse another model than the store's; ``dim`` None: not known yet (nothing loaded)."""
        if self.schema_version > SCHEMA_VERSION:
            raise StoreCorruptError(
                f"store {folder} has schema version {self.schema_version}, newer than this aimemory "
                f"understands ({SCHEMA_VERSION}); upgrade aimemory")
        if model_id != self.model_id or (dim is not None and dim != self.dim):
            other = f"{model_id!r}" + (f" (dim {dim})" if dim is not None else "")
            raise ModelMismatchError(
                f"store {folder} holds vectors from model {self.model_id!r} (dim {self.dim}); it cannot "
                f"be opened with {other} because the spaces differ. Open it with "
                f"model={self.model_id!r} (or model='auto', which reads the store's model), or create "
                "a new store for the other model")
