"""Exact top-k over int8 vectors: the ``k`` rows most similar to a query (or to each query
of a batch) under the three metrics of ``vault.embedding.similarity`` — the same rows, in
the same order, with the same float64 scores, bit for bit, as scoring every row with
``similarity.similarity`` and sorting with ``np.lexsort((row, tie, -score))`` — without
scoring every row exactly and without a float32 copy of the matrix.

Single query (``topk``), one pass over the int8 matrix:

1. **Blocked conversion.** ``BLOCK`` rows at a time are converted to float32 (a 1 MiB
   buffer that stays in cache) and multiplied by the query: exact integer dot products,
   since every partial sum is at most 64 * 128**2 = 2**20 < 2**24 in magnitude (float32 is
   exact under any BLAS kernel, summation order or thread count).
2. **Floor.** ``floor`` is always a lower bound of the final k-th best score: the k-th
   best *exact* score among rows scored so far, or the k-th largest ``key - KEY_ERROR`` of
   a super-block (k distinct rows each score more than that).
3. **Safe-margin selection**, per super-block of ``SUPER`` rows: a cheap bound from the raw
   dots and the block's smallest norm (``_prefilter``), then a float32 *key* per surviving
   row, within 1e-6 of its score (proved per metric in ``_keys``). A row whose upper bound
   (key + KEY_ERROR) is below ``floor`` scores strictly below the final k-th best, so it
   cannot be in the top k whatever the ties, and is skipped; thresholds are rounded
   toward keeping rows.
4. **Exact re-rank.** Candidates get exact integer dots (``similarity.exact_dots``) and
   their scores from ``similarity.scores`` — the function the brute force uses, on the
   same integers, elementwise — so the scores are bit-identical; they are ordered by
   (score desc, tie asc, row asc). The candidates include the whole true top k, so their
   top k is the true top k. Which rows become candidates depends on block order and
   threads; the result does not.

Batch (``topk_batch``): a block of rows times a chunk of queries in one float32 product
of *normalized* operands (rows scaled by 1/|x| per part, queries by 1/|q|), which
approximates the cosines within 4.2e-6 (proved in ``_Batch.chunk``). Per query and block
the largest key bounds the whole block (block-max pruning, with monotone float rounding),
each query keeps its k largest keys to raise its floor, and only the rare (query, block)
pairs that can still reach a query's floor are examined row by row; survivors are then
re-ranked exactly as above. ``euclidean`` bounds its score through the cosine and the two
norms (upper and lower bounds kept apart, see ``_Batch``).

Threads: one by default; with ``threads=2`` (or ``VAULT_TOPK_THREADS=2``, see
``default_threads``) large scans split their blocks over two worker threads (numpy releases
the GIL in conversions, products and comparisons). Scans run numpy's OpenBLAS
single-threaded (``_single_threaded_blas``: its spin-waiting threads are several times slower
on a busy 2-core machine); neither changes any result. The process-wide BLAS thread count
is restored when the last scan ends.

Memory: a few MiB of buffers beyond the caller's arrays; the matrix may be a read-only
memory map. Precondition: ``n2_app`` / ``n2_beh`` are the rows' squared norms over the
appearance / behaviour dims (as the table stores them).
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from vault.config import SIMILARITIES as METRICS
from vault.embedding.embedder import DIM
from vault.embedding.similarity import (
    APPEARANCE_BONUS,
    APPEARANCE_DIMS,
    APPEARANCE_GATE,
    BEHAVIOUR_DIMS,
    exact_dots,
    scores,
)
from vault.embedding.summary import Summary, cached

# The two dim groups are contiguous: appearance [0, NA), behaviour [NA, DIM).
NA = int(APPEARANCE_DIMS.sum())
if not (APPEARANCE_DIMS[:NA].all() and BEHAVIOUR_DIMS[NA:].all() and not BEHAVIOUR_DIMS[:NA].any()):
    raise ImportError("topk assumes appearance dims [0, NA) and behaviour dims [NA, DIM)")

BLOCK = 4096  # rows per float32 conversion (1 MiB buffer)
SUPER = 65536  # rows per key / selection pass of a single query
SUMMARY_BLOCK = 32768  # summary rows per conversion (4 MiB float32 at 32 columns)
SUMMARY_SUPER = 262144  # rows per selection pass of a summary scan
SUMMARY_MIN_ROWS = 1 << 17  # scans of fewer rows never use (nor build) a summary
BATCH_BLOCK = 2048  # rows per block of a batch
BATCH_QUERIES = 128  # queries per matrix product of a batch (output 1 MiB)
# |key - score| < 1e-6 for a single query (16 float32 ulps, see _keys) and < 1.3e-5 for a
# batch (see _Batch.chunk); the margins have 10x and 3x slack. The float64 scores
# themselves are within 1e-15 of the real values, far inside either margin.
KEY_ERROR = 1e-5
BATCH_KEY_ERROR = 4e-5

Result = tuple[np.ndarray, np.ndarray]

if TYPE_CHECKING:  # the pool is made on the first threaded scan (few queries need one)
    from concurrent.futures import ThreadPoolExecutor


# ---------------------------------------------------------------------------------------
# helpers


def _down(x: float) -> np.float32:
    """The largest float32 <= x (so ``key < _down(x)`` implies ``key < x``)."""
    if x == -math.inf:
        return np.float32(-np.inf)
    f = np.float32(x)
    if float(f) > x:
        f = np.nextafter(f, np.float32(-np.inf))
    return f


def _down_all(x: np.ndarray) -> np.ndarray:
    """Elementwise ``_down``: float32 values <= the float64 ``x``."""
    f = x.astype(np.float32)
    over = f.astype(np.float64) > x
    f[over] = np.nextafter(f[over], np.float32(-np.inf))
    return f


def _check(
    matrix: np.ndarray,
    n2_app: np.ndarray,
    n2_beh: np.ndarray,
    k: int,
    metric: str,
    tie: np.ndarray | None,
) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown similarity {metric!r} (known: {', '.join(METRICS)})")
    if matrix.dtype != np.int8 or matrix.ndim != 2 or matrix.shape[1] != DIM:
        raise ValueError(f"matrix must be int8 (N, {DIM}), got {matrix.dtype} {matrix.shape}")
    n = matrix.shape[0]
    for name, col in (("n2_app", n2_app), ("n2_beh", n2_beh)) + (
        (("tie", tie),) if tie is not None else ()
    ):
        if col.shape != (n,) or col.dtype.kind not in "iu":
            raise ValueError(f"{name} must be an integer array of shape ({n},)")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")


def _query(query: np.ndarray) -> np.ndarray:
    q = np.asarray(query)
    if q.dtype != np.int8 or q.shape != (DIM,):
        raise ValueError(f"query must be int8 ({DIM},), got {q.dtype} {q.shape}")
    return q


def _row_indices(rows: np.ndarray | None, n: int) -> np.ndarray | None:
    """Candidate rows as sorted unique int64 indices, or None for all rows."""
    if rows is None:
        return None
    r = np.asarray(rows)
    if r.dtype == bool:
        if r.shape != (n,):
            raise ValueError(f"a row mask must have shape ({n},)")
        idx = np.flatnonzero(r)
    else:
        if r.ndim != 1 or (r.size and r.dtype.kind not in "iu"):
            raise ValueError("rows must be a bool mask or a 1-d array of row indices")
        idx = np.unique(r.astype(np.int64))
        if idx.size and (idx[0] < 0 or idx[-1] >= n):
            raise ValueError(f"row index out of range 0..{n - 1}")
    return None if idx.size == n else idx.astype(np.int64)


def _parts(q: np.ndarray) -> np.ndarray:
    """(DIM, 2) int64: the query's appearance part and behaviour part as two columns (the
    second argument ``similarity.similarity`` gives ``exact_dots``)."""
    parts = np.zeros((DIM, 2), dtype=np.int64)
    parts[:NA, 0] = q[:NA]
    parts[NA:, 1] = q[NA:]
    return parts


def _exact(
    matrix: np.ndarray,
    n2_app: np.ndarray,
    n2_beh: np.ndarray,
    q: np.ndarray,
    rows: np.ndarray,
    metric: str,
) -> np.ndarray:
    """The exact scores of ``rows``: ``similarity.scores`` of exact integer dots and norms
    (the same integers, hence the same float64 values, as ``similarity.similarity``)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float64)
    dots = exact_dots(matrix[rows], _parts(q))
    return scores(dots, n2_app[rows].astype(np.int64), n2_beh[rows].astype(np.int64), q, metric)


def _ties(rows: np.ndarray, tie: np.ndarray | None) -> np.ndarray:
    return rows if tie is None else tie[rows]


def _top(rows: np.ndarray, s: np.ndarray, tie: np.ndarray | None, k: int) -> Result:
    """The best ``k`` of ``rows`` by (score desc, tie asc, row asc), best first — in O(len)
    plus a sort of k items (and of the rows tied with the k-th best, when there are many)."""
    if len(rows) > k:
        kth = np.partition(s, len(s) - k)[len(s) - k]
        above = np.flatnonzero(s > kth)
        level = np.flatnonzero(s == kth)
        need = k - len(above)
        if len(level) > need:
            level = level[np.lexsort((rows[level], _ties(rows[level], tie)))[:need]]
        keep = np.concatenate([above, level])
        rows, s = rows[keep], s[keep]
    order = np.lexsort((rows, _ties(rows, tie), -s))
    return rows[order], s[order]


def _empty() -> Result:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)


def _all_zero(q: np.ndarray, metric: str) -> bool:
    """Whether every row scores exactly 0.0 against ``q`` (cosine or structured with a zero
    query: ``similarity._cos`` gives 0 for a zero norm, and the bonus is then 0)."""
    return metric != "euclidean" and not q.any()


def _zero_query(
    matrix: np.ndarray,
    n2_app: np.ndarray,
    n2_beh: np.ndarray,
    q: np.ndarray,
    k: int,
    metric: str,
    idx: np.ndarray | None,
    tie: np.ndarray | None,
) -> Result:
    """Every score is 0.0: the first k rows by (tie, row)."""
    rows = np.arange(matrix.shape[0], dtype=np.int64) if idx is None else idx
    if len(rows) > k:
        t = _ties(rows, tie).astype(np.int64)
        kth = np.partition(t, k - 1)[k - 1]
        rows = rows[t <= kth]
        rows = rows[np.lexsort((rows, _ties(rows, tie)))[:k]]
    s = _exact(matrix, n2_app, n2_beh, q, rows, metric)
    return _top(rows, s, tie, k)


# ---------------------------------------------------------------------------------------
# single query


class _Query:
    """One query's integers and the float32 constants of its keys."""

    def __init__(self, q: np.ndarray, metric: str):
        q64 = q.astype(np.int64)
        self.q = q
        self.metric = metric
        self.qa = int((q64[:NA] ** 2).sum())
        self.qb = int((q64[NA:] ** 2).sum())
        self.q2 = self.qa + self.qb
        qf = q.astype(np.float32)
        if metric == "structured":
            self.cols = np.zeros((DIM, 2), dtype=np.float32)
            self.cols[:NA, 0] = qf[:NA]
            self.cols[NA:, 1] = qf[NA:]
        else:
            self.cols = qf  # (DIM,): a matrix-vector product


def _keys(
    dots: np.ndarray, n2a: np.ndarray, n2b: np.ndarray, qq: _Query, out: np.ndarray
) -> np.ndarray:
    """Float32 keys of rows with exact float32 integer ``dots`` ((m,) or (m, 2)) and squared
    part norms ``n2a``, ``n2b``: ``|key - score| <= 16 u`` (u = 2**-24), proved per metric
    below. Integers up to 2**24 are exact in float32; every rounded operation below has
    relative error <= u; a norm of 0 comes with a dot of 0, and ``max(., 0.25)`` keeps
    0 / 0.5 = 0 = the exact score (``similarity._cos`` gives 0 for a zero norm)."""
    m = len(n2a)
    key = out[:m]
    if qq.metric == "cosine":
        # key = d / sqrt(fl(n * q2)): product u, sqrt u + u/2, division u -> <= 3 u |cos|.
        den = np.add(n2a, n2b, dtype=np.float32)  # exact (< 2**21)
        np.multiply(den, np.float32(qq.q2), out=den)
        np.maximum(den, np.float32(0.25), out=den)
        np.sqrt(den, out=den)
        np.divide(dots, den, out=key)
    elif qq.metric == "euclidean":
        # d2 = n + q2 - 2d and n are exact integers; s = sqrt(d2) (u), r = sqrt(n) +
        # fl(sqrt(q2)) (<= 2u + u), s / r (<= 4u + u, and s/r <= 1 since |a-b| <= |a|+|b|),
        # 1 - s/r (u): <= 6 u. r = 0 only when d2 = 0 too: max(r, 1) gives key 1 = score.
        n = np.add(n2a, n2b, dtype=np.float32)
        d2 = np.multiply(dots, np.float32(-2.0))
        d2 += np.float32(qq.q2)
        d2 += n
        np.sqrt(d2, out=d2)
        np.sqrt(n, out=n)
        n += np.float32(math.sqrt(qq.q2))
        np.maximum(n, np.float32(1.0), out=n)
        np.divide(d2, n, out=d2)
        np.subtract(np.float32(1.0), d2, out=key)
    else:
        # look, act as the cosine key (<= 3u each); look - 0.7 with 0.7 rounded to float32
        # (<= 0.2u) and the subtraction (u); x2 exact; the sum (<= 1.6u):
        # <= 3u + 2 (3u + 1.2u) + 1.6u < 16 u.
        look = np.multiply(n2a, np.float32(qq.qa), dtype=np.float32)
        np.maximum(look, np.float32(0.25), out=look)
        np.sqrt(look, out=look)
        np.divide(dots[:, 0], look, out=look)
        act = np.multiply(n2b, np.float32(qq.qb), dtype=np.float32)
        np.maximum(act, np.float32(0.25), out=act)
        np.sqrt(act, out=act)
        np.divide(dots[:, 1], act, out=act)
        look -= np.float32(APPEARANCE_GATE)
        np.maximum(look, np.float32(0.0), out=look)
        look *= np.float32(APPEARANCE_BONUS)
        np.add(act, look, out=key)
    return key


def _nmin(n: np.ndarray) -> int:
    """The smallest non-zero value of ``n`` (0 if all are 0)."""
    low = int(n.min())
    if low == 0 and n.any():
        low = int(n[n > 0].min())
    return low


def _prefilter(
    dots: np.ndarray, n2a: np.ndarray, n2b: np.ndarray, qq: _Query, floor: float
) -> np.ndarray | None:
    """Rows of a super-block that may still score >= ``floor`` (a superset, found from
    the raw exact dots with one bound per super-block), or None when no cheap bound
    applies (``floor`` too low). Each bound uses the smallest non-zero norm n_min of the
    super-block; zero-norm rows have dot 0 and score 0 (or, for euclidean, are caught as
    dot 0 < a positive threshold), so they are never wrongly dropped:

    * cosine: for d >= 0, d / sqrt(n q2) <= d / sqrt(n_min q2); so a row with
      d < f sqrt(n_min q2) (f = floor - KEY_ERROR > 0) scores < f (d < 0 scores < 0).
    * euclidean: with a = |x|, b = |q|, c the cosine, m = ab / (a+b)**2 <= 1/4:
      score = 1 - sqrt(1 - 2m(1 + c)) <= g(c) = 1 - sqrt((1 - c) / 2), increasing in c;
      g(c) < f iff c < 1 - 2 (1 - f)**2: the cosine bound with that threshold.
    * structured: act <= max(d_b, 0) / sqrt(nb_min qb), and look - 0.7 < 0 when d_a < 0,
      so score <= V = max(d_b, 0) B_b + 2 max(0, d_a B_a - 0.7) with B = 1 / sqrt(n_min
      q); V is computed in float32 with B rounded up (error < 2e-6) and compared with
      floor - 2 KEY_ERROR.
    The float64 thresholds carry a relative slack of 1e-9 and are rounded down to float32.
    """
    f = floor - KEY_ERROR
    if qq.metric == "structured":
        if f - KEY_ERROR <= 0.0:
            return None
        v = np.zeros(len(dots), dtype=np.float32)
        if qq.qb:
            nb = _nmin(n2b)
            if nb == 0:  # every behaviour part is 0: act = 0
                pass
            else:
                bb = np.float32(1.0 / math.sqrt(nb * qq.qb) * (1.0 + 1e-6))
                np.maximum(dots[:, 1], np.float32(0.0), out=v)
                v *= bb
        if qq.qa:
            na = _nmin(n2a)
            if na:
                ba = np.float32(1.0 / math.sqrt(na * qq.qa) * (1.0 + 1e-6))
                look = np.multiply(dots[:, 0], ba)
                look -= np.float32(APPEARANCE_GATE)
                np.maximum(look, np.float32(0.0), out=look)
                look *= np.float32(APPEARANCE_BONUS)
                v += look
        return np.flatnonzero(v >= _down(f - KEY_ERROR))
    if f <= 0.0:
        return None
    if qq.metric == "euclidean":
        if f > 1.0:
            return np.zeros(0, dtype=np.int64)
        f = 1.0 - 2.0 * (1.0 - f) ** 2
        if f <= 0.0:
            return None
    n = n2a + n2b
    low = _nmin(n)
    return np.flatnonzero(dots >= _down(f * math.sqrt(low * qq.q2) * (1.0 - 1e-9)))


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
    the summary product t of a row (one column; two for structured) bounds its cosine
    (or each part's cosine) as u . q <= t + B, so ``keep`` returns a superset of the rows
    that can score >= a floor, and a value to order them by (larger = more promising)."""

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
            self.cols = np.stack(cols, axis=1)  # (K, parts)
        else:
            w, b, qn = summ.column(qq.q, None)
            self.cols = w
            self.consts, self.norms = [b], [qn]

    def keep(self, t: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows, values) that may score >= ``floor``, or None when none can be dropped.

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
            v = np.zeros(len(t), dtype=np.float32)
            for j, part in enumerate(self.parts):
                x = t[:, j] + np.float32(self.consts[j])
                x *= np.float32(1.0 / self.norms[j])
                if part == 0:
                    x -= np.float32(APPEARANCE_GATE)
                    np.maximum(x, np.float32(0.0), out=x)
                    x *= np.float32(APPEARANCE_BONUS)
                v += x
            rows = np.flatnonzero(v >= _down(floor - KEY_ERROR))
            return rows, v[rows]
        f = floor
        if self.metric == "euclidean":
            if f > 1.0:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            f = 1.0 - 2.0 * (1.0 - f) ** 2
        qn, b = self.norms[0], self.consts[0]
        thr = f * qn - b - 1e-12 * ((abs(f) + 1.0) * qn + b)
        rows = np.flatnonzero(t >= _down(thr))
        return rows, t[rows]


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
) -> None:
    """``out[:hi - lo]`` = the int8 rows ``lo:hi`` of ``data`` (or of ``data[idx]``) times
    ``cols``, converted to float32 ``block`` rows at a time through the caller's buffers
    (exact integers: see the module docstring)."""
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
        np.matmul(f, cols, out=out[a:b])


def _summary_block(
    scan: _Scan,
    summ: Summary,
    bound: _Bound,
    bufs: tuple[np.ndarray, np.ndarray, np.ndarray],
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
    the full path instead (rows already scored are not scored twice)."""
    k = scan.k
    m = hi - lo
    sbuf, fbuf, t_buf = bufs
    t = t_buf[:m]
    _products(summ.data, idx, lo, hi, SUMMARY_BLOCK, sbuf, fbuf, bound.cols, t)

    def rows_of(pos: np.ndarray) -> np.ndarray:
        return pos + lo if idx is None else idx[lo:hi][pos]

    found = bound.keep(t, max(scan.floor(), shared[0]))
    first = None
    if found is None or len(found[0]) > max(4 * k + 64, m // 64):
        # raise the floor with the k rows of best bound (all of them when unbounded)
        if found is None:  # no floor yet: the best of the first eighth will do
            head = t[: max(SUMMARY_SUPER // 8, k)]
            vals = head if head.ndim == 1 else head.sum(axis=1)
            pos = np.arange(len(vals))
        else:
            pos, vals = found
        if len(pos) > k:
            pos = np.sort(pos[np.argpartition(vals, len(vals) - k)[len(vals) - k :]])
        first = pos
        _merge(scan, matrix, n2_app, n2_beh, qq, rows_of(first), shared)
        found = bound.keep(t, max(scan.floor(), shared[0]))
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
        bufs = (
            np.empty((SUMMARY_BLOCK, width), dtype=np.int8),
            np.empty((SUMMARY_BLOCK, width), dtype=np.float32),
            np.empty((SUMMARY_SUPER,) + bound.cols.shape[1:], dtype=np.float32),
        )
    for lo, hi in spans:
        if bound is not None and summ is not None and scan.summary_works:
            _summary_block(scan, summ, bound, bufs, matrix, n2_app, n2_beh, qq, idx, lo, hi, shared)
        else:
            for a in range(lo, hi, SUPER):
                _full_block(scan, matrix, n2_app, n2_beh, qq, idx, a, min(a + SUPER, hi), shared)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vault-topk")
        return _POOL


def _run(fn: Callable[..., None], jobs: list[tuple[object, ...]]) -> None:
    """``fn(*job)`` for each job, on the pool when there are several (numpy releases the
    GIL in conversions, products and comparisons)."""
    if len(jobs) == 1:
        fn(*jobs[0])
        return
    for fut in [_pool().submit(fn, *job) for job in jobs]:
        fut.result()


# numpy's bundled OpenBLAS: its worker threads spin-wait for each other, which on a busy
# 2-core machine makes a threaded product several times slower than a single-threaded one
# (measured: 450 vs 1600 queries/s). The scans split work over their own threads instead
# and run BLAS single-threaded meanwhile. Thread counts never change results.
_BLAS: tuple[Callable[[], int], Callable[[int], None]] | None = None
_BLAS_LOOKED = False
_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_SAVED = 0


def _openblas() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """get / set of the thread count of numpy's scipy-openblas, if that is its BLAS."""
    global _BLAS, _BLAS_LOOKED
    if not _BLAS_LOOKED:
        _BLAS_LOOKED = True
        try:
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "scipy_openblas" in line}
            for path in sorted(paths):
                lib = ctypes.CDLL(path)
                for suffix in ("64_", ""):
                    get = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
                    put = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None)
                    if get is not None and put is not None:
                        get.restype = ctypes.c_int
                        put.argtypes = [ctypes.c_int]
                        _BLAS = (get, put)
                        break
                if _BLAS is not None:
                    break
        except (OSError, AttributeError, IndexError):
            _BLAS = None
    return _BLAS


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    global _BLAS_USERS, _BLAS_SAVED
    blas = _openblas()
    if blas is None:
        yield
        return
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            _BLAS_SAVED = blas[0]()
            blas[1](1)
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                blas[1](_BLAS_SAVED)


THREADS_ENV = "VAULT_TOPK_THREADS"  # "2": a large scan splits over two worker threads


def default_threads(rows: int) -> int:
    """Worker threads for a scan of ``rows`` rows: 1, unless ``VAULT_TOPK_THREADS=2`` says a
    second one was measured faster on this machine (``benchmarks/bench.py`` times both).
    Measured on a 2-vCPU Xeon, exact top-10 over 10**6 rows: 14.8 ms on one thread, 16.9 on
    two — the old rule (two when the 1-minute load average left a core idle) counted this
    process's own load and picked the slower. Results never depend on it."""
    if rows < 4 * SUPER or os.environ.get(THREADS_ENV) != "2" or (os.cpu_count() or 1) < 2:
        return 1
    return 2


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
    ``threads`` (1 or 2; default ``default_threads``) splits the scan; it never changes
    results.
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
            kind = "parts" if metric == "structured" else "full"
            summ = cached(matrix, kind, NA, SUMMARY_MIN_ROWS)
        step = SUPER if summ is None else SUMMARY_SUPER
        spans = [(lo, min(lo + step, total)) for lo in range(0, total, step)]
        workers = max(1, min(threads or default_threads(total), len(spans), 2))
        shared = [-math.inf]
        scans = [_Scan(k, tie) for _ in range(workers)]
        _run(
            _scan,
            [
                (scans[w], matrix, n2_app, n2_beh, qq, idx, spans[w::workers], shared, summ)
                for w in range(workers)
            ],
        )  # interleaved spans: every worker raises the shared floor from the start
    return _top(
        np.concatenate([s.rows for s in scans]),
        np.concatenate([s.scores for s in scans]),
        tie,
        k,
    )


# ---------------------------------------------------------------------------------------
# batch


def _row_scales(n2: np.ndarray) -> np.ndarray:
    """float32 (m, 1): 1 / sqrt(n) (rel. error <= 2u; 2 for a zero norm, whose row is 0)."""
    c = n2.astype(np.float32)
    np.maximum(c, np.float32(0.25), out=c)
    np.sqrt(c, out=c)
    np.divide(np.float32(1.0), c, out=c)
    return c[:, None]


def _query_scales(norms2: np.ndarray) -> np.ndarray:
    """float32 (Q, 1): 1 / sqrt(n) rounded once from float64 (0 for a zero part)."""
    out = np.zeros(len(norms2), dtype=np.float64)
    nz = norms2 > 0
    out[nz] = 1.0 / np.sqrt(norms2[nz].astype(np.float64))
    return out.astype(np.float32)[:, None]


def topk_batch(
    matrix: np.ndarray,
    n2_app: np.ndarray,
    n2_beh: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str,
    *,
    rows: np.ndarray | None = None,
    tie: np.ndarray | None = None,
    threads: int | None = None,
) -> list[Result]:
    """``topk`` of every row of ``queries`` (int8 (Q, 64)), in one pass over the matrix:
    ``[topk(matrix, n2_app, n2_beh, q, k, metric, rows=rows, tie=tie) for q in queries]``,
    bit for bit. ``threads`` as for ``topk``."""
    qs = np.asarray(queries)
    if qs.dtype != np.int8 or qs.ndim != 2 or qs.shape[1] != DIM:
        raise ValueError(f"queries must be int8 (Q, {DIM}), got {qs.dtype} {qs.shape}")
    _check(matrix, n2_app, n2_beh, k, metric, tie)
    idx = _row_indices(rows, matrix.shape[0])
    total = matrix.shape[0] if idx is None else len(idx)
    nq = qs.shape[0]
    if k == 0 or total == 0:
        return [_empty() for _ in range(nq)]
    out: list[Result | None] = [None] * nq
    zero = ~qs.any(axis=1)
    for i in np.flatnonzero(zero).tolist():  # no direction: the single-query path
        out[i] = topk(matrix, n2_app, n2_beh, qs[i], k, metric, rows=idx, tie=tie)
    live = np.flatnonzero(~zero)
    if len(live):
        for i, res in zip(
            live.tolist(),
            _batch(matrix, n2_app, n2_beh, qs[live], k, metric, idx, total, tie, threads),
            strict=True,
        ):
            out[i] = res
    return [r if r is not None else _empty() for r in out]


_COS_ERROR = 1e-5  # > 4.2e-6, the error of a batch cosine (see _Batch.chunk)


class _Batch:
    """The state of a batch scan: per query, the k largest lower bounds seen (``best``),
    the floor they prove, and the (query, row, upper bound) candidates kept so far.

    cosine / structured: the key K approximates the score within 1.3e-5, so K - MARGIN is
    a lower and K + MARGIN an upper bound; ``best`` holds keys and the margin is applied
    when comparing (``shift`` = MARGIN). euclidean: explicit float32 bounds (``shift`` 0)."""

    def __init__(self, nq: int, k: int, floor: np.ndarray, metric: str, qnorm: np.ndarray):
        self.k = k
        self.metric = metric
        self.qnorm = qnorm  # |q| (float64), for euclidean bounds
        self.shift = 0.0 if metric == "euclidean" else BATCH_KEY_ERROR
        self.width = 2 * k + 16  # hits per (query, block) merged directly; more: partition
        self.best = np.full((nq, k), -np.inf, dtype=np.float32)
        # floor[q] <= (k-th largest lower bound seen): k distinct rows each score at least
        # that, so it is a lower bound of the final k-th best score. Workers share it: each
        # writes max(what it read, its own bound), so a value overwritten by an older one
        # is still a lower bound (aligned float64 stores are atomic).
        self.floor = floor
        self.found_q: list[np.ndarray] = []
        self.found_r: list[np.ndarray] = []
        self.found_key: list[np.ndarray] = []

    def chunk(
        self,
        rows_t: list[np.ndarray],
        queries: list[np.ndarray],
        c0: int,
        ids: np.ndarray,
        row_norm: np.ndarray | None,
    ) -> None:
        """One block of rows (``rows_t``: scaled, transposed) against the queries ``c0``...

        Error bound: a scaled row element is fl(x_j fl(1/fl(sqrt(n)))) = (x_j/|x|)(1 + d),
        |d| <= 3.01u; a scaled query element likewise with |d| <= 2.01u; their product adds
        u; a float32 sum of m <= 64 such terms in any order, with or without FMA, errs by at
        most gamma_63 = 63u/(1 - 63u) times the sum of their magnitudes, itself <= 1 by
        Cauchy-Schwarz. So a computed cosine is within 70u < 4.2e-6 of the true one (0
        exactly for a zero part), the structured key act + 2 max(0, look - 0.7) within
        3 * 4.2e-6 + 4u (rounding 0.7, -, x2, +) < 1.3e-5; BATCH_KEY_ERROR is 4e-5.

        euclidean, with a = |x|, b = |q|, m = ab / (a + b)**2 <= 1/4 and c the cosine:
        score = 1 - sqrt(1 - 2m(1 + c)), increasing in c and in m (1 + c >= 0). With c
        within _COS_ERROR of the computed cosine: upper bound from c + err (and m <= 1/4 for
        a whole block), lower bound from c - err; float64, plus slack for rounding.

        A row is kept for a query iff its upper bound reaches the query's floor."""
        k = self.k
        shift = self.shift
        if self.metric == "structured":
            look = queries[0] @ rows_t[0]
            act = queries[1] @ rows_t[1]
            # fl is monotone, so each row's computed key act + 2 max(0, look - 0.7) is at
            # most this block bound
            bound = act.max(axis=1) + APPEARANCE_BONUS * np.maximum(
                look.max(axis=1) - np.float32(APPEARANCE_GATE), np.float32(0.0)
            )
        else:
            dots = queries[0] @ rows_t[0]  # (Q, m): approximate cosines
            bound = dots.max(axis=1)
        if self.metric == "euclidean":
            c = np.minimum(bound.astype(np.float64) + _COS_ERROR, 1.0)
            bound_hi = 1.0 - np.sqrt((1.0 - c) * 0.5) + 1e-9
        else:
            bound_hi = bound.astype(np.float64) + shift
        floor = self.floor[c0 : c0 + len(bound)]
        active = np.flatnonzero(bound_hi >= floor)
        if len(active) == 0:
            return
        if self.metric == "structured":
            hi = look[active]
            hi -= np.float32(APPEARANCE_GATE)
            np.maximum(hi, np.float32(0.0), out=hi)
            hi *= np.float32(APPEARANCE_BONUS)
            hi += act[active]
            lo = hi
        elif self.metric == "cosine":
            hi = lo = dots[active]
        else:
            assert row_norm is not None
            cos = dots[active].astype(np.float64)
            a = row_norm[None, :]
            b = self.qnorm[c0 + active][:, None]
            mm = a * b / (a + b) ** 2  # b > 0: zero queries do not come here
            up = 1.0 - 2.0 * mm * (1.0 + np.minimum(cos + _COS_ERROR, 1.0))
            hi = (1.0 - np.sqrt(np.maximum(up - 1e-12, 0.0)) + 1e-7).astype(np.float32)
            down = 1.0 - 2.0 * mm * (1.0 + np.maximum(cos - _COS_ERROR, -1.0))
            lo = (1.0 - np.sqrt(np.minimum(down + 1e-12, 1.0)) - 1e-7).astype(np.float32)
        na, m = hi.shape
        flat = np.flatnonzero(hi >= _down_all(floor[active] - shift)[:, None])
        qi = flat // m
        counts = np.bincount(qi, minlength=na)
        w = self.width
        # the block's contribution to each active query's k best lower bounds (-inf pad)
        new = np.full((na, w), -np.inf, dtype=np.float32)
        crowded = np.flatnonzero(counts > w)
        if len(crowded):
            sub = lo[crowded]
            kk = min(k, m)
            new[crowded, :kk] = np.partition(sub, m - kk, axis=1)[:, m - kk :]
            sparse = counts[qi] <= w
            flat, qi = flat[sparse], qi[sparse]
        starts = np.concatenate([[0], np.cumsum(np.minimum(counts, w) * (counts <= w))])
        rank = np.arange(len(flat)) - starts[qi]
        new[qi, rank] = lo.reshape(-1)[flat]  # rows below the floor cannot raise it
        q = c0 + active
        merged = np.concatenate([self.best[q], new], axis=1)
        top = np.partition(merged, w, axis=1)[:, w:]
        self.best[q] = top
        raised = np.maximum(floor[active], top.min(axis=1).astype(np.float64) - shift)
        floor[active] = raised
        # keep this block's hits that can still reach the raised floors
        flat = np.flatnonzero(hi >= _down_all(raised - shift)[:, None])
        if len(flat):
            qi, ri = np.divmod(flat, m)
            self.found_q.append(c0 + active[qi])
            self.found_r.append(ids[ri])
            self.found_key.append(hi.reshape(-1)[flat])


def _batch_rows(
    state: _Batch,
    matrix: np.ndarray,
    n2_app: np.ndarray,
    n2_beh: np.ndarray,
    idx: np.ndarray | None,
    total: int,
    qn: list[np.ndarray],
    metric: str,
    starts: Sequence[int],
) -> None:
    """One worker of a batch: the row blocks beginning at ``starts``, every query."""
    nq = qn[0].shape[0]
    fbuf = np.empty((BATCH_BLOCK, DIM), dtype=np.float32)
    ibuf = np.empty((BATCH_BLOCK, DIM), dtype=np.int8)
    for lo in starts:
        hi = min(lo + BATCH_BLOCK, total)
        m = hi - lo
        f = fbuf[:m]
        if idx is None:
            np.copyto(f, matrix[lo:hi], casting="unsafe")
            ids = np.arange(lo, hi, dtype=np.int64)
        else:
            ids = idx[lo:hi]
            np.take(matrix, ids, axis=0, out=ibuf[:m], mode="clip")
            np.copyto(f, ibuf[:m], casting="unsafe")
        row_norm = None
        if metric == "structured":
            f[:, :NA] *= _row_scales(n2_app[ids])
            f[:, NA:] *= _row_scales(n2_beh[ids])
            parts = [f[:, :NA].T, f[:, NA:].T]
        else:
            n2 = n2_app[ids].astype(np.int64) + n2_beh[ids]
            f *= _row_scales(n2)
            parts = [f.T]
            if metric == "euclidean":
                row_norm = np.sqrt(n2.astype(np.float64))
        for c0 in range(0, nq, BATCH_QUERIES):
            state.chunk(parts, [x[c0 : c0 + BATCH_QUERIES] for x in qn], c0, ids, row_norm)


def _batch(
    matrix: np.ndarray,
    n2_app: np.ndarray,
    n2_beh: np.ndarray,
    qs: np.ndarray,
    k: int,
    metric: str,
    idx: np.ndarray | None,
    total: int,
    tie: np.ndarray | None,
    threads: int | None,
) -> list[Result]:
    nq = qs.shape[0]
    q64 = qs.astype(np.int64)
    qf = qs.astype(np.float32)
    if metric != "structured":
        qn = [qf * _query_scales((q64**2).sum(axis=1))]
    else:
        qn = [
            qf[:, :NA] * _query_scales((q64[:, :NA] ** 2).sum(axis=1)),
            qf[:, NA:] * _query_scales((q64[:, NA:] ** 2).sum(axis=1)),
        ]
    starts = list(range(0, total, BATCH_BLOCK))
    workers = max(1, min(threads or default_threads(total), len(starts), 2))
    floor = np.full(nq, -np.inf, dtype=np.float64)
    qnorm = np.sqrt((q64**2).sum(axis=1).astype(np.float64))
    states = [_Batch(nq, k, floor, metric, qnorm) for _ in range(workers)]
    with _single_threaded_blas():
        _run(
            _batch_rows,
            [
                (states[w], matrix, n2_app, n2_beh, idx, total, qn, metric, starts[w::workers])
                for w in range(workers)
            ],
        )
    found_q = [a for st in states for a in st.found_q]
    if not found_q:
        return [_empty() for _ in range(nq)]
    fq = np.concatenate(found_q)
    fr = np.concatenate([a for st in states for a in st.found_r])
    fk = np.concatenate([a for st in states for a in st.found_key])
    keep = fk >= _down_all(floor - states[0].shift)[fq]  # the final floors
    fq, fr = fq[keep], fr[keep]
    order = np.argsort(fq, kind="stable")
    fq, fr = fq[order], fr[order]
    bounds = np.searchsorted(fq, np.arange(nq + 1))
    results: list[Result] = []
    for i in range(nq):
        cand = fr[bounds[i] : bounds[i + 1]]
        s = _exact(matrix, n2_app, n2_beh, qs[i], cand, metric)
        results.append(_top(cand, s, tie, k))
    return results
