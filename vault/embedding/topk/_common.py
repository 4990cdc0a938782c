"""Shared by the single-query scan and the batch kernel: constants, query checks, the
exact re-rank and the float32 keys with their error bounds (see ``vault.embedding.topk``)."""

from __future__ import annotations

import math

import numpy as np

from vault.config import SIMILARITIES as METRICS
from vault.embedding import DIM
from vault.embedding.similarity import (
    APPEARANCE_BONUS,
    APPEARANCE_DIMS,
    APPEARANCE_GATE,
    BEHAVIOUR_DIMS,
    exact_dots,
    scores,
)

# The two dim groups are contiguous: appearance [0, NA), behaviour [NA, DIM).
NA = int(APPEARANCE_DIMS.sum())
if not (APPEARANCE_DIMS[:NA].all() and BEHAVIOUR_DIMS[NA:].all() and not BEHAVIOUR_DIMS[:NA].any()):
    raise ImportError("topk assumes appearance dims [0, NA) and behaviour dims [NA, DIM)")

BLOCK = 4096  # rows per float32 conversion (1 MiB buffer)
SUPER = 65536  # rows per key / selection pass of a single query
SUMMARY_BLOCK = 8192  # summary rows per conversion (1 MiB float32 at 32 columns: within L2)
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
