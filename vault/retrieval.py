"""Retrieval: ``symbolic``, ``hybrid`` and ``soft`` modes over one snapshot, with stated fallback.

* symbolic — query keys -> key postings -> rank by key overlap (desc), evidence penalty
  (asc), version (desc), id. Only the postings of the query's keys are read.
* hybrid — the symbolic ranking cut to ``shortlist_max`` (symbolic keys stay the primary
  filter; below ``shortlist_min`` candidates it is topped up from embedding neighbours),
  re-ranked by ``tiebreak`` (overlap, penalty, similarity, version, id) or ``weighted``
  (score = alpha*sim + beta*utility + gamma*class_match - delta*dup, chosen greedily: dup is
  the highest similarity to the concepts already chosen, so delta is the MMR diversity
  weight; the reported score is the one that ranked).
* soft — embedding-only nearest neighbours over all concepts.

One evidence model serves every mode: ``penalty`` = how far the failure rate is known (95%
Wilson lower bound) to exceed a tolerated 5% — 0 for a concept never tried, one that never
failed, or one that failed once in 51 tries (it ties with them: similarity decides); 0.157
for one failure in one try; 0.389 for three in three — and ``utility = 1 - penalty``.

Suppressed concepts are never returned; deprecated ones only after every active one.
Each concept id appears once (its best-ranked version). When the embedding path cannot
be used the result falls back to symbolic and says why in ``fallback_reason``. Ranking is
vectorised over the snapshot's table (no Python loop over the vault).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from vault.config import MODES, Config
from vault.embedding import Embedder
from vault.embedding.similarity import pairwise, similarity_rows
from vault.embedding.topk import topk
from vault.embedding.vectors import query_vector
from vault.errors import EmbeddingError, GenerationGoneError, UsageError
from vault.index.snapshot import Snapshot
from vault.index.table import Table
from vault.records.keys import matchable
from vault.records.query import Query

if TYPE_CHECKING:
    from vault.handle import Handle

STATUS_NAMES = ("active", "deprecated", "suppressed")
# ``_Base.overlaps``: a query key held by at least 1/DENSE_SHARE of the rows is counted with
# a cached byte mask of the rows holding it, at most MASK_BYTES of masks per table
DENSE_SHARE = 32
MASK_BYTES = 32 << 20
# ``_Ranker``: a query whose keys' postings hold fewer than n / SPARSE_SHARE entries in all
# is counted over those entries (sparse), else one count a row (dense)
SPARSE_SHARE = 8
_NO_ROWS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Hit:
    rank: int
    id: str
    version: str
    score: float
    key_overlap: int
    penalty: float  # the evidence penalty (FORMAT §10: Wilson lower bound above 5%)
    similarity: float | None
    utility: float  # 1 - penalty
    status: str
    positive: int = 0  # evidence counts behind penalty and utility
    negative: int = 0
    #: reads the hit's stored card; bound by ``Vault.retrieve`` and ``Retriever.retrieve``
    reader: Callable[[str], dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    @property
    def ref(self) -> str:
        """``id@version``."""
        return f"{self.id}@{self.version}"

    def card(self) -> dict[str, Any]:
        """The hit's stored concept card (its ``template`` is what a solver runs)."""
        if self.reader is None:
            raise UsageError(
                f"{self.ref}: this hit is not bound to a vault; use vault.concept(hit.ref).card"
            )
        return self.reader(self.ref)

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
            "evidence": {"positive": self.positive, "negative": self.negative},
        }


WILSON_Z = 1.96
TOLERATED_FAILURE_RATE = 0.05


def failure_rate(positive: Any, negative: Any) -> Any:
    """The one evidence model: max(0, Wilson lower bound of negative / (positive +
    negative) - 0.05) — 0 unless failures are significantly more than tolerated; float64
    arrays in and out, exactly rounded operations only."""
    positive = np.asarray(positive, dtype=np.float64)
    negative = np.asarray(negative, dtype=np.float64)
    total = positive + negative
    z2 = WILSON_Z * WILSON_Z
    safe = np.where(total > 0, total, 1.0)
    p = negative / safe
    centre = p + z2 / (2.0 * safe)
    spread = WILSON_Z * np.sqrt(p * (1.0 - p) / safe + z2 / (4.0 * safe * safe))
    low = (centre - spread) / (1.0 + z2 / safe)
    return np.where(negative > 0, np.maximum(low - TOLERATED_FAILURE_RATE, 0.0), 0.0)


def evidence_of(positive: int, negative: int) -> dict[str, Any]:
    """A concept version's evidence as every output reports it (``show``, each hit of every
    mode and of ``--like``): its counts, ``penalty`` (``failure_rate``) and ``utility`` =
    1 - penalty — for a stored concept, from its state entry's ``positive`` / ``negative``."""
    penalty = float(failure_rate(positive, negative))
    return {
        "evidence": {"positive": int(positive), "negative": int(negative)},
        "penalty": penalty,
        "utility": 1.0 - penalty,
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


class _Penalty:
    """The evidence penalty of any rows: a look-up of the table's distinct penalties."""

    def __init__(self, values: np.ndarray, rank: np.ndarray):
        self.values, self.rank = values, rank

    def __getitem__(self, rows: Any) -> Any:
        return self.values[self.rank[rows]]


class _Base:
    """Per-table arrays every query uses (computed once per loaded generation)."""

    def __init__(self, table: Table):
        # compact dtypes (a 10^6 vault keeps a few MB here); subsets are widened when used
        self.status = table.col("status").astype(np.uint8)
        self.tail = table.col("tail")
        # dense rank of the penalty: an exact, order-preserving small integer for packing,
        # and the index of the row's penalty among the distinct ones (``failure_rate`` of
        # the failing rows, computed once; 0 for every row that never failed)
        neg = table.col("negative")
        self.penalty_rank = np.zeros(table.n, dtype=np.uint32)
        values = np.zeros(1)
        failing = np.nonzero(neg)[0]
        if len(failing):
            penalties = failure_rate(table.col("positive")[failing], neg[failing])
            distinct, rank = np.unique(penalties, return_inverse=True)
            # a penalty of 0 (tolerated failures) ranks with the rows that never failed
            shift = 1 if distinct[0] > 0 else 0
            self.penalty_rank[failing] = rank + shift
            values = np.concatenate([np.zeros(shift), distinct])
        self.penalty = _Penalty(values, self.penalty_rank)
        self.packable = table.n < (1 << 32) and int(self.penalty_rank.max(initial=0)) < (1 << 22)
        self.domains: dict[str, np.ndarray] = {}
        self.actives: dict[str, np.ndarray] = {}
        self.masks: dict[str, np.ndarray] = {}  # ``overlaps``: the row masks of frequent keys
        self._packed: np.ndarray | None = None

    def packed(self) -> np.ndarray:
        """Each row's symbolic key without its overlap: status (bit 62), penalty rank (bits
        32-53) and tail (bits 0-31) in one int64; a query ORs in ``255 - overlap`` at bit
        54. Made once, on first use (8 bytes a row). (A suppressed row, status 2, wraps to
        a negative key: it is never a candidate.)"""
        if self._packed is None:
            packed = np.empty(len(self.tail), dtype=np.int64)
            for lo in range(0, len(packed), 1 << 16):  # in steps: small temporaries
                hi = lo + (1 << 16)
                packed[lo:hi] = (
                    (self.status[lo:hi].astype(np.int64) << 62)
                    | (self.penalty_rank[lo:hi].astype(np.int64) << 32)
                    | self.tail[lo:hi].astype(np.int64)
                )
            self._packed = packed
        return self._packed

    @staticmethod
    def of(table: Table) -> _Base:
        base: _Base | None = getattr(table, "_rank_base", None)
        if base is None:
            base = _Base(table)
            table._rank_base = base  # type: ignore[attr-defined]
        return base

    def eligible(self, table: Table, domain: str) -> np.ndarray:
        mask = self.domains.get(domain)
        if mask is None:
            mask = np.zeros(table.n, dtype=bool)
            mask[table.posting(f"domain:{domain}")] = True
            mask &= self.status != 2
            self.domains[domain] = mask
        return mask

    def active(self, table: Table, domain: str) -> np.ndarray:
        """The eligible active rows of ``domain`` as 0 / 1 bytes (a multiplier)."""
        mask = self.actives.get(domain)
        if mask is None:
            mask = (self.eligible(table, domain) & (self.status == 0)).view(np.uint8)
            self.actives[domain] = mask
        return mask

    def overlaps(self, table: Table, keys: list[str], parts: list[np.ndarray]) -> np.ndarray:
        """How many of ``keys`` (a key given twice counts twice) each row holds: one count
        per row, of the smallest unsigned type that holds ``len(keys)``. A key held by at
        least 1/``DENSE_SHARE`` of the rows is added as a 0 / 1 byte row mask, kept for the
        next query (at most ``MASK_BYTES`` of them): one pass over n bytes, not a scatter
        of its posting; a rarer key's rows are incremented."""
        n = table.n
        dtype = np.uint8 if len(keys) < 256 else np.uint16 if len(keys) < 65536 else np.uint32
        counts: np.ndarray = np.zeros(n, dtype=dtype)
        for key, rows in zip(keys, parts, strict=True):  # (``parts``: their postings)
            if len(rows) * DENSE_SHARE >= n:
                mask = self.masks.get(key)
                if mask is None:
                    mask = np.zeros(n, dtype=np.uint8)
                    mask[rows] = 1
                    if n * (len(self.masks) + 1) <= MASK_BYTES:
                        self.masks[key] = mask
                counts += mask
            elif len(rows):
                counts[rows] += 1  # (a posting's rows are distinct)
        return counts


class _Ranker:
    """Vectorised ranking over one table for one query."""

    def __init__(self, table: Table, keys: list[str], domain: str, exclude: Iterable[str] = ()):
        self.t = table
        base = _Base.of(table)
        self.base = base
        self.status, self.penalty, self.tail = base.status, base.penalty, base.tail
        eligible = base.eligible(table, domain)
        excluded = [table.id_rows(concept) for concept in exclude]
        if any(len(r) for r in excluded):
            eligible = eligible.copy()
            for rows in excluded:
                eligible[rows.start : rows.stop] = False
        self.eligible = eligible
        self._active = base.active(table, domain)
        if eligible is not base.eligible(table, domain):  # some rows excluded
            self._active = self._active & eligible.view(np.uint8)
        query_keys = matchable(keys)
        self.n_keys = len(query_keys)
        parts = [table.posting(k) for k in query_keys]
        # How many query keys each row holds. Few posting entries (a query of rare keys, a
        # large table): counted sparsely, over the entries read. Many (a common key holds
        # a share of every table): counted densely, one small count a row (a frequent key
        # added as a cached byte mask, ``overlaps``), and the shortlist is selected by
        # overlap level (``_top``) instead of sorting every entry.
        self.counts: np.ndarray | None = None
        self.hit_rows = self.hit_counts = _NO_ROWS
        if sum(len(p) for p in parts) * SPARSE_SHARE >= table.n:
            self.counts = base.overlaps(table, query_keys, parts)
        elif len(parts) == 1:  # one key: its posting is ascending and unique already
            self.hit_rows = parts[0].astype(np.int64)
            self.hit_counts = np.ones(len(self.hit_rows), dtype=np.int64)
        elif parts:
            held, counts = np.unique(np.concatenate(parts), return_counts=True)
            self.hit_rows = held.astype(np.int64)
            self.hit_counts = counts.astype(np.int64)

    def overlap(self, rows: np.ndarray) -> np.ndarray:
        """How many of the query's matchable keys each of ``rows`` holds (int64)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.counts is not None:
            held: np.ndarray = self.counts[rows].astype(np.int64)
            return held
        if len(self.hit_rows) == 0 or len(rows) == 0:
            return np.zeros(len(rows), dtype=np.int64)
        at = np.minimum(np.searchsorted(self.hit_rows, rows), len(self.hit_rows) - 1)
        return np.where(self.hit_rows[at] == rows, self.hit_counts[at], 0)

    def without_keys(self) -> np.ndarray:
        """The eligible mask less the rows sharing a key with the query (for a top-up)."""
        if self.counts is not None:
            mask: np.ndarray = self.eligible & (self.counts == 0)
            return mask
        mask = self.eligible.copy()
        mask[self.hit_rows] = False
        return mask

    def candidates(self) -> np.ndarray:
        """Eligible rows sharing at least one key with the query, ascending."""
        return self._top(None)[0]

    def _top(self, m: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, overlap) holding the first ``m`` candidates in symbolic order (None:
        every candidate), ascending. Counted densely: active rows come first and, among
        them, higher overlap, so when at least ``m`` eligible active rows hold ``level``
        or more keys, the first ``m`` are among those rows — the highest such level is
        found by counting (a pass over the counts per level, from the highest held down);
        else every candidate. Counted sparsely: every candidate."""
        if self.counts is None:
            keep = self.eligible[self.hit_rows]
            return self.hit_rows[keep], self.hit_counts[keep]
        if m is not None:
            active = self.counts * self._active
            for level in range(int(active.max(initial=0)), 0, -1):
                held = active >= level
                if np.count_nonzero(held) >= m:
                    rows = np.flatnonzero(held)
                    return rows, self.counts[rows].astype(np.int64)
        rows = np.flatnonzero(self.eligible & (self.counts != 0))
        return rows, self.counts[rows].astype(np.int64)

    def symbolic(self, m: int | None = None) -> np.ndarray:
        """The first ``m`` (default: all) candidate rows in symbolic order (status, overlap
        desc, penalty asc, version desc, id), before per-id dedupe — selected with one
        packed int64 key and argpartition, so the cost is O(candidates), not a full sort."""
        rows, overlap = self._top(m)
        if self.base.packable and self.n_keys <= 255:
            key = self.base.packed()[rows] | ((255 - overlap) << 54)
            if m is not None and m < len(rows):
                part = np.argpartition(key, m - 1)[:m]
                return rows[part[np.argsort(key[part], kind="stable")]]
            return rows[np.argsort(key, kind="stable")]
        order = np.lexsort((self.tail[rows], self.penalty[rows], -overlap, self.status[rows]))
        return rows[order] if m is None else rows[order][:m]

    def symbolic_distinct(self, k: int) -> np.ndarray:
        """The first ``k`` concept ids in symbolic order (one row each)."""
        m = max(4 * k, 64)
        while True:
            rows = self.symbolic(m)
            out = self.dedupe(rows, k)
            if len(out) == k or len(rows) < m:
                return out
            m *= 4

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
        positive = t.col("positive")[rows].tolist()
        negative = t.col("negative")[rows].tolist()
        overlap = self.overlap(rows).tolist()
        penalty = self.penalty[rows].tolist()
        status = self.status[rows].tolist()
        if use_overlap_score:
            score = [float(x) for x in overlap]
        else:
            assert scores is not None
            score = [float(x) for x in scores]
        out = []
        for i, r in enumerate(rows.tolist()):
            concept, version = t.ref(r).rsplit("@", 1)
            out.append(
                Hit(
                    i + 1,
                    concept,
                    version,
                    score[i],
                    overlap[i],
                    penalty[i],
                    None if sims is None else sims[r],
                    1.0 - penalty[i],
                    STATUS_NAMES[status[i]],
                    positive[i],
                    negative[i],
                )
            )
        return out


def retrieve(
    vault: Handle | Snapshot,
    query: Query,
    cfg: Config,
    mode: str | None = None,
    *,
    exclude: Iterable[str] = (),
    stale: bool | None = None,
) -> RetrievalResult:
    """Rank the concepts of ``vault``'s current snapshot (or of a ``Snapshot``) for ``query``
    (``mode`` defaults to ``cfg.mode``); concept ids in ``exclude`` (e.g. those a solver
    already tried) are left out."""
    if isinstance(vault, Snapshot):
        snap, cache = vault, None
    else:
        snap, cache = vault.snapshot(), vault.cache
        if stale is None:
            stale = snap.audit_seq != vault.audit.tail_seq() and vault.stale()
    result = retrieve_in(snap, query, cfg, mode, cache=cache, exclude=exclude, stale=bool(stale))
    return bound(result, snap)


def bound(result: RetrievalResult, snap: Snapshot) -> RetrievalResult:
    """``result`` with each hit able to read its card from ``snap`` (``Hit.card()``)."""

    def reader(name: str) -> dict[str, Any]:
        entry = snap.concept(name)
        if entry is None:
            raise UsageError(f"{name} is not in generation {snap.generation[:12]}")
        card: dict[str, Any] = snap.record(entry["card"])
        return card

    result.results[:] = [replace(h, reader=reader) for h in result.results]
    return result


def retrieve_in(
    snap: Snapshot,
    query: Query,
    cfg: Config,
    mode: str | None = None,
    *,
    cache: Any = None,
    exclude: Iterable[str] = (),
    stale: bool = False,
) -> RetrievalResult:
    """``retrieve`` over one snapshot (the solver loop and the evaluation call it)."""
    mode = mode or cfg.mode
    if mode not in MODES:
        raise UsageError(f"invalid mode {mode!r} (expected {' | '.join(MODES)})")
    if mode != "symbolic":  # a large matrix's top-k summary read while the query is analysed
        snap.read_ahead(cfg.similarity)
    keys = query.all_keys()
    ranker = _Ranker(snap.table, keys, query.domain, exclude)
    fallback = None
    if mode != "symbolic":
        try:
            emb = snap.embedder()  # EmbeddingError "embedder drift: ..." if it cannot run
            bound = cache.bound(emb) if cache is not None else None
            qv = np.array(checked_query_vector(emb, query, bound), dtype=np.int8)
            hits = _soft(ranker, qv, cfg) if mode == "soft" else _hybrid(ranker, qv, cfg)
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
        except EmbeddingError as exc:  # designed: drift, nondeterminism, no embedder
            fallback = str(exc)
        except GenerationGoneError:  # not a fallback: the reader refreshes (vault.retriever)
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the embedding path falls back
            from vault.internal import fallback_reason

            fallback = fallback_reason(exc)  # "internal error: ..." (and noted) for a bug
    rows = ranker.symbolic_distinct(cfg.k)
    hits = ranker.hits(rows, None, None, use_overlap_score=True)
    return RetrievalResult(
        mode, "symbolic", fallback, keys, hits, None, None, snap.generation, stale
    )


def _soft(ranker: _Ranker, qv: np.ndarray, cfg: Config) -> list[Hit]:
    """Every active concept by similarity (then version desc, id), then every deprecated
    one; one version per id — exact, with the top-k kernel (no score for every row)."""
    t = ranker.t
    picked: list[np.ndarray] = []
    picked_sims: list[np.ndarray] = []
    need = cfg.k
    for status in (0, 1):
        mask = ranker.eligible & (ranker.status == status)
        if picked:  # an id already given by an active version is not given again
            mask &= ~np.isin(t.groups, t.groups[np.concatenate(picked)])
        if need == 0 or not mask.any():
            continue
        want = need
        while True:
            top, top_sims = topk(
                t.matrix,
                t.col("norm2_appearance"),
                t.col("norm2_behaviour"),
                qv,
                want,
                cfg.similarity,
                rows=mask,
                tie=t.col("tail"),
            )
            distinct = ranker.dedupe(top, need)
            if len(distinct) == need or len(top) < want:
                break
            want *= 4
        sim_of = dict(zip(top.tolist(), top_sims.tolist(), strict=True))
        picked.append(distinct)
        picked_sims.append(np.array([sim_of[r] for r in distinct.tolist()]))
        need -= len(distinct)
    rows = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    scores = np.concatenate(picked_sims) if picked_sims else np.zeros(0)
    return ranker.hits(rows, scores, dict(zip(rows.tolist(), scores.tolist(), strict=True)))


def _hybrid(ranker: _Ranker, qv: np.ndarray, cfg: Config) -> list[Hit]:
    shortlist = ranker.symbolic(cfg.shortlist_max)
    if len(shortlist) < cfg.shortlist_min:  # top-up: embedding neighbours sharing no key
        t = ranker.t
        top, _ = topk(
            t.matrix,
            t.col("norm2_appearance"),
            t.col("norm2_behaviour"),
            qv,
            cfg.shortlist_min - len(shortlist),
            cfg.similarity,
            rows=ranker.without_keys(),
            tie=t.col("tail"),
        )
        shortlist = np.concatenate([shortlist, top])
    sims = similarity_rows(ranker.t, shortlist, qv, cfg.similarity)
    sim_of = dict(zip(shortlist.tolist(), sims.tolist(), strict=True))
    if cfg.strategy == "tiebreak":
        order = np.lexsort(
            (
                ranker.tail[shortlist],
                -sims,
                ranker.penalty[shortlist],
                -ranker.overlap(shortlist),
                ranker.status[shortlist],
            )
        )
        rows = ranker.dedupe(shortlist[order], cfg.k)
        return ranker.hits(rows, None, sim_of, use_overlap_score=True)
    rows, scores = _weighted(ranker, shortlist, sims, cfg)
    return ranker.hits(rows, scores, sim_of)


def _weighted(
    ranker: _Ranker, shortlist: np.ndarray, sims: np.ndarray, cfg: Config
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy selection by score = alpha*sim + beta*utility + gamma*class_match - delta*dup,
    where class_match is the share of the query's matchable keys the concept holds and dup
    is its highest similarity to the concepts already chosen (0 before the first choice;
    negative when it is unlike all of them), so delta is the MMR weight: 0 ranks by
    relevance alone. Deprecated concepts come after every active one; one version per
    concept id. The reported score is the one that chose: within a status class it never
    increases down the ranking, except that with delta > 0 the second can exceed the first
    (its dup, its similarity to the first, may be negative) — FORMAT §10."""
    t = ranker.t
    m = len(shortlist)
    if m == 0:
        return shortlist, np.zeros(0)
    share = ranker.overlap(shortlist) / ranker.n_keys if ranker.n_keys else np.zeros(m)
    base = cfg.alpha * sims + cfg.beta * (1.0 - ranker.penalty[shortlist]) + cfg.gamma * share
    status = ranker.status[shortlist]
    groups = t.groups[shortlist]
    tail = ranker.tail[shortlist]
    if cfg.delta == 0.0:  # no diversity term: a plain sort
        order = np.lexsort((tail, -base, status))
        rows = ranker.dedupe(shortlist[order], cfg.k)
        score_of = dict(zip(shortlist.tolist(), base.tolist(), strict=True))
        return rows, np.array([score_of[r] for r in rows.tolist()])
    pair = pairwise(t.matrix[shortlist], cfg.similarity)
    dup = np.zeros(m)  # 0 while nothing is chosen; then the true highest similarity
    alive = np.ones(m, dtype=bool)
    out_rows: list[int] = []
    out_scores: list[float] = []
    chosen: set[int] = set()
    while alive.any() and len(out_rows) < cfg.k:
        score = base - cfg.delta * dup
        # best: active first, then highest score, then version desc / id (tail)
        cand = np.nonzero(alive)[0]
        best = cand[np.lexsort((tail[cand], -score[cand], status[cand]))[0]]
        alive[best] = False
        if int(groups[best]) in chosen:
            continue
        chosen.add(int(groups[best]))
        out_rows.append(int(shortlist[best]))
        out_scores.append(float(score[best]))
        # the highest similarity to the chosen concepts, negative ones included (clamping
        # at 0 from a start of zeros hid a dissimilar candidate's negative dup)
        dup = pair[best].copy() if len(out_rows) == 1 else np.maximum(dup, pair[best])
    return np.array(out_rows, dtype=np.int64), np.array(out_scores)


def checked_query_vector(emb: Embedder, query: Query, cache: Any) -> list[int]:
    """The query's vector, every item computed afresh; where the cache holds an entry for
    an item that differs from the recomputation, nondeterminism is detected and retrieval
    falls back (the seed's "nondeterminism detected")."""
    from vault.embedding.vectors import CachedVectorMismatch

    try:
        return query_vector(emb, query, cache, check=True)
    except CachedVectorMismatch as exc:  # not any ValueError: a bug is not nondeterminism
        raise EmbeddingError(f"nondeterminism detected: {exc}") from None
