"""The table: a generation's concept versions as binary columns, vectors and key postings.

Rows are the concept versions in the order of ``concept_vectors.jsonl``: by id (code point
order), then by semantic version ascending. A generation stores (all content-addressed,
named by its manifest; arrays as NPY 1.0, little-endian):

* ``columns``  uint32 ``(len(COLUMNS), N)``, one contiguous row per column (``COLUMNS``);
* ``offsets``  uint64 ``(2, N + 1)``: where each row's line starts in ``concept_vectors.jsonl``
  (row 0) and in ``refs`` (row 1);
* ``matrix``   int8 ``(N, DIM)``: the concept vectors (the binary form of the JSONL);
* ``refs``     bytes: ``id@version\\n`` per row;
* ``keys``     canonical JSON ``{"keys": [sorted], "offsets": [...]}`` into ``postings``;
* ``postings`` int32 ``(M,)``: for each key, the rows holding it, ascending.

``build`` makes a table from rows; ``update`` applies changed and new rows to a stored table
with vectorised copies (no parsing, no Python loop over unchanged rows). Both give the same
bytes for the same rows — the property tests check it.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from vault.canonical import canonical_bytes, loads_trusted
from vault.embedding import DIM
from vault.errors import CorruptionError
from vault.records.cards import parse_version
from vault.store.arrays import load_npy, npy_bytes

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
# The schema of a generation manifest (written by vault.index.build, read by the snapshot).
MANIFEST_SCHEMA_VERSION = 3  # 3: the table has per-part norms (10 columns)
TABLE_OBJECTS = ("columns", "offsets", "matrix", "refs", "keys", "postings")


@dataclass(frozen=True)
class Row:
    """One concept version as the table stores it."""

    ref: str
    status: int  # 0 active, 1 deprecated, 2 suppressed
    positive: int
    negative: int
    keys: tuple[str, ...]
    vector: tuple[int, ...]
    line: bytes  # its concept_vectors.jsonl line, newline included

    @property
    def concept(self) -> str:
        return self.ref.rsplit("@", 1)[0]

    def sort_key(self) -> tuple[str, tuple[int, int, int]]:
        return sort_key(self.ref)


def sort_key(name: str) -> tuple[str, tuple[int, int, int]]:
    concept, version = name.rsplit("@", 1)
    return concept, parse_version(version)


class Table:
    """A table in memory; ``vectors`` (``concept_vectors.jsonl``) may be loaded on first use,
    since retrieval never needs it."""

    where = "the table"  # how errors name it (a loaded one: its generation)

    def __init__(
        self,
        columns: np.ndarray,  # uint32 (len(COLUMNS), N)
        offsets: np.ndarray,  # uint64 (2, N + 1)
        matrix: np.ndarray | Callable[[], np.ndarray],  # int8 (N, DIM)
        refs: bytes,
        keys: tuple[str, ...],
        key_offsets: np.ndarray,  # int64 (len(keys) + 1,)
        postings: np.ndarray,  # int32
        vectors: bytes | Callable[[], bytes],
    ):
        self.columns = columns
        self.offsets = offsets
        self._matrix = matrix
        self.refs = refs
        self.keys = keys
        self.key_offsets = key_offsets
        self.postings = postings
        self._vectors = vectors

    @property
    def vectors(self) -> bytes:
        if callable(self._vectors):
            data = self._vectors()
            if len(data) != int(self.offsets[0, -1]):
                raise CorruptionError("concept_vectors.jsonl does not match the table")
            self._vectors = data
        return self._vectors

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
    def n(self) -> int:
        return int(self.columns.shape[1])

    @cached_property
    def groups(self) -> np.ndarray:
        """The id group of each row (rows of one concept id share it), int32."""
        return np.cumsum(self.col("first"), dtype=np.int32) - 1

    def col(self, name: str) -> np.ndarray:
        column: np.ndarray = self.columns[COL[name]]
        return column

    def ref(self, row: int) -> str:
        start, end = int(self.offsets[1, row]), int(self.offsets[1, row + 1])
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
        i = bisect.bisect_left(self.keys, key)
        if i == len(self.keys) or self.keys[i] != key:
            return self.postings[:0]
        return self.postings[int(self.key_offsets[i]) : int(self.key_offsets[i + 1])]

    def line(self, row: int) -> bytes:
        return self.vectors[int(self.offsets[0, row]) : int(self.offsets[0, row + 1])]

    def blobs(self) -> dict[str, bytes]:
        """The table's objects, by manifest name."""
        keys = {"keys": list(self.keys), "offsets": [int(x) for x in self.key_offsets]}
        return {
            "columns": npy_bytes(self.columns),
            "offsets": npy_bytes(self.offsets),
            "matrix": npy_bytes(self.matrix),
            "refs": self.refs,
            "keys": canonical_bytes(keys),
            "postings": npy_bytes(self.postings),
        }

    @classmethod
    def from_blobs(
        cls,
        blobs: Mapping[str, bytes],
        matrix_blob: Callable[[], bytes],
        vectors: bytes | Callable[[], bytes],
        where: str,
    ) -> Table:
        """A table from its stored objects: addresses are checked by the caller; shapes,
        and every value a reader indexes with, here (``_invalid``: a ``CorruptionError``
        naming the object). The matrix and the vectors file are loaded on first use."""
        columns = load_npy(blobs["columns"], f"{where} columns")
        offsets = load_npy(blobs["offsets"], f"{where} offsets")
        postings = load_npy(blobs["postings"], f"{where} postings")
        try:
            keys = loads_trusted(blobs["keys"])
            names = tuple(keys["keys"])
            key_offsets = np.array(keys["offsets"], dtype=np.int64)
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise CorruptionError(f"{where} keys: malformed ({exc})") from None
        n = columns.shape[1] if columns.ndim == 2 else -1
        if (
            columns.dtype != np.uint32
            or columns.shape != (len(COLUMNS), n)
            or offsets.dtype != np.uint64
            or offsets.shape != (2, n + 1)
            or postings.dtype != np.int32
            or postings.ndim != 1
            or key_offsets.shape != (len(names) + 1,)
            or int(key_offsets[-1]) != postings.shape[0]
            or int(offsets[1, -1]) != len(blobs["refs"])
        ):
            raise CorruptionError(f"{where}: table objects disagree in shape")
        problem = _invalid(columns, offsets, blobs["refs"], names, key_offsets, postings)
        if problem is not None:
            raise CorruptionError(f"{where} {problem}")
        table = cls(
            columns,
            offsets,
            lambda: load_npy(matrix_blob(), f"{where} matrix"),
            blobs["refs"],
            names,
            key_offsets,
            postings,
            vectors,
        )
        table.where = where
        return table


STATUS_MAX = 2  # 0 active, 1 deprecated, 2 suppressed
NEWLINE, AT = ord("\n"), ord("@")


def _invalid(
    columns: np.ndarray,
    offsets: np.ndarray,
    refs: bytes,
    names: tuple[Any, ...],
    key_offsets: np.ndarray,
    postings: np.ndarray,
) -> str | None:
    """What makes stored table objects (of matching shapes) unusable, or None: every value
    the readers index with or rely on is checked, vectorised (a generation whose objects all
    match their addresses can still disagree with itself: a hostile or buggy writer). Not
    checked here: that the content is the right one (``vault verify`` rebuilds it)."""
    n = columns.shape[1]
    status, first, tail = columns[COL["status"]], columns[COL["first"]], columns[COL["tail"]]
    if n and int(status.max()) > STATUS_MAX:
        row = int(np.argmax(status > STATUS_MAX))
        return f"columns: row {row} has status {int(status[row])} (0..{STATUS_MAX})"
    if n and (int(first[0]) != 1 or int(first.max()) > 1):
        return "columns: 'first' is not a 0/1 flag starting with 1"
    if n and (int(tail.max()) >= n or not bool((np.bincount(tail, minlength=n) == 1).all())):
        return f"columns: 'tail' is not an order of the {n} rows"
    if int(offsets[0, 0]) != 0 or int(offsets[1, 0]) != 0:
        return "offsets: do not start at 0"
    steps = np.diff(offsets.astype(np.int64), axis=1)
    if n and not bool((steps[1] >= 4).all()):  # "a@b\n": a ref is never shorter
        return f"offsets: ref of row {int(np.argmax(steps[1] < 4))} is too short"
    if n and not bool((steps[0] > 0).all()):
        return f"offsets: vector line of row {int(np.argmax(steps[0] <= 0))} is empty"
    if not refs.isascii():  # ids and versions are ASCII (their schemas)
        return "refs: not ASCII"
    data = np.frombuffer(refs, dtype=np.uint8)
    starts, ends = offsets[1, :-1].astype(np.int64), offsets[1, 1:].astype(np.int64) - 1
    lines = int(np.count_nonzero(data == NEWLINE))  # (bytes.count is 3x slower here)
    if lines != n or (n and not bool((data[ends] == NEWLINE).all())):
        return f"refs: not {n} lines"
    at = np.flatnonzero(data == AT)  # ids hold no '@': one per line, between id and version
    if len(at) != n:
        return f"refs: {len(at)} '@' for {n} lines of id@version"
    ok = (at > starts) & (at < ends - 1)
    if n and not bool(ok.all()):
        return f"refs: line {int(np.argmax(~ok)) + 1} is not id@version"
    if not all(type(k) is str for k in names) or any(
        a >= b for a, b in zip(names, names[1:], strict=False)
    ):
        return "keys: not strictly ascending strings"
    if int(key_offsets[0]) != 0 or not bool((np.diff(key_offsets) >= 0).all()):
        return "keys: offsets into postings are not ascending from 0"
    if len(postings) and (int(postings.min()) < 0 or int(postings.max()) >= n):
        bad = postings[(postings < 0) | (postings >= n)][0]
        return f"postings: row {int(bad)} out of range (the table has {n} rows)"
    rising = np.diff(postings) > 0
    new_key = key_offsets[1:-1]  # where each key after the first starts
    rising[new_key[(new_key > 0) & (new_key < len(postings))] - 1] = True
    if not bool(rising.all()):
        return "postings: rows of a key not strictly ascending"
    return None


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


def _tail(columns: np.ndarray) -> np.ndarray:
    """Rank of each row by version descending, then row order (= id ascending)."""
    n = columns.shape[1]
    major, minor, patch = (columns[COL[c]].astype(np.int64) for c in ("major", "minor", "patch"))
    order = np.lexsort((-patch, -minor, -major))  # stable: equal versions keep row (id) order
    tail = np.empty(n, dtype=np.uint32)
    tail[order] = np.arange(n, dtype=np.uint32)
    return tail


def _row_columns(rows: Sequence[Row]) -> np.ndarray:
    cols = np.zeros((len(COLUMNS), len(rows)), dtype=np.uint32)
    for j, r in enumerate(rows):
        major, minor, patch = parse_version(r.ref.rsplit("@", 1)[1])
        cols[1:7, j] = (r.status, r.positive, r.negative, major, minor, patch)
    if rows:
        from vault.embedding.similarity import APPEARANCE_DIMS, BEHAVIOUR_DIMS, squared_norms

        vec = np.array([r.vector for r in rows], dtype=np.int64)
        cols[COL["norm2_appearance"]] = squared_norms(vec, APPEARANCE_DIMS)
        cols[COL["norm2_behaviour"]] = squared_norms(vec, BEHAVIOUR_DIMS)
    return cols


def _matrix(rows: Sequence[Row]) -> np.ndarray:
    return np.array([r.vector for r in rows], dtype=np.int8).reshape(len(rows), DIM)


def _starts(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.uint64)
    np.cumsum(lengths, out=out[1:])
    return out


def build(rows: Iterable[Row]) -> Table:
    """A table of ``rows`` from scratch."""
    ordered = sorted(rows, key=Row.sort_key)
    columns = _row_columns(ordered)
    concepts = [r.concept for r in ordered]
    columns[COL["first"]] = [
        1 if i == 0 or concepts[i] != concepts[i - 1] else 0 for i in range(len(ordered))
    ]
    columns[COL["tail"]] = _tail(columns)
    refs = [r.ref.encode() + b"\n" for r in ordered]
    lines = [r.line for r in ordered]
    offsets = np.stack(
        [
            _starts(np.array([len(x) for x in lines], dtype=np.uint64)),
            _starts(np.array([len(x) for x in refs], dtype=np.uint64)),
        ]
    )
    by_key: dict[str, list[int]] = {}
    for i, r in enumerate(ordered):
        for key in r.keys:
            by_key.setdefault(key, []).append(i)
    keys = tuple(sorted(by_key))
    postings = np.array([i for k in keys for i in by_key[k]], dtype=np.int32)
    key_offsets = _starts(np.array([len(by_key[k]) for k in keys], dtype=np.uint64)).astype(
        np.int64
    )
    return Table(
        columns,
        offsets,
        _matrix(ordered),
        b"".join(refs),
        keys,
        key_offsets,
        postings,
        b"".join(lines),
    )


def update(base: Table, changes: Mapping[str, Row]) -> Table:
    """``base`` with ``changes`` applied: rows of existing refs replaced (their keys never
    change: a card is immutable), new refs inserted in order."""
    modified: dict[int, Row] = {}
    inserted: list[Row] = []
    for name, row in changes.items():
        i = base.find(name)
        if i is None:
            inserted.append(row)
        else:
            modified[i] = row
    inserted.sort(key=Row.sort_key)
    keys_seq = _Keys(base)
    positions = np.array(
        [bisect.bisect_left(keys_seq, r.sort_key()) for r in inserted], dtype=np.int64
    )

    # columns and matrix: replace modified rows, then insert new ones
    columns = base.columns.copy()
    matrix = base.matrix.copy()
    line_len = np.diff(base.offsets[0]).astype(np.uint64)
    if modified:
        idx = np.array(sorted(modified), dtype=np.int64)
        mod_rows = [modified[i] for i in idx]
        first = columns[COL["first"], idx]
        columns[:, idx] = _row_columns(mod_rows)
        columns[COL["first"], idx] = first
        matrix[idx] = _matrix(mod_rows)
        line_len[idx] = [len(r.line) for r in mod_rows]
    new_cols = _row_columns(inserted)
    columns = np.insert(columns, positions, new_cols, axis=1) if inserted else columns
    matrix = np.insert(matrix, positions, _matrix(inserted), axis=0) if inserted else matrix
    new_at = positions + np.arange(len(inserted), dtype=np.int64)  # rows in the new table

    refs_list = _Refs(base, inserted, positions)
    columns[COL["first"]] = _first_flags(columns[COL["first"]], new_at, refs_list)
    columns[COL["tail"]] = _tail(columns)

    # offsets
    ref_len = np.diff(base.offsets[1]).astype(np.uint64)
    if inserted:
        line_len = np.insert(line_len, positions, [len(r.line) for r in inserted])
        ref_len = np.insert(ref_len, positions, [len(r.ref) + 1 for r in inserted])
    offsets = np.stack([_starts(line_len), _starts(ref_len)])

    # postings: shift old rows past the insertions, add the inserted rows' keys
    shift = np.searchsorted(positions, base.postings, side="right") if inserted else 0
    old = (base.postings + shift).astype(np.int32)
    added: dict[str, list[int]] = {}
    for j, r in enumerate(inserted):
        for key in r.keys:
            added.setdefault(key, []).append(int(new_at[j]))
    keys = tuple(sorted(set(base.keys) | set(added)))
    parts: list[np.ndarray] = []
    lengths = []
    for key in keys:
        i = bisect.bisect_left(base.keys, key)
        have = (
            old[int(base.key_offsets[i]) : int(base.key_offsets[i + 1])]
            if i < len(base.keys) and base.keys[i] == key
            else old[:0]
        )
        if key in added:
            have = np.sort(np.concatenate([have, np.array(added[key], dtype=np.int32)]))
        parts.append(have)
        lengths.append(len(have))
    postings = np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, dtype=np.int32)
    key_offsets = _starts(np.array(lengths, dtype=np.uint64)).astype(np.int64)

    vectors = _splice(base.vectors, base.offsets[0], modified, inserted, positions, "line")
    refs = _splice(base.refs, base.offsets[1], {}, inserted, positions, "ref")
    return Table(columns, offsets, matrix, refs, keys, key_offsets, postings, vectors)


class _Refs:
    """The concept ids of the new table's rows, decoded on demand."""

    def __init__(self, base: Table, inserted: list[Row], positions: np.ndarray):
        self.base = base
        self.inserted = inserted
        self.new_at = positions + np.arange(len(inserted), dtype=np.int64)

    def __len__(self) -> int:
        return self.base.n + len(self.inserted)

    def concept(self, i: int) -> str:
        j = int(np.searchsorted(self.new_at, i, side="left"))
        if j < len(self.inserted) and int(self.new_at[j]) == i:
            return self.inserted[j].concept
        return self.base.ref(i - j).rsplit("@", 1)[0]


def _first_flags(flags: np.ndarray, new_at: np.ndarray, refs: _Refs) -> np.ndarray:
    """First-of-id flags after insertions: only inserted rows and the rows right after them
    can change."""
    flags = flags.copy()
    check = set()
    for i in new_at:
        check.add(int(i))
        check.add(int(i) + 1)
    for i in sorted(check):
        if i < len(refs):
            flags[i] = 1 if i == 0 or refs.concept(i) != refs.concept(i - 1) else 0
    return flags


def _splice(
    data: bytes,
    starts: np.ndarray,
    modified: Mapping[int, Row],
    inserted: list[Row],
    positions: np.ndarray,
    what: str,
) -> bytes:
    """``data`` (one item per base row, at ``starts``) with modified items replaced and new
    items inserted before base rows ``positions``: big slices copied once."""

    def item(r: Row) -> bytes:
        return r.line if what == "line" else r.ref.encode() + b"\n"

    events: list[tuple[int, int, bytes]] = []  # (base row, 0 insert-before | 1 replace, bytes)
    for r, p in zip(inserted, positions, strict=True):
        events.append((int(p), 0, item(r)))
    for i, r in modified.items():
        events.append((i, 1, item(r)))
    events.sort(key=lambda e: (e[0], e[1]))
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    at = 0
    for row, kind, blob in events:
        cut = int(starts[row])
        parts.append(view[at:cut])
        parts.append(blob)
        at = int(starts[row + 1]) if kind == 1 else cut
    parts.append(view[at:])
    return b"".join(parts)


def vector_line(concept: str, version: str, vector: Sequence[int]) -> bytes:
    """The canonical ``concept_vectors.jsonl`` line of one concept version."""
    return canonical_bytes({"id": concept, "vector": list(vector), "version": version}) + b"\n"


def parse_line(line: bytes) -> tuple[str, tuple[int, ...]]:
    """(ref, vector) of a trusted canonical vector line."""
    obj = json.loads(line)
    return f"{obj['id']}@{obj['version']}", tuple(obj["vector"])
