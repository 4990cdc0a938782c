"""Retrieval metrics: exact values on hand-made rankings, edge cases, bootstrap, properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault.eval.metrics import (
    BootstrapResult,
    QueryOutcome,
    average_precision_at,
    coverage,
    hit_at,
    latency_stats,
    paired_bootstrap,
    precision_at,
    recall_at,
    reciprocal_rank,
    summarize,
)

RANKING = ("a", "b", "c", "d")
REL = frozenset({"b", "d"})


def test_hand_computed_values() -> None:
    assert recall_at(RANKING, REL, 1) == 0.0  # top-1 {a}: 0 of 2 relevant
    assert recall_at(RANKING, REL, 2) == 0.5  # top-2 {a,b}: 1 of 2
    assert recall_at(RANKING, REL, 4) == 1.0  # top-4 holds b and d: 2 of 2
    assert hit_at(RANKING, REL, 1) == 0.0  # a is not relevant
    assert hit_at(RANKING, REL, 2) == 1.0  # b is
    assert reciprocal_rank(RANKING, REL) == 0.5  # first relevant b at rank 2 -> 1/2
    assert precision_at(RANKING, REL, 2) == 0.5  # 1 hit / 2 slots
    assert precision_at(RANKING, REL, 4) == 0.5  # 2 hits / 4 slots
    # AP@4: hits at ranks 2 and 4; P@2 = 1/2, P@4 = 2/4; normaliser min(2, 4) = 2
    # -> (1/2)(1/2 + 2/4) = 0.5
    assert average_precision_at(RANKING, REL, 4) == 0.5
    # AP@2: only the hit at rank 2 (P@2 = 1/2); normaliser min(2, 2) = 2 -> 1/4
    assert average_precision_at(RANKING, REL, 2) == 0.25
    # AP@1: no hit in the top-1 -> 0
    assert average_precision_at(RANKING, REL, 1) == 0.0


def test_perfect_and_first_rank() -> None:
    # relevant {a, b} at ranks 1, 2: P@1 = 1, P@2 = 1 -> AP@4 = (1/2)(1 + 1) = 1; RR = 1/1
    assert average_precision_at(RANKING, {"a", "b"}, 4) == 1.0
    assert reciprocal_rank(RANKING, {"a", "b"}) == 1.0


def test_no_relevant_in_ranking() -> None:
    rel = {"x", "y"}
    assert recall_at(RANKING, rel, 4) == 0.0
    assert hit_at(RANKING, rel, 4) == 0.0
    assert reciprocal_rank(RANKING, rel) == 0.0
    assert precision_at(RANKING, rel, 4) == 0.0
    assert average_precision_at(RANKING, rel, 4) == 0.0


def test_empty_relevant_is_zero() -> None:
    for value in (
        recall_at(RANKING, frozenset(), 3),
        hit_at(RANKING, frozenset(), 3),
        reciprocal_rank(RANKING, frozenset()),
        precision_at(RANKING, frozenset(), 3),
        average_precision_at(RANKING, frozenset(), 3),
    ):
        assert value == 0.0


def test_ranking_shorter_than_k() -> None:
    short = ("b", "a")
    assert recall_at(short, REL, 10) == 0.5  # only b is present: 1 of 2
    assert precision_at(short, REL, 10) == 0.1  # divided by k = 10, not by len = 2
    # AP@10: hit at rank 1 (P@1 = 1); normaliser min(2, 10) = 2 -> 1/2
    assert average_precision_at(short, REL, 10) == 0.5
    assert reciprocal_rank((), REL) == 0.0


def test_k_larger_than_relevant() -> None:
    ranking = ("x", "a", "y", "z")
    # one relevant, k = 3: recall 1/1; P@3 = 1/3; AP@3 = (1/min(1, 3)) * P@2 = 1/2
    assert recall_at(ranking, {"a"}, 3) == 1.0
    assert precision_at(ranking, {"a"}, 3) == pytest.approx(1 / 3)
    assert average_precision_at(ranking, {"a"}, 3) == 0.5
    # single relevant: recall@k == hit@k
    for k in range(1, 5):
        assert recall_at(ranking, {"a"}, k) == hit_at(ranking, {"a"}, k)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        recall_at(RANKING, REL, 0)
    with pytest.raises(ValueError):
        precision_at(("a", "a"), REL, 2)
    with pytest.raises(ValueError):
        reciprocal_rank(("b", "b"), REL)
    with pytest.raises(TypeError):
        recall_at("abcd", REL, 2)


def test_coverage_counts_distinct_ids_in_top_k() -> None:
    rankings = [("a", "b", "c"), ("b", "d", "e"), ("f",)]
    assert coverage(rankings, 1) == 3  # a, b, f
    assert coverage(rankings, 2) == 4  # a, b | b, d | f -> a b d f (b counted once)
    assert coverage(iter(rankings), 3) == 6  # a b c d e f; accepts any iterable
    assert coverage([], 10) == 0


def test_latency_p95_nearest_rank_on_20_values() -> None:
    seconds = [i / 1000 for i in range(20, 0, -1)]  # 1..20 ms, unsorted
    stats = latency_stats(seconds)
    assert stats["n"] == 20
    assert stats["p95_ms"] == pytest.approx(19.0)  # ceil(0.95 * 20) = 19th of 1..20
    assert stats["median_ms"] == pytest.approx(10.5)  # (10 + 11) / 2
    assert stats["mean_ms"] == pytest.approx(10.5)  # 210 / 20
    # 21 values: ceil(0.95 * 21) = ceil(19.95) = 20th
    assert latency_stats([i / 1000 for i in range(1, 22)])["p95_ms"] == pytest.approx(20.0)
    assert latency_stats([0.002])["p95_ms"] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        latency_stats([])
    with pytest.raises(ValueError):
        latency_stats([-0.1])


def test_summarize_averages_and_skips() -> None:
    qs = [
        QueryOutcome("q1", ("a", "b", "c", "d"), frozenset({"b", "d"}), 0.010),
        QueryOutcome("q2", ("x", "y"), frozenset({"x"}), 0.030),
        QueryOutcome("q3", ("a",), frozenset(), 5.0),  # skipped: no relevant ids
    ]
    s = summarize(qs, ks=(1, 2))
    assert (s.n_queries, s.n_skipped) == (2, 1)
    assert s.recall_at(1) == 0.5  # q1: 0, q2: 1 -> mean 0.5
    assert s.recall_at(2) == 0.75  # q1: 0.5, q2: 1
    assert s.mrr == 0.75  # q1: 1/2, q2: 1/1
    assert s.precision_at_5 == pytest.approx(0.3)  # q1: 2/5, q2: 1/5 -> 0.3
    assert s.map_at_10 == 0.75  # q1: 0.5 (hand-computed above), q2: 1
    assert s.helpful_rate == 1.0  # both have a relevant id in the top-10
    assert s.coverage == 6  # a b c d x y; the skipped query's ranking is not counted
    assert s.latency_mean_ms == pytest.approx(20.0)  # skipped query's 5 s excluded
    assert s.latency_median_ms == pytest.approx(20.0)
    assert s.latency_p95_ms == pytest.approx(30.0)  # ceil(0.95 * 2) = 2nd
    out = s.to_json()
    assert out["recall@1"] == 0.5 and out["recall@2"] == 0.75 and out["coverage@10"] == 6
    assert out["latency"]["n"] == 2
    json.dumps(out)  # JSON-ready
    s1 = summarize(qs, helpful_k=1, coverage_k=1)
    assert s1.helpful_rate == 0.5 and s1.coverage == 2  # hit@1: q2 only; top-1: a, x
    with pytest.raises(KeyError):
        s1.recall_at(2)
    with pytest.raises(ValueError):
        summarize(qs[2:])
    with pytest.raises(ValueError):
        summarize(qs, ks=(1, 1))


def test_bootstrap_identical_sequences() -> None:
    a = [0.0, 0.5, 1.0, 0.25, 1 / 3]
    r = paired_bootstrap(a, list(a))
    assert (r.mean_diff, r.low, r.high) == (0.0, 0.0, 0.0)
    assert (r.resamples, r.seed) == (2000, 0)


def test_bootstrap_constant_shift() -> None:
    a = [0.0, 0.2, 0.5, 0.7, 0.9, 1 / 3]
    b = [x + 0.1 for x in a]
    r = paired_bootstrap(a, b, resamples=500)
    assert r.mean_diff == pytest.approx(0.1)
    assert r.low == pytest.approx(0.1) and r.high == pytest.approx(0.1)


def test_bootstrap_deterministic_and_seeded() -> None:
    a = [1.0, 0.5, 0.0, 0.25, 1.0, 0.0, 0.5, 1 / 3, 0.2, 0.0]
    b = [1.0, 1.0, 0.5, 0.0, 1.0, 0.5, 0.5, 1.0, 0.0, 0.25]
    r = paired_bootstrap(a, b, seed=7)
    assert r == paired_bootstrap(a, b, seed=7)
    assert r.low <= r.mean_diff <= r.high
    assert r.mean_diff == pytest.approx((sum(b) - sum(a)) / 10)
    others = {
        (paired_bootstrap(a, b, seed=s).low, paired_bootstrap(a, b, seed=s).high)
        for s in range(1, 6)
    }
    assert others - {(r.low, r.high)}  # some other seed moves the interval
    swapped = paired_bootstrap(b, a, seed=7)  # symmetric percentile rule: exact negation
    assert (swapped.low, swapped.high) == (-r.high, -r.low)
    out = r.to_json()
    assert out == {
        "mean_diff": r.mean_diff,
        "low": r.low,
        "high": r.high,
        "resamples": 2000,
        "seed": 7,
    }
    assert isinstance(r, BootstrapResult)


def test_bootstrap_interval_narrows_with_confidence() -> None:
    a = [float(i % 3) / 2 for i in range(30)]
    b = [float(i % 5) / 4 for i in range(30)]
    wide = paired_bootstrap(a, b, confidence=0.99)
    narrow = paired_bootstrap(a, b, confidence=0.5)
    assert wide.low <= narrow.low <= narrow.high <= wide.high


def test_bootstrap_value_errors() -> None:
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        paired_bootstrap([], [])
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0], resamples=0)
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0], confidence=1.0)


ids = st.sampled_from("abcdefghij")
rankings = st.lists(ids, unique=True, max_size=10).map(tuple)
relevants = st.frozensets(ids, min_size=1, max_size=6)


@given(rankings, relevants, st.integers(1, 12))
def test_metrics_are_within_unit_interval(
    ranking: tuple[str, ...], rel: frozenset[str], k: int
) -> None:
    for value in (
        recall_at(ranking, rel, k),
        hit_at(ranking, rel, k),
        reciprocal_rank(ranking, rel),
        precision_at(ranking, rel, k),
        average_precision_at(ranking, rel, k),
    ):
        assert 0.0 <= value <= 1.0
    assert hit_at(ranking, rel, k) >= recall_at(ranking, rel, k)


@given(rankings, relevants)
def test_recall_non_decreasing_in_k(ranking: tuple[str, ...], rel: frozenset[str]) -> None:
    values = [recall_at(ranking, rel, k) for k in range(1, 13)]
    assert values == sorted(values)
    assert values[-1] == len(rel & set(ranking)) / len(rel)
