"""Linear algebra whose every result is the same bits on every IEEE 754 machine.

The fitted embedder's training (``vault.embedding.fitted.fit``) must give the same bytes
wherever ``make weights`` runs. LAPACK and BLAS do not promise that: their kernels (and
so the order of their floating-point sums) depend on the CPU, the library build and the
thread count. Here every sum is ``math.fsum`` (exactly rounded, so independent of order)
and everything else is elementwise numpy (``+ − × ÷`` and ``sqrt`` per element: correctly
rounded, one IEEE operation each, never fused), so each result is a function of its
inputs alone. Sizes are those of one embedding block (≤ a few hundred), where the cost is
milliseconds to a second.

* ``matmul`` — ``a @ b`` with each entry an exactly rounded dot product;
* ``cholesky`` — the lower factor of a symmetric positive definite matrix;
* ``lower_inverse`` — the inverse of a lower triangular matrix;
* ``eigh`` — eigenvalues and eigenvectors of a symmetric matrix by cyclic Jacobi
  rotations (a fixed sweep order, a fixed stopping rule).
"""

from __future__ import annotations

import math

import numpy as np

MAX_SWEEPS = 60
TOLERANCE = 1e-26  # stop when the off-diagonal mass is below this share of the total


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """The exactly rounded dot product of two vectors."""
    return math.fsum((a * b).tolist())


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (2-d, or a matrix times a vector), each entry an exactly rounded sum."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if b.ndim == 1:
        return np.array([dot(row, b) for row in a])
    bt = np.ascontiguousarray(b.T)
    out = np.empty((a.shape[0], b.shape[1]))
    for i, row in enumerate(a):
        prods = row[None, :] * bt  # (m, k): one correctly rounded product per element
        out[i] = [math.fsum(p) for p in prods.tolist()]
    return out


def cholesky(a: np.ndarray) -> np.ndarray:
    """The lower triangular L with ``L Lᵀ = a`` (``a`` symmetric positive definite);
    ``ValueError`` if a pivot is not positive."""
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    lo = np.zeros((n, n))
    for j in range(n):
        d = a[j, j] - dot(lo[j, :j], lo[j, :j])
        if not d > 0.0:
            raise ValueError("matrix is not positive definite")
        ljj = math.sqrt(d)
        lo[j, j] = ljj
        for i in range(j + 1, n):
            lo[i, j] = (a[i, j] - dot(lo[i, :j], lo[j, :j])) / ljj
    return lo


def lower_inverse(lo: np.ndarray) -> np.ndarray:
    """The inverse of a lower triangular matrix with a non-zero diagonal."""
    n = lo.shape[0]
    inv = np.zeros((n, n))
    for j in range(n):
        inv[j, j] = 1.0 / lo[j, j]
        for i in range(j + 1, n):
            inv[i, j] = -dot(lo[i, j:i], inv[j:i, j]) / lo[i, i]
    return inv


def _off(a: np.ndarray) -> float:
    sq = (a * a).tolist()
    total = math.fsum(v for row in sq for v in row)
    diag = math.fsum(sq[i][i] for i in range(len(sq)))
    return total - diag if total > 0 else 0.0


def eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and unit eigenvectors (columns) of the symmetric ``a``, by
    cyclic Jacobi: sweeps over (p, q) in row order, each rotation zeroing ``a[p, q]``
    (Golub & Van Loan 8.5), until the off-diagonal squares sum to at most ``TOLERANCE``
    of all squares, or ``MAX_SWEEPS``. Only elementwise operations and ``fsum``."""
    a = np.array(a, dtype=np.float64)
    n = a.shape[0]
    v = np.eye(n)
    sq = (a * a).tolist()
    scale = math.fsum(x for row in sq for x in row)
    for _ in range(MAX_SWEEPS):
        if _off(a) <= TOLERANCE * scale:
            break
        for p in range(n - 1):
            for q in range(p + 1, n):
                apq = a[p, q]
                if apq == 0.0:
                    continue
                theta = (a[q, q] - a[p, p]) / (2.0 * apq)
                if abs(theta) > 1e150:
                    t = 0.5 / theta
                else:
                    t = (1.0 if theta >= 0 else -1.0) / (
                        abs(theta) + math.sqrt(theta * theta + 1.0)
                    )
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                col_p, col_q = a[:, p].copy(), a[:, q].copy()
                a[:, p] = c * col_p - s * col_q
                a[:, q] = s * col_p + c * col_q
                row_p, row_q = a[p, :].copy(), a[q, :].copy()
                a[p, :] = c * row_p - s * row_q
                a[q, :] = s * row_p + c * row_q
                a[p, q] = a[q, p] = 0.0
                vp, vq = v[:, p].copy(), v[:, q].copy()
                v[:, p] = c * vp - s * vq
                v[:, q] = s * vp + c * vq
    values = np.diag(a).copy()
    order = np.argsort(values, kind="stable")
    return values[order], v[:, order]
