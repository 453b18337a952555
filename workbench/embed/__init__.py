"""Embeddings: the offline MiniLM model, a content-addressed cache, and storage quantization."""

from workbench.embed.encoder import Embedder, check_dim, embed_dataset

__all__ = ["Embedder", "embed_dataset", "check_dim"]
