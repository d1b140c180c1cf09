"""Weight machinery shared by every native model: read a checkpoint into tensors (safely), rename
keys with a per-format table, check every shape, assign into a module."""

from .loader import assign_weights, load_state_dict

__all__ = ["assign_weights", "load_state_dict"]
