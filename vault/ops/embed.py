"""``vault embed``: vectors for reprs, grids, queries and ARC tasks (cached per repr/pair),
with the embedder of the vault's current generation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from vault.canonical import content_id
from vault.embedding.vectors import embed_repr, query_vector
from vault.errors import InvalidInputError
from vault.grid.grid import parse_grid
from vault.grid.reprs import grid_to_repr, normalize_repr, repr_id, strip_provenance
from vault.handle import Handle
from vault.records.query import Query, is_arc_task, normalize_query, task_query
from vault.records.schema import expect_kind


def query_id(query: Query) -> str:
    """A stable id of a query's content."""
    return content_id(
        {
            "domain": query.domain,
            "repr": query.rid,
            "constraints": list(query.constraints),
            "pairs": [list(p.ids) for p in query.pairs],
        }
    )


def embed_records(vault: Handle, records: Iterable[tuple[Any, str]]) -> Iterator[dict[str, Any]]:
    """One output line per input record; every record is validated before any output."""
    parsed = parse_records(vault, records)
    emb = vault.snapshot().embedder()
    yield from embed_parsed(emb, vault.cache.bound(emb), parsed)


def parse_records(vault: Handle, records: Iterable[tuple[Any, str]]) -> list[tuple[str, Any]]:
    """Every record validated: ``("repr", repr)`` or ``("query", Query)`` each."""
    parsed: list[tuple[str, Any]] = []
    for value, source in records:
        expect_kind(value, ("grid", "repr", "query", "task"), source)  # not a card, evidence...
        if isinstance(value, list):
            parsed.append(("repr", grid_to_repr(parse_grid(value, source))))
        elif is_arc_task(value):
            parsed.append(("query", task_query(value, 0, source)))
        elif isinstance(value, dict) and (value.get("kind") == "repr" or "globals" in value):
            parsed.append(("repr", strip_provenance(normalize_repr(value, source))))
        elif isinstance(value, dict):
            parsed.append(("query", normalize_query(value, source, vault.declared())))
        else:
            raise InvalidInputError(
                "expected a grid, a repr, a query or an ARC task", source=source
            )
    return parsed


def embed_parsed(
    emb: Any, cache: Any, parsed: Iterable[tuple[str, Any]]
) -> Iterator[dict[str, Any]]:
    """The output lines of parsed records, embedded with ``emb``; the vectors computed are
    put in ``cache`` (one file each). ``vault embed --scheduler`` runs this on partitions."""
    ident = {"embedder": emb.version, "weights_hash": emb.weights_hash}
    for kind, item in parsed:
        if kind == "repr":
            yield {
                "kind": "repr",
                "id": repr_id(item),
                "vector": embed_repr(emb, item, cache),
                **ident,
            }
        else:
            yield {
                "kind": "query",
                "id": query_id(item),
                "vector": query_vector(emb, item, cache),
                **ident,
            }
