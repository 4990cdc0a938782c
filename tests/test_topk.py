"""vault.embedding.topk against the brute force, bit for bit.

The reference scores every candidate row with ``similarity.similarity`` and orders them
with ``np.lexsort((row, tie, -score))``; ``topk`` and ``topk_batch`` must return the same
first k rows and the very same float64 scores (compared as bit patterns), on random data
and on data built to break safe margins and tie handling: duplicate rows, zero rows and
zero parts, all-equal rows, rows whose scores differ in the last bits, every metric,
k = 1, 10, 200, with and without a row subset and a tie order, on one or two threads, and
with tiny block sizes so that small matrices exercise every multi-block path.

``VAULT_TOPK_LARGE=1`` adds cases at N = 10**6 (a minute or so).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vault.embedding.topk as T
from vault.embedding import similarity as S
from vault.embedding import summary as SM
from vault.embedding.topk import NA, topk, topk_batch

from .helpers import answer_in_child

METRICS = ("cosine", "euclidean", "structured")
LARGE = os.environ.get("VAULT_TOPK_LARGE") == "1"


def norms(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    na = S.squared_norms(m, S.APPEARANCE_DIMS).astype(np.uint32)
    nb = S.squared_norms(m, S.BEHAVIOUR_DIMS).astype(np.uint32)
    return na, nb


def reference(
    m: np.ndarray,
    q: np.ndarray,
    k: int,
    metric: str,
    rows: np.ndarray | None = None,
    tie: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    if rows is None:
        idx = np.arange(len(m))
    elif rows.dtype == bool:
        idx = np.flatnonzero(rows)
    else:
        idx = np.unique(rows)
    # similarity is elementwise over rows: chunks give the same scores as one call
    s = np.concatenate(
        [S.similarity(m[idx[i : i + 65536]], q, metric) for i in range(0, len(idx), 65536)]
        or [np.zeros(0)]
    )
    t = idx if tie is None else tie[idx]
    order = np.lexsort((idx, t, -s))[:k]
    return idx[order], s[order]


def same(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> bool:
    rows, scores = got
    return (
        rows.dtype == np.int64
        and scores.dtype == np.float64
        and np.array_equal(rows, want[0])
        and np.array_equal(scores.view(np.int64), want[1].view(np.int64))
    )


def patch(monkeypatch: pytest.MonkeyPatch, name: str, value: Any) -> None:
    """Set ``name`` wherever the top-k package's modules read it (the package re-exports
    its submodules' names: each module has its own binding)."""
    for mod in (T, T._common, T.single, T.batch, T.threads):
        if hasattr(mod, name):
            monkeypatch.setattr(mod, name, value)


@pytest.fixture
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Blocks of a few rows, so that small matrices take every multi-block path."""
    patch(monkeypatch, "BLOCK", 16)
    patch(monkeypatch, "SUPER", 48)
    patch(monkeypatch, "BATCH_BLOCK", 32)
    patch(monkeypatch, "BATCH_QUERIES", 3)
    yield


def matrices(rng: np.random.Generator, n: int) -> Iterator[tuple[str, np.ndarray]]:
    yield "random", rng.integers(-128, 128, (n, 64), dtype=np.int8)
    base = rng.integers(-3, 4, (4, 64)).astype(np.int8)
    yield "four distinct rows", base[rng.integers(0, 4, n)]
    m = rng.integers(-128, 128, (n, 64), dtype=np.int8)
    m[rng.random(n) < 0.25] = 0
    m[rng.random(n) < 0.25, :NA] = 0
    m[rng.random(n) < 0.25, NA:] = 0
    yield "zero rows and parts", m
    yield "all equal", np.repeat(rng.integers(-128, 128, (1, 64), dtype=np.int8), n, axis=0)
    # multiples of one direction: equal cosines, scores that may differ in the last bit
    d = rng.integers(-4, 5, 64)
    mult = rng.integers(1, 32, n)
    yield "multiples", np.clip(d[None, :] * mult[:, None], -128, 127).astype(np.int8)
    # a near-duplicate cloud: many scores within 1e-6 of each other
    c = rng.integers(-120, 121, 64)
    cloud = c[None, :] + rng.integers(-1, 2, (n, 64)) * (rng.random((n, 64)) < 0.05)
    yield "near duplicates", np.clip(cloud, -128, 127).astype(np.int8)


def queries(rng: np.random.Generator, m: np.ndarray) -> np.ndarray:
    qs = rng.integers(-128, 128, (7, 64), dtype=np.int8)
    qs[1] = m[rng.integers(0, len(m))]
    qs[2] = 0
    qs[3, :NA] = 0
    qs[4, NA:] = 0
    qs[5] = np.clip(m[0].astype(int) * 2, -128, 127)
    qs[6] = np.clip(-m[0].astype(int), -128, 127)  # k-th best score negative: low floors
    return qs


def check_all(m: np.ndarray, rng: np.random.Generator, ks: tuple[int, ...]) -> None:
    na, nb = norms(m)
    n = len(m)
    qs = queries(rng, m)
    for rows in (None, rng.random(n) < 0.4, rng.integers(0, n, n // 3 + 1)):
        for tie in (None, rng.integers(0, 4, n).astype(np.uint32)):
            for metric in METRICS:
                for k in ks:
                    batch = topk_batch(m, na, nb, qs, k, metric, rows=rows, tie=tie, threads=2)
                    for q, got_b in zip(qs, batch, strict=True):
                        want = reference(m, q, k, metric, rows, tie)
                        assert same(got_b, want), (metric, k, "batch")
                        for threads in (1, 2):
                            got = topk(m, na, nb, q, k, metric, rows=rows, tie=tie, threads=threads)
                            assert same(got, want), (metric, k, threads)


@pytest.mark.parametrize("seed", range(3))
def test_matches_brute_force_multi_block(tiny_blocks: None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _name, m in matrices(rng, 300):
        check_all(m, rng, (1, 10, 200))


def test_matches_brute_force_default_blocks() -> None:
    rng = np.random.default_rng(7)
    for _name, m in matrices(rng, 3000):
        check_all(m, rng, (10,))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40),
    st.lists(st.integers(-2, 2), min_size=64, max_size=64),
    st.integers(0, 2**32 - 1),
    st.sampled_from(METRICS),
    st.integers(1, 12),
)
def test_small_alphabet_ties(n: int, q: list[int], seed: int, metric: str, k: int) -> None:
    """Tiny matrices over {-2..2}: scores collide all the time."""
    rng = np.random.default_rng(seed)
    m = rng.integers(-2, 3, (n, 64)).astype(np.int8)
    na, nb = norms(m)
    qv = np.array(q, dtype=np.int8)
    tie = rng.integers(0, 3, n).astype(np.uint32)
    want = reference(m, qv, k, metric, tie=tie)
    assert same(topk(m, na, nb, qv, k, metric, tie=tie), want)
    assert same(topk_batch(m, na, nb, qv[None], k, metric, tie=tie)[0], want)


def test_read_only_view_and_int64_norms() -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(-128, 128, (2000, 64), dtype=np.int8).tobytes()
    m = np.frombuffer(data, dtype=np.int8).reshape(2000, 64)
    assert not m.flags.writeable
    na, nb = norms(m)
    q = rng.integers(-128, 128, 64, dtype=np.int8)
    for metric in METRICS:
        want = reference(m, q, 10, metric)
        assert same(topk(m, na.astype(np.int64), nb.astype(np.int64), q, 10, metric), want)
        assert same(topk_batch(m, na, nb, q[None], 10, metric)[0], want)


def test_edge_cases() -> None:
    rng = np.random.default_rng(4)
    m = rng.integers(-128, 128, (50, 64), dtype=np.int8)
    na, nb = norms(m)
    q = m[3]
    for metric in METRICS:
        rows, scores = topk(m, na, nb, q, 0, metric)
        assert rows.shape == scores.shape == (0,)
        assert same(topk(m, na, nb, q, 500, metric), reference(m, q, 500, metric))
        empty = np.zeros(0, dtype=np.int64)
        assert topk(m, na, nb, q, 5, metric, rows=empty)[0].shape == (0,)
        assert topk_batch(m, na, nb, np.zeros((0, 64), np.int8), 5, metric) == []
        e = np.zeros((0, 64), np.int8)
        z = np.zeros(0, np.uint32)
        assert topk(e, z, z, q, 5, metric)[0].shape == (0,)
    bad = [
        lambda: topk(m, na, nb, q, 5, "dot"),
        lambda: topk(m, na, nb, q.astype(np.int16), 5, "cosine"),
        lambda: topk(m.astype(np.int16), na, nb, q, 5, "cosine"),
        lambda: topk(m, na[:-1], nb, q, 5, "cosine"),
        lambda: topk(m, na, nb, q, -1, "cosine"),
        lambda: topk(m, na, nb, q, 5, "cosine", rows=np.array([50])),
        lambda: topk(m, na, nb, q, 5, "cosine", rows=np.ones(49, dtype=bool)),
        lambda: topk(m, na, nb, q, 5, "cosine", tie=np.zeros(49, np.uint32)),
        lambda: topk_batch(m, na, nb, q, 5, "cosine"),
    ]
    for call in bad:
        with pytest.raises(ValueError):
            call()


def test_blas_threads_restored() -> None:
    blas = T._openblas()
    if blas is None:
        pytest.skip("numpy's BLAS is not scipy-openblas")
    before = blas[0]()
    with T._single_threaded_blas():
        assert blas[0]() == 1
        with T._single_threaded_blas():
            assert blas[0]() == 1
        assert blas[0]() == 1
    assert blas[0]() == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_child_forked_after_a_threaded_scan_scans_on_threads(tiny_blocks: None) -> None:
    """A two-thread scan leaves the pool's threads in this process only: a child forked
    afterwards (``multiprocessing``'s default on Linux) makes its own pool and gets the
    same answer — handed to the parent's threads, its scan would wait forever."""
    rng = np.random.default_rng(5)
    m = rng.integers(-128, 128, (1000, 64), dtype=np.int8)
    na, nb = norms(m)
    q = rng.integers(-128, 128, 64, dtype=np.int8)
    want = topk(m, na, nb, q, 10, "cosine", threads=2)
    assert T.threads._POOL is not None  # the scan ran on the pool

    def child() -> bytes:  # (a scan waiting for threads that do not exist: killed)
        got = topk(m, na, nb, q, 10, "cosine", threads=2)
        return got[0].tobytes() + got[1].tobytes()

    assert answer_in_child(child) == want[0].tobytes() + want[1].tobytes()


@pytest.mark.skipif(not LARGE, reason="set VAULT_TOPK_LARGE=1")
@pytest.mark.parametrize("kind", ["clustered", "all equal"])
def test_large(kind: str) -> None:
    rng = np.random.default_rng(11)
    n = 1_000_000
    if kind == "clustered":
        centres = rng.integers(-100, 101, (5000, 64))
        m = np.empty((n, 64), dtype=np.int8)
        for lo in range(0, n, 100_000):
            c = centres[rng.integers(0, 5000, 100_000)]
            m[lo : lo + 100_000] = np.clip(c + rng.integers(-12, 13, c.shape), -128, 127)
        m[rng.integers(0, n, 50_000)] = m[rng.integers(0, n, 50_000)]  # duplicates
        m[rng.integers(0, n, 1000)] = 0
    else:
        m = np.repeat(rng.integers(-128, 128, (1, 64), dtype=np.int8), n, axis=0)
    na, nb = norms(m)
    tie = rng.integers(0, 1000, n).astype(np.uint32)
    qs = np.stack([m[5], m[123_456], rng.integers(-128, 128, 64, dtype=np.int8)])
    mask = rng.random(n) < 0.5
    for metric in METRICS:
        for rows, t in ((None, None), (mask, tie)):
            batch = topk_batch(m, na, nb, qs, 10, metric, rows=rows, tie=t)
            for q, got_b in zip(qs, batch, strict=True):
                want = reference(m, q, 10, metric, rows, t)
                assert same(topk(m, na, nb, q, 10, metric, rows=rows, tie=t), want)
                assert same(got_b, want)
        want = reference(m, qs[0], 200, metric)
        assert same(topk(m, na, nb, qs[0], 200, metric), want)


# ---------------------------------------------------------------------------------------
# the summary bound (vault.embedding.summary): used from the second query of a large,
# immutable matrix; here made to apply to small ones, with tiny blocks


def frozen(m: np.ndarray) -> np.ndarray:
    """A read-only copy over ``bytes``, as a loaded table's matrix (what gets summaries)."""
    return np.frombuffer(np.ascontiguousarray(m).tobytes(), dtype=np.int8).reshape(m.shape)


@pytest.fixture
def summaries(monkeypatch: pytest.MonkeyPatch, tiny_blocks: None) -> Iterator[None]:
    patch(monkeypatch, "SUMMARY_MIN_ROWS", 1)
    patch(monkeypatch, "SUMMARY_BLOCK", 16)
    patch(monkeypatch, "SUMMARY_SUPER", 200)
    monkeypatch.setattr(SM, "BUILD_BLOCK", 64)
    yield


def summary_matrices(rng: np.random.Generator, n: int) -> Iterator[tuple[str, np.ndarray]]:
    yield from matrices(rng, n)
    centres = rng.integers(-100, 101, (6, 64))
    c = centres[rng.integers(0, 6, n)] + rng.integers(-6, 7, (n, 64))
    clustered = np.clip(c, -128, 127).astype(np.int8)
    clustered[rng.integers(0, n, n // 10)] = clustered[rng.integers(0, n, n // 10)]
    clustered[rng.integers(0, n, 5)] = 0
    yield "clustered", clustered
    extreme = clustered.copy()  # norms from 1 to 1016, one part huge and the other tiny
    extreme[: n // 4] = 0
    extreme[np.arange(n // 4), rng.integers(0, 64, n // 4)] = rng.choice([-1, 1], n // 4)
    extreme[n // 4 : n // 2] = rng.choice(
        np.array([-128, 127], dtype=np.int8), (n // 2 - n // 4, 64)
    )
    extreme[n // 2 : n // 2 + 20, :NA] = 1
    yield "extreme norms", extreme


def test_summary_bounds_every_row() -> None:
    """u . q <= t + B for every row, part and kind (the inequality the scan relies on)."""
    rng = np.random.default_rng(21)
    for _name, m in summary_matrices(rng, 400):
        for kind in ("full", "parts"):
            summ = SM.build(m, kind, NA)
            for q in queries(rng, m):
                check_bounds(summ, m, q)


def test_a_parts_columns_are_its_projections_and_residual_and_bound_every_row() -> None:
    """``Summary.part_columns(i)``: part i's projection columns then its residual column, one
    read-only contiguous row each; the first stage's product over them alone (converted and
    summed column by column, as ``single._column_products`` does) still bounds every row's
    part cosine: the same nonzero terms as the whole row's product, in another order."""
    from vault.embedding.topk import single

    rng = np.random.default_rng(23)
    for _name, m in summary_matrices(rng, 400):
        summ = SM.build(m, "parts", NA)
        k = summ.data.shape[1]
        start = 0
        for i, part in enumerate(summ.parts):
            size = part.basis.shape[0]
            pos, cols = summ.part_columns(i)
            assert pos.tolist() == [*range(start, start + size), k - len(summ.parts) + i]
            assert cols.flags.c_contiguous and not cols.flags.writeable
            assert np.array_equal(cols, summ.data[:, pos].T)
            assert summ.part_columns(i)[1] is cols  # copied once
            start += size
            x = m.astype(np.float64)[:, part.lo : part.hi]
            nrm = np.sqrt((x * x).sum(axis=1))
            for q in queries(rng, m):
                w, b, _ = summ.column(q, i)
                t = np.zeros(len(m), dtype=np.float32)
                buf = np.empty((len(pos), 7), dtype=np.float32)  # (blocks of 7: several)
                old_block = single.COLUMN_BLOCK
                single.COLUMN_BLOCK = 7
                try:
                    single._column_products(cols, 0, len(m), buf, w[pos].copy(), t)
                finally:
                    single.COLUMN_BLOCK = old_block
                assert np.array_equal(w[np.setdiff1d(np.arange(k), pos)], np.zeros(k - len(pos)))
                dots = x @ q[part.lo : part.hi].astype(np.float64)
                uq = np.where(nrm > 0, dots / np.maximum(nrm, 1), 0.0)
                assert (t.astype(np.float64) + b >= uq).all()


def check_bounds(summ: SM.Summary, m: np.ndarray, q: np.ndarray) -> None:
    """u . q <= t + B for every row of ``m`` and every part ``summ`` bounds."""
    x = m.astype(np.float64)
    for part in (None, 0, 1) if summ.kind == "full" else (0, 1):
        w, b, qn = summ.column(q, part)
        t = summ.data.astype(np.float32) @ w
        lo, hi = (0, 64) if part is None else ((0, NA), (NA, 64))[part]
        if summ.kind == "full":
            nrm = np.sqrt((x * x).sum(axis=1))
        else:
            nrm = np.sqrt((x[:, lo:hi] ** 2).sum(axis=1))
        dots = x[:, lo:hi] @ q[lo:hi].astype(np.float64)  # exact integers
        uq = np.where(nrm > 0, dots / np.maximum(nrm, 1), 0.0)
        assert (t.astype(np.float64) + b >= uq).all()
        assert qn == pytest.approx(np.sqrt((q[lo:hi].astype(np.float64) ** 2).sum()))


class SummaryUse:
    """What the summary path did (``_summary_block``, counted in this thread only): the
    super-blocks it took, those it stayed on (the bound ruled out enough rows), the rows
    they cover and the rows scored exactly there (fallback included)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.blocks = self.stayed = self.covered = self.scored = 0
        self.two_stage = 0  # blocks whose appearance products were gathered (few rows)
        self.on = False
        self._here = threading.local()
        block, merge = T._summary_block, T._merge
        behaviour_keep = T.single._Bound.behaviour_keep

        def counting_keep(bound: Any, t_b: np.ndarray, floor: float) -> np.ndarray:
            kept = behaviour_keep(bound, t_b, floor)
            if self.on and threading.current_thread() is threading.main_thread():
                self.two_stage += len(kept) <= len(t_b) // T.single.TWO_STAGE_SHARE
            return kept

        monkeypatch.setattr(T.single._Bound, "behaviour_keep", counting_keep)

        def counting_block(scan: Any, *args: Any) -> None:
            lo, hi = args[-3], args[-2]
            self._here.inside = True
            try:
                block(scan, *args)
            finally:
                self._here.inside = False
            if self.on and threading.current_thread() is threading.main_thread():
                self.blocks += 1
                self.stayed += scan.summary_works
                self.covered += hi - lo

        def counting_merge(*args: Any) -> None:
            main = threading.current_thread() is threading.main_thread()
            if self.on and main and getattr(self._here, "inside", False):
                self.scored += len(args[5])
            merge(*args)

        patch(monkeypatch, "_summary_block", counting_block)
        patch(monkeypatch, "_merge", counting_merge)


@pytest.mark.parametrize("seed", range(2))
def test_summary_scan_matches_brute_force(
    summaries: None, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exact on every kind of data; and on data the summary fits (clustered rows, k <= 10,
    one thread) it prunes: it stays on the summary path in most super-blocks and scores
    exactly fewer than half of the rows it covers (94% and 23-25% at seeds 100-101), and
    for structured queries it takes the two-stage bound (the appearance products of the
    few rows the behaviour part leaves)."""
    use = SummaryUse(monkeypatch)
    rng = np.random.default_rng(100 + seed)
    for _name, raw in summary_matrices(rng, 600):
        m = frozen(raw)
        na, nb = norms(m)
        n = len(m)
        qs = queries(rng, m)
        for rows in (None, rng.random(n) < 0.5):
            for tie in (None, rng.integers(0, 4, n).astype(np.uint32)):
                for metric in METRICS:
                    for k in (1, 10, 50):
                        for q in qs:
                            want = reference(m, q, k, metric, rows, tie)
                            for threads in (1, 2):
                                use.on = _name == "clustered" and k <= 10 and threads == 1
                                got = topk(
                                    m, na, nb, q, k, metric, rows=rows, tie=tie, threads=threads
                                )
                                use.on = False
                                assert same(got, want), (_name, metric, k, threads)
        for kind in ("full", "parts"):
            entry = SM._SEEN.get((id(m), kind))
            assert entry is not None and entry[1] is not None  # built from the 2nd query on
    assert use.blocks > 100, use.blocks  # the summary path was taken
    assert use.stayed >= 0.8 * use.blocks, (use.stayed, use.blocks)
    assert use.scored <= 0.5 * use.covered, (use.scored, use.covered)
    assert use.two_stage > 10, use.two_stage


def _cos(x: np.ndarray, q: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Each row's cosine with ``q`` over dims [lo, hi), in float64 (0 for a zero part)."""
    n = np.sqrt((x[:, lo:hi] ** 2).sum(axis=1)) * np.sqrt((q[lo:hi] ** 2).sum())
    return np.where(n > 0, x[:, lo:hi] @ q[lo:hi] / np.where(n > 0, n, 1), 0.0)


def test_the_behaviour_bound_drops_only_rows_below_the_floor() -> None:
    """``behaviour_keep`` (the first stage of a structured summary scan) may leave out a
    row only when its structured score is below the floor. Scores here are written from
    the metric's definition in float64, not with ``similarity``: act and look the cosines
    of the behaviour and appearance dims (0 for a zero part), score = act + 2 max(0, look
    - 0.7); floors at the k-th best score for k = 1, 10, 100 and just above and below."""
    rng = np.random.default_rng(31)
    for _name, m in summary_matrices(rng, 500):
        summ = SM.build(m, "parts", NA)
        x = m.astype(np.float64)
        for q in queries(rng, m):
            qf = q.astype(np.float64)
            if not qf[:NA].any() or not qf[NA:].any():
                continue  # one part only: no two-stage bound

            score = _cos(x, qf, NA, 64) + 2 * np.maximum(0.0, _cos(x, qf, 0, NA) - 0.7)
            bound = T.single._Bound(summ, T.single._Query(q, "structured"))
            assert bound.two_stage
            t_b = summ.data.astype(np.float32) @ bound.cols[1]
            ranked = np.sort(score)[::-1]
            for floor in [ranked[k - 1] + d for k in (1, 10, 100) for d in (-1e-9, 0, 1e-9)]:
                kept = np.zeros(len(m), dtype=bool)
                kept[bound.behaviour_keep(t_b, float(floor))] = True
                assert (score[~kept] < floor).all(), (_name, floor)


def test_summary_only_for_immutable_matrices() -> None:
    rng = np.random.default_rng(5)
    m = rng.integers(-128, 128, (100, 64), dtype=np.int8)
    assert not SM.immutable(m)
    view = m.view()
    view.setflags(write=False)
    assert not SM.immutable(view)  # its base can still change
    assert SM.immutable(frozen(m))
    assert SM.cached(m, "full", NA, 1) is None and SM.cached(m, "full", NA, 1) is None
    f = frozen(m)
    assert SM.cached(f, "full", NA, 1) is None  # the first request only counts
    assert SM.cached(f, "full", NA, 1) is SM.cached(f, "full", NA, 1) is not None


def test_a_sealed_matrix_keeps_summaries_and_stays_read_only() -> None:
    """A chunked table's matrix is read into an array vault owns, then sealed (FORMAT §8.5):
    its summaries are kept; it and its views cannot be written; only an owner is sealed."""
    rng = np.random.default_rng(6)
    m = rng.integers(-128, 128, (100, 64), dtype=np.int8)
    copy = m.copy()
    sealed = SM.seal(m)
    assert sealed is m and SM.immutable(m) and SM.immutable(m[10:20])
    with pytest.raises(ValueError):
        m[0, 0] = 1
    with pytest.raises(ValueError):
        m[10:20].setflags(write=True)  # a view of a read-only owner cannot be made writable
    with pytest.raises(ValueError):
        SM.seal(copy[1:])  # a view: its owner could still change it
    assert SM.cached(m, "full", NA, 1) is None  # the first request only counts
    assert SM.cached(m, "full", NA, 1) is SM.cached(m, "full", NA, 1) is not None
    assert not SM.immutable(copy)


def test_a_snapshot_matrix_is_sealed(example_vault: Any) -> None:
    """What a reader loads from the chunks is an immutable matrix (its summaries are kept)."""
    m = example_vault.snapshot().table.matrix
    assert m.shape[0] > 0 and not m.flags.writeable and SM.immutable(m)


def test_a_batch_uses_one_thread_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    """The load average is not consulted (it counts this process's own load): a batch scan
    uses one worker thread, two only when VAULT_TOPK_THREADS=2 says so, never when small."""
    monkeypatch.delenv(T.THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert T.default_threads(10**6) == 1
    monkeypatch.setenv(T.THREADS_ENV, "2")
    assert T.default_threads(10**6) == (2 if (os.cpu_count() or 1) >= 2 else 1)
    assert T.default_threads(1000) == 1


def test_a_single_query_runs_on_the_thread_count_measured_faster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Measured``: the first large scan on one thread and the first on two, untimed; one
    and two threads in turns until each has two timings; then the one with the lower
    median time per row, the other re-timed every 16th scan; the environment fixes it;
    small scans and one core use one thread."""
    monkeypatch.delenv(T.THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    big = 4 * T.SUPER
    m = T.Measured()
    assert m.choose(big - 1) == (1, False)
    assert m.choose(big) == (1, False)  # the first large scan: not timed
    cost = {1: 2.0, 2: 1.0}  # seconds per row: two threads faster here
    for want in ((1, True), (2, False), (2, True), (1, True), (2, True)):
        workers, timed = m.choose(big)
        assert (workers, timed) == want
        if timed:
            m.note(workers, cost[workers] * big, big)
    picks = []
    for _ in range(40):
        workers, timed = m.choose(big)
        assert timed
        picks.append(workers)
        m.note(workers, cost[workers] * big, big)
    scans = range(7, 47)  # the scan numbers of ``picks``
    assert picks == [1 if n % T.Measured.PROBE == 0 else 2 for n in scans]
    cost = {1: 1.0, 2: 3.0}  # the machine got busy: one thread faster now
    for _ in range(3 * T.Measured.PROBE):
        workers, _ = m.choose(big)
        m.note(workers, cost[workers] * big, big)
    assert [m.choose(big)[0] for _ in range(5)].count(1) >= 4
    monkeypatch.setenv(T.THREADS_ENV, "2")
    assert m.choose(big) == (2, False)
    monkeypatch.setenv(T.THREADS_ENV, "1")
    assert m.choose(big) == (1, False)
    monkeypatch.delenv(T.THREADS_ENV)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert m.choose(big) == (1, False)


def test_the_measured_thread_count_never_changes_a_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Large scans on the measured count (one and two threads in turns, then either) give
    exactly the brute force's top-k, every time."""
    monkeypatch.delenv(T.THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    T.MEASURED.reset()
    rng = np.random.default_rng(23)
    m = rng.integers(-128, 128, (4 * T.SUPER + 1000, 64), dtype=np.int8)
    na, nb = norms(m)
    for i in range(8):
        q = rng.integers(-128, 128, 64, dtype=np.int8)
        metric = METRICS[i % len(METRICS)]
        assert same(topk(m, na, nb, q, 10, metric), reference(m, q, 10, metric, None, None))
    assert T.MEASURED.picked[1] >= 1 and T.MEASURED.picked[2] >= 1
    T.MEASURED.reset()


def test_a_stored_summary_serves_the_first_query_of_a_new_process(
    summaries: None, tmp_path: Any
) -> None:
    """A placed matrix's summary is written by the process that built it (its second query)
    and read back whole by the first query of the next one (a new matrix object over the
    same bytes, as a new process loads it): the same bytes and parts, the same exact
    results as the brute force; a damaged file is not used."""
    rng = np.random.default_rng(7)
    raw = dict(summary_matrices(rng, 600))["clustered"]
    where = tmp_path / "summaries"
    m = frozen(raw)
    SM.place(m, where, "f" * 64, True)
    na, nb = norms(m)
    qs = queries(rng, m)
    for q in qs[:2]:  # the second builds (and stores) the summary
        for metric in ("structured", "cosine"):
            topk(m, na, nb, q, 10, metric)
    files = sorted(p.name for p in where.iterdir())
    assert files == [f"{'f' * 64}-full.summary", f"{'f' * 64}-parts.summary"]
    built = {kind: SM._SEEN[(id(m), kind)][1] for kind in ("full", "parts")}
    again = frozen(raw)  # "a new process": another matrix object, the same bytes
    SM.place(again, where, "f" * 64, False)
    for kind in ("full", "parts"):
        got = SM.cached(again, kind, NA, 1)  # its first request
        want = built[kind]
        assert got is not None and want is not None
        assert got.data.tobytes() == want.data.tobytes() and not got.data.flags.writeable
        for a, b in zip(got.parts, want.parts, strict=True):
            assert (a.lo, a.hi, a.sigma, a.quant) == (b.lo, b.hi, b.sigma, b.quant)
            assert a.basis.tobytes() == b.basis.tobytes()
    for q in qs:
        for metric in METRICS:
            assert same(topk(again, na, nb, q, 10, metric), reference(again, q, 10, metric))
    path = where / f"{'f' * 64}-parts.summary"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    third = frozen(raw)
    SM.place(third, where, "f" * 64, False)
    assert SM.cached(third, "parts", NA, 1) is None  # damaged: not used (built later)
    assert SM.from_bytes(bytes(blob), len(raw), "parts") is None
    assert SM.from_bytes(SM.to_bytes(built["full"]), len(raw), "parts") is None  # other kind
    assert SM.from_bytes(SM.to_bytes(built["full"]), len(raw) + 1, "full") is None


def test_a_summary_read_ahead_serves_the_first_scan(summaries: None, tmp_path: Any) -> None:
    """``read_ahead`` reads and checks a stored summary in the background before the matrix
    exists: the first scan takes exactly that summary (the file is gone by then), with the
    brute force's results; a damaged file read ahead is not used; a directory that is a
    symbolic link is not read; at most AHEAD_MAX read-aheads wait for their matrix."""
    rng = np.random.default_rng(8)
    raw = dict(summary_matrices(rng, 600))["clustered"]
    where, name = tmp_path / "summaries", "e" * 64
    built = {kind: SM.build(frozen(raw), kind, NA) for kind in ("full", "parts")}
    na, nb = norms(raw)
    qs = queries(rng, raw)
    for kind, want in built.items():
        SM.write(where, name, want)
        SM.read_ahead(where, name, kind, len(raw))
        path = where / f"{name}-{kind}.summary"
        ahead = SM._AHEAD[path]
        ahead.join()
        path.unlink()  # what the first scan gets can only come from the read-ahead
        m = frozen(raw)
        SM.place(m, where, name, False)
        got = SM.cached(m, kind, NA, 1)
        assert got is not None and got.data.tobytes() == want.data.tobytes()
        assert not got.data.flags.writeable and path not in SM._AHEAD
        # the first stage's columns were copied by the read-ahead thread, not by the scan
        assert (1 in got._split) == (kind == "parts")
        for q in qs[:4]:
            for metric in METRICS:
                if SM.kind_for(metric) == kind:
                    assert same(topk(m, na, nb, q, 10, metric), reference(m, q, 10, metric))
    blob = bytearray(SM.to_bytes(built["parts"]))
    blob[len(blob) // 2] ^= 4
    (where / f"{name}-parts.summary").write_bytes(bytes(blob))
    SM.read_ahead(where, name, "parts", len(raw))
    m = frozen(raw)
    SM.place(m, where, name, False)
    assert SM.cached(m, "parts", NA, 1) is None  # damaged: not used
    link = tmp_path / "linked"
    link.symlink_to(where)
    SM.read_ahead(link, name, "parts", len(raw))
    assert link / f"{name}-parts.summary" not in SM._AHEAD
    for i in range(SM.AHEAD_MAX + 2):
        SM.write(where, f"{i:064d}", built["full"])
        SM.read_ahead(where, f"{i:064d}", "full", len(raw))
    assert len(SM._AHEAD) <= SM.AHEAD_MAX
    for ahead in list(SM._AHEAD.values()):
        ahead.join()
    SM._AHEAD.clear()


def test_a_retrieval_reads_the_summary_ahead(
    summaries: None, example_vault: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh reader's first hybrid or soft query starts reading its metric's summary before
    the matrix is read, and its first scan uses it (no build, no second read); a symbolic
    query reads none. The results are those of a reader that read the summary itself."""
    from vault.index import snapshot as snapshot_module

    example_vault.build_index()
    grids = [[[1, 0], [0, 2]], [[3, 3, 0], [0, 0, 4]]]
    snapshot_module.clear_cache()
    SM._SEEN.clear()
    real_ahead = SM.read_ahead
    monkeypatch.setattr(SM, "read_ahead", lambda *a, **k: None)
    plain = [example_vault.retriever().retrieve(g, mode="soft").to_json() for g in grids]
    monkeypatch.setattr(SM, "read_ahead", real_ahead)
    snapshot_module.clear_cache()
    SM._SEEN.clear()
    started: list[tuple[str, int]] = []
    real_start = SM._Ahead.start
    monkeypatch.setattr(
        SM._Ahead, "start", lambda self: started.append((self.kind, self.rows)) or real_start(self)
    )
    monkeypatch.setattr(SM, "build", lambda *a, **k: pytest.fail("built in a query"))
    r = example_vault.retriever()
    r.retrieve(grids[0], mode="symbolic")
    assert started == [] and not r.snapshot.table.matrix_loaded
    real_read = SM._read
    reads: list[str] = []
    monkeypatch.setattr(
        SM, "_read", lambda path: reads.append(threading.current_thread().name) or real_read(path)
    )
    got = [r.retrieve(g, mode="soft").to_json() for g in grids]
    assert got == plain
    assert started == [("parts", r.snapshot.table.n)]  # once: the matrix is read after it
    assert reads == ["vault-summary-read"]  # read by the read-ahead only
    assert SM._SEEN[(id(r.snapshot.table.matrix), "parts")][1] is not None


def test_a_derived_summary_bounds_every_row_and_scans_exactly(summaries: None) -> None:
    """``derive``: a changed matrix (rows inserted and replaced, as a write-back changes a
    table) gets a summary from the old one's directions — every row's bound holds and every
    scan equals the brute force; kept rows' summary rows are the old ones; a new row the
    old residual column cannot express rescales that column (the bounds still hold); a
    kept row that differs from its origin gives None (a summary is then built)."""
    rng = np.random.default_rng(31)
    for name, raw in summary_matrices(rng, 500):
        old_m = frozen(raw)
        n = len(raw)
        inserted = rng.choice(n + 1, 12, replace=False)
        replaced = rng.choice(n, 6, replace=False)
        origin = np.insert(np.arange(n, dtype=np.int64), np.sort(inserted), -1)
        origin[np.isin(origin, replaced)] = -1
        new_rows = np.flatnonzero(origin < 0)
        changed = raw[np.clip(origin, 0, None)].copy()
        donors = rng.integers(0, n, len(new_rows))  # new rows like the data: old rows
        changed[new_rows] = raw[donors]  # with a sign flipped (the same residual norm)
        changed[new_rows[::2]] = np.maximum(-127, changed[new_rows[::2]]) * -1
        m = frozen(changed)
        na, nb = norms(m)
        for kind in ("full", "parts"):
            old = SM.build(old_m, kind, NA)
            got = SM.derive(old, old_m, m, origin)
            assert got is not None, (name, kind)
            kept = origin >= 0
            assert np.array_equal(got.data[kept], old.data[origin[kept]])
            for q in queries(rng, m)[:4]:
                check_bounds(got, m, q)
            SM.keep(m, got)
            assert SM.stored(m, kind) is got
        for q in queries(rng, m)[:6]:
            for metric in METRICS:
                assert same(topk(m, na, nb, q, 10, metric), reference(m, q, 10, metric)), name
        SM._SEEN.clear()
    raw = dict(summary_matrices(rng, 400))["clustered"]
    old_m = frozen(raw)
    old = SM.build(old_m, "parts", NA)
    origin = np.arange(len(raw), dtype=np.int64)
    tampered = raw.copy()
    tampered[7, 3] ^= 1
    assert SM.derive(old, old_m, frozen(tampered), origin) is None  # a kept row changed
    odd = raw.copy()
    odd[5] = rng.integers(-128, 128, 64)  # random among clusters: a large residual
    origin[5] = -1
    m = frozen(odd)
    got = SM.derive(old, old_m, m, origin)
    assert got is not None and got.parts[0].sigma < old.parts[0].sigma  # rescaled
    for q in queries(rng, m)[:4]:
        check_bounds(got, m, q)
    SM.keep(m, got)
    na, nb = norms(m)
    for q in queries(rng, m)[:6]:
        assert same(topk(m, na, nb, q, 10, "structured"), reference(m, q, 10, "structured"))


def test_a_vault_keeps_its_summaries_in_the_cache(
    summaries: None, example_vault: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retrieval over a generation places its matrix (named by the matrix object's address):
    the summary built by one retriever's second soft query is in embeddings/cache/summaries/,
    and a fresh open's first query reads it instead of building one."""
    from vault.index import snapshot as snapshot_module

    grids = [[[1, 0], [0, 2]], [[3, 3, 0], [0, 0, 4]], [[5]]]
    snapshot_module.clear_cache()  # read from the store, as a new process would
    r = example_vault.retriever()
    first = [r.retrieve(g, mode="soft").to_json() for g in grids[:2]]
    name = r.snapshot.manifest["table"]["matrix"]
    where = example_vault.root / "embeddings" / "cache" / "summaries"
    assert sorted(p.name for p in where.iterdir()) == [f"{name}-parts.summary"]
    snapshot_module.clear_cache()
    SM._SEEN.clear()
    built: list[str] = []
    real = SM.build
    monkeypatch.setattr(SM, "build", lambda *a, **k: built.append(a[1]) or real(*a, **k))
    r2 = example_vault.retriever()
    again = [r2.retrieve(g, mode="soft").to_json() for g in grids[:2]]
    assert again == first and built == []  # read from the cache, never rebuilt
    assert SM._SEEN[(id(r2.snapshot.table.matrix), "parts")][1] is not None


def test_a_write_back_derives_its_generations_summaries(
    summaries: None, example_vault: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write-back over a generation whose summaries exist derives its own generation's
    from them (``build.derive_summaries``): the queries after it build none, a later process
    finds them in the cache under the new matrix's name, and every result is the one a scan
    without summaries gives."""
    from tests.conftest import card
    from vault.index import snapshot as snapshot_module

    example_vault.build_index()
    grids = [[[1, 0], [0, 2]], [[3, 3, 0], [0, 0, 4]], [[5]]]
    r = example_vault.retriever()
    r.retrieve(grids[0], mode="soft")  # the generation's matrix read, its summary with it
    example_vault.add([(card("zz_new", ["feature:square"], dsl="(y grid)"), "new card")])
    name = example_vault.snapshot().manifest["table"]["matrix"]
    where = example_vault.root / "embeddings" / "cache" / "summaries"
    assert {f"{name}-parts.summary", f"{name}-full.summary"} <= {p.name for p in where.iterdir()}
    monkeypatch.setattr(SM, "build", lambda *a, **k: pytest.fail("built in a query"))
    asks = [(g, s) for g in grids for s in ("structured", "cosine", "euclidean")]
    r = example_vault.retriever()  # (the write-back's generation, as this process holds it)
    got = [r.retrieve(g, mode="soft", similarity=s).to_json() for g, s in asks]
    assert {x["generation"] for x in got} == {example_vault.snapshot().generation}
    matrix = r.snapshot.table.matrix
    assert all(SM._SEEN[(id(matrix), k)][1] is not None for k in ("parts", "full"))
    snapshot_module.clear_cache()  # "a later process"
    SM._SEEN.clear()
    later = example_vault.retriever()
    assert [later.retrieve(g, mode="soft", similarity=s).to_json() for g, s in asks] == got
    patch(monkeypatch, "cached", lambda *a: None)  # no summary at all
    assert [later.retrieve(g, mode="soft", similarity=s).to_json() for g, s in asks] == got


def test_index_build_writes_the_summaries(
    summaries: None, example_vault: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`vault index build` leaves both kinds of summary in the cache: the first query of a
    process then builds none."""
    from vault.index import snapshot as snapshot_module

    example_vault.build_index()
    name = example_vault.snapshot().manifest["table"]["matrix"]
    where = example_vault.root / "embeddings" / "cache" / "summaries"
    assert sorted(p.name for p in where.iterdir()) == [
        f"{name}-full.summary",
        f"{name}-parts.summary",
    ]
    snapshot_module.clear_cache()
    SM._SEEN.clear()
    monkeypatch.setattr(SM, "build", lambda *a, **k: pytest.fail("built in a query"))
    r = example_vault.retriever()
    for similarity in ("structured", "cosine"):
        assert r.retrieve([[1, 0], [0, 2]], mode="soft", similarity=similarity).results


def test_a_two_thread_run_works_on_the_calling_thread_and_waits_for_the_other() -> None:
    """The first job runs on the calling thread, the other on the pool; when the first
    fails, the call still returns only after the other finished (no scan outlives it)."""
    ran: list[tuple[str, bool]] = []
    caller = threading.current_thread()

    def job(name: str, fail: bool) -> None:
        if fail:
            raise ValueError(name)
        time.sleep(0.2)
        ran.append((name, threading.current_thread() is caller))

    T.threads._run(job, [("a", False), ("b", False)])
    assert sorted(ran) == [("a", True), ("b", False)]
    ran.clear()
    with pytest.raises(ValueError, match="a"):
        T.threads._run(job, [("a", True), ("b", False)])
    assert ran == [("b", False)]
