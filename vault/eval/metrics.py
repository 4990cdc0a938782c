"""Retrieval-quality metrics for the validation study: pure, typed, standard library only.

A *ranking* is a sequence of concept ids, best first, without duplicates; *relevant* is the
set of ids that answer the query. Ranks are 1-based. Every mean goes through ``math.fsum``
(exactly rounded, independent of order), so results are deterministic across runs.

Queries whose ``relevant`` set is empty have no defined recall; the per-query functions
return 0.0 for them, but :func:`summarize` skips them and counts them in ``n_skipped``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypedDict


def _top(ranking: Sequence[str], k: int | None = None) -> Sequence[str]:
    """``ranking[:k]`` (all of it if ``k`` is None), after checking k >= 1 and no duplicates."""
    if isinstance(ranking, str):
        raise TypeError("ranking must be a sequence of ids, not a string")
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    top = ranking if k is None else ranking[:k]
    if len(set(top)) != len(top):
        raise ValueError("ranking contains duplicate ids")
    return top


def _hits(ranking: Sequence[str], relevant: AbstractSet[str], k: int) -> int:
    return sum(1 for cid in _top(ranking, k) if cid in relevant)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def recall_at(ranking: Sequence[str], relevant: AbstractSet[str], k: int) -> float:
    """|top-k ∩ relevant| / |relevant|; 0.0 when ``relevant`` is empty (callers skip those)."""
    return _hits(ranking, relevant, k) / len(relevant) if relevant else 0.0


def hit_at(ranking: Sequence[str], relevant: AbstractSet[str], k: int) -> float:
    """1.0 if the top-k holds any relevant id, else 0.0 (the "helpful" indicator).

    With a single relevant id per query, ``hit_at == recall_at``.
    """
    return 1.0 if _hits(ranking, relevant, k) else 0.0


def reciprocal_rank(ranking: Sequence[str], relevant: AbstractSet[str]) -> float:
    """1 / rank of the first relevant id in the whole ranking; 0.0 if none is relevant."""
    for rank, cid in enumerate(_top(ranking), 1):
        if cid in relevant:
            return 1.0 / rank
    return 0.0


def precision_at(ranking: Sequence[str], relevant: AbstractSet[str], k: int) -> float:
    """|top-k ∩ relevant| / k.

    Divides by ``k`` even when the ranking is shorter than ``k`` (the standard convention:
    a short ranking is penalised for the slots it did not fill).
    """
    return _hits(ranking, relevant, k) / k


def average_precision_at(ranking: Sequence[str], relevant: AbstractSet[str], k: int) -> float:
    """AP@k = (1 / min(|relevant|, k)) * Σ_{i ≤ k, item i relevant} precision@i.

    The normaliser ``min(|relevant|, k)`` is the most relevant ids a top-k could hold, so a
    perfect top-k scores 1.0. 0.0 when ``relevant`` is empty.
    """
    if not relevant:
        return 0.0
    hits = 0
    total: list[float] = []
    for i, cid in enumerate(_top(ranking, k), 1):
        if cid in relevant:
            hits += 1
            total.append(hits / i)
    return math.fsum(total) / min(len(relevant), k)


def coverage(rankings: Iterable[Sequence[str]], k: int) -> int:
    """Number of distinct ids appearing in the top-k of any of ``rankings``."""
    seen: set[str] = set()
    for ranking in rankings:
        seen.update(_top(ranking, k))
    return len(seen)


class LatencyStats(TypedDict):
    median_ms: float
    p95_ms: float
    mean_ms: float
    n: int


def latency_stats(seconds: Sequence[float]) -> LatencyStats:
    """Median, nearest-rank p95 and mean of per-query latencies, in milliseconds.

    Median: middle value of the sorted list (mean of the two middle values when n is even).
    p95 (nearest rank): the value at 1-based position ceil(0.95 * n) of the sorted list.
    Raises ValueError on an empty input or a negative / non-finite latency.
    """
    if not seconds:
        raise ValueError("latency_stats needs at least one latency")
    if any(not math.isfinite(s) or s < 0 for s in seconds):
        raise ValueError("latencies must be finite and >= 0")
    ms = sorted(s * 1000.0 for s in seconds)
    n = len(ms)
    mid = n // 2
    median = ms[mid] if n % 2 else (ms[mid - 1] + ms[mid]) / 2
    p95_rank = (95 * n + 99) // 100  # ceil(0.95 * n) in exact integer arithmetic
    return {"median_ms": median, "p95_ms": ms[p95_rank - 1], "mean_ms": _mean(ms), "n": n}


@dataclass(frozen=True)
class QueryOutcome:
    """One query's result under one retrieval mode."""

    query: str
    ranking: tuple[str, ...]
    relevant: frozenset[str]
    seconds: float


@dataclass(frozen=True)
class ModeSummary:
    """Means over the scored queries (those with a non-empty ``relevant`` set).

    ``recall`` holds ``(k, mean recall@k)`` pairs in the order of ``ks``. Coverage and
    latency are also computed over the scored queries only.
    """

    n_queries: int
    n_skipped: int
    recall: tuple[tuple[int, float], ...]
    mrr: float
    precision_at_5: float
    map_at_10: float
    helpful_rate: float
    helpful_k: int
    coverage: int
    coverage_k: int
    latency_median_ms: float
    latency_p95_ms: float
    latency_mean_ms: float

    def recall_at(self, k: int) -> float:
        """Mean recall@k; KeyError if ``k`` was not among the summarised ``ks``."""
        return dict(self.recall)[k]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModeSummary:
        """The summary ``to_json`` wrote (``vault eval --json``'s ``modes`` entries)."""
        recall = sorted(
            (int(key.split("@")[1]), float(v))
            for key, v in data.items()
            if key.startswith("recall@")
        )
        (coverage_key,) = (key for key in data if key.startswith("coverage@"))
        lat = data["latency"]
        return cls(
            n_queries=data["n_queries"],
            n_skipped=data["n_skipped"],
            recall=tuple(recall),
            mrr=data["mrr"],
            precision_at_5=data["precision@5"],
            map_at_10=data["map@10"],
            helpful_rate=data["helpful_rate"],
            helpful_k=data["helpful_k"],
            coverage=data[coverage_key],
            coverage_k=int(coverage_key.split("@")[1]),
            latency_median_ms=lat["median_ms"],
            latency_p95_ms=lat["p95_ms"],
            latency_mean_ms=lat["mean_ms"],
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_queries": self.n_queries, "n_skipped": self.n_skipped}
        out.update({f"recall@{k}": v for k, v in self.recall})
        out.update(
            {
                "mrr": self.mrr,
                "precision@5": self.precision_at_5,
                "map@10": self.map_at_10,
                "helpful_rate": self.helpful_rate,
                "helpful_k": self.helpful_k,
                f"coverage@{self.coverage_k}": self.coverage,
                "latency": {
                    "median_ms": self.latency_median_ms,
                    "p95_ms": self.latency_p95_ms,
                    "mean_ms": self.latency_mean_ms,
                    "n": self.n_queries,
                },
            }
        )
        return out


def summarize(
    queries: Sequence[QueryOutcome],
    ks: Sequence[int] = (1, 5, 10, 50),
    *,
    helpful_k: int = 10,
    coverage_k: int = 10,
) -> ModeSummary:
    """Summarise one mode's outcomes; queries with empty ``relevant`` are skipped and counted.

    helpful_rate = mean hit@``helpful_k``; coverage = distinct ids in the top-``coverage_k``
    over all scored queries. Raises ValueError if ``ks`` is empty / has duplicates or if no
    query has a relevant id.
    """
    if not ks or len(set(ks)) != len(ks):
        raise ValueError(f"ks must be non-empty and without duplicates, got {tuple(ks)}")
    scored = [q for q in queries if q.relevant]
    if not scored:
        raise ValueError("no query with a non-empty relevant set to summarise")
    lat = latency_stats([q.seconds for q in scored])
    return ModeSummary(
        n_queries=len(scored),
        n_skipped=len(queries) - len(scored),
        recall=tuple((k, _mean([recall_at(q.ranking, q.relevant, k) for q in scored])) for k in ks),
        mrr=_mean([reciprocal_rank(q.ranking, q.relevant) for q in scored]),
        precision_at_5=_mean([precision_at(q.ranking, q.relevant, 5) for q in scored]),
        map_at_10=_mean([average_precision_at(q.ranking, q.relevant, 10) for q in scored]),
        helpful_rate=_mean([hit_at(q.ranking, q.relevant, helpful_k) for q in scored]),
        helpful_k=helpful_k,
        coverage=coverage((q.ranking for q in scored), coverage_k),
        coverage_k=coverage_k,
        latency_median_ms=lat["median_ms"],
        latency_p95_ms=lat["p95_ms"],
        latency_mean_ms=lat["mean_ms"],
    )


@dataclass(frozen=True)
class BootstrapResult:
    """mean(b) - mean(a) with its percentile-bootstrap interval [low, high]."""

    mean_diff: float
    low: float
    high: float
    resamples: int
    seed: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BootstrapResult:
        return cls(data["mean_diff"], data["low"], data["high"], data["resamples"], data["seed"])

    def to_json(self) -> dict[str, Any]:
        return {
            "mean_diff": self.mean_diff,
            "low": self.low,
            "high": self.high,
            "resamples": self.resamples,
            "seed": self.seed,
        }


def _mean_diff(a: Sequence[float], b: Sequence[float], idx: Iterable[int]) -> float:
    """(Σ b[i] - Σ a[i]) / n over ``idx``, exactly rounded by one ``fsum``."""
    terms: list[float] = []
    for i in idx:
        terms.append(b[i])
        terms.append(-a[i])
    return math.fsum(terms) / (len(terms) // 2)


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Paired percentile bootstrap of mean(b) - mean(a) over per-query values.

    ``a[i]`` and ``b[i]`` are the same query under two modes (e.g. reciprocal ranks).
    Each of the R = ``resamples`` resamples draws n query indices with replacement by
    ``rng.randrange(n)`` from ``random.Random(seed)`` (stable across Python versions) and
    records the mean difference over them. With alpha = (1 - confidence) / 2, computed
    exactly on the decimal value of ``confidence``, and the R differences sorted ascending
    (0-based): low = d[floor(alpha * (R - 1))], high = d[ceil((1 - alpha) * (R - 1))],
    i.e. the same number of values is cut from each end, so swapping ``a`` and ``b``
    exactly negates the interval. Raises ValueError on unequal lengths, empty input,
    resamples < 1 or confidence outside (0, 1).
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} != {len(b)}")
    if not a:
        raise ValueError("paired_bootstrap needs at least one pair")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(a)
    rng = random.Random(seed)
    diffs = sorted(_mean_diff(a, b, [rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
    alpha = (1 - Fraction(str(float(confidence)))) / 2
    cut = math.floor(alpha * (resamples - 1))
    return BootstrapResult(
        mean_diff=_mean_diff(a, b, range(n)),
        low=diffs[cut],
        high=diffs[resamples - 1 - cut],
        resamples=resamples,
        seed=seed,
    )
