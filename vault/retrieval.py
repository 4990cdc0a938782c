"""Retrieval: ``symbolic``, ``hybrid`` and ``soft`` modes over one snapshot, with stated fallback.

* symbolic — query keys -> key postings -> rank by key overlap (desc), evidence penalty
  (asc), version (desc), id. Only the postings of the query's keys are read.
* hybrid — the symbolic ranking cut to ``shortlist_max`` (topped up to ``shortlist_min``
  from embedding neighbours), re-ranked by ``tiebreak`` (overlap, penalty, similarity,
  version, id) or ``weighted`` (alpha*sim + beta*utility + gamma*class_match -
  delta*dup_penalty, chosen greedily with an MMR pass).
* soft — embedding-only nearest neighbours over all concepts.

Suppressed concepts are never returned; deprecated ones only after every active one.
Each concept id appears once (its best-ranked version). When the embedding path cannot
be used the result falls back to symbolic and says why in ``fallback_reason``. Ranking is
vectorised over the snapshot's table (no Python loop over the vault).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vault.config import Config
from vault.embedding.similarity import similarity_rows
from vault.embedding.vectors import query_vector
from vault.errors import EmbeddingError
from vault.index.snapshot import Snapshot
from vault.index.table import Table
from vault.records.keys import matchable
from vault.records.query import Query

if TYPE_CHECKING:
    from vault.vault import Vault

STATUS_NAMES = ("active", "deprecated", "suppressed")


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


class _Ranker:
    """Vectorised ranking over one table for one query."""

    def __init__(self, table: Table, keys: list[str], domain: str):
        self.t = table
        self.status = table.col("status").astype(np.int64)
        self.penalty = table.col("negative").astype(np.int64)
        self.tail = table.col("tail").astype(np.int64)
        n = table.n
        eligible = np.zeros(n, dtype=bool)
        eligible[table.posting(f"domain:{domain}")] = True
        eligible &= self.status != 2
        self.eligible = eligible
        parts = [table.posting(k) for k in matchable(keys)]
        hits = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        self.overlap = np.bincount(hits, minlength=n).astype(np.int64)

    def symbolic(self) -> np.ndarray:
        """Candidate rows (sharing a key), in symbolic order (before per-id dedupe)."""
        rows = np.nonzero(self.eligible & (self.overlap > 0))[0]
        order = np.lexsort(
            (self.tail[rows], self.penalty[rows], -self.overlap[rows], self.status[rows])
        )
        return rows[order]

    def dedupe(self, rows: np.ndarray, k: int) -> np.ndarray:
        """The first row of each concept id, in order, at most ``k``."""
        if len(rows) == 0:
            return rows
        _, first = np.unique(self.t.groups[rows], return_index=True)
        return rows[np.sort(first)][:k]

    def hits(
        self,
        rows: np.ndarray,
        scores: np.ndarray | None,
        sims: dict[int, float] | None,
        use_overlap_score: bool = False,
    ) -> list[Hit]:
        t = self.t
        pos, neg = t.col("positive"), t.col("negative")
        out = []
        for rank, r in enumerate(rows.tolist(), start=1):
            name = t.ref(r)
            concept, version = name.rsplit("@", 1)
            p, q = int(pos[r]), int(neg[r])
            sim = None if sims is None else sims[r]
            if use_overlap_score:
                score = float(self.overlap[r])
            else:
                assert scores is not None
                score = float(scores[rank - 1])
            out.append(
                Hit(
                    rank,
                    concept,
                    version,
                    score,
                    int(self.overlap[r]),
                    q,
                    sim,
                    (p + 1) / (p + q + 2),
                    STATUS_NAMES[int(self.status[r])],
                )
            )
        return out


def retrieve(
    vault: Vault | Snapshot,
    query: Query,
    cfg: Config,
    mode: str | None = None,
    *,
    stale: bool | None = None,
) -> RetrievalResult:
    """Rank the concepts of ``vault``'s current snapshot (or of ``snapshot``) for ``query``
    (``mode`` defaults to ``cfg.mode``)."""
    if isinstance(vault, Snapshot):
        snap, cache = vault, None
    else:
        snap, cache = vault.snapshot(), vault.cache
        if stale is None:
            stale = snap.audit_seq != vault.audit.last_seq() and vault.stale()
    return retrieve_in(snap, query, cfg, mode, cache=cache, stale=bool(stale))


def retrieve_in(
    snap: Snapshot,
    query: Query,
    cfg: Config,
    mode: str | None = None,
    *,
    cache: Any = None,
    stale: bool = False,
) -> RetrievalResult:
    mode = mode or cfg.mode
    keys = query.all_keys()
    ranker = _Ranker(snap.table, keys, query.domain)
    ranked = ranker.symbolic()
    fallback = None
    if mode != "symbolic":
        try:
            if snap.drift:
                raise EmbeddingError("embedder drift: run `vault index build`")
            qv = np.array(query_vector(query, cache), dtype=np.int8)
            if mode == "soft":
                hits = _soft(ranker, qv, cfg)
            else:
                hits = _hybrid(ranker, qv, ranked, keys, cfg)
            return RetrievalResult(
                mode,
                mode,
                None,
                keys,
                hits,
                cfg.strategy if mode == "hybrid" else None,
                cfg.similarity,
                snap.generation,
                stale,
            )
        except EmbeddingError as exc:
            fallback = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure of the embedding path falls back
            fallback = f"embedding error: {type(exc).__name__}: {exc}"
    rows = ranker.dedupe(ranked, cfg.k)
    hits = ranker.hits(rows, None, None, use_overlap_score=True)
    return RetrievalResult(
        mode, "symbolic", fallback, keys, hits, None, None, snap.generation, stale
    )


def _soft(ranker: _Ranker, qv: np.ndarray, cfg: Config) -> list[Hit]:
    rows = np.nonzero(ranker.eligible)[0]
    sims = similarity_rows(ranker.t, rows, qv, cfg.similarity)
    order = np.lexsort((ranker.tail[rows], -sims, ranker.status[rows]))
    ordered = ranker.dedupe(rows[order], cfg.k)
    sim_of = dict(zip(rows.tolist(), sims.tolist(), strict=True))
    return ranker.hits(ordered, np.array([sim_of[r] for r in ordered.tolist()]), sim_of)


def _hybrid(
    ranker: _Ranker, qv: np.ndarray, ranked: np.ndarray, keys: list[str], cfg: Config
) -> list[Hit]:
    shortlist = ranked[: cfg.shortlist_max]
    if len(shortlist) < cfg.shortlist_min:
        others = np.nonzero(ranker.eligible & (ranker.overlap == 0))[0]
        if len(others):
            osims = similarity_rows(ranker.t, others, qv, cfg.similarity)
            order = np.lexsort((ranker.tail[others], -osims))
            shortlist = np.concatenate(
                [shortlist, others[order][: cfg.shortlist_min - len(shortlist)]]
            )
    sims = similarity_rows(ranker.t, shortlist, qv, cfg.similarity)
    sim_of = dict(zip(shortlist.tolist(), sims.tolist(), strict=True))
    if cfg.strategy == "tiebreak":
        order = np.lexsort(
            (
                ranker.tail[shortlist],
                -sims,
                ranker.penalty[shortlist],
                -ranker.overlap[shortlist],
                ranker.status[shortlist],
            )
        )
        rows = ranker.dedupe(shortlist[order], cfg.k)
        return ranker.hits(rows, None, sim_of, use_overlap_score=True)
    rows, scores = _weighted_mmr(ranker, shortlist, sims, len(matchable(keys)), cfg)
    return ranker.hits(rows, scores, sim_of)


def _weighted_mmr(
    ranker: _Ranker, shortlist: np.ndarray, sims: np.ndarray, n_keys: int, cfg: Config
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy selection: value = lambda*score - (1 - lambda)*dup, where score = alpha*sim +
    beta*utility + gamma*class_match - delta*dup and dup = max similarity to those chosen."""
    t = ranker.t
    m = len(shortlist)
    if m == 0:
        return shortlist, np.zeros(0)
    sub = t.matrix[shortlist]
    from vault.embedding.similarity import similarity

    pair = np.stack([similarity(sub, v, cfg.similarity) for v in sub])
    pos = t.col("positive")[shortlist].astype(np.float64)
    neg = t.col("negative")[shortlist].astype(np.float64)
    util = (pos + 1.0) / (pos + neg + 2.0)
    overlap = ranker.overlap[shortlist].astype(np.float64)
    share = overlap / n_keys if n_keys else np.zeros(m)
    base = [
        cfg.alpha * float(sims[i]) + cfg.beta * float(util[i]) + cfg.gamma * float(share[i])
        for i in range(m)
    ]
    status = ranker.status[shortlist]
    groups = t.groups[shortlist]
    remaining = sorted(range(m), key=lambda i: (int(status[i]), int(ranker.tail[shortlist[i]])))
    dup = [0.0] * m
    chosen_groups: set[int] = set()
    out_rows: list[int] = []
    out_scores: list[float] = []
    while remaining and len(out_rows) < cfg.k:
        best, best_value = None, 0.0
        for i in remaining:
            score = base[i] - cfg.delta * dup[i]
            value = cfg.mmr_lambda * score - (1.0 - cfg.mmr_lambda) * dup[i]
            value -= 10.0 * int(status[i])  # deprecated after active
            if best is None or value > best_value:
                best, best_value = i, value
        assert best is not None
        remaining.remove(best)
        if int(groups[best]) in chosen_groups:
            continue
        chosen_groups.add(int(groups[best]))
        out_rows.append(int(shortlist[best]))
        out_scores.append(base[best] - cfg.delta * dup[best])
        for i in remaining:
            dup[i] = max(dup[i], float(pair[best][i]))
    return np.array(out_rows, dtype=np.int64), np.array(out_scores)
