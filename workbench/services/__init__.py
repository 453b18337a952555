"""Servers the project starts for itself (below ``index/``): the embedded PostgreSQL with pgvector."""
