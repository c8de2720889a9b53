"""Rank-based loss (RbL) for hierarchical audio embeddings: package and command-line stages."""

__version__ = "0.1.0"
