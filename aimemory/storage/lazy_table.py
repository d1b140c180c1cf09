"""The store's table, opened lazily: Lance (``lancedb``, about a second of imports) loads only when
a caller needs rows.

A recall answered by the saved catalog and the saved FAISS index needs three facts about the table:
its latest version, the digest of that version's Lance manifest file and its live row count. All
three are read from the Lance manifest files themselves: versions from the ``_versions`` file names
(as :class:`~aimemory.storage.table.VectorTable` lists them), rows from the manifest's fragments
(physical rows minus deleted rows). The catalog's trust checks (:mod:`.catalog_file`) are therefore
the same with or without Lance loaded. As VectorTable's open does, every data file of the version
must end with the Lance magic; a torn one makes :func:`open_table` open Lance at once (which walks
back to the newest readable version). Anything else (rows, content, full-text search, writes)
opens the real :class:`VectorTable` on first use, and from then on every call goes to it.

The manifest is a protobuf message (Lance's ``table.proto``, Apache-2.0): a little-endian u64 at 16
bytes from the end gives its offset, where a u32 length precedes it. Fields read:
``Manifest.fragments`` (2), ``Manifest.version`` (3), ``DataFragment.files`` (2),
``DataFragment.deletion_file`` (3), ``DataFragment.physical_rows`` (4), ``DataFile.path`` (1),
``DeletionFile.num_deleted_rows`` (4). A file that does not parse makes :func:`read_manifest` return
None and the real table is opened instead.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, cast

import numpy as np

from ..errors import StoreClosedError
from .catalog_file import FOLDER, SIDECAR, manifest_file
from .table import TABLE_NAME, VectorTable

log = logging.getLogger("aimemory.storage")

U64_MAX = 2**64 - 1  # Lance v2 manifest names count down from here
VERSION_HINT = "latest_version_hint.json"  # Lance's note of its newest version; newer ones may exist
FOOTER = 16  # u64 manifest offset, u16 major, u16 minor, b"LANC"
MAGIC = b"LANC"
MANIFEST_FRAGMENTS, MANIFEST_VERSION = 2, 3
FRAGMENT_FILES, FRAGMENT_DELETION_FILE, FRAGMENT_PHYSICAL_ROWS = 2, 3, 4
DATA_FILE_PATH = 1
DELETION_NUM_DELETED = 4

# keys -> their vectors (n, dim) in the order given, or None when the source lacks any of them
VectorSource = Callable[[np.ndarray], "np.ndarray | None"]


# -- Lance manifest files ---------------------------------------------------------------------------
def dataset_folder(folder: Path) -> Path:
    """The Lance dataset of the store folder ``folder`` (as VectorTable names it)."""
    return Path(folder) / "tables" / f"{TABLE_NAME}.lance"


def latest_version(dataset: Path) -> int | None:
    """The newest version with a manifest file (v1 or v2 naming), or None when there is none. A
    write asks before each commit, so this starts from Lance's own hint of its newest version and
    steps past it while the next manifest exists (Lance numbers versions one by one); only without
    a usable hint does it list every manifest (O(versions): 1,000 of them cost 1-2 ms a write)."""
    hinted = _hinted_version(dataset)
    if hinted is not None and manifest_file(dataset, hinted) is not None:
        version = hinted
        while manifest_file(dataset, version + 1) is not None:
            version += 1
        return version
    return _listed_version(dataset)


def _hinted_version(dataset: Path) -> int | None:
    try:
        version = json.loads((Path(dataset) / "_versions" / VERSION_HINT).read_bytes())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) and version > 0 else None


def _listed_version(dataset: Path) -> int | None:
    best = None
    try:
        names = os.listdir(Path(dataset) / "_versions")
    except OSError:
        return None
    for name in names:
        stem, dot, ext = name.partition(".")
        if ext != "manifest" or not stem.isdigit():
            continue
        n = int(stem)
        version = U64_MAX - n if n > 2**63 else n
        best = version if best is None else max(best, version)
    return best


def _varint(data: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        byte = data[i]
        i += 1
        out |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return out, i


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints for varints, bytes for the rest."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            size, i = _varint(data, i)
            value, i = data[i:i + size], i + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = data[i:i + size], i + size
        else:
            raise ValueError(f"protobuf wire type {wire} is not expected in a Lance manifest")
        if i > len(data):
            raise ValueError("truncated protobuf message")
        yield number, value


def manifest_message(path: Path) -> bytes:
    """The protobuf Manifest message of a Lance manifest file."""
    data = Path(path).read_bytes()
    if len(data) < FOOTER or data[-4:] != MAGIC:
        raise ValueError(f"{Path(path).name} is not a Lance manifest")
    (offset,) = struct.unpack("<Q", data[-FOOTER:-FOOTER + 8])
    (size,) = struct.unpack("<I", data[offset:offset + 4])
    if offset + 4 + size > len(data) - FOOTER:
        raise ValueError(f"{Path(path).name}: manifest runs past its footer")
    return data[offset + 4:offset + 4 + size]


@dataclass(frozen=True)
class ManifestFacts:
    """What a version's manifest says: its live rows and its data files (relative to ``data/``)."""

    version: int
    rows: int
    data_files: tuple[str, ...]


def read_manifest(dataset: Path, version: int) -> ManifestFacts | None:
    """The facts of ``version`` from its manifest file; None when the file is gone or does not
    parse (the caller asks Lance instead)."""
    path = manifest_file(dataset, version)
    if path is None:
        return None
    try:
        rows, seen, files = 0, None, []
        for number, value in _fields(manifest_message(path)):
            if number == MANIFEST_VERSION and isinstance(value, int):
                seen = value
            elif number == MANIFEST_FRAGMENTS and isinstance(value, bytes):
                fragment_rows, fragment_files = _fragment(value)
                rows += fragment_rows
                files += fragment_files
    except (OSError, ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
        log.info("Lance manifest of version %d in %s not read (%s)", version, dataset, exc)
        return None
    return ManifestFacts(version, rows, tuple(files)) if seen == version else None


def live_rows(dataset: Path, version: int) -> int | None:
    """Rows of ``version`` (physical rows minus deleted rows of every fragment), or None."""
    facts = read_manifest(dataset, version)
    return None if facts is None else facts.rows


def _fragment(fragment: bytes) -> tuple[int, list[str]]:
    physical = deleted = 0
    files = []
    for number, value in _fields(fragment):
        if number == FRAGMENT_PHYSICAL_ROWS and isinstance(value, int):
            physical = value
        elif number == FRAGMENT_FILES and isinstance(value, bytes):
            files += [v.decode() for n, v in _fields(value) if n == DATA_FILE_PATH and isinstance(v, bytes)]
        elif number == FRAGMENT_DELETION_FILE and isinstance(value, bytes):
            for n, v in _fields(value):
                if n == DELETION_NUM_DELETED and isinstance(v, int):
                    deleted = v
    return physical - deleted, files


def data_files_intact(dataset: Path, facts: ManifestFacts) -> bool:
    """Every data file of the version exists and ends with the Lance magic: the footer check that
    VectorTable's open makes by reading a column, without reading one (a torn file fails it)."""
    for name in facts.data_files:
        try:
            with open(Path(dataset) / "data" / name, "rb") as fh:
                fh.seek(-len(MAGIC), 2)
                if fh.read(len(MAGIC)) != MAGIC:
                    return False
        except OSError:  # missing, or shorter than the magic
            return False
    return True


# -- the lazy table ----------------------------------------------------------------------------------
# attributes of the lazy table itself: never looked up on the real one
_OWN_ATTRIBUTES = ("_real", "_facts", "_version", "_vectors", "_opening", "_closed", "_dataset")


class LazyTable:
    """A :class:`VectorTable` that opens Lance on the first call that needs it (see the module doc).

    ``version``, ``count_rows``, ``checkout_latest`` and ``dataset_path`` are answered from the
    manifest files while Lance is not loaded; ``vectors_for`` from ``vectors`` (the store's loaded
    index) when it holds every key asked for. Every other attribute is the real table's."""

    remote = None  # local stores only (object stores open VectorTable directly)

    def __init__(self, folder: Path, dim: int, facts: ManifestFacts, vectors: VectorSource | None = None):
        self.folder = Path(folder)
        self._dataset = dataset_folder(self.folder)  # asked on every recall (the sample cache's key)
        self.dim = dim
        self._facts = facts
        self._version = facts.version
        self._vectors = vectors
        self._real: VectorTable | None = None
        self._opening = threading.Lock()
        self._closed = False

    @property
    def opened(self) -> bool:
        """Whether Lance was loaded and the real table opened."""
        return self._real is not None

    def real(self) -> VectorTable:
        """The real table, opened now if it is not yet."""
        if self._real is None:
            with self._opening:
                if self._closed:  # as a closed VectorTable: no reads after close
                    raise StoreClosedError("this store's table is closed; open the store again")
                if self._real is None:
                    table = VectorTable(self.folder, self.dim)
                    if table.version != self._version:
                        log.info("table in %s opened at version %d (manifest files said %d)",
                                 self.folder, table.version, self._version)
                    self._real = table
        return self._real

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in _OWN_ATTRIBUTES:
            raise AttributeError(name)
        return getattr(self.real(), name)

    @property
    def dataset_path(self) -> Path:
        return self._dataset

    @property
    def version(self) -> int:
        return self._real.version if self._real is not None else self._version

    def count_rows(self) -> int:
        if self._real is None:
            return self._facts.rows
        return self._real.count_rows()

    def checkout_latest(self) -> bool:
        """Another process committed when a newer manifest file exists: then Lance is needed to
        read what changed, so the real table opens (at the latest version). False when nothing
        was committed (as :meth:`VectorTable.checkout_latest`)."""
        if self._real is None and latest_version(self.dataset_path) == self._version:
            return False
        return self.real().checkout_latest()

    def vectors_for(self, vkeys: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """-> (vkeys (n,), vectors (n, dim)); from the loaded index while Lance is not loaded."""
        if self._real is None and vkeys is not None and self._vectors is not None:
            keys = np.asarray([int(k) for k in vkeys], dtype=np.int64)
            found = self._vectors(keys) if len(keys) else np.zeros((0, self.dim), np.float32)
            if found is not None:
                return keys, found
        return self.real().vectors_for(vkeys)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()
        self._closed = True


def open_table(folder: Path, dim: int, vectors: VectorSource | None = None) -> VectorTable:
    """The store's table: lazy when it is a local Lance dataset with a saved catalog beside it (so a
    read can be answered without Lance), else the real :class:`VectorTable` opened now. Typed as a
    VectorTable: a :class:`LazyTable` stands in for one everywhere."""
    if getattr(folder, "remote", None) is not None or not (Path(folder) / FOLDER / SIDECAR).is_file():
        return VectorTable(folder, dim)
    dataset = dataset_folder(folder)
    version = latest_version(dataset)
    facts = None if version is None else read_manifest(dataset, version)
    if facts is None or not data_files_intact(dataset, facts):  # Lance opens it (and recovers)
        return VectorTable(folder, dim)
    return cast(VectorTable, LazyTable(folder, dim, facts, vectors))


def index_vectors(owner: Any) -> VectorSource:
    """A :data:`VectorSource` over ``owner.index`` (whatever index the store holds when asked):
    FAISS flat indexes give their vectors, others none."""
    def source(keys: np.ndarray) -> np.ndarray | None:
        vectors = getattr(getattr(owner, "index", None), "vectors", None)
        return vectors(keys) if callable(vectors) else None
    return source
