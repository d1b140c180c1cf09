"""Encoders: the protocol and the model registry (``"auto"``, ids, local folders)."""

from .base import Encoder, View, chunk_text, l2_normalize

__all__ = ["Encoder", "View", "chunk_text", "l2_normalize"]
