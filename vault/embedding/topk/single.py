"""The single-query scan (``topk``): blocked conversion, safe-margin selection, the
summary path and the exact re-rank (see ``vault.embedding.topk``)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from vault.embedding import DIM
from vault.embedding.similarity import (
    APPEARANCE_BONUS,
    APPEARANCE_GATE,
)
from vault.embedding.summary import Summary, cached, kind_for
from vault.embedding.topk._common import (
    BLOCK,
    KEY_ERROR,
    NA,
    SUMMARY_BLOCK,
    SUMMARY_MIN_ROWS,
    SUMMARY_SUPER,
    SUPER,
    Result,
    _all_zero,
    _check,
    _down,
    _empty,
    _exact,
    _keys,
    _prefilter,
    _Query,
    _query,
    _row_indices,
    _top,
    _zero_query,
)
from vault.embedding.topk.threads import (
    MEASURED,
    _run,
    _single_threaded_blas,
)

# A structured scan's second stage gathers the rows its first leaves, while they are at most
# 1 / TWO_STAGE_SHARE of a block's (a gathered row's products cost ~3.5x those of a row in turn)
TWO_STAGE_SHARE = 4
COLUMN_BLOCK = 16384  # rows of each column per conversion (1 MiB float32 at 15 columns)


class _Scan:
    """One worker's pass over some super-blocks of one query: its buffers and best rows."""

    def __init__(self, k: int, tie: np.ndarray | None):
        self.k = k
        self.tie = tie
        self.fbuf = np.empty((BLOCK, DIM), dtype=np.float32)
        self.ibuf = np.empty((BLOCK, DIM), dtype=np.int8)
        self.rows = np.zeros(0, dtype=np.int64)
        self.scores = np.zeros(0, dtype=np.float64)
        self.summary_works = True  # until a super-block shows the bound does not prune
        self.dots_buf = np.zeros(0, dtype=np.float32)  # sized by _scan
        self.key_buf = np.zeros(0, dtype=np.float32)

    def floor(self) -> float:
        """The k-th best exact score so far (-inf before k rows are scored)."""
        return float(self.scores[-1]) if len(self.rows) == self.k else -math.inf


def _merge(
    scan: _Scan,
    matrix: np.ndarray,
    n2_app: np.ndarray,
    n2_beh: np.ndarray,
    qq: _Query,
    rows: np.ndarray,
    shared: list[float],
) -> None:
    """Score ``rows`` exactly and keep the best k of them and the worker's rows so far."""
    if len(rows) == 0:
        return
    s = _exact(matrix, n2_app, n2_beh, qq.q, rows, metric=qq.metric)
    scan.rows, scan.scores = _top(
        np.concatenate([scan.rows, rows]), np.concatenate([scan.scores, s]), scan.tie, scan.k
    )
    if scan.floor() > shared[0]:  # a float store is atomic under the GIL
        shared[0] = scan.floor()


class _Bound:
    """One query's exact upper bounds from a matrix summary (``vault.embedding.summary``):
    the summary product t of a row (one column; one per part for structured, t[part])
    bounds its cosine (or each part's cosine) as u . q <= t + B, so ``keep`` returns a
    superset of the rows that can score >= a floor, and a value to order them by (larger =
    more promising)."""

    def __init__(self, summ: Summary, qq: _Query):
        self.metric = qq.metric
        if qq.metric == "structured":
            cols, self.consts, self.norms = [], [], []
            self.parts = [i for i, n in enumerate((qq.qa, qq.qb)) if n]  # a zero part: cos 0
            for i in self.parts:
                w, b, qn = summ.column(qq.q, i)
                cols.append(w)
                self.consts.append(b)
                self.norms.append(qn)
            self.cols = np.stack(cols)  # (parts, K): a part's column is a row
            # both parts: the behaviour product alone bounds a row's score (look <= 1)
            self.two_stage = len(self.parts) == 2
            if self.two_stage:  # the first stage reads the behaviour part's columns only
                pos, self.behaviour = summ.part_columns(1)
                self.behaviour_col = np.ascontiguousarray(self.cols[1, pos])
        else:
            w, b, qn = summ.column(qq.q, None)
            self.cols = w
            self.consts, self.norms = [b], [qn]
            self.two_stage = False

    def behaviour_keep(self, t_b: np.ndarray, floor: float) -> np.ndarray:
        """Positions of the rows whose score may reach ``floor`` by the behaviour part's
        bound alone, the appearance part at its best: score <= act + 2 max(0, look - 0.7)
        <= (t_b + B_b) / |q_b| + 2 (1 - 0.7), as ``values`` evaluates it (fewer roundings,
        within the same KEY_ERROR)."""
        x = t_b + np.float32(self.consts[1])
        x *= np.float32(1.0 / self.norms[1])
        x += np.float32(APPEARANCE_BONUS * (1.0 - APPEARANCE_GATE))
        return np.flatnonzero(x >= _down(floor - KEY_ERROR))

    def values(self, t: np.ndarray) -> np.ndarray:
        """Per row, what ``keep`` compares with a floor's threshold (larger = more
        promising): the product t itself for cosine and euclidean, the score bound for
        structured (independent of the floor: computed once a super-block)."""
        if self.metric != "structured":
            return t
        v = np.zeros(t.shape[1], dtype=np.float32)
        for j, part in enumerate(self.parts):
            x = t[j] + np.float32(self.consts[j])
            x *= np.float32(1.0 / self.norms[j])
            if part == 0:
                x -= np.float32(APPEARANCE_GATE)
                np.maximum(x, np.float32(0.0), out=x)
                x *= np.float32(APPEARANCE_BONUS)
            v += x
        return v

    def keep(self, v: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows, values) whose ``values`` ``v`` may score >= ``floor``, or None when none
        can be dropped.

        cosine: cos |q| = u . q <= t + B, so t < floor |q| - B means cos < floor.
        euclidean: score <= g(cos) = 1 - sqrt((1 - cos) / 2), increasing (see
        ``_prefilter``), and g(c) < floor iff c < 1 - 2 (1 - floor)**2: the cosine test.
        Both thresholds are float64 with a slack of 1e-12 (|floor| + 1) |q| + 1e-12 B for
        their few roundings, then rounded down to float32.
        structured: look <= (t_a + B_a) / |q_a| and act <= (t_b + B_b) / |q_b| (a zero
        query part has cosine 0 and no column), score <= act + 2 max(0, look - 0.7). The
        float32 evaluation has at most 8 roundings of values below 10 in magnitude (< 5e-6
        in all), less than the KEY_ERROR subtracted from the floor."""
        if floor == -math.inf:
            return None
        if self.metric == "structured":
            rows = np.flatnonzero(v >= _down(floor - KEY_ERROR))
            return rows, v[rows]
        f = floor
        if self.metric == "euclidean":
            if f > 1.0:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            f = 1.0 - 2.0 * (1.0 - f) ** 2
        qn, b = self.norms[0], self.consts[0]
        thr = f * qn - b - 1e-12 * ((abs(f) + 1.0) * qn + b)
        rows = np.flatnonzero(v >= _down(thr))
        return rows, v[rows]


def _products(
    data: np.ndarray,
    idx: np.ndarray | None,
    lo: int,
    hi: int,
    block: int,
    ibuf: np.ndarray,
    fbuf: np.ndarray,
    cols: np.ndarray,
    out: np.ndarray,
    by_part: bool = False,
) -> None:
    """``out[:hi - lo]`` = the int8 rows ``lo:hi`` of ``data`` (or of ``data[idx]``) times
    ``cols``, converted to float32 ``block`` rows at a time through the caller's buffers
    (exact integers: see the module docstring). ``by_part``: ``cols`` holds one column a
    row and ``out[j, :hi - lo]`` gets column j's products — one matrix-vector product a
    column (OpenBLAS's two-column kernel took 1.3x the time of two of them, single
    thread, 8192 x 32 blocks)."""
    m = hi - lo
    for a in range(0, m, block):
        b = min(a + block, m)
        f = fbuf[: b - a]
        if idx is None:
            np.copyto(f, data[lo + a : lo + b], casting="unsafe")
        else:
            g = ibuf[: b - a]
            np.take(data, idx[lo + a : lo + b], axis=0, out=g, mode="clip")
            np.copyto(f, g, casting="unsafe")
        if by_part:
            for j in range(cols.shape[0]):
                np.matmul(f, cols[j], out=out[j, a:b])
        else:
            np.matmul(f, cols, out=out[a:b])


def _column_products(
    cols: np.ndarray, lo: int, hi: int, fbuf: np.ndarray, w: np.ndarray, out: np.ndarray
) -> None:
    """``out[:hi - lo]`` = the rows ``lo:hi`` of the summary columns ``cols`` (one int8 row a
    column, ``Summary.part_columns``) times ``w``: ``COLUMN_BLOCK`` of each column converted
    to float32 at a time, then one vector-matrix product (each row of the block contiguous:
    at 15 columns, about half the time of the row-major blocks' matrix-vector products)."""
    m = hi - lo
    for a in range(0, m, COLUMN_BLOCK):
        b = min(a + COLUMN_BLOCK, m)
        f = fbuf[:, : b - a]
        np.copyto(f, cols[:, lo + a : lo + b], casting="unsafe")
        np.matmul(w, f, out=out[a:b])


def _summary_block(
    scan: _Scan,
    summ: Summary,
    bound: _Bound,
    bufs: tuple[np.ndarray, ...],
    matrix: np.ndarray,
    n2_app: np.ndarray,
    n2_beh: np.ndarray,
    qq: _Query,
    idx: np.ndarray | None,
    lo: int,
    hi: int,
    shared: list[float],
) -> None:
    """One super-block through the summary bound: the summary rows (a quarter of the
    matrix's bytes) are converted and multiplied instead of the rows, and only the rows
    the bound cannot rule out are scored exactly. When the floor is still low the k most
    promising rows are scored first to raise it; when the bound rules out too few rows
    (data the summary does not fit) the block, and the rest of this worker's scan, take
    the full path instead (rows already scored are not scored twice).

    A structured query with both parts, once there is a floor, takes two stages: a row
    scores at most its behaviour part's bound plus the appearance term at its largest (2 x
    (1 - 0.7): look <= 1), so the behaviour products come first and only the rows that
    bound leaves get appearance products (gathered: 1-20% of the rows of the 10**6
    fixture's blocks; all of them when it leaves more than 1 / ``TWO_STAGE_SHARE``)."""
    k = scan.k
    m = hi - lo
    sbuf, fbuf, t_buf = bufs[:3]
    t = t_buf[..., :m]
    by_part = t.ndim == 2
    among = None  # the positions ``v`` holds (None: all m)
    floor = max(scan.floor(), shared[0])
    if bound.two_stage and floor != -math.inf:
        # the behaviour products of every row, the appearance's only where they leave a chance
        if idx is None:  # the behaviour part's own columns
            _column_products(bound.behaviour, lo, hi, bufs[3], bound.behaviour_col, t[1])
        else:
            cols = bound.cols[1:]
            _products(summ.data, idx, lo, hi, SUMMARY_BLOCK, sbuf, fbuf, cols, t[1:], True)
        among = bound.behaviour_keep(t[1], floor)
        if len(among) > m // TWO_STAGE_SHARE:  # (a gathered row costs more than a row in turn)
            among = None
            _products(summ.data, idx, lo, hi, SUMMARY_BLOCK, sbuf, fbuf, bound.cols[:1], t, True)
            v = bound.values(t)
        else:
            at = among + lo if idx is None else idx[lo:hi][among]
            tc = np.empty((2, len(among)), dtype=np.float32)
            np.take(t[1], among, out=tc[1])
            look = bound.cols[:1]  # (the appearance column)
            _products(summ.data, at, 0, len(at), SUMMARY_BLOCK, sbuf, fbuf, look, tc, True)
            v = bound.values(tc)
    else:
        _products(summ.data, idx, lo, hi, SUMMARY_BLOCK, sbuf, fbuf, bound.cols, t, by_part)
        v = bound.values(t)

    def rows_of(pos: np.ndarray) -> np.ndarray:
        if among is not None:
            pos = among[pos]
        return pos + lo if idx is None else idx[lo:hi][pos]

    found = bound.keep(v, max(scan.floor(), shared[0]))
    first = None
    if found is None or len(found[0]) > max(4 * k + 64, m // 64):
        # raise the floor with the k rows of best bound (all of them when unbounded)
        if found is None:  # no floor yet: the best of the first eighth will do
            vals = v[: max(SUMMARY_SUPER // 8, k)]
            pos = np.arange(len(vals))
        else:
            pos, vals = found
        if len(pos) > k:
            pos = np.sort(pos[np.argpartition(vals, len(vals) - k)[len(vals) - k :]])
        first = pos
        _merge(scan, matrix, n2_app, n2_beh, qq, rows_of(first), shared)
        found = bound.keep(v, max(scan.floor(), shared[0]))
        if found is not None:
            found = (np.setdiff1d(found[0], first, assume_unique=True), found[1])
    if found is None or len(found[0]) > max(m // 8, 4 * k + 64):
        scan.summary_works = False
        done = None if first is None else rows_of(first)
        for a in range(lo, hi, SUPER):
            _full_block(scan, matrix, n2_app, n2_beh, qq, idx, a, min(a + SUPER, hi), shared, done)
        return
    _merge(scan, matrix, n2_app, n2_beh, qq, rows_of(found[0]), shared)


def _full_block(
    scan: _Scan,
    matrix: np.ndarray,
    n2_app: np.ndarray,
    n2_beh: np.ndarray,
    qq: _Query,
    idx: np.ndarray | None,
    lo: int,
    hi: int,
    shared: list[float],
    done: np.ndarray | None = None,
) -> None:
    """One super-block by its rows: blocked conversion, safe-margin keys, exact re-rank
    (``done``: rows already scored, left out)."""
    k = scan.k
    m = hi - lo
    dots = scan.dots_buf[:m]
    _products(matrix, idx, lo, hi, BLOCK, scan.ibuf, scan.fbuf, qq.cols, dots)
    if idx is None:
        n2a, n2b = n2_app[lo:hi], n2_beh[lo:hi]
    else:
        n2a, n2b = n2_app[idx[lo:hi]], n2_beh[idx[lo:hi]]
    floor = max(scan.floor(), shared[0])
    cand = _prefilter(dots, n2a, n2b, qq, floor)
    if cand is None or 2 * len(cand) > m:
        key = _keys(dots, n2a, n2b, qq, scan.key_buf)
        cand = np.flatnonzero(key >= _down(floor - KEY_ERROR))
        ck = key[cand]
    else:
        ck = _keys(dots[cand], n2a[cand], n2b[cand], qq, scan.key_buf)
        keep = ck >= _down(floor - KEY_ERROR)
        cand, ck = cand[keep], ck[keep]
    if len(cand) > 4 * k + 64:
        # k rows of this block have key >= kth, hence score > kth - KEY_ERROR
        kth = float(np.partition(ck, len(ck) - k)[len(ck) - k])
        floor = max(floor, kth - KEY_ERROR)
        cand = cand[ck >= _down(floor - KEY_ERROR)]
    rows = cand + lo if idx is None else idx[lo:hi][cand]
    if done is not None:
        rows = np.setdiff1d(rows, done, assume_unique=True)
    _merge(scan, matrix, n2_app, n2_beh, qq, rows, shared)


def _scan(
    scan: _Scan,
    matrix: np.ndarray,
    n2_app: np.ndarray,
    n2_beh: np.ndarray,
    qq: _Query,
    idx: np.ndarray | None,
    spans: Sequence[tuple[int, int]],
    shared: list[float],
    summ: Summary | None = None,
) -> None:
    """Scan the super-blocks ``spans`` (ranges of rows, or of ``idx`` positions); ``shared``
    holds the best floor any worker has proved (a lower bound of the final k-th score)."""
    m_out = 2 if qq.metric == "structured" else 1
    scan.dots_buf = (
        np.empty((SUPER, m_out), dtype=np.float32)
        if m_out == 2
        else np.empty(SUPER, dtype=np.float32)
    )
    scan.key_buf = np.empty(SUPER, dtype=np.float32)
    bound = None
    if summ is not None:
        bound = _Bound(summ, qq)
        width = summ.data.shape[1]
        bufs: tuple[np.ndarray, ...] = (
            np.empty((SUMMARY_BLOCK, width), dtype=np.int8),
            np.empty((SUMMARY_BLOCK, width), dtype=np.float32),
            np.empty(bound.cols.shape[:-1] + (SUMMARY_SUPER,), dtype=np.float32),
        )
        if bound.two_stage:
            bufs += (np.empty((len(bound.behaviour_col), COLUMN_BLOCK), dtype=np.float32),)
    for lo, hi in spans:
        if bound is not None and summ is not None and scan.summary_works:
            _summary_block(scan, summ, bound, bufs, matrix, n2_app, n2_beh, qq, idx, lo, hi, shared)
        else:
            for a in range(lo, hi, SUPER):
                _full_block(scan, matrix, n2_app, n2_beh, qq, idx, a, min(a + SUPER, hi), shared)


def topk(
    matrix: np.ndarray,
    n2_app: np.ndarray,
    n2_beh: np.ndarray,
    query: np.ndarray,
    k: int,
    metric: str,
    *,
    rows: np.ndarray | None = None,
    tie: np.ndarray | None = None,
    threads: int | None = None,
) -> Result:
    """The ``k`` rows of ``matrix`` most similar to ``query`` and their scores, best first.

    ``matrix`` int8 (N, 64) (a read-only view or memory map is fine); ``n2_app`` and
    ``n2_beh`` the rows' squared norms over the appearance and behaviour dims (any integer
    dtype); ``query`` int8 (64,); ``metric`` one of ``similarity.METRICS``. ``rows``
    restricts the candidates (a bool mask, or row indices taken as a set). Order: score
    descending, then ``tie`` ascending (default: the row index), then row index.

    Returns (row indices int64, scores float64), ``min(k, #candidates)`` long: exactly the
    brute force's first k (``similarity.similarity`` + ``np.lexsort``), scores bit for bit.
    ``threads`` (1 or 2; default: the count measured faster in this process,
    ``threads.Measured``) splits the scan; it never changes results.
    """
    q = _query(query)
    _check(matrix, n2_app, n2_beh, k, metric, tie)
    idx = _row_indices(rows, matrix.shape[0])
    total = matrix.shape[0] if idx is None else len(idx)
    if k == 0 or total == 0:
        return _empty()
    if _all_zero(q, metric):
        return _zero_query(matrix, n2_app, n2_beh, q, k, metric, idx, tie)
    qq = _Query(q, metric)
    with _single_threaded_blas():
        summ = None
        if total >= SUMMARY_MIN_ROWS and qq.q2:
            summ = cached(matrix, kind_for(metric), NA, SUMMARY_MIN_ROWS)
        if summ is None:
            spans = [(lo, min(lo + SUPER, total)) for lo in range(0, total, SUPER)]
        else:  # a short first span: its best rows give the floor the rest is pruned with
            first = min(SUMMARY_SUPER // 8, total)
            spans = [(0, first)] + [
                (lo, min(lo + SUMMARY_SUPER, total)) for lo in range(first, total, SUMMARY_SUPER)
            ]
        wanted, timed = (threads, False) if threads else MEASURED.choose(total)
        workers = max(1, min(wanted, len(spans), 2))
        started = time.perf_counter()
        shared = [-math.inf]
        scans = [_Scan(k, tie) for _ in range(workers)]
        _run(
            _scan,
            [
                (scans[w], matrix, n2_app, n2_beh, qq, idx, spans[w::workers], shared, summ)
                for w in range(workers)
            ],
        )  # interleaved spans: every worker raises the shared floor from the start
        if timed and workers == wanted:
            MEASURED.note(workers, time.perf_counter() - started, total)
    return _top(
        np.concatenate([s.rows for s in scans]),
        np.concatenate([s.scores for s in scans]),
        tie,
        k,
    )
