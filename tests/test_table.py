"""vault.index.table: a stored table is checked when it is loaded. Objects that all match
their addresses can still disagree with each other (a hostile or buggy writer): each such
table is a ``CorruptionError`` naming the generation and the object, never an IndexError
later; and no table ``build`` or ``update`` makes is ever refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.embedding import DIM
from vault.errors import CorruptionError
from vault.index import table as tables
from vault.index.table import COL, Row, Table
from vault.store.arrays import load_npy, npy_bytes

WHERE = "generation 0123456789ab"


def _row(cid: str, version: str, keys: tuple[str, ...], status: int = 0, seed: int = 0) -> Row:
    vector = tuple((seed * 7 + i) % 255 - 127 for i in range(DIM))
    return Row(
        f"{cid}@{version}", status, 1, 0, keys, vector, tables.vector_line(cid, version, vector)
    )


ROWS = [
    _row("flip", "1.0.0", ("transform:flip_h", "feature:square")),
    _row("flip", "1.1.0", ("transform:flip_h",), status=1, seed=1),
    _row("rotate", "1.0.0", ("transform:rotate_90", "feature:square"), seed=2),
    _row("zoom", "2.0.0", ("feature:square",), status=2, seed=3),
]


def _load(blobs: dict[str, bytes]) -> Table:
    matrix = blobs["matrix"]
    return Table.from_blobs(blobs, lambda: matrix, lambda: b"", WHERE)


def _blobs(rows: list[Row] = ROWS) -> dict[str, bytes]:
    return tables.build(rows).blobs()


def _npy(name: str, edit: Callable[[np.ndarray], None]) -> Callable[[dict[str, bytes]], None]:
    def change(blobs: dict[str, bytes]) -> None:
        a = np.array(load_npy(blobs[name], name))
        edit(a)
        blobs[name] = npy_bytes(a)

    return change


def _keys(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, bytes]], None]:
    def change(blobs: dict[str, bytes]) -> None:
        k = json.loads(blobs["keys"])
        edit(k)
        blobs["keys"] = json.dumps(k).encode()

    return change


def _set(a: np.ndarray, index: Any, value: int) -> None:
    a[index] = value


def _refs(old: bytes, new: bytes) -> Callable[[dict[str, bytes]], None]:
    def change(blobs: dict[str, bytes]) -> None:
        assert len(old) == len(new) and old in blobs["refs"]
        blobs["refs"] = blobs["refs"].replace(old, new, 1)

    return change


BAD: dict[str, tuple[Callable[[dict[str, bytes]], None], str]] = {
    "postings: a row beyond the table": (
        _npy("postings", lambda a: _set(a, -1, 10_000)),
        "postings: row 10000 out of range (the table has 4 rows)",
    ),
    "postings: a negative row": (
        _npy("postings", lambda a: _set(a, 0, -1)),
        "postings: row -1 out of range",
    ),
    "postings: a key's rows out of order": (
        _npy("postings", lambda a: a.__setitem__(slice(0, 3), a[0:3][::-1].copy())),
        "postings: rows of a key not strictly ascending",
    ),
    "columns: status 7": (_npy("columns", lambda a: _set(a, (COL["status"], 2), 7)), "status 7"),
    "columns: first flag 0 on row 0": (
        _npy("columns", lambda a: _set(a, (COL["first"], 0), 0)),
        "columns: 'first'",
    ),
    "columns: tail beyond the table": (
        _npy("columns", lambda a: _set(a, (COL["tail"], 1), 4)),
        "columns: 'tail'",
    ),
    "columns: tail repeats a row": (
        _npy("columns", lambda a: _set(a, (COL["tail"], 1), int(a[COL["tail"], 0]))),
        "columns: 'tail'",
    ),
    "offsets: a ref offset going back": (
        _npy("offsets", lambda a: _set(a, (1, 2), int(a[1, 1]) - 1)),
        "offsets: ref of row 1 is too short",
    ),
    "offsets: an empty vector line": (
        _npy("offsets", lambda a: _set(a, (0, 2), int(a[0, 1]))),
        "offsets: vector line of row 1 is empty",
    ),
    "offsets: not starting at 0": (
        _npy("offsets", lambda a: _set(a, (0, 0), 1)),
        "offsets: do not start at 0",
    ),
    "refs: no @": (_refs(b"rotate@", b"rotate#"), "refs: 3 '@' for 4 lines of id@version"),
    "refs: two @ in a line, none in another": (
        _refs(b"rotate@1.0.0\nzoom@", b"rotate@1@0.0\nzoom#"),
        "refs: line 4 is not id@version",
    ),
    "refs: empty id": (_refs(b"\nrotate@1.0.0", b"\n@otate11.0.0"), "refs: line 3"),
    "refs: empty version": (_refs(b"zoom@2.0.0", b"zoom2.0.0@"), "refs: line 4"),
    "refs: not ASCII": (_refs(b"zoom", b"zo\xffm"), "refs: not ASCII"),
    "refs: a newline inside a ref": (_refs(b"zoom@", b"zo\nm@"), "refs: not 4 lines"),
    "keys: unsorted": (_keys(lambda k: k["keys"].reverse()), "keys: not strictly ascending"),
    "keys: a number for a key": (
        _keys(lambda k: k["keys"].__setitem__(0, 1)),
        "keys: not strictly ascending strings",
    ),
    "keys: offsets going back": (
        _keys(lambda k: k["offsets"].__setitem__(1, k["offsets"][2] + 1)),
        "keys: offsets into postings are not ascending from 0",
    ),
    "keys: offset beyond int64": (
        _keys(lambda k: k["offsets"].__setitem__(1, 1 << 70)),
        "keys: malformed",
    ),
    "keys: no offsets": (_keys(lambda k: k.pop("offsets")), "keys: malformed"),
}


def test_a_valid_table_loads_and_answers() -> None:
    t = _load(_blobs())
    assert t.n == 4 and t.find("rotate@1.0.0") == 2
    assert t.posting("feature:square").tolist() == [0, 2, 3]


@pytest.mark.parametrize("case", list(BAD))
def test_an_inconsistent_table_is_a_corruption_error_naming_the_object(case: str) -> None:
    change, message = BAD[case]
    blobs = _blobs()
    change(blobs)
    with pytest.raises(CorruptionError) as info:
        _load(blobs)
    assert str(info.value).startswith(f"{WHERE} "), info.value
    assert message in str(info.value), info.value


def test_a_malformed_version_in_refs_is_a_corruption_error_when_read() -> None:
    """Versions are not parsed on load (a Python loop over every row): a find that meets
    one says which line of refs is wrong."""
    blobs = _blobs()
    blobs["refs"] = blobs["refs"].replace(b"rotate@1.0.0", b"rotate@1.0x0")
    t = _load(blobs)
    with pytest.raises(CorruptionError, match=r"generation 0123456789ab refs: line \d"):
        t.find("zoom@2.0.0")


IDS = st.text(alphabet="abcxyz-", min_size=1, max_size=4).filter(lambda s: s[0] != "-")
KEYS = st.sampled_from(["feature:a", "feature:b", "transform:c", "invariant:d"])
ROW_SPECS = st.tuples(
    IDS,
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
    st.frozensets(KEYS, max_size=3),
    st.integers(0, 2),
)


def _rows(specs: list[Any]) -> list[Row]:
    seen: dict[str, Row] = {}
    for i, (cid, v, keys, status) in enumerate(specs):
        version = ".".join(map(str, v))
        seen[f"{cid}@{version}"] = _row(cid, version, tuple(sorted(keys)), status, i)
    return list(seen.values())


@settings(max_examples=60, deadline=None)
@given(st.lists(ROW_SPECS, max_size=12), st.lists(ROW_SPECS, max_size=6))
def test_every_table_build_and_update_make_loads(base: list[Any], more: list[Any]) -> None:
    """No false alarm: tables made by ``build`` and by ``update`` (replaced and inserted
    rows), empty ones too, pass the checks and answer as the table in memory."""
    rows = _rows(base)
    built = tables.build(rows)
    changes = {r.ref: r for r in _rows(more)}
    for t in (built, tables.update(built, changes)):
        loaded = _load(t.blobs())
        assert loaded.n == t.n and loaded.refs == t.refs
        assert loaded.postings.tolist() == t.postings.tolist()
