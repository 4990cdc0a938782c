"""The embedding space: the embedder, exact similarity, concept vectors and the cache."""
