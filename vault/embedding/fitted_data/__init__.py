"""Package data: the shipped default embedder's weights and prior (``vault.embedding.shipped``),
rebuilt by ``make weights`` (``vault.embedding.recipe``)."""
