"""A small derived summary of an int8 matrix that gives an exact upper bound of every
row's cosine with a query — for ``vault.embedding.topk`` to skip most rows of a single
query without converting them (the whole int8 -> float32 conversion of 10**6 x 64 values
costs more than faiss's float32 scan; the summary's is a quarter of it).

Construction (``build``), per dim part p (appearance [0, NA), behaviour [NA, DIM)): every
row x is scaled to a unit vector u (divided by |x| for the ``"full"`` kind used by cosine
and euclidean, by |x_p| for the ``"parts"`` kind used by structured; a zero row or part
stays 0), and u_p is projected on the m_p leading principal directions of the data, the
rows of a float64 matrix P_p (m_p, d_p); the projection is quantised to int8,
y = round(127 P_p u_p). With the real residual e = u_p - P_p^T y / 127 the identity

    u_p . q_p = y . (P_p q_p) / 127 + e . (q_p - P_p^T P_p q_p) + (P_p e) . (P_p q_p)

holds for ANY matrix P_p (expand the right side), so by Cauchy-Schwarz

    u_p . q_p <= y . a + |e| c + |P_p e| |P_p q_p|,   a = P_p q_p / 127,
                                                       c = |q_p - P_p^T P_p q_p|.

Exactness therefore never depends on P_p being orthonormal or the principal directions
being accurate (they only decide how tight the bound is): it depends on |e| and |P_p e|
being upper bounds, which ``build`` computes from the stored y and P_p with a margin
for its float32 rounding (see ``build``). The per-row |e| is stored as one more int8
column, r = ceil(|e| sigma) (sigma = 126 / max |e|, so r <= 127 and r / sigma >= |e|);
the largest |P_p e| (the quantisation error, <= sqrt(m_p) / 254 for orthonormal P) is
one number per part, R_p.

Query side (``Summary.column``): the float32 column w = (fl(a), fl_up(c / sigma)) per part,
so that one float32 matrix-vector product of the int8 summary (exact integers in float32)
with w gives t = fl(y . fl(a) + r fl_up(c / sigma)), and

    u_p . q_p <= t + E + R_p |P_p q_p|,

with E = 1e-5 * 127 sqrt(K) |w| + 1e-9 |q|: a float32 sum of K <= 64 products of exact
factors, in any order and with or without FMA, errs by at most gamma_K sum |y_i w_i| <=
gamma_K 127 sqrt(K) |w| (Cauchy-Schwarz; gamma_K = K u / (1 - K u) < 3.9e-6, u = 2**-24),
rounding a to float32 by at most u 127 sqrt(K) |w| more, and the float64 query quantities
(a, c, |P q|, each within 1e-12 |q| of the real ones, c and |P q| rounded up) by less
than 1e-9 |q|; the r column only ever overstates |e| c. ``topk`` turns these into bounds
of the cosine (divided by |q|, or |q_p| for a part), of the structured score and, through
the cosine, of the euclidean score.

The summary is K = SUMMARY_COLUMNS int8 values per row (32 MiB at 10**6 rows) and is
derived from the matrix alone, so it is cached per matrix object — only for matrices
that cannot change (a read-only array over ``bytes``, as a loaded table's is), and only
from the second query on (a one-query process does not pay the build). A matrix whose
content address is known (a generation's ``matrix`` table object, ``place``) also has its
summary kept on disk, in the vault's cache (FORMAT.md §8.5): built by `vault index build`
(or by the first process that asks twice where none is stored), derived by a write-back from
its base generation's (``derive``), read (and checked) by the first query of every later
process — any summary is exact for the bytes it was built from, whichever machine built
it. A reader starts that read in the background before it reads the matrix
(``read_ahead``), so the first query finds the summary ready.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import weakref
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from vault import forksafe
from vault.embedding import DIM

SUMMARY_COLUMNS = 32  # int8 columns per row: projections + one residual column per part
BUILD_BLOCK = 8192  # rows per step of a build (2 MiB float32 temporaries)
SCALE = 127.0  # y = round(SCALE * P u): |P u|_inf <= |u| <= 1 for orthonormal P


@dataclass(frozen=True)
class Part:
    """One dim part's projection: dims [lo, hi), the directions P (m, hi - lo) float64,
    the residual column's scale sigma and R, the bound of |P e| over the rows."""

    lo: int
    hi: int
    basis: np.ndarray
    sigma: float
    quant: float


@dataclass(frozen=True)
class Summary:
    """The int8 summary (N, K) of a matrix: per part, its projections then, in the last
    columns (one per part), the residual norms. ``kind``: "full" (rows scaled by |x|) or
    "parts" (each part by its own norm)."""

    kind: str
    data: np.ndarray
    parts: tuple[Part, ...]
    _split: dict[int, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def part_columns(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions, columns): where part ``i``'s columns are in the summary — its
        projections and its residual column — and those columns, one contiguous int8 row
        each (m_i + 1, N): copied once, read-only. A scan that multiplies by that part's
        column alone converts only these, a block of each at a time, and sums them column
        by column (a structured scan's first stage: 15 of 32 columns at 10**6 rows). Its
        products are float32 sums of the same nonzero terms in another order: within the
        bound of any order (module docstring)."""
        got = self._split.get(i)
        if got is None:
            k = self.data.shape[1]
            start = sum(p.basis.shape[0] for p in self.parts[:i])
            m = self.parts[i].basis.shape[0]
            pos = np.array([*range(start, start + m), k - len(self.parts) + i], dtype=np.intp)
            cols = np.ascontiguousarray(self.data[:, pos].T)
            cols.flags.writeable = False
            got = (pos, cols)
            self._split[i] = got  # (two threads may both copy: either copy is the same)
        return got

    def column(self, q: np.ndarray, part: int | None) -> tuple[np.ndarray, float, float]:
        """The float32 column w (K,) for the int8 query ``q`` restricted to one part (or
        both, ``part=None``), and the float64 constant B with u . q <= t + B for every row
        (t = the float32 product of the summary row with w, any kernel), and |q| of the
        part(s). See the module docstring for the proof."""
        k = self.data.shape[1]
        w = np.zeros(k, dtype=np.float32)
        q64 = q.astype(np.float64)
        total = 0.0  # the R_p |P_p q_p| terms
        qnorm2 = 0
        col = 0
        for i, p in enumerate(self.parts):
            m = p.basis.shape[0]
            if part is None or part == i:
                qp = q64[p.lo : p.hi]
                qn2 = int((q[p.lo : p.hi].astype(np.int64) ** 2).sum())
                qnorm2 += qn2
                proj = p.basis @ qp
                v = qp - p.basis.T @ proj  # each component within 1e-13 |q| of the real
                c = float(np.sqrt(v @ v)) * (1 + 1e-9) + 1e-9 * math.sqrt(qn2)
                w[col : col + m] = (proj / SCALE).astype(np.float32)
                up = np.float32(c / p.sigma)
                if float(up) < c / p.sigma:
                    up = np.nextafter(up, np.float32(np.inf))
                w[k - len(self.parts) + i] = up
                total += p.quant * (
                    float(np.sqrt(proj @ proj)) * (1 + 1e-9) + 1e-9 * math.sqrt(qn2)
                )
            col += m
        wn = float(np.sqrt((w.astype(np.float64) ** 2).sum()))
        qn = math.sqrt(qnorm2)
        bound = total + 1e-5 * SCALE * math.sqrt(k) * wn + 1e-9 * qn
        return w, bound, qn


def build(matrix: np.ndarray, kind: str, na: int, columns: int = SUMMARY_COLUMNS) -> Summary:
    """The summary of ``matrix`` (int8 (N, DIM)); parts [0, na) and [na, DIM).

    Computed in float32 (a few hundred ms at 10**6 rows), with the directions P rounded
    to float32 first (the proof holds for whatever P is stored). Error of the residual:
    u = x fl(1 / fl(sqrt(n))) is within 3u of x / |x| per component; fl(y / 127) within
    u; each component of (y / 127) P and of u - that is a float32 sum of at most 64
    products whose magnitudes add up to <= |P_j| |y / 127| + |u_j| <= 2.1 (rows of P and
    y / 127 have norm <= 1.02), so it errs by < gamma_65 * 2.1 + 4u < 1e-5; over at most 64
    components |e| errs by < 8e-5, its float32 evaluation by a relative 5e-6 more: stored
    residuals are |e| (1 + 1e-5) + 1e-4, and the same for |P e| (P rows of norm <= 1.01)."""
    n = matrix.shape[0]
    spans = ((0, na), (na, DIM))
    nparts = len(spans)
    step = BUILD_BLOCK
    # principal directions of a sample (their accuracy only affects how tight bounds are)
    cov = np.zeros((DIM, DIM), dtype=np.float64)
    for lo in range(0, n, step * max(1, n // (step * 64))):  # <= ~64 blocks
        u = _units(matrix[lo : min(lo + step, n)], kind, spans)
        cov += u.T @ u
    eig = [np.linalg.eigh(cov[a:b, a:b]) for a, b in spans]
    pool = sorted(
        ((float(val), i, j) for i, (vals, _) in enumerate(eig) for j, val in enumerate(vals)),
        reverse=True,
    )[: columns - nparts]
    bases = []
    for i, (_, vecs) in enumerate(eig):
        pick = sorted(j for _, p, j in pool if p == i)
        bases.append(np.ascontiguousarray(vecs[:, pick].T).astype(np.float32).astype(np.float64))
    data = np.zeros((n, columns), dtype=np.int8)
    resid, quant = _projected(matrix, kind, spans, bases, data)
    parts = []
    for i, (a, b) in enumerate(spans):
        top = float(resid[i].max()) * (1 + 1e-5) + 1e-4 if n else 1.0
        sigma = 126.0 / top
        if not _residual_column(resid[i], sigma, data[:, columns - nparts + i]):
            raise AssertionError("summary residual column out of range")
        parts.append(Part(a, b, bases[i], sigma, quant[i] * (1 + 1e-5) + 1e-4))
    data.setflags(write=False)
    return Summary(kind, data, tuple(parts))


def derive(
    old: Summary, old_matrix: np.ndarray, matrix: np.ndarray, origin: np.ndarray
) -> Summary | None:
    """The summary of ``matrix``, whose row i is row ``origin[i]`` of ``old_matrix`` (-1: a
    new row), with ``old``'s directions and residual scales: the summary rows of kept rows
    copied, new rows projected as ``build`` projects them — the same proof holds (it holds
    for any directions; each part's R only grows, and where a new row's residual exceeds
    the residual column's range, the column is rescaled). None when a kept row differs from
    its origin (then a summary is built). A write-back changes a few rows: this costs a
    copy of the summary instead of a build (0.5-1 s at 10**6 rows)."""
    n = matrix.shape[0]
    cols = old.data.shape[1]
    nparts = len(old.parts)
    if len(origin) != n or old.data.shape[0] != old_matrix.shape[0] or n == 0:
        return None
    kept = origin >= 0
    if kept.any() and int(origin.max()) >= old_matrix.shape[0]:
        return None
    data = np.zeros((n, cols), dtype=np.int8)
    # runs of consecutive kept rows (a write-back keeps all but a few): copied and checked
    # as slices, not gathered row by row (10x faster at 10**6 rows)
    cuts = np.flatnonzero((np.diff(origin) != 1) | (origin[1:] < 0) | (origin[:-1] < 0)) + 1
    for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), n], strict=True):
        o = int(origin[a])
        if o < 0:
            continue
        if not np.array_equal(matrix[a:b], old_matrix[o : o + b - a]):
            return None  # a kept row differs from its origin
        data[a:b] = old.data[o : o + b - a]
    new = np.flatnonzero(~kept)
    spans = tuple((p.lo, p.hi) for p in old.parts)
    sigmas = [p.sigma for p in old.parts]
    quant = [0.0] * nparts
    if len(new):
        block = np.zeros((len(new), cols), dtype=np.int8)
        resid, quant = _projected(matrix[new], old.kind, spans, [p.basis for p in old.parts], block)
        for i in range(nparts):
            col = cols - nparts + i
            need = float(resid[i].max()) * (1 + 1e-5) + 1e-4
            if need * sigmas[i] > 126.0:  # beyond the column's range: a coarser scale for all
                coarser = 126.0 / need  # r' = ceil(r s' / s) >= |e| s' (r >= |e| s), <= 127
                ratio = coarser / sigmas[i] * (1 + 1e-12)  # (covers the product's rounding)
                data[kept, col] = np.ceil(data[kept, col].astype(np.float64) * ratio).astype(
                    np.int8
                )
                sigmas[i] = coarser
            if not _residual_column(resid[i], sigmas[i], block[:, col]):
                raise AssertionError("summary residual column out of range")
        data[new] = block
    parts = tuple(
        Part(p.lo, p.hi, p.basis, sigmas[i], max(p.quant, quant[i] * (1 + 1e-5) + 1e-4))
        for i, p in enumerate(old.parts)
    )
    data.setflags(write=False)
    return Summary(old.kind, data, parts)


def _units(x8: np.ndarray, kind: str, spans: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Rows ``x8`` (int8) in float32, each scaled to a unit vector (``full``) or each part
    to a unit part (``parts``); a zero row or part stays 0."""
    x = x8.astype(np.float32)
    for a, b in ((0, DIM),) if kind == "full" else spans:
        # squared norms: exact integers (< 2**24) in float32
        inv = np.einsum("ij,ij->i", x[:, a:b], x[:, a:b])[:, None]
        np.maximum(inv, np.float32(1.0), out=inv)  # a zero norm has a zero row
        np.sqrt(inv, out=inv)
        np.divide(np.float32(1.0), inv, out=inv)
        x[:, a:b] *= inv
    return x


def _projected(
    matrix: np.ndarray,
    kind: str,
    spans: tuple[tuple[int, int], ...],
    bases: list[np.ndarray],
    data: np.ndarray,
) -> tuple[np.ndarray, list[float]]:
    """Fill ``data``'s projection columns with y = round(127 P u) of every row of
    ``matrix`` (P the parts' ``bases``, float32 values); return each row's residual norm
    |e| per part (float32, (parts, N)) and each part's largest |P e|."""
    n = matrix.shape[0]
    nparts = len(spans)
    width = sum(len(b) for b in bases)
    full = np.zeros((width, DIM), dtype=np.float32)  # block-diagonal P
    ends = np.cumsum([0] + [len(b) for b in bases])
    for i, ((a, b), basis) in enumerate(zip(spans, bases, strict=True)):
        full[ends[i] : ends[i + 1], a:b] = basis.astype(np.float32)
    resid = np.zeros((nparts, n), dtype=np.float32)
    quant = [0.0] * nparts
    for lo in range(0, n, BUILD_BLOCK):
        hi = min(lo + BUILD_BLOCK, n)
        u = _units(matrix[lo:hi], kind, spans)
        y = np.rint(np.float32(SCALE) * (u @ full.T))
        np.clip(y, -127, 127, out=y)
        data[lo:hi, :width] = y
        y *= np.float32(1.0 / SCALE)
        e = u - y @ full
        pe = e @ full.T
        for i, (a, b) in enumerate(spans):
            ea = e[:, a:b]
            resid[i, lo:hi] = np.sqrt(np.einsum("ij,ij->i", ea, ea))
            if ends[i + 1] > ends[i]:
                pa = pe[:, ends[i] : ends[i + 1]]
                quant[i] = max(quant[i], float(np.sqrt(np.einsum("ij,ij->i", pa, pa).max())))
    return resid, quant


def _residual_column(resid: np.ndarray, sigma: float, out: np.ndarray) -> bool:
    """``out`` = r = ceil((|e| (1 + 1e-5) + 1e-4) sigma) per row, in steps (no full-length
    float64 temporaries); False when some r exceeds 127 (``out`` then partly written).
    r / sigma >= that up to one rounding of the product (1e-16 relative), which the slack
    over the real |e| covers."""
    for lo in range(0, len(resid), BUILD_BLOCK):
        r64 = resid[lo : lo + BUILD_BLOCK].astype(np.float64) * (1 + 1e-5) + 1e-4
        r = np.ceil(r64 * sigma)
        if r.max() > 127:
            return False
        out[lo : lo + BUILD_BLOCK] = r.astype(np.int8)
    return True


# ---------------------------------------------------------------------------------------
# cache: one summary per (immutable matrix, kind), built on the second request


def immutable(matrix: np.ndarray) -> bool:
    """Whether no one can change ``matrix``'s values: read-only arrays down to a ``bytes``
    object (as ``store.arrays.load_npy`` makes them) or down to an array ``seal``ed here."""
    base: object = matrix
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        with _LOCK:
            hit = _SEALED.get(id(base))
        if hit is not None and hit() is base:
            return True
        base = base.base
    return isinstance(base, bytes)


def seal(matrix: np.ndarray) -> np.ndarray:
    """Make ``matrix`` read-only and let its summaries be kept: for an array that owns its
    memory, filled by the caller (a chunked table's matrix, read straight into it) and never
    written again — no other view of it may be writable."""
    if matrix.base is not None:
        raise ValueError("seal: the array must own its memory")
    matrix.flags.writeable = False
    with _LOCK:
        _SEALED[id(matrix)] = weakref.ref(matrix, partial(_unseal, id(matrix)))
    return matrix


def _unseal(key: int, _ref: object) -> None:
    with _LOCK:
        _SEALED.pop(key, None)


# re-entrant: a weakref callback may run under it; made anew in a forked child
_LOCK = forksafe.rlock(sys.modules[__name__], "_LOCK")
_SEALED: dict[int, weakref.ref[np.ndarray]] = {}
_SEEN: dict[tuple[int, str], tuple[weakref.ref[np.ndarray], Summary | None]] = {}


def _forget(key: tuple[int, str], _ref: object) -> None:
    with _LOCK:
        _SEEN.pop(key, None)


def cached(matrix: np.ndarray, kind: str, na: int, min_rows: int) -> Summary | None:
    """The summary of ``matrix`` if it is cached (in this process, or on disk where the
    matrix was ``place``d), or built now when this is at least the second request for this
    matrix and kind (and then stored where placed); None for small or changeable matrices
    and for a first request with nothing stored."""
    if matrix.shape[0] < min_rows or not immutable(matrix):
        return None
    key = (id(matrix), kind)
    with _LOCK:
        entry = _SEEN.get(key)
        if entry is not None and entry[0]() is not matrix:
            entry = None  # an id reused after the old matrix died
        if entry is None:
            stored = _load_placed(matrix, kind)
            _SEEN[key] = (weakref.ref(matrix, partial(_forget, key)), stored)
            return stored
        if entry[1] is None:
            built = build(matrix, kind, na)
            _SEEN[key] = (entry[0], built)
            _store_placed(matrix, built)
        return _SEEN[key][1]


def stored(matrix: np.ndarray, kind: str) -> Summary | None:
    """The summary of ``matrix`` of ``kind`` that this process holds, or that is stored
    where ``matrix`` was placed; None otherwise (nothing is built, no request counted)."""
    with _LOCK:
        entry = _SEEN.get((id(matrix), kind))
    if entry is not None and entry[0]() is matrix and entry[1] is not None:
        return entry[1]
    return _load_placed(matrix, kind)


def keep(matrix: np.ndarray, s: Summary) -> None:
    """Hold ``s`` as the summary of ``matrix`` (immutable: else nothing is kept), as if
    this process had built it."""
    if not immutable(matrix) or s.data.shape[0] != matrix.shape[0]:
        return
    key = (id(matrix), s.kind)
    with _LOCK:
        _SEEN[key] = (weakref.ref(matrix, partial(_forget, key)), s)


# ---------------------------------------------------------------------------------------
# on disk: ``<dir>/<matrix digest>-<kind>.summary`` (FORMAT.md §8.5)

MAGIC = b"VSUMMARY1\n"
KEEP_FILES = 4  # summaries kept in a directory (derived data: the oldest go first)
_PLACES: dict[int, tuple[weakref.ref[np.ndarray], Path, str, bool]] = {}


def place(matrix: np.ndarray, directory: Path, name: str, writable: bool) -> None:
    """Where the summaries of ``matrix`` are kept: ``directory``, named by ``name`` (the
    content address of the matrix's bytes), written only when ``writable``."""
    with _LOCK:
        hit = _PLACES.get(id(matrix))
        if hit is not None and hit[0]() is matrix:
            return
        _PLACES[id(matrix)] = (
            weakref.ref(matrix, partial(_unplace, id(matrix))),
            directory,
            name,
            writable,
        )


def _unplace(key: int, _ref: object) -> None:
    with _LOCK:
        _PLACES.pop(key, None)


def _placed(matrix: np.ndarray, kind: str) -> tuple[Path, bool] | None:
    """(file, writable) of ``matrix``'s summary of ``kind``; None where it has no place or
    the cache is not to be used (a symbolic link at the cache or its ``summaries``: FORMAT.md
    §12, readers then ignore the cache)."""
    hit = _PLACES.get(id(matrix))
    if hit is None or hit[0]() is not matrix:
        return None
    directory = hit[1]
    if directory.is_symlink() or directory.parent.is_symlink():
        return None
    return directory / f"{hit[2]}-{kind}.summary", hit[3]


def to_bytes(s: Summary) -> bytes:
    """The file: MAGIC, the header's length (8 bytes, little-endian), the header (JSON:
    kind, rows, columns, parts with their float64 bases, xxh3_128 of the data), the data."""
    import xxhash

    data = s.data.tobytes()
    header = {
        "kind": s.kind,
        "rows": int(s.data.shape[0]),
        "columns": int(s.data.shape[1]),
        "parts": [
            {
                "lo": p.lo,
                "hi": p.hi,
                "basis": p.basis.tolist(),
                "sigma": p.sigma,
                "quant": p.quant,
            }
            for p in s.parts
        ],
        "xxh3_128": xxhash.xxh3_128_hexdigest(data),
    }
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + len(head).to_bytes(8, "little") + head + data


def from_bytes(blob: bytes | np.ndarray, rows: int, kind: str) -> Summary | None:
    """The summary in ``blob`` (bytes, or a uint8 array only the caller holds) if it is
    whole, of ``kind`` and ``rows`` rows; else None. Its data is a read-only view of it."""
    import xxhash

    try:
        raw = memoryview(blob) if isinstance(blob, bytes) else blob.data
        if bytes(raw[: len(MAGIC)]) != MAGIC:
            return None
        at = len(MAGIC)
        size = int.from_bytes(raw[at : at + 8], "little")
        header = json.loads(bytes(raw[at + 8 : at + 8 + size]))
        start = at + 8 + size
        cols = int(header["columns"])
        if (
            header["kind"] != kind
            or int(header["rows"]) != rows
            or len(blob) != start + rows * cols
        ):
            return None
        if xxhash.xxh3_128_hexdigest(raw[start:]) != header["xxh3_128"]:
            return None
        data = np.frombuffer(blob, dtype=np.int8, offset=start).reshape(rows, cols)
        data.flags.writeable = False
        parts = tuple(
            Part(
                int(p["lo"]),
                int(p["hi"]),
                np.array(p["basis"], dtype=np.float64).reshape(-1, int(p["hi"]) - int(p["lo"])),
                float(p["sigma"]),
                float(p["quant"]),
            )
            for p in header["parts"]
        )
        if sum(p.basis.shape[0] for p in parts) + len(parts) != cols:
            return None
        return Summary(kind, data, parts)
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def kind_for(metric: str) -> str:
    """The kind of summary a scan with ``metric`` uses."""
    return "parts" if metric == "structured" else "full"


class _Ahead(threading.Thread):
    """One summary file read and checked in the background (``read_ahead``)."""

    def __init__(self, path: Path, rows: int, kind: str):
        super().__init__(name="vault-summary-read", daemon=True)
        self.path, self.rows, self.kind = path, rows, kind
        self.result: Summary | None = None

    def run(self) -> None:
        blob = _read(self.path)
        self.result = None if blob is None else from_bytes(blob, self.rows, self.kind)
        if self.result is not None and self.kind == "parts" and len(self.result.parts) == 2:
            self.result.part_columns(1)  # (the first stage's columns, copied here too)


_AHEAD: dict[Path, _Ahead] = {}
AHEAD_MAX = 2  # read-aheads kept waiting for their matrix (the oldest is dropped)


def read_ahead(directory: Path, name: str, kind: str, rows: int) -> None:
    """Start reading (and checking) the summary ``<name>-<kind>`` of ``directory`` in a
    background thread, where one is stored: the first scan of the matrix named ``name``
    (``rows`` rows) then takes it from there instead of reading it itself. Called before
    the matrix is read, so that the two reads overlap (the first query of a process at
    10**6 rows read its 32 MiB summary after the matrix, ~12 ms of its ~30)."""
    if directory.is_symlink() or directory.parent.is_symlink():
        return
    path = directory / f"{name}-{kind}.summary"
    with _LOCK:
        if path in _AHEAD or not path.is_file():
            return
        ahead = _Ahead(path, rows, kind)
        _AHEAD[path] = ahead
        while len(_AHEAD) > AHEAD_MAX:
            del _AHEAD[next(iter(_AHEAD))]
    ahead.start()


def _load_placed(matrix: np.ndarray, kind: str) -> Summary | None:
    where = _placed(matrix, kind)
    if where is None:
        return None
    with _LOCK:
        ahead = _AHEAD.pop(where[0], None)
    if ahead is not None:
        ahead.join()  # (in a child forked meanwhile the thread is gone: result None)
        s = ahead.result
        if s is not None and s.kind == kind and s.data.shape[0] == matrix.shape[0]:
            return s
    blob = _read(where[0])
    return None if blob is None else from_bytes(blob, matrix.shape[0], kind)


def _read(path: Path) -> np.ndarray | None:
    """The bytes of ``path`` in a new uint8 array, or None when it cannot be read whole.
    Read straight into the array: ``Path.read_bytes`` took about twice as long for a
    10**6-row summary (16 vs 9 ms, fresh processes, alternating)."""
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            buf = np.empty(size, dtype=np.uint8)
            view = buf.data
            at = 0
            while at < size:
                got = f.readinto(view[at:])
                if not got:
                    return None  # shorter than it was a moment ago
                at += got
            return buf
    except (OSError, MemoryError):
        return None


def _store_placed(matrix: np.ndarray, s: Summary) -> None:
    """Write the summary where its matrix was placed (atomically, not fsynced: derived
    data, FORMAT.md §8.5), keeping the ``KEEP_FILES`` newest of the directory."""
    where = _placed(matrix, s.kind)
    if where is None or not where[1]:
        return
    _write(where[0], s)


def write(directory: Path, name: str, s: Summary) -> None:
    """Store ``s`` as the summary of the matrix whose bytes have the address ``name``."""
    if directory.is_symlink() or directory.parent.is_symlink():
        return
    _write(directory / f"{name}-{s.kind}.summary", s)


def _write(path: Path, s: Summary) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(to_bytes(s))
        os.replace(tmp, path)
        files = sorted(  # (a directory so named is not ours: left in place)
            (p for p in path.parent.glob("*.summary") if p.is_file() and not p.is_symlink()),
            key=lambda p: p.stat().st_mtime,
        )
        for old in files[:-KEEP_FILES]:
            old.unlink()
