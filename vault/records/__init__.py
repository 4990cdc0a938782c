"""Records: concept cards, evidence, status events, queries, the key vocabulary, schemas."""
