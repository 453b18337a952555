"""Embeddings: the offline MiniLM model, a content-addressed cache, and storage quantization."""

from workbench.embed.encoder import Embedder, embed_dataset

__all__ = ["Embedder", "embed_dataset"]
