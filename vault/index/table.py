"""The table: a generation's concept versions as binary columns, vectors and key postings.

Rows are the concept versions by id (code point order), then by semantic version ascending
(the order of ``embeddings/concept_vectors.jsonl``). They are stored in **chunks** of
consecutive rows (FORMAT §7.5), so that generations share every chunk they do not change
and a write-back stores the one or two chunks its rows fall in. Chunk boundaries depend on
the content only: a row starts a chunk when it is the first row of an id and the id's
sha256 meets ``CUT_EVERY`` (or the chunk holds ``CUT_MAX`` rows already); an insertion
therefore moves at most the boundaries up to the next hash-chosen one.

A chunk is two objects: its **rows** (column-major uint32 columns, ``id@version\\n`` refs,
its keys and their postings by local row) and its **matrix** (int8 vectors). A generation
names them through two small list objects, ``rows`` and ``matrix``, which give every
section's length: a reader allocates the joined arrays once and reads each chunk straight
into its slices (``os.preadv``), hashing the pieces in order — joining costs no copy. What
shifts when a row is inserted (global rows in postings, ref offsets, the tie rank ``tail``)
is not stored: it is computed when the table is loaded, vectorised.

``build`` makes a table from rows; ``update`` applies changed and new rows to a table,
re-chunking only the affected run. Both give the same bytes for the same rows.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from vault.canonical import canonical_bytes, loads_trusted, sha256_hex
from vault.embedding import DIM, summary
from vault.errors import CorruptionError
from vault.records.cards import parse_version

# first: 1 where the row's id differs from the previous row's (a new id group)
# tail: rank of the row ordered by version descending, then id ascending (final tie order)
# norm2_*: squared norms of the vector's appearance dims (shape, colour) and behaviour dims
# (transformation, keys), for exact cosines of the whole vector or of either part
COLUMNS = (
    "first",
    "status",
    "positive",
    "negative",
    "major",
    "minor",
    "patch",
    "tail",
    "norm2_appearance",
    "norm2_behaviour",
)
COL = {name: i for i, name in enumerate(COLUMNS)}
STORED = tuple(name for name in COLUMNS if name != "tail")  # a rows chunk's columns, in order
_STORED_AT = [COL[name] for name in STORED]
# The schema of a generation manifest (written by vault.index.build, read by the snapshot).
MANIFEST_SCHEMA_VERSION = 4  # 4: the table in shared chunks; the embeddings/ view derived
TABLE_OBJECTS = ("matrix", "rows")  # the manifest's "table": the two chunk lists
ROWS_MAGIC = b"VTROWS1\n"
HEADER = struct.Struct("<8s6I")  # magic, rows, ref bytes, keys, key bytes, postings, 0
CUT_EVERY = 1024  # an id whose sha256's first 4 bytes (big-endian) % this == 0 starts a chunk
CUT_MAX = 4096  # ... and so does any id that starts when the chunk holds this many rows
STATUS_MAX = 2  # 0 active, 1 deprecated, 2 suppressed
NEWLINE, AT = ord("\n"), ord("@")
LINE_FIXED = len('{"id":"","vector":[],"version":""}\n') + (DIM - 1)  # a view line's fixed bytes
_DIGITS = np.array([len(str(v)) for v in range(-128, 128)], dtype=np.int64)  # by v + 128


@dataclass(frozen=True)
class Row:
    """One concept version as the table stores it."""

    ref: str
    status: int  # 0 active, 1 deprecated, 2 suppressed
    positive: int
    negative: int
    keys: tuple[str, ...]
    vector: tuple[int, ...]

    @property
    def concept(self) -> str:
        return self.ref.rsplit("@", 1)[0]

    def sort_key(self) -> tuple[str, tuple[int, int, int]]:
        return sort_key(self.ref)


def sort_key(name: str) -> tuple[str, tuple[int, int, int]]:
    concept, version = name.rsplit("@", 1)
    return concept, parse_version(version)


def cuts_at(concept: str) -> bool:
    """Whether the first row of ``concept`` starts a chunk by its hash (FORMAT §7.5)."""
    head = hashlib.sha256(concept.encode()).digest()[:4]
    return int.from_bytes(head, "big") % CUT_EVERY == 0


@dataclass(frozen=True)
class Meta:
    """One entry of a ``rows`` list: a rows chunk's address and section lengths, the
    address of its matrix chunk, and the bytes of its rows' view lines."""

    digest: str
    rows: int
    ref_bytes: int
    keys: int
    key_bytes: int
    postings: int
    lines: int
    matrix: str


def list_bytes(metas: Sequence[Meta]) -> tuple[bytes, bytes]:
    """The ``rows`` and ``matrix`` list objects naming ``metas`` (FORMAT §7.5)."""
    rows = {
        "chunks": [
            [m.digest, m.rows, m.ref_bytes, m.keys, m.key_bytes, m.postings, m.lines] for m in metas
        ]
    }
    matrix = {"chunks": [[m.matrix, m.rows] for m in metas]}
    return canonical_bytes(rows), canonical_bytes(matrix)


def parse_lists(rows: bytes, matrix: bytes, where: str) -> list[Meta]:
    """The chunks two list objects name, checked for shape."""
    try:
        r, m = loads_trusted(rows)["chunks"], loads_trusted(matrix)["chunks"]
        if not isinstance(r, list) or not isinstance(m, list) or len(r) != len(m):
            raise ValueError("the two lists differ in length")
        out = []
        for a, b in zip(r, m, strict=True):
            if len(a) != 7 or len(b) != 2 or a[1] != b[1]:
                raise ValueError("malformed entry")
            if not all(type(x) is int and x >= 0 for x in (*a[1:], b[1])) or a[1] == 0:
                raise ValueError("malformed entry")
            if not (_digest(a[0]) and _digest(b[0])):
                raise ValueError("malformed address")
            out.append(Meta(a[0], a[1], a[2], a[3], a[4], a[5], a[6], b[0]))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptionError(f"{where} chunk lists: malformed ({exc})") from None
    return out


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _digest(x: Any) -> bool:
    return isinstance(x, str) and _HEX64.fullmatch(x) is not None


@dataclass(eq=False)
class Chunk:
    """A chunk made in this process: its list entry and the bytes of its two objects."""

    meta: Meta
    blob: bytes
    mblob: bytes


def make_chunk(rows: Sequence[Row], matrix: np.ndarray | None = None) -> Chunk:
    """The two objects of a chunk of ``rows`` (sorted, starting an id); ``matrix``: their
    vectors when at hand as an array (then ``Row.vector`` is not read)."""
    n = len(rows)
    cols = np.zeros((len(STORED), n), dtype=np.uint32)
    refs = [r.ref for r in rows]
    flat: list[int] = []
    prev = None
    for r in rows:
        concept, version = r.ref.rsplit("@", 1)
        major, minor, patch = parse_version(version)
        flat += (concept != prev, r.status, r.positive, r.negative, major, minor, patch)
        prev = concept
    if n:
        cols[:7] = np.array(flat, dtype=np.uint32).reshape(n, 7).T
    if matrix is None:
        vec = np.array([r.vector for r in rows], dtype=np.int64).reshape(n, DIM)
    else:
        vec = matrix.astype(np.int64)
    from vault.embedding.similarity import APPEARANCE_DIMS, BEHAVIOUR_DIMS, squared_norms

    cols[7] = squared_norms(vec, APPEARANCE_DIMS)
    cols[8] = squared_norms(vec, BEHAVIOUR_DIMS)
    by_key: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        for key in r.keys:
            by_key.setdefault(key, []).append(i)
    keys = sorted(by_key)
    ref_bytes = "".join(f"{x}\n" for x in refs).encode()
    key_bytes = "".join(f"{k}\n" for k in keys).encode()
    counts = np.array([len(by_key[k]) for k in keys], dtype="<u4")
    postings = np.array([i for k in keys for i in by_key[k]], dtype="<u4")
    header = HEADER.pack(ROWS_MAGIC, n, len(ref_bytes), len(keys), len(key_bytes), len(postings), 0)
    blob = b"".join(
        [
            header,
            cols.astype("<u4").tobytes(),
            ref_bytes,
            key_bytes,
            counts.tobytes(),
            postings.tobytes(),
        ]
    )
    mblob = vec.astype(np.int8).tobytes()
    lines = n * LINE_FIXED + sum(len(x) - 1 for x in refs) + int(_DIGITS[vec + 128].sum())
    meta = Meta(
        sha256_hex(blob),
        n,
        len(ref_bytes),
        len(keys),
        len(key_bytes),
        len(postings),
        lines,
        sha256_hex(mblob),
    )
    return Chunk(meta, blob, mblob)


def chunk_rows(rows: Sequence[Row], start_size: int = 0) -> list[list[Row]]:
    """``rows`` (sorted) cut by the boundary rule; ``rows[0]`` starts a chunk."""
    out: list[list[Row]] = []
    prev = None
    for r in rows:
        concept = r.concept
        if not out or concept != prev and (len(out[-1]) >= CUT_MAX or cuts_at(concept)):
            out.append([r])
        else:
            out[-1].append(r)
        prev = concept
    return out


# --------------------------------------------------------------------------- reading
Fill = Callable[[int, Meta, list[memoryview]], None]  # fill a rows chunk's buffers, checked


class Table:
    """A table in memory (joined from its chunks); the matrix may be loaded on first use,
    since symbolic retrieval never needs it, and a key's postings are joined from the
    chunks (and checked) on first use: a query reads only its keys'."""

    where = "the table"  # how errors name it (a loaded one: its generation)

    def __init__(
        self,
        metas: list[Meta],
        columns: np.ndarray,  # uint32 (len(COLUMNS), N)
        ref_offsets: np.ndarray,  # int64 (N + 1,)
        refs: bytes,
        keys: tuple[str, ...],
        runs: Runs,
        matrix: np.ndarray | Callable[[], np.ndarray],
        lists: tuple[bytes, bytes],
    ):
        self.metas = metas
        self.columns = columns
        self.ref_offsets = ref_offsets
        self.refs = refs
        self.keys = keys
        self.runs = runs
        self._matrix = matrix
        self.lists = lists  # the rows and matrix list objects' bytes
        self.new: list[Chunk] = []  # chunks made in this process and not stored yet
        # (``update``) the table this one was made from and the base row of each row (-1:
        # a changed row), until its summaries are derived (vault.index.build.publish)
        self.origin: tuple[Table, np.ndarray] | None = None
        self.starts = runs.starts  # each chunk's first row (and N)
        self._postings: dict[int, np.ndarray] = {}

    @property
    def matrix(self) -> np.ndarray:
        """The int8 vectors (loaded on first use: symbolic retrieval never needs them)."""
        if callable(self._matrix):
            m = self._matrix()
            if m.dtype != np.int8 or m.shape != (self.n, DIM):
                raise CorruptionError("the vector matrix does not match the table")
            self._matrix = m
        return self._matrix

    @property
    def matrix_loaded(self) -> bool:
        """Whether ``matrix`` has been read (or was made here)."""
        return not callable(self._matrix)

    @property
    def n(self) -> int:
        return int(self.columns.shape[1])

    def freeze(self) -> None:
        for a in (self.columns, self.ref_offsets):
            a.flags.writeable = False
        if not callable(self._matrix):
            if self._matrix.base is None:  # joined here: sealed, so its summaries are kept
                summary.seal(self._matrix)
            else:
                self._matrix.flags.writeable = False

    @cached_property
    def groups(self) -> np.ndarray:
        """The id group of each row (rows of one concept id share it), int32."""
        return np.cumsum(self.col("first"), dtype=np.int32) - 1

    def col(self, name: str) -> np.ndarray:
        column: np.ndarray = self.columns[COL[name]]
        return column

    def ref(self, row: int) -> str:
        start, end = int(self.ref_offsets[row]), int(self.ref_offsets[row + 1])
        return self.refs[start : end - 1].decode()

    def find(self, name: str) -> int | None:
        """The row of ``id@version``, by binary search (O(log N) decodes)."""
        key = sort_key(name)
        i = bisect.bisect_left(_Keys(self), key)
        return i if i < self.n and self.ref(i) == name else None

    def id_rows(self, concept: str) -> range:
        """The rows of every version of ``concept`` (contiguous), oldest first."""
        keys = _Keys(self)
        lo = bisect.bisect_left(keys, (concept, (-1, -1, -1)))
        hi = bisect.bisect_left(keys, (concept, (1 << 62, 0, 0)))
        return range(lo, hi)

    def posting(self, key: str) -> np.ndarray:
        """The rows holding ``key``, ascending (int32, read-only)."""
        i = bisect.bisect_left(self.keys, key)
        if i == len(self.keys) or self.keys[i] != key:
            return _EMPTY
        got = self._postings.get(i)
        if got is None:
            got = self.runs.posting(i, f"{self.where} postings (key {key!r})")
            self._postings[i] = got
        return got

    def postings_bytes(self) -> int:
        """Memory of the postings joined so far."""
        return sum(p.nbytes for p in self._postings.values())

    def chunk_rows(self, c: int, vectors: bool = True) -> list[Row]:
        """The rows of chunk ``c`` decoded (a write-back re-chunks the few it changes);
        without ``vectors``, their ``vector`` is ``()`` (read from the matrix instead)."""
        lo, hi = int(self.starts[c]), int(self.starts[c + 1])
        r = self.runs
        names = r.names[r.kstarts[c] : r.kstarts[c + 1]]
        counts = r.counts[r.kstarts[c] : r.kstarts[c + 1]].tolist()
        local = r.local[r.pstarts[c] : r.pstarts[c + 1]].tolist()
        keys: list[list[str]] = [[] for _ in range(hi - lo)]
        at = 0
        for name, count in zip(names, counts, strict=True):
            run = local[at : at + count]
            if any(a >= b for a, b in zip(run, run[1:], strict=False)) or (
                run and run[-1] >= hi - lo
            ):
                raise CorruptionError(
                    f"{self.where} postings (key {name!r}): not ascending rows of its chunk"
                )
            for row in run:
                keys[row].append(name)
            at += count
        cols = self.columns[:, lo:hi].tolist()
        status, positive = cols[COL["status"]], cols[COL["positive"]]
        negative = cols[COL["negative"]]
        refs = self.refs[int(self.ref_offsets[lo]) : int(self.ref_offsets[hi])].decode()
        names_ = refs.split("\n")
        vecs = self.matrix[lo:hi].tolist() if vectors else [()] * (hi - lo)
        return [
            Row(names_[i], status[i], positive[i], negative[i], tuple(keys[i]), tuple(vecs[i]))
            for i in range(hi - lo)
        ]

    def view_lines(self, lo: int, hi: int) -> bytes:
        """The ``concept_vectors.jsonl`` lines of rows ``lo..hi`` (FORMAT §8.2)."""
        names = self.refs[int(self.ref_offsets[lo]) : int(self.ref_offsets[hi])].decode()
        out = []
        for name, vec in zip(names.split("\n"), self.matrix[lo:hi].tolist(), strict=False):
            concept, version = name.rsplit("@", 1)  # (ids and versions need no escapes)
            out.append(
                f'{{"id":"{concept}","vector":[{",".join(map(str, vec))}],"version":"{version}"}}\n'
            )
        return "".join(out).encode()

    def chunk_of(self, row: int) -> int:
        return int(np.searchsorted(self.starts, row, side="right")) - 1


_EMPTY = np.zeros(0, dtype=np.int32)
_EMPTY.flags.writeable = False


@dataclass
class Runs:
    """The chunks' key sections, joined: for each (chunk, key) run its key id, and where
    its local rows are; a key's postings are its runs' rows plus their chunks' first rows,
    in chunk order."""

    starts: np.ndarray  # int64 (chunks + 1,): each chunk's first row
    rows: np.ndarray  # int64 (chunks,)
    kbytes: bytes  # every chunk's key lines
    names: list[str]  # the key of each run
    counts: np.ndarray  # uint32 (runs,): rows per run
    local: np.ndarray  # uint32: the runs' local rows
    kstarts: list[int]  # each chunk's first run (and the number of runs)
    pstarts: list[int]  # each chunk's first local row in ``local``
    kbstarts: list[int]  # each chunk's first key byte in ``kbytes``
    csum: np.ndarray  # int64 (runs + 1,): each run's first local row in ``local``
    chunk: np.ndarray  # int64 (runs,): each run's chunk
    by_key: np.ndarray  # int64 (runs,): runs ordered by key id, then chunk
    key_runs: np.ndarray  # int64 (keys + 1,): each key's first run in ``by_key``

    def posting(self, k: int, where: str) -> np.ndarray:
        runs = self.by_key[int(self.key_runs[k]) : int(self.key_runs[k + 1])]
        lo, hi = self.csum[runs], self.csum[runs + 1]
        if len(runs) == 1:
            loc = self.local[int(lo[0]) : int(hi[0])]
        else:
            loc = np.concatenate(
                [self.local[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]
            )
        lengths = hi - lo
        chunks = self.chunk[runs]
        if bool((loc >= np.repeat(self.rows[chunks], lengths)).any()):
            raise CorruptionError(f"{where}: a local row is out of its chunk")
        out: np.ndarray = (loc + np.repeat(self.starts[chunks], lengths)).astype(np.int32)
        if len(out) > 1 and not bool((out[1:] > out[:-1]).all()):
            raise CorruptionError(f"{where}: rows of a key not strictly ascending")
        out.flags.writeable = False
        return out


def join(
    metas: list[Meta],
    fill: Fill,
    matrix: np.ndarray | Callable[[], np.ndarray],
    lists: tuple[bytes, bytes],
    where: str,
) -> Table:
    """A table from its chunks: every section read (``fill``) straight into its slice of
    the joined arrays, then what depends on all of them computed and every value a reader
    indexes with checked, vectorised (a chunk that matches its address can still disagree
    with itself: a hostile or buggy writer)."""
    n = sum(m.rows for m in metas)
    columns = np.empty((len(COLUMNS), n), dtype=np.uint32)
    refs = bytearray(sum(m.ref_bytes for m in metas))
    kbytes = bytearray(sum(m.key_bytes for m in metas))
    counts = np.empty(sum(m.keys for m in metas), dtype=np.uint32)
    local = np.empty(sum(m.postings for m in metas), dtype=np.uint32)
    header = bytearray(HEADER.size)
    rv, kv, cv, lv = memoryview(refs), memoryview(kbytes), counts.data, local.data
    cview = [columns[c].data for c in _STORED_AT]
    at = ra = ka = ca = la = 0
    for i, m in enumerate(metas):
        bufs = [memoryview(header)]
        bufs += [c[at : at + m.rows].cast("B") for c in cview]
        bufs += [rv[ra : ra + m.ref_bytes], kv[ka : ka + m.key_bytes]]
        bufs += [cv[ca : ca + m.keys].cast("B"), lv[la : la + m.postings].cast("B")]
        fill(i, m, bufs)
        want = HEADER.pack(ROWS_MAGIC, m.rows, m.ref_bytes, m.keys, m.key_bytes, m.postings, 0)
        if bytes(header) != want:
            raise CorruptionError(f"{where} rows chunk {i}: header does not match its list entry")
        at, ra, ka, ca, la = (
            at + m.rows,
            ra + m.ref_bytes,
            ka + m.key_bytes,
            ca + m.keys,
            la + m.postings,
        )
    table = _joined(metas, columns, bytes(refs), bytes(kbytes), counts, local, matrix, lists, where)
    table.where = where
    return table


def _joined(
    metas: list[Meta],
    columns: np.ndarray,
    refs: bytes,
    kbytes: bytes,
    counts: np.ndarray,
    local: np.ndarray,
    matrix: np.ndarray | Callable[[], np.ndarray],
    lists: tuple[bytes, bytes],
    where: str,
) -> Table:
    n = columns.shape[1]
    rows = np.array([m.rows for m in metas], dtype=np.int64)
    starts = np.zeros(len(metas) + 1, dtype=np.int64)
    np.cumsum(rows, out=starts[1:])
    status, first = columns[COL["status"]], columns[COL["first"]]
    if n and int(status.max()) > STATUS_MAX:
        row = int(np.argmax(status > STATUS_MAX))
        raise CorruptionError(f"{where} columns: row {row} has status {int(status[row])}")
    if n and (int(first.max()) > 1 or not bool((first[starts[:-1]] == 1).all())):
        raise CorruptionError(f"{where} columns: 'first' is not a 0/1 flag starting each chunk")
    # refs: one "id@version\n" per row, each chunk's own
    if not refs.isascii():
        raise CorruptionError(f"{where} refs: not ASCII")
    data = np.frombuffer(refs, dtype=np.uint8)
    ends = np.flatnonzero(data == NEWLINE)
    if len(ends) != n:
        raise CorruptionError(f"{where} refs: not {n} lines")
    ref_offsets = np.zeros(n + 1, dtype=np.int64)
    ref_offsets[1:] = ends + 1
    rb = np.zeros(len(metas) + 1, dtype=np.int64)
    np.cumsum([m.ref_bytes for m in metas], out=rb[1:])
    if not bool((ref_offsets[starts] == rb).all()):
        raise CorruptionError(f"{where} refs: a chunk's refs are not its rows' lines")
    at = np.flatnonzero(data == AT)
    if len(at) != n or (n and not bool(((at > ref_offsets[:-1]) & (at < ends - 1)).all())):
        raise CorruptionError(f"{where} refs: a line is not id@version")
    # the tie rank: version descending, then row order
    major, minor, patch = (columns[COL[c]] for c in ("major", "minor", "patch"))
    order = np.lexsort((~patch, ~minor, ~major))  # (uint32: ~ orders descending; stable)
    tail = columns[COL["tail"]]
    tail[order] = np.arange(n, dtype=np.uint32)
    # keys: each chunk's keys (ascending); their postings are joined on first use
    names = kbytes.decode("ascii", "replace").split("\n")
    if names.pop() != "" or len(names) != len(counts):
        raise CorruptionError(f"{where} keys: not one line per key")
    kstarts = [0]
    pstarts = [0]
    kbstarts = [0]
    for m in metas:
        kstarts.append(kstarts[-1] + m.keys)
        pstarts.append(pstarts[-1] + m.postings)
        kbstarts.append(kbstarts[-1] + m.key_bytes)
    for a, b in zip(kstarts, kstarts[1:], strict=False):
        chunk_keys = names[a:b]
        if any(x >= y for x, y in zip(chunk_keys, chunk_keys[1:], strict=False)):
            raise CorruptionError(f"{where} keys: a chunk's keys are not strictly ascending")
    keys = tuple(sorted(set(names)))
    index = {k: i for i, k in enumerate(keys)}
    gid = np.fromiter((index[k] for k in names), dtype=np.int64, count=len(names))
    csum = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=csum[1:])
    if not bool((csum[kstarts] == np.array(pstarts, dtype=np.int64)).all()):
        raise CorruptionError(f"{where} postings: key counts do not match a chunk's postings")
    key_runs = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(np.bincount(gid, minlength=len(keys)), out=key_runs[1:])
    runs = Runs(
        starts,
        rows,
        kbytes,
        names,
        counts,
        local,
        kstarts,
        pstarts,
        kbstarts,
        csum,
        np.repeat(np.arange(len(metas), dtype=np.int64), np.diff(kstarts)),
        np.argsort(gid, kind="stable"),
        key_runs,
    )
    return Table(metas, columns, ref_offsets, refs, keys, runs, matrix, lists)


def read_matrix(metas: list[Meta], into: Callable[[int, Meta, memoryview], None]) -> np.ndarray:
    """The joined matrix: each chunk read (``into``, checked against its address) straight
    into its rows of one array — no join, no copy. The caller seals it read-only."""
    n = sum(m.rows for m in metas)
    out = np.empty((n, DIM), dtype=np.int8)
    view, at = out.reshape(-1).data.cast("B"), 0
    for i, m in enumerate(metas):
        into(i, m, view[at : at + m.rows * DIM])
        at += m.rows * DIM
    return out


def read_object(fd: int, size: int, digest: str, what: str | Callable[[], str]) -> bytes:
    """An object's bytes (``size`` of them), checked against its address."""
    try:
        data = os.pread(fd, size + 1, 0)  # (a regular file: short only at its end)
        if len(data) != size:
            data = _all(fd, size + 1)
    except OSError as exc:
        name = what if isinstance(what, str) else what()
        raise CorruptionError(f"{name} cannot be read ({exc.strerror or exc})") from None
    if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
        name = what if isinstance(what, str) else what()
        raise CorruptionError(f"{name} does not match its address")
    return data


def read_into(fd: int, bufs: list[memoryview], digest: str, what: str | Callable[[], str]) -> None:
    """Read an object's bytes into ``bufs`` (one ``preadv``), checked against its address
    (``what`` names it in errors)."""
    size = sum(b.nbytes for b in bufs)
    try:
        got = os.preadv(fd, bufs, 0)
        if got != size or os.pread(fd, 1, size):  # short, or longer than its list says
            data = _all(fd, size + 1)
            if len(data) != size:
                name = what if isinstance(what, str) else what()
                raise CorruptionError(f"{name}: {len(data)} bytes, expected {size}")
            view, at = memoryview(data), 0
            for b in bufs:
                b[:] = view[at : at + b.nbytes]
                at += b.nbytes
    except OSError as exc:
        name = what if isinstance(what, str) else what()
        raise CorruptionError(f"{name} cannot be read ({exc.strerror or exc})") from None
    h = hashlib.sha256()
    for b in bufs:
        h.update(b)
    if h.hexdigest() != digest:
        name = what if isinstance(what, str) else what()
        raise CorruptionError(f"{name} does not match its address")


def _all(fd: int, size: int) -> bytes:
    parts, at = [], 0
    while at < size:
        part = os.pread(fd, size - at, at)
        if not part:
            break
        parts.append(part)
        at += len(part)
    return b"".join(parts)


def copy_into(blob: bytes, bufs: list[memoryview] | memoryview) -> None:
    """Fill ``bufs`` from an object's bytes in memory (made or read in this process)."""
    view, at = memoryview(blob), 0
    for b in [bufs] if isinstance(bufs, memoryview) else bufs:
        b[:] = view[at : at + b.nbytes]
        at += b.nbytes
    if at != len(blob):
        raise CorruptionError("a chunk's length does not match its list entry")


class _Keys(Sequence[tuple[str, tuple[int, int, int]]]):
    """The sort keys of a table's rows, decoded on demand (for bisect)."""

    def __init__(self, table: Table):
        self.table = table

    def __len__(self) -> int:
        return self.table.n

    def __getitem__(self, i: Any) -> Any:
        name = self.table.ref(i)
        try:
            return sort_key(name)
        except ValueError:  # a stored ref with a malformed version (checked lazily)
            raise CorruptionError(
                f"{self.table.where} refs: line {i + 1} ({name!r}) is not id@version"
            ) from None


# --------------------------------------------------------------------------- writing
Part = Chunk | tuple["Table", int]  # a chunk made here, or chunk i of a loaded table


def _sections(p: Part) -> tuple[Meta, np.ndarray, bytes, bytes, np.ndarray, np.ndarray]:
    """(meta, stored columns, refs, key bytes, key counts, local postings) of a part."""
    if isinstance(p, Chunk):
        m, blob = p.meta, p.blob
        at = HEADER.size
        cols = np.frombuffer(blob, dtype="<u4", count=len(STORED) * m.rows, offset=at)
        at += cols.nbytes
        refs = blob[at : at + m.ref_bytes]
        at += m.ref_bytes
        kb = blob[at : at + m.key_bytes]
        at += m.key_bytes
        counts = np.frombuffer(blob, dtype="<u4", count=m.keys, offset=at)
        local = np.frombuffer(blob, dtype="<u4", count=m.postings, offset=at + 4 * m.keys)
        return m, cols.reshape(len(STORED), m.rows), refs, kb, counts, local
    t, c = p
    m = t.metas[c]
    lo, hi = int(t.starts[c]), int(t.starts[c + 1])
    r = t.runs
    return (
        m,
        t.columns[_STORED_AT, lo:hi],
        t.refs[int(t.ref_offsets[lo]) : int(t.ref_offsets[hi])],
        r.kbytes[r.kbstarts[c] : r.kbstarts[c + 1]],
        r.counts[r.kstarts[c] : r.kstarts[c + 1]],
        r.local[r.pstarts[c] : r.pstarts[c + 1]],
    )


def _matrix_of(p: Part) -> np.ndarray:
    if isinstance(p, Chunk):
        return np.frombuffer(p.mblob, dtype=np.int8).reshape(p.meta.rows, DIM)
    t, c = p
    return t.matrix[int(t.starts[c]) : int(t.starts[c + 1])]


def from_chunks(parts: Sequence[Part]) -> Table:
    """A table of chunks made here and chunks of loaded tables, joined as a reader joins
    the stored objects (the same checks and derived arrays)."""
    secs = [_sections(p) for p in parts]
    metas = [s[0] for s in secs]
    n = sum(m.rows for m in metas)
    columns = np.empty((len(COLUMNS), n), dtype=np.uint32)
    if secs:
        columns[_STORED_AT] = np.concatenate([s[1] for s in secs], axis=1)
        matrix = np.concatenate([_matrix_of(p) for p in parts], axis=0)
    else:
        matrix = np.zeros((0, DIM), dtype=np.int8)
    empty = np.zeros(0, dtype=np.uint32)
    table = _joined(
        metas,
        columns,
        b"".join(s[2] for s in secs),
        b"".join(s[3] for s in secs),
        np.concatenate([s[4] for s in secs]).astype(np.uint32) if secs else empty,
        np.concatenate([s[5] for s in secs]).astype(np.uint32) if secs else empty,
        matrix,
        list_bytes(metas),
        "the table",
    )
    table.new = [p for p in parts if isinstance(p, Chunk)]
    return table


def build(rows: Iterable[Row]) -> Table:
    """A table of ``rows`` from scratch."""
    ordered = sorted(rows, key=Row.sort_key)
    return from_chunks([make_chunk(c) for c in chunk_rows(ordered)])


def update(base: Table, changes: Mapping[str, Row]) -> Table:
    """``base`` with ``changes`` applied: rows of existing refs replaced (their keys never
    change: a card is immutable), new refs inserted in order. Only the chunks from the one
    the first change may move the start of, up to where the boundaries agree again, are
    made anew; the others are ``base``'s."""
    if not changes:
        return base
    ordered = sorted(changes.values(), key=Row.sort_key)
    keys_seq = _Keys(base)
    positions = [bisect.bisect_left(keys_seq, r.sort_key()) for r in ordered]
    k = len(base.metas)
    first = base.chunk_of(positions[0])  # (k for an append at the end)
    c0 = first - 1 if first > 0 and positions[0] == int(base.starts[first]) else first
    rows: list[Row] = []
    src: list[int] = []  # each row's base row (its vector), or -1: a change (its own)
    j, c, cut = 0, c0, None
    while c < k:
        lo, hi = int(base.starts[c]), int(base.starts[c + 1])
        for i, r in enumerate(base.chunk_rows(c, vectors=False), start=lo):
            while j < len(ordered) and positions[j] == i and ordered[j].ref != r.ref:
                rows.append(ordered[j])  # inserted before row i
                src.append(-1)
                j += 1
            if j < len(ordered) and positions[j] == i:
                rows.append(ordered[j])  # replaces row i
                src.append(-1)
                j += 1
            else:
                rows.append(r)
                src.append(i)
        c += 1
        if j == len(ordered) and c < k:
            cut = chunk_rows(rows)
            if _starts_here(cut, base.ref(hi)):
                break  # the rest of base is chunked as before
            cut = None
    if cut is None:
        rows += ordered[j:]  # (appended after the last row)
        src += [-1] * (len(ordered) - j)
        cut = chunk_rows(rows)
    parts: list[Part] = [(base, x) for x in range(c0)]
    at = 0
    for x in cut:
        where = np.array(src[at : at + len(x)], dtype=np.int64)
        at += len(x)
        vec = np.empty((len(x), DIM), dtype=np.int8)
        kept = where >= 0
        vec[kept] = base.matrix[where[kept]]
        made = np.flatnonzero(~kept)
        if len(made):
            vec[made] = np.array([x[i].vector for i in made.tolist()], dtype=np.int8)
        parts.append(make_chunk(x, vec))
    parts += [(base, x) for x in range(c, k)]
    table = from_chunks(parts)
    tail = np.arange(int(base.starts[c]), base.n, dtype=np.int64)
    head = np.arange(int(base.starts[c0]), dtype=np.int64)
    table.origin = (base, np.concatenate([head, np.array(src, dtype=np.int64), tail]))
    return table


def _starts_here(cut: list[list[Row]], next_ref: str) -> bool:
    """Whether a row of ``next_ref`` after the cut chunks starts a new chunk."""
    concept = next_ref.rsplit("@", 1)[0]
    return concept != cut[-1][-1].concept and (len(cut[-1]) >= CUT_MAX or cuts_at(concept))
