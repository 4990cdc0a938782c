"""The batch kernel (``topk_batch``): normalized float32 products, block-max pruning and
the exact re-rank (see ``vault.embedding.topk``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vault.embedding import DIM
from vault.embedding.similarity import (
    APPEARANCE_BONUS,
    APPEARANCE_GATE,
)
from vault.embedding.topk._common import (
    BATCH_BLOCK,
    BATCH_KEY_ERROR,
    BATCH_QUERIES,
    NA,
    Result,
    _check,
    _down_all,
    _empty,
    _exact,
    _row_indices,
    _top,
)
from vault.embedding.topk.single import (
    topk,
)
from vault.embedding.topk.threads import (
    _run,
    _single_threaded_blas,
    default_threads,
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
