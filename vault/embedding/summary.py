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
summary kept on disk, in the vault's cache (FORMAT.md §8.5): built once by the first
process that asks twice, read (and checked) by the first query of every later process —
any summary is exact for the bytes it was built from, whichever machine built it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import weakref
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

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

    def units(lo: int, hi: int) -> np.ndarray:
        x = matrix[lo:hi].astype(np.float32)
        for a, b in ((0, DIM),) if kind == "full" else spans:
            # squared norms: exact integers (< 2**24) in float32
            inv = np.einsum("ij,ij->i", x[:, a:b], x[:, a:b])[:, None]
            np.maximum(inv, np.float32(1.0), out=inv)  # a zero norm has a zero row
            np.sqrt(inv, out=inv)
            np.divide(np.float32(1.0), inv, out=inv)
            x[:, a:b] *= inv
        return x

    # principal directions of a sample (their accuracy only affects how tight bounds are)
    cov = np.zeros((DIM, DIM), dtype=np.float64)
    for lo in range(0, n, step * max(1, n // (step * 64))):  # <= ~64 blocks
        u = units(lo, min(lo + step, n))
        cov += u.T @ u
    eig = [np.linalg.eigh(cov[a:b, a:b]) for a, b in spans]
    pool = sorted(
        ((float(val), i, j) for i, (vals, _) in enumerate(eig) for j, val in enumerate(vals)),
        reverse=True,
    )[: columns - nparts]
    bases = []
    full = np.zeros((columns - nparts, DIM), dtype=np.float32)  # block-diagonal P
    col = 0
    for i, ((a, b), (_, vecs)) in enumerate(zip(spans, eig, strict=True)):
        pick = sorted(j for _, p, j in pool if p == i)
        basis = np.ascontiguousarray(vecs[:, pick].T).astype(np.float32)
        full[col : col + len(pick), a:b] = basis
        bases.append(basis.astype(np.float64))
        col += len(pick)
    ends = np.cumsum([0] + [len(b) for b in bases])
    data = np.zeros((n, columns), dtype=np.int8)
    resid = np.zeros((nparts, n), dtype=np.float32)
    quant = [0.0] * nparts
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        u = units(lo, hi)
        y = np.rint(np.float32(SCALE) * (u @ full.T))
        np.clip(y, -127, 127, out=y)
        data[lo:hi, : columns - nparts] = y
        y *= np.float32(1.0 / SCALE)
        e = u - y @ full
        pe = e @ full.T
        for i, (a, b) in enumerate(spans):
            ea = e[:, a:b]
            resid[i, lo:hi] = np.sqrt(np.einsum("ij,ij->i", ea, ea))
            if ends[i + 1] > ends[i]:
                pa = pe[:, ends[i] : ends[i + 1]]
                quant[i] = max(quant[i], float(np.sqrt(np.einsum("ij,ij->i", pa, pa).max())))
    parts = []
    for i, (a, b) in enumerate(spans):
        top = float(resid[i].max()) * (1 + 1e-5) + 1e-4 if n else 1.0
        sigma = 126.0 / top
        for lo in range(0, n, step):  # in steps: no full-length float64 temporaries
            r64 = resid[i, lo : lo + step].astype(np.float64) * (1 + 1e-5) + 1e-4
            # r / sigma >= r64 up to one rounding of the product (1e-16 relative), which
            # the slack over the real |e| covers; r <= ceil(126 (1 + 1e-16)) = 127
            r = np.ceil(r64 * sigma)
            if r.max() > 127:
                raise AssertionError("summary residual column out of range")
            data[lo : lo + step, columns - nparts + i] = r.astype(np.int8)
        parts.append(Part(a, b, bases[i], sigma, quant[i] * (1 + 1e-5) + 1e-4))
    data.setflags(write=False)
    return Summary(kind, data, tuple(parts))


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


_LOCK = threading.RLock()  # re-entrant: a weakref callback may run under it
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


def from_bytes(blob: bytes, rows: int, kind: str) -> Summary | None:
    """The summary in ``blob`` if it is whole, of ``kind`` and ``rows`` rows; else None."""
    import xxhash

    try:
        if not blob.startswith(MAGIC):
            return None
        at = len(MAGIC)
        size = int.from_bytes(blob[at : at + 8], "little")
        header = json.loads(blob[at + 8 : at + 8 + size])
        start = at + 8 + size
        cols = int(header["columns"])
        if (
            header["kind"] != kind
            or int(header["rows"]) != rows
            or len(blob) != start + rows * cols
        ):
            return None
        view = memoryview(blob)[start:]
        if xxhash.xxh3_128_hexdigest(view) != header["xxh3_128"]:
            return None
        data = np.frombuffer(blob, dtype=np.int8, offset=start).reshape(rows, cols)
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


def _load_placed(matrix: np.ndarray, kind: str) -> Summary | None:
    where = _placed(matrix, kind)
    if where is None:
        return None
    try:
        blob = where[0].read_bytes()
    except OSError:
        return None
    return from_bytes(blob, matrix.shape[0], kind)


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
        files = sorted(path.parent.glob("*.summary"), key=lambda p: p.stat().st_mtime)
        for old in files[:-KEEP_FILES]:
            old.unlink()
