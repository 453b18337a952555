"""Content-addressed on-disk cache of embeddings.

An entry's key is sha256 over (model identity, normalisation flag, backend variant, exact text); the PyTorch
backend has no variant, so its keys are those written before backends existed, and no two backends share a key
(an int8 export's vectors differ from PyTorch's). One file per entry:
``MAGIC | dim (uint32) | sha256(payload) | payload (float32)``. A missing, truncated or corrupt entry
is a miss; a corrupt one is reported once as a warning and overwritten when recomputed.
"""

from __future__ import annotations

import hashlib
import struct
import warnings
from pathlib import Path

import numpy as np

from workbench.errors import CorruptCacheEntry
from workbench.io import atomic_write_bytes

MAGIC = b"WBE1"
_HEADER = struct.Struct("<4sI32s")


class EmbeddingCache:
    """Embeddings of one (model, normalisation) namespace under ``root``."""

    def __init__(self, root: Path, model_id: str, normalize: bool, variant: str | None = None) -> None:
        """``variant`` names a non-PyTorch backend with its settings (``onnx-int8-matmul-u8sym-perchannel-eager-bertfused-O3``)."""
        name = f"{model_id}|normalize={normalize}" + (f"|backend={variant}" if variant else "")
        self.namespace = hashlib.sha256(name.encode()).hexdigest()[:16]
        self.root = Path(root) / "embeddings" / self.namespace
        self._prefix = f"{name}|".encode()

    def key(self, text: str) -> str:
        return hashlib.sha256(self._prefix + text.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.emb"

    def get(self, key: str, dim: int | None = None) -> np.ndarray | None:
        """The cached vector, or None when absent or invalid (a warning names an invalid file)."""
        p = self.path(key)
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            return None
        problem = _check(raw, dim)
        if problem:
            warnings.warn(f"embedding cache entry {p} {problem}; recomputing it", CorruptCacheEntry, stacklevel=3)
            return None
        return np.frombuffer(raw, dtype=np.float32, offset=_HEADER.size).copy()

    def put(self, key: str, vector: np.ndarray) -> None:
        payload = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        header = _HEADER.pack(MAGIC, vector.shape[0], hashlib.sha256(payload).digest())
        atomic_write_bytes(self.path(key), header + payload, fsync=False)


def _check(raw: bytes, dim: int | None) -> str | None:
    if len(raw) < _HEADER.size:
        return f"is truncated ({len(raw)} bytes)"
    magic, n, digest = _HEADER.unpack_from(raw)
    payload = raw[_HEADER.size:]
    if magic != MAGIC:
        return "has a bad header"
    if len(payload) != 4 * n:
        return f"is truncated ({len(payload)} of {4 * n} payload bytes)"
    if dim is not None and n != dim:
        return f"has dimension {n}, expected {dim}"
    if hashlib.sha256(payload).digest() != digest:
        return "fails its checksum"
    return None
