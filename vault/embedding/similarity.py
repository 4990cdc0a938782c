"""Exact, deterministic similarity over int8 vectors.

Dot products are computed as float32 matrix products of int8 values: with d = 64 every
partial sum is at most 64 * 127**2 < 2**24, so the float32 result is the exact integer
under any BLAS kernel or thread count. Scores are then formed in float64 from exact
integers with one correctly rounded sqrt and one division, so they are bit-identical on
every IEEE 754 machine. Ties are broken by the caller (by id).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vault.embedding.embedder import DIM

MAX_DISTANCE = 2.0 * 127.0 * np.sqrt(DIM)  # two opposite vectors of all ±127


def exact_dots(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Integer dot products of each row of ``matrix`` (n, d) with ``query`` (d,), as int64."""
    if matrix.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    prod = matrix.astype(np.float32) @ query.astype(np.float32)
    return prod.astype(np.int64)


def squared_norms(matrix: np.ndarray) -> np.ndarray:
    m = matrix.astype(np.int64)
    norms: np.ndarray = (m * m).sum(axis=1)
    return norms


def cosine(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine similarity in [-1, 1]; 0 where either vector is zero."""
    dots = exact_dots(matrix, query)
    q = query.astype(np.int64)
    denom = np.sqrt((squared_norms(matrix) * int((q * q).sum())).astype(np.float64))
    out = np.zeros(len(dots), dtype=np.float64)
    nz = denom > 0
    out[nz] = dots[nz].astype(np.float64) / denom[nz]
    return out


def euclidean(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Euclidean similarity 1 - |a - b| / MAX_DISTANCE in [0, 1] (1 = identical)."""
    dots = exact_dots(matrix, query)
    q = query.astype(np.int64)
    d2 = squared_norms(matrix) + int((q * q).sum()) - 2 * dots
    sims: np.ndarray = 1.0 - np.sqrt(d2.astype(np.float64)) / MAX_DISTANCE
    return sims


def similarity(matrix: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    return cosine(matrix, query) if metric == "cosine" else euclidean(matrix, query)


def similarity_rows(table: Any, rows: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """Similarity of ``query`` with the table's vectors at ``rows`` (float64, exact as above;
    the rows' squared norms come from the table's ``norm2`` column)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float64)
    sub = table.matrix[rows]
    dots = exact_dots(sub, query)
    norms = table.col("norm2")[rows].astype(np.int64)
    q = query.astype(np.int64)
    qn = int((q * q).sum())
    if metric == "cosine":
        denom = np.sqrt((norms * qn).astype(np.float64))
        out = np.zeros(len(dots), dtype=np.float64)
        nz = denom > 0
        out[nz] = dots[nz].astype(np.float64) / denom[nz]
        return out
    d2 = norms + qn - 2 * dots
    sims: np.ndarray = 1.0 - np.sqrt(d2.astype(np.float64)) / MAX_DISTANCE
    return sims
