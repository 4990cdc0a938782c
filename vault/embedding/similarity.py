"""Exact, deterministic similarity over int8 vectors.

Dot products are computed as float32 matrix products of int8 values: with d = 64 every
partial sum is at most 64 * 127**2 < 2**24, so the float32 result is the exact integer
under any BLAS kernel or thread count. Scores are then formed in float64 from exact
integers with correctly rounded sqrt, division and a few additions, so they are
bit-identical on every IEEE 754 machine. Ties are broken by the caller (by id).

Three metrics:

* ``cosine`` — dot / sqrt(|a|²·|b|²) (0 when either vector is zero);
* ``euclidean`` — 1 − |a − b| / (|a| + |b|), in [0, 1] (1 = identical, 0 = opposite; the
  real range of two vectors, not a worst case no vector reaches);
* ``structured`` — cosine of the transformation and keys blocks (what a task *does*), plus
  ``APPEARANCE_BONUS`` × max(0, cosine of the shape and colour blocks − ``APPEARANCE_GATE``):
  looking alike counts only when two tasks look very alike (the same task met again), so
  look-alike distractors do not outrank concepts with the same transformation. In
  [−1, 1 + 0.3·bonus].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vault.config import SIMILARITIES as METRICS
from vault.embedding import DIM
from vault.embedding.builtin import APPEARANCE, KEY, TRN

APPEARANCE_GATE = 0.7
APPEARANCE_BONUS = 2.0
# dims of the two block groups the structured metric compares apart
APPEARANCE_DIMS = np.zeros(DIM, dtype=bool)
APPEARANCE_DIMS[APPEARANCE] = True
BEHAVIOUR_DIMS = np.zeros(DIM, dtype=bool)
BEHAVIOUR_DIMS[TRN.start : KEY.stop] = True


BLOCK = 1 << 15  # rows converted to float32 at a time (2 MB for d = 64)


def exact_dots(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Integer dot products of each row of ``matrix`` (n, d) with ``query`` (d,) — or with
    each column of ``query`` (d, m) — as int64. The int8 rows are converted to float32 a
    block at a time, so memory stays flat however large the matrix."""
    n = matrix.shape[0]
    out = np.empty((n,) + query.shape[1:], dtype=np.int64)
    q = query.astype(np.float32)
    for start in range(0, n, BLOCK):
        block = matrix[start : start + BLOCK].astype(np.float32)
        out[start : start + BLOCK] = block @ q
    return out


def squared_norms(matrix: np.ndarray, dims: np.ndarray | None = None) -> np.ndarray:
    m = matrix.astype(np.int64)
    if dims is not None:
        m = m[:, dims]
    norms: np.ndarray = (m * m).sum(axis=1)
    return norms


def _cos(dots: np.ndarray, n2: np.ndarray, q2: int) -> np.ndarray:
    denom = np.sqrt((n2 * q2).astype(np.float64))
    out = np.zeros(len(dots), dtype=np.float64)
    nz = denom > 0
    out[nz] = dots[nz].astype(np.float64) / denom[nz]
    return out


def scores(
    dots: np.ndarray,
    appearance_n2: np.ndarray,
    behaviour_n2: np.ndarray,
    q: np.ndarray,
    metric: str,
) -> np.ndarray:
    """The similarity of ``q`` with rows whose exact dot products with the appearance and
    behaviour parts of ``q`` are ``dots`` (n, 2) and whose squared part norms are given."""
    q64 = q.astype(np.int64)
    qa = int((q64[APPEARANCE_DIMS] ** 2).sum())
    qb = int((q64[BEHAVIOUR_DIMS] ** 2).sum())
    total = dots[:, 0] + dots[:, 1]
    n2 = appearance_n2 + behaviour_n2
    if metric == "cosine":
        return _cos(total, n2, qa + qb)
    if metric == "euclidean":
        d2 = n2 + (qa + qb) - 2 * total
        reach = np.sqrt(n2.astype(np.float64)) + np.sqrt(float(qa + qb))
        out = np.ones(len(total), dtype=np.float64)
        nz = reach > 0
        out[nz] = 1.0 - np.sqrt(d2[nz].astype(np.float64)) / reach[nz]
        return out
    if metric == "structured":
        look = _cos(dots[:, 0], appearance_n2, qa)
        act = _cos(dots[:, 1], behaviour_n2, qb)
        return act + APPEARANCE_BONUS * np.maximum(0.0, look - APPEARANCE_GATE)
    raise ValueError(f"unknown similarity {metric!r} (known: {', '.join(METRICS)})")


def _split(q: np.ndarray) -> np.ndarray:
    """(d, 2): the query's appearance part and behaviour part as two columns."""
    parts = np.zeros((DIM, 2), dtype=np.int64)
    parts[APPEARANCE_DIMS, 0] = q[APPEARANCE_DIMS]
    parts[BEHAVIOUR_DIMS, 1] = q[BEHAVIOUR_DIMS]
    return parts


def similarity(matrix: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """Similarity of ``query`` with every row of ``matrix``."""
    dots = exact_dots(matrix, _split(query))
    return scores(
        dots,
        squared_norms(matrix, APPEARANCE_DIMS),
        squared_norms(matrix, BEHAVIOUR_DIMS),
        query,
        metric,
    )


def pairwise(matrix: np.ndarray, metric: str) -> np.ndarray:
    """(m, m): the similarity of every row of ``matrix`` with every other (row i as query)."""
    m = matrix.astype(np.float32)
    a = np.where(APPEARANCE_DIMS, m, 0.0).astype(np.float32)
    b = np.where(BEHAVIOUR_DIMS, m, 0.0).astype(np.float32)
    da = (a @ a.T).astype(np.int64)  # exact, as in exact_dots
    db = (b @ b.T).astype(np.int64)
    na = squared_norms(matrix, APPEARANCE_DIMS)
    nb = squared_norms(matrix, BEHAVIOUR_DIMS)
    out = np.empty((len(m), len(m)), dtype=np.float64)
    for i in range(len(m)):
        out[i] = scores(np.stack([da[i], db[i]], axis=1), na, nb, matrix[i], metric)
    return out


def cosine(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    return similarity(matrix, query, "cosine")


def euclidean(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    return similarity(matrix, query, "euclidean")


def similarity_rows(table: Any, rows: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """Similarity of ``query`` with the table's vectors at ``rows``, in the order of ``rows``
    (any order; the rows' squared part norms come from the table's ``norm2_appearance`` /
    ``norm2_behaviour`` columns)."""
    rows = np.asarray(rows)
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float64)
    dots = exact_dots(table.matrix[rows], _split(query))
    return scores(
        dots,
        table.col("norm2_appearance")[rows].astype(np.int64),
        table.col("norm2_behaviour")[rows].astype(np.int64),
        query,
        metric,
    )
