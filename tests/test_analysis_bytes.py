"""Task analysis gives the same bytes as before it was restructured for speed (issue 23):
reprs, pair facts, keys and vectors (built-in and shipped embedders) of a fixed corpus
equal the digests written from the previous code (tests/analysis_corpus.py)."""

from __future__ import annotations

import json

import pytest

from tests import analysis_corpus as ac
from vault.grid.reprs import clear_caches


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads(ac.FIXTURE.read_text())


def test_the_corpus_is_the_one_the_fixture_was_written_from(expected: dict) -> None:
    assert expected["synthetic"]["fingerprint"] == ac.synthetic_fingerprint()
    assert sorted(expected["tasks"]) == sorted(name for name, _ in ac.corpus())


def test_reprs_keys_and_vectors_equal_the_previous_definition(expected: dict) -> None:
    clear_caches()
    differ = {}
    for name, task in ac.corpus():
        got = ac.digests(task)
        if got != expected["tasks"][name]:
            differ[name] = sorted(k for k in got if got[k] != expected["tasks"][name][k])
    assert not differ, f"{len(differ)} tasks differ: {dict(list(differ.items())[:5])}"


def test_warm_caches_give_the_same_bytes(expected: dict) -> None:
    """Analysed twice in one process (the per-grid memos hit): the same digests."""
    tasks = [t for t in ac.corpus() if t[0].startswith(("big-", "odd", "fill"))]
    for _ in range(2):
        for name, task in tasks:
            assert ac.digests(task) == expected["tasks"][name], name


def _oracle(grid: list[list[int]]) -> tuple[list[list[tuple[int, int]]], set[tuple[int, int]]]:
    """Components (4-connected, one colour, not the most frequent colour, reading order)
    and the contained_in pairs, the slow obvious way: a flood per component, and for each
    strict box containment a flood from the border around B."""
    h, w = len(grid), len(grid[0])
    counts = [sum(row.count(c) for row in grid) for c in range(10)]
    bg = max(range(10), key=lambda c: (counts[c], -c))
    seen: set[tuple[int, int]] = set()
    comps = []
    for r in range(h):
        for c in range(w):
            if grid[r][c] == bg or (r, c) in seen:
                continue
            todo, cells = [(r, c)], {(r, c)}
            while todo:
                y, x = todo.pop()
                for n in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    inside = 0 <= n[0] < h and 0 <= n[1] < w
                    if n not in cells and inside and grid[n[0]][n[1]] == grid[r][c]:
                        cells.add(n)
                        todo.append(n)
            seen |= cells
            comps.append(sorted(cells))

    def box(cells: list[tuple[int, int]]) -> tuple[int, int, int, int]:
        return (
            min(y for y, _ in cells),
            min(x for _, x in cells),
            max(y for y, _ in cells),
            max(x for _, x in cells),
        )

    contained = set()
    for a, ca in enumerate(comps):
        for b, cb in enumerate(comps):
            (t, lf, bt, rt), (t2, l2, b2, r2) = box(ca), box(cb)
            if a == b or not (t2 < t and l2 < lf and b2 > bt and r2 > rt):
                continue
            wall = set(cb)
            out = {
                (y, x)
                for y in range(h)
                for x in range(w)
                if (y in (0, h - 1) or x in (0, w - 1)) and (y, x) not in wall
            }
            todo = list(out)
            while todo:
                y, x = todo.pop()
                for n in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if 0 <= n[0] < h and 0 <= n[1] < w and n not in wall and n not in out:
                        out.add(n)
                        todo.append(n)
            if not any(cell in out for cell in ca):
                contained.add((a, b))
    return comps, contained


def test_components_and_enclosure_agree_with_a_plain_flood() -> None:
    """Random grids, many with nested hollow shapes: the repr's components (bbox, area) and
    its contained_in edges are the ones a plain flood fill finds."""
    import random

    from vault.grid.reprs import grid_to_repr

    rng = random.Random(23)
    nested = 0
    for _ in range(400):
        h, w = rng.randint(1, 14), rng.randint(1, 14)
        colours = [0] * 4 + list(range(1, rng.randint(2, 5)))
        grid = [[rng.choice(colours) for _ in range(w)] for _ in range(h)]
        for _ in range(rng.randint(0, 3)):  # a hollow rectangle
            top, left = rng.randrange(h), rng.randrange(w)
            bottom, right = rng.randint(top, h - 1), rng.randint(left, w - 1)
            colour = rng.randint(1, 9)
            for r in range(top, bottom + 1):
                for c in range(left, right + 1):
                    if r in (top, bottom) or c in (left, right):
                        grid[r][c] = colour
        rep = grid_to_repr(grid)
        comps, contained = _oracle(grid)
        nodes = [n for n in rep["nodes"] if n["type"] == "component"]
        assert [(n["area"], n["bbox"]) for n in nodes] == [
            (len(c), [c[0][0], min(x for _, x in c), max(y for y, _ in c), max(x for _, x in c)])
            for c in comps
        ]
        got = {
            (int(e["src"][1:]), int(e["dst"][1:]))
            for e in rep["edges"]
            if e["type"] == "contained_in"
        }
        assert got == contained, grid
        nested += len(got)
    assert nested > 50  # the enclosure check was exercised


def test_a_remembered_repr_is_a_copy_equal_to_a_fresh_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reprs are remembered by grid content across requests: each call returns an equal repr
    (key order included) that shares nothing with the next, and the memo keeps its byte
    budget (a tiny one keeps a few reprs, and they still equal fresh ones)."""
    import random

    from vault.grid import reprs
    from vault.memo import BoundedMemo

    rng = random.Random(5)
    grids = [[[rng.randrange(4) for _ in range(12)] for _ in range(9)] for _ in range(30)]
    clear_caches()
    fresh = [json.dumps(reprs.grid_to_repr(g)) for g in grids]  # (key order kept by dumps)
    for _ in range(3):  # noted, then kept, then copied from the memo
        first = reprs.grid_to_repr(grids[0])
        first["grid"][0][0] = 9
        first["nodes"][1]["bbox"][0] = 99
        first["globals"]["symmetry"]["rot180"] = "changed"
        first["edges"].clear()
        assert [json.dumps(reprs.grid_to_repr(g)) for g in grids] == fresh
    assert reprs._memo.get(reprs.parse_grid(grids[0])) is not None  # (kept)
    assert json.dumps(reprs.grid_to_repr(grids[1], {"source": "x"})) != fresh[1]  # provenance
    assert "provenance" not in reprs.grid_to_repr(grids[1])
    memo: BoundedMemo[object, object] = BoundedMemo(300_000)
    monkeypatch.setattr(reprs, "_memo", memo)
    for _ in range(3):
        assert [json.dumps(reprs.grid_to_repr(g)) for g in grids] == fresh
    assert memo.bytes <= 300_000 and 0 < len(memo) < len(grids)
