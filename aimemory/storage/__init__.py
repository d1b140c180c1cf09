"""Storage: the LanceDB table of views, the store manifest and the in-memory catalog."""

from .catalog import Catalog
from .manifest import Manifest, atomic_write_bytes
from .table import VectorTable

__all__ = ["Catalog", "Manifest", "VectorTable", "atomic_write_bytes"]
