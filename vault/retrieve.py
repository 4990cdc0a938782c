"""Retrieval: ``symbolic``, ``hybrid`` and ``soft`` modes, with stated fallback.

* symbolic — query keys -> index buckets -> rank by key overlap (desc), evidence penalty
  (asc), version (desc), id. Only buckets of the query's keys are read.
* hybrid — the symbolic ranking cut to ``shortlist_max`` (topped up to ``shortlist_min``
  from embedding neighbours), re-ranked by ``tiebreak`` (overlap, penalty, similarity,
  version, id) or ``weighted`` (alpha*sim + beta*utility + gamma*class_match -
  delta*dup_penalty, chosen greedily with an MMR pass).
* soft — embedding-only nearest neighbours over all concepts.

Suppressed concepts are never returned; deprecated ones only after every active one.
Each concept id appears once (its best-ranked version). When the embedding path cannot
be used the result falls back to symbolic and says why in ``fallback_reason``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from vault.config import Config
from vault.embedding.similarity import similarity
from vault.embedding.vectors import LoadedVectors, query_vector
from vault.errors import EmbeddingError
from vault.index.symbolic import utility
from vault.records.cards import parse_version
from vault.records.keys import matchable
from vault.records.query import Query
from vault.vault import Vault


@dataclass(frozen=True)
class Hit:
    rank: int
    id: str
    version: str
    score: float
    key_overlap: int
    penalty: int
    similarity: float | None
    utility: float
    status: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "id": self.id,
            "version": self.version,
            "score": self.score,
            "key_overlap": self.key_overlap,
            "penalty": self.penalty,
            "similarity": self.similarity,
            "utility": self.utility,
            "status": self.status,
        }


@dataclass(frozen=True)
class RetrievalResult:
    mode_requested: str
    mode_used: str
    fallback_reason: str | None
    keys: list[str]
    results: list[Hit]
    strategy: str | None
    similarity: str | None
    generation: str
    index_stale: bool = False  # acknowledged write-backs not yet in the index (after a crash)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode_requested": self.mode_requested,
            "mode_used": self.mode_used,
            "fallback_reason": self.fallback_reason,
            "keys": self.keys,
            "strategy": self.strategy,
            "similarity_metric": self.similarity,
            "generation": self.generation,
            "index_stale": self.index_stale,
            "results": [h.to_json() for h in self.results],
        }


@dataclass
class _Cand:
    name: str
    entry: dict[str, Any]
    overlap: int
    sim: float | None = None
    score: float = 0.0

    @property
    def order(self) -> tuple[Any, ...]:
        """Tail of every ranking: version desc, then id."""
        major, minor, patch = parse_version(self.entry["version"])
        return (-major, -minor, -patch, self.entry["id"])


def _status_rank(entry: dict[str, Any]) -> int:
    return 1 if entry["status"] == "deprecated" else 0


def symbolic_candidates(index: dict[str, Any], keys: list[str], domain: str) -> list[_Cand]:
    """Every concept sharing a key with the query, ranked symbolically."""
    overlap: Counter[str] = Counter()
    for key in matchable(keys):
        overlap.update(index["by_key"].get(key, ()))
    cands = []
    for name, n in overlap.items():
        entry = index["concepts"][name]
        if entry["status"] != "suppressed" and entry["domain"] == domain:
            cands.append(_Cand(name, entry, n))
    cands.sort(key=lambda c: (_status_rank(c.entry), -c.overlap, c.entry["penalty"], *c.order))
    return cands


def _dedupe(cands: list[_Cand], k: int) -> list[_Cand]:
    seen: set[str] = set()
    out = []
    for c in cands:
        if c.entry["id"] not in seen:
            seen.add(c.entry["id"])
            out.append(c)
            if len(out) == k:
                break
    return out


def _hits(cands: list[_Cand], score: str) -> list[Hit]:
    out = []
    for rank, c in enumerate(cands, start=1):
        value = float(c.overlap) if score == "overlap" else c.sim if score == "sim" else c.score
        out.append(
            Hit(
                rank,
                c.entry["id"],
                c.entry["version"],
                float(value or 0.0),
                c.overlap,
                c.entry["penalty"],
                c.sim,
                utility(c.entry),
                c.entry["status"],
            )
        )
    return out


def retrieve(vault: Vault, query: Query, cfg: Config, mode: str | None = None) -> RetrievalResult:
    """Rank the vault's concepts for ``query`` (``mode`` defaults to ``cfg.mode``)."""
    mode = mode or cfg.mode
    loaded = vault.load_current()
    index = loaded.index
    stale = loaded.ref.audit_seq != vault.audit.last_seq() and vault.stale()
    keys = query.all_keys()
    ranked = symbolic_candidates(index, keys, query.domain)
    fallback = None
    if mode != "symbolic":
        try:
            vectors = vault.files.load(loaded.manifest["ann_hash"])
            qv = np.array(query_vector(query, vault.cache), dtype=np.int8)
            sims = similarity(vectors.matrix, qv, cfg.similarity)
            if mode == "soft":
                hits = _soft(index, vectors, sims, query.domain, cfg.k)
            else:
                hits = _hybrid(index, vectors, sims, ranked, keys, query.domain, cfg)
            return RetrievalResult(
                mode,
                mode,
                None,
                keys,
                hits,
                cfg.strategy if mode == "hybrid" else None,
                cfg.similarity,
                loaded.ref.generation,
                stale,
            )
        except EmbeddingError as exc:
            fallback = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure of the embedding path falls back
            fallback = f"embedding error: {type(exc).__name__}: {exc}"
    hits = _hits(_dedupe(ranked, cfg.k), "overlap")
    return RetrievalResult(
        mode, "symbolic", fallback, keys, hits, None, None, loaded.ref.generation, stale
    )


def _sim_of(vectors: LoadedVectors, sims: np.ndarray, name: str) -> float:
    row = vectors.row.get(name)
    if row is None:
        raise EmbeddingError(f"no vector for {name}: run `vault index build`")
    return float(sims[row])


def _soft(
    index: dict[str, Any], vectors: LoadedVectors, sims: np.ndarray, domain: str, k: int
) -> list[Hit]:
    cands = []
    for name, row in vectors.row.items():
        entry = index["concepts"].get(name)
        if entry is None:
            raise EmbeddingError(f"vector for unknown concept {name}: run `vault index build`")
        if entry["status"] != "suppressed" and entry["domain"] == domain:
            cands.append(_Cand(name, entry, 0, float(sims[row])))
    cands.sort(key=lambda c: (_status_rank(c.entry), -(c.sim or 0.0), *c.order))
    return _hits(_dedupe(cands, k), "sim")


def _hybrid(
    index: dict[str, Any],
    vectors: LoadedVectors,
    sims: np.ndarray,
    ranked: list[_Cand],
    keys: list[str],
    domain: str,
    cfg: Config,
) -> list[Hit]:
    shortlist = ranked[: cfg.shortlist_max]
    if len(shortlist) < cfg.shortlist_min:
        have = {c.name for c in shortlist}
        extra = []
        for name, row in vectors.row.items():
            entry = index["concepts"].get(name)
            if name in have or entry is None:
                continue
            if entry["status"] != "suppressed" and entry["domain"] == domain:
                extra.append(_Cand(name, entry, 0, float(sims[row])))
        extra.sort(key=lambda c: (-(c.sim or 0.0), *c.order))
        shortlist = shortlist + extra[: cfg.shortlist_min - len(shortlist)]
    for c in shortlist:
        c.sim = _sim_of(vectors, sims, c.name)
    if cfg.strategy == "tiebreak":
        shortlist.sort(
            key=lambda c: (
                _status_rank(c.entry),
                -c.overlap,
                c.entry["penalty"],
                -(c.sim or 0.0),
                *c.order,
            )
        )
        return _hits(_dedupe(shortlist, cfg.k), "overlap")
    return _hits(_weighted_mmr(vectors, shortlist, len(matchable(keys)), cfg), "score")


def _weighted_mmr(
    vectors: LoadedVectors, shortlist: list[_Cand], n_keys: int, cfg: Config
) -> list[_Cand]:
    """Greedy selection: value = lambda*score - (1 - lambda)*dup, where score = alpha*sim +
    beta*utility + gamma*class_match - delta*dup and dup = max similarity to those chosen."""
    rows = np.array([vectors.row[c.name] for c in shortlist], dtype=np.int64)
    sub = vectors.matrix[rows] if len(rows) else vectors.matrix[:0]
    pair = np.stack([similarity(sub, v, cfg.similarity) for v in sub]) if len(sub) else None
    base = [
        cfg.alpha * (c.sim or 0.0)
        + cfg.beta * utility(c.entry)
        + cfg.gamma * (c.overlap / n_keys if n_keys else 0.0)
        for c in shortlist
    ]
    ids: set[str] = set()
    dup = [0.0] * len(shortlist)
    remaining = [i for i in range(len(shortlist))]
    remaining.sort(key=lambda i: (_status_rank(shortlist[i].entry), *shortlist[i].order))
    out: list[_Cand] = []
    while remaining and len(out) < cfg.k:
        best, best_value = None, 0.0
        for i in remaining:
            score = base[i] - cfg.delta * dup[i]
            value = cfg.mmr_lambda * score - (1.0 - cfg.mmr_lambda) * dup[i]
            value -= 10.0 * _status_rank(shortlist[i].entry)  # deprecated after active
            if best is None or value > best_value:
                best, best_value = i, value
        assert best is not None
        remaining.remove(best)
        c = shortlist[best]
        if c.entry["id"] in ids:
            continue
        c.score = base[best] - cfg.delta * dup[best]
        ids.add(c.entry["id"])
        out.append(c)
        if pair is not None:
            for i in remaining:
                dup[i] = max(dup[i], float(pair[best][i]))
    return out
