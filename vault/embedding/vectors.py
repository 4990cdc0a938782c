"""Vectors of reprs, pairs, queries and concepts — all in the embedder's one space.

A concept's vector is built from its keys and the items it verified on: the *known* reprs its
card's ``provenance.validated_on`` names and the reprs and pairs of its positive evidence
(see ``vault.index.state``: only reprs that acknowledged evidence cites are known, so the
vector is a function of the audit log, never of whatever sits in ``objects/``). Standalone
repr and pair vectors go through the cache, which is looked up by id before the repr is read.
Every function takes the embedder explicitly (``vault.embedding.select``); a cache given
with it must be that embedder's (``EmbeddingCache.bound``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from vault.canonical import canonical_bytes
from vault.embedding import Embedder
from vault.embedding.cache import EmbeddingCache, pair_id
from vault.errors import InvalidInputError
from vault.grid.grid import parse_grid
from vault.grid.pairs import PairFacts, analyze_pair
from vault.grid.reprs import grid_to_repr, repr_id
from vault.records.query import Query
from vault.store.objects import is_digest

Records = Callable[[str], Any]


def source_vector(emb: Embedder, source: dict[str, Any]) -> tuple[str, list[int]]:
    """Recompute (content id, vector) of a cache entry's source (used by verify)."""
    if "grid" in source:
        rep = grid_to_repr(parse_grid(source["grid"]))
        return repr_id(rep), emb.repr_vector(rep)
    if "input" in source and "output" in source:
        a = grid_to_repr(parse_grid(source["input"]))
        b = grid_to_repr(parse_grid(source["output"]))
        return pair_id(repr_id(a), repr_id(b)), emb.pair_vector(a, b, analyze_pair(a, b))
    raise InvalidInputError("cache entry source has neither grid nor input/output")


class CachedVectorMismatch(ValueError):
    """A cache entry differs from its recomputation (``check=True``): nondeterminism."""


def _checked(cached: list[int] | None, fresh: list[int], what: str) -> None:
    if cached is not None and cached != fresh:
        raise CachedVectorMismatch(f"the cached vector of {what} differs from its recomputation")


def _same(emb: Embedder, cache: EmbeddingCache | None) -> None:
    if cache is not None and cache.embedder.identity() != emb.identity():
        raise ValueError("the cache given belongs to another embedder")


def embed_repr(
    emb: Embedder,
    rep: dict[str, Any],
    cache: EmbeddingCache | None,
    rid: str | None = None,
    *,
    check: bool = False,
) -> list[int]:
    """The standalone vector of a repr (``rid``: its id, when the caller knows it). With
    ``check`` it is computed afresh and a differing cache entry raises
    ``CachedVectorMismatch``."""
    rid = rid or repr_id(rep)
    hit = cache.get(rid) if cache is not None else None
    if hit is not None and not check:
        return hit
    vector = emb.repr_vector(rep)
    _checked(hit, vector, f"repr {rid[:12]}")
    if cache is not None and hit is None and "grid" in rep:
        cache.put(rid, {"grid": rep["grid"]}, vector)
    return vector


def embed_pair(
    emb: Embedder,
    a: dict[str, Any],
    b: dict[str, Any],
    cache: EmbeddingCache | None,
    ids: tuple[str, str] | None = None,
    *,
    check: bool = False,
    facts: PairFacts | None = None,
) -> list[int]:
    """The standalone vector of a pair (``ids``: the two repr ids, when known; ``facts``:
    the pair's facts, when already analysed); ``check`` as for ``embed_repr``."""
    pid = pair_id(*(ids or (repr_id(a), repr_id(b))))
    hit = cache.get(pid) if cache is not None else None
    if hit is not None and not check:
        return hit
    vector = emb.pair_vector(a, b, facts or analyze_pair(a, b))
    _checked(hit, vector, f"pair {pid[:12]}")
    if cache is not None and hit is None:
        cache.put(pid, {"input": a["grid"], "output": b["grid"]}, vector)
    return vector


def _stored_repr(
    emb: Embedder, rid: str, records: Records, cache: EmbeddingCache | None
) -> list[int]:
    if cache is not None and (hit := cache.get(rid)) is not None:
        return hit
    return embed_repr(emb, records(rid), cache, rid)


def _stored_pair(
    emb: Embedder, a: str, b: str, records: Records, cache: EmbeddingCache | None
) -> list[int]:
    if cache is not None and (hit := cache.get(pair_id(a, b))) is not None:
        return hit
    return embed_pair(emb, records(a), records(b), cache, (a, b))


def query_vector(
    emb: Embedder, query: Query, cache: EmbeddingCache | None, *, check: bool = False
) -> list[int]:
    """A query's vector: its pairs and its repr combined, plus its keys. Each item is
    ``embed_pair`` / ``embed_repr`` of it (the same cache rules, ``check`` included), and
    the items computed are computed together (``Embedder.item_vectors``: one pass)."""
    _same(emb, cache)
    pairs, facts, rep = query.pairs, query.facts(), query.repr
    n = len(pairs)
    ids = [pair_id(*p.ids) for p in pairs] + ([query.rid or ""] if rep is not None else [])
    hits = [cache.get(i) if cache is not None else None for i in ids]
    first: dict[str, int] = {}  # item -> where it is computed (an item asked twice: once)
    for k, (cid, hit) in enumerate(zip(ids, hits, strict=True)):
        if hit is None or check:
            first.setdefault(cid, k)
    todo = sorted(first.values())
    fresh = emb.item_vectors(
        [rep] if rep is not None and n in todo else [],
        [(pairs[k].input, pairs[k].output, facts[k]) for k in todo if k < n],
    )
    computed = dict(zip([n] * (n in todo) + [k for k in todo if k < n], fresh, strict=True))
    vectors: list[list[int]] = []
    for k, (cid, hit) in enumerate(zip(ids, hits, strict=True)):
        at = first.get(cid)
        if at is None and hit is not None:  # (from the cache)
            vectors.append(hit)
            continue
        vector = computed[at]  # type: ignore[index]
        _checked(hit, vector, f"{'pair' if k < n else 'repr'} {cid[:12]}")
        if cache is not None and hit is None and at == k:
            if k < n:
                source = {"input": pairs[k].input["grid"], "output": pairs[k].output["grid"]}
                cache.put(cid, source, vector)
            elif rep is not None and "grid" in rep:
                cache.put(cid, {"grid": rep["grid"]}, vector)
        vectors.append(vector)
    return emb.combine(vectors, vectors[:n], query.all_keys())


def concept_inputs(
    entry: dict[str, Any], known: Callable[[str], bool], records: Records
) -> tuple[list[str], list[tuple[str, str]]]:
    """(repr ids, pairs) a concept's vector is built from: the known reprs its card's
    ``validated_on`` names (each once), and its positive evidence's repr and pair."""
    card = records(entry["card"])
    cited = card.get("provenance", {}).get("validated_on", ())
    reprs = [r for r in dict.fromkeys(cited) if isinstance(r, str) and is_digest(r) and known(r)]
    pairs: list[tuple[str, str]] = []
    for digest in entry["evidence"]:
        ev = records(digest)
        if ev["polarity"] != "positive":
            continue
        if "repr_id" in ev:
            reprs.append(ev["repr_id"])
        if "pair" in ev:
            pairs.append((ev["pair"]["input"], ev["pair"]["output"]))
    return reprs, pairs


def concept_vector(
    emb: Embedder,
    entry: dict[str, Any],
    known: Callable[[str], bool],
    records: Records,
    cache: EmbeddingCache | None,
    gathered: tuple[list[str], list[str], list[tuple[str, str]]] | None = None,
) -> list[int]:
    """A concept's vector: its keys plus the known reprs and pairs it was validated on
    (``gathered``: those inputs as the fold collected them, instead of re-reading)."""
    if gathered is None:
        reprs, pairs = concept_inputs(entry, known, records)
    else:
        cited, evidence_reprs, pairs = gathered
        reprs = [r for r in dict.fromkeys(cited) if known(r)] + evidence_reprs
    apps = [_stored_repr(emb, r, records, cache) for r in reprs]
    pair_vectors = [_stored_pair(emb, a, b, records, cache) for a, b in pairs]
    return emb.combine(apps + pair_vectors, pair_vectors, entry["keys"])


def embedder_bytes(emb: Embedder) -> bytes:
    """The bytes of ``embedder.json`` for ``emb``."""
    return canonical_bytes(emb.identity())


def ann_hash(embedder_json: bytes, vectors_jsonl: bytes) -> str:
    """``ann.index.sha256``'s digest: sha256 of embedder.json followed by the vectors file
    (hashed in two updates: no concatenated copy of a large file)."""
    h = hashlib.sha256(embedder_json)
    h.update(vectors_jsonl)
    return h.hexdigest()
