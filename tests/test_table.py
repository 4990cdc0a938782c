"""vault.index.table: a stored table is checked when it is loaded. Objects that all match
their addresses can still disagree with each other (a hostile or buggy writer): each such
table is a ``CorruptionError`` naming the generation and the object, never an IndexError
later; and no table ``build`` or ``update`` makes is ever refused."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.embedding import DIM
from vault.errors import CorruptionError
from vault.index import table as tables
from vault.index.table import Row, Table

WHERE = "generation 0123456789ab"


def _row(cid: str, version: str, keys: tuple[str, ...], status: int = 0, seed: int = 0) -> Row:
    vector = tuple((seed * 7 + i) % 255 - 127 for i in range(DIM))
    return Row(f"{cid}@{version}", status, 1, 0, keys, vector)


ROWS = [
    _row("flip", "1.0.0", ("transform:flip_h", "feature:square")),
    _row("flip", "1.1.0", ("transform:flip_h",), status=1, seed=1),
    _row("rotate", "1.0.0", ("transform:rotate_90", "feature:square"), seed=2),
    _row("zoom", "2.0.0", ("feature:square",), status=2, seed=3),
]


def _load(t: Table, blobs: list[bytes] | None = None) -> Table:
    """``t`` joined from its chunks' bytes (``blobs``: edited ones) as a reader joins them."""
    made = {c.meta.digest: c for c in t.new}
    data = blobs if blobs is not None else [made[m.digest].blob for m in t.metas]
    mats = [made[m.digest].mblob for m in t.metas]

    def matrix() -> np.ndarray:
        return tables.read_matrix(t.metas, lambda i, m, b: tables.copy_into(mats[i], b))

    return tables.join(
        t.metas, lambda i, m, b: tables.copy_into(data[i], b), matrix, t.lists, WHERE
    )


def _section(name: str, index: int, value: int) -> Callable[[bytearray, tables.Meta], None]:
    """Set element ``index`` of a uint32 section (a column by name, or counts/postings)."""

    def change(blob: bytearray, m: tables.Meta) -> None:
        at = tables.HEADER.size
        if name in tables.STORED:
            at += 4 * (tables.STORED.index(name) * m.rows + index)
        else:
            at += 4 * len(tables.STORED) * m.rows + m.ref_bytes + m.key_bytes
            at += 4 * (index if name == "counts" else m.keys + index)
        blob[at : at + 4] = struct.pack("<I", value & 0xFFFFFFFF)

    return change


def _bytes(old: bytes, new: bytes) -> Callable[[bytearray, tables.Meta], None]:
    def change(blob: bytearray, m: tables.Meta) -> None:
        assert len(old) == len(new) and old in blob
        at = blob.index(old, tables.HEADER.size)
        blob[at : at + len(old)] = new

    return change


BAD: dict[str, tuple[Callable[[bytearray, tables.Meta], None], str]] = {
    "postings: a row beyond the chunk": (
        _section("postings", 0, 10_000),
        "postings (key 'feature:square'): a local row is out of its chunk",
    ),
    "postings: a key's rows out of order": (
        _section("postings", 1, 0),
        "postings (key 'feature:square'): rows of a key not strictly ascending",
    ),
    "counts: more postings than the chunk has": (
        _section("counts", 0, 99),
        "postings: key counts do not match",
    ),
    "columns: status 7": (_section("status", 2, 7), "status 7"),
    "columns: first flag 0 on row 0": (_section("first", 0, 0), "columns: 'first'"),
    "columns: first flag 2": (_section("first", 1, 2), "columns: 'first'"),
    "header: another row count": (
        lambda blob, m: blob.__setitem__(slice(8, 12), struct.pack("<I", 5)),
        "header does not match its list entry",
    ),
    "refs: no @": (_bytes(b"rotate@", b"rotate#"), "refs: a line is not id@version"),
    "refs: two @ in a line, none in another": (
        _bytes(b"rotate@1.0.0\nzoom@", b"rotate@1@0.0\nzoom#"),
        "refs: a line is not id@version",
    ),
    "refs: empty id": (_bytes(b"\nrotate@1.0.0", b"\n@otate11.0.0"), "refs: a line"),
    "refs: empty version": (_bytes(b"zoom@2.0.0", b"zoom2.0.0@"), "refs: a line"),
    "refs: not ASCII": (_bytes(b"zoom", b"zo\xffm"), "refs: not ASCII"),
    "refs: a newline inside a ref": (_bytes(b"zoom@", b"zo\nm@"), "refs: not 4 lines"),
    "keys: unsorted": (
        _bytes(b"feature:square\ntransform:flip_h", b"transform:flip_h\nfeature:square"),
        "keys: a chunk's keys are not strictly ascending",
    ),
}


def test_a_valid_table_loads_and_answers() -> None:
    t = _load(tables.build(ROWS))
    assert t.n == 4 and t.find("rotate@1.0.0") == 2
    assert t.posting("feature:square").tolist() == [0, 2, 3]
    assert t.col("tail").tolist() == [2, 1, 3, 0]  # 2.0.0, 1.1.0, then 1.0.0 by row


@pytest.mark.parametrize("case", list(BAD))
def test_an_inconsistent_table_is_a_corruption_error_naming_the_generation(case: str) -> None:
    change, message = BAD[case]
    t = tables.build(ROWS)
    assert len(t.metas) == 1
    blob = bytearray(t.new[0].blob)
    change(blob, t.metas[0])
    with pytest.raises(CorruptionError) as info:
        loaded = _load(t, [bytes(blob)])
        for key in loaded.keys:  # (a key's postings are checked when first read)
            loaded.posting(key)
    assert str(info.value).startswith(f"{WHERE} "), info.value
    assert message in str(info.value), info.value


def test_a_malformed_version_in_refs_is_a_corruption_error_when_read() -> None:
    """Versions are parsed on load only as the columns say (a Python loop over every row
    is avoided): a find that meets a malformed one says which line of refs is wrong."""
    t = tables.build(ROWS)
    blob = t.new[0].blob.replace(b"rotate@1.0.0", b"rotate@1.0x0")
    loaded = _load(t, [blob])
    with pytest.raises(CorruptionError, match=r"generation 0123456789ab refs: line \d"):
        loaded.find("zoom@2.0.0")


def test_a_chunk_that_does_not_match_its_address_is_refused(tmp_path: Path) -> None:
    t = tables.build(ROWS)
    path = tmp_path / "chunk"
    path.write_bytes(t.new[0].blob[:-1] + bytes([t.new[0].blob[-1] ^ 1]))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(CorruptionError, match="does not match its address"):
            tables.join(
                t.metas,
                lambda i, m, b: tables.read_into(fd, b, m.digest, "rows chunk"),
                lambda: np.zeros((4, DIM), np.int8),
                t.lists,
                WHERE,
            )
    finally:
        os.close(fd)


IDS = st.text(alphabet="abcxyz-", min_size=1, max_size=4).filter(lambda s: s[0] != "-")
KEYS = st.sampled_from(["feature:a", "feature:b", "transform:c", "invariant:d"])
ROW_SPECS = st.tuples(
    IDS,
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
    st.frozensets(KEYS, max_size=3),
    st.integers(0, 2),
)


def _rows(specs: list[Any], seed: int = 0) -> list[Row]:
    seen: dict[str, Row] = {}
    for i, (cid, v, keys, status) in enumerate(specs):
        version = ".".join(map(str, v))
        seen[f"{cid}@{version}"] = _row(cid, version, tuple(sorted(keys)), status, seed + i)
    return list(seen.values())


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW_SPECS, max_size=40), st.lists(ROW_SPECS, max_size=8))
def test_update_makes_the_bytes_of_a_full_build(base: list[Any], more: list[Any]) -> None:
    """Byte-determinism with many chunks (small cut constants): a table updated with
    replaced and inserted rows has the chunks, lists and joined arrays of a full build of
    the same rows; it makes only the chunks the full build has and the base lacks; and
    both load as they are in memory."""
    old = (tables.CUT_EVERY, tables.CUT_MAX)
    tables.CUT_EVERY, tables.CUT_MAX = 3, 4
    try:
        rows = _rows(base)
        built = tables.build(rows)
        changes = {r.ref: r for r in _rows(more, seed=100)}
        updated = tables.update(built, changes)
        full = tables.build({**{r.ref: r for r in rows}, **changes}.values())
    finally:
        tables.CUT_EVERY, tables.CUT_MAX = old
    assert updated.lists == full.lists
    assert [m.digest for m in updated.metas] == [m.digest for m in full.metas]
    if changes:  # each row's base row, for the summaries (-1: a changed row), by its ref
        at = {built.ref(i): i for i in range(built.n)}
        want = [-1 if updated.ref(i) in changes else at[updated.ref(i)] for i in range(updated.n)]
        assert updated.origin is not None and updated.origin[0] is built
        assert updated.origin[1].tolist() == want
    base_digests = {m.digest for m in built.metas}
    assert {c.meta.digest for c in updated.new} <= {m.digest for m in full.metas}
    assert all(
        m.digest in base_digests or m.digest in {c.meta.digest for c in updated.new}
        for m in updated.metas
    )
    made = {c.meta.digest: c for c in [*built.new, *updated.new]}
    for t in (full, updated):
        blobs = [made[m.digest].blob if m.digest in made else b"" for m in t.metas]
        loaded = _load(
            full,
            [
                b or {c.meta.digest: c.blob for c in full.new}[m.digest]
                for b, m in zip(blobs, t.metas, strict=True)
            ],
        )
        assert loaded.refs == t.refs and np.array_equal(loaded.columns, t.columns)
        assert loaded.keys == t.keys and [loaded.posting(k).tolist() for k in loaded.keys] == [
            t.posting(k).tolist() for k in t.keys
        ]
        assert np.array_equal(loaded.matrix, t.matrix)


def test_a_write_back_makes_one_or_two_chunks_of_many() -> None:
    rows = [_row(f"c{i:05d}", "1.0.0", ("feature:a",), seed=i) for i in range(6000)]
    base = tables.build(rows)
    assert len(base.metas) >= 3
    t = tables.update(base, {"c02500x@1.0.0": _row("c02500x", "1.0.0", ("feature:b",), seed=9)})
    assert 1 <= len(t.new) <= 2 and t.n == 6001
    assert t.posting("feature:b").tolist() == [t.find("c02500x@1.0.0")]


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW_SPECS, max_size=12), st.lists(ROW_SPECS, max_size=6))
def test_every_table_build_and_update_make_loads(base: list[Any], more: list[Any]) -> None:
    """No false alarm: tables made by ``build`` and by ``update`` (replaced and inserted
    rows), empty ones too, pass the checks and answer as the table in memory."""
    rows = _rows(base)
    built = tables.build(rows)
    changes = {r.ref: r for r in _rows(more)}
    made = {c.meta.digest: c.blob for c in built.new}
    for t in (built, tables.update(built, changes)):
        made.update({c.meta.digest: c.blob for c in t.new})
        loaded = _load(t, [made[m.digest] for m in t.metas]) if t.new or not t.metas else t
        assert loaded.n == t.n and loaded.refs == t.refs
        assert [loaded.posting(k).tolist() for k in loaded.keys] == [
            t.posting(k).tolist() for k in t.keys
        ]
