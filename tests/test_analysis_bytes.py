"""Task analysis gives the same bytes as before it was restructured for speed (issue 23):
reprs, pair facts, keys and vectors (built-in and shipped embedders) of a fixed corpus
equal the digests written from the previous code (tests/analysis_corpus.py)."""

from __future__ import annotations

import json
from typing import Any

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
    comps = _floods(grid, bg, eight=False)

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


def _floods(grid: list[list[int]], bg: int, *, eight: bool) -> list[list[tuple[int, int]]]:
    """The cells that are not ``bg`` in groups, a flood per group, in reading order of the
    first cell: 4-connected of one colour (components), or 8-connected of any colours
    (``eight``: blobs). Each group's cells sorted."""
    h, w = len(grid), len(grid[0])
    seen: set[tuple[int, int]] = set()
    out = []
    for r in range(h):
        for c in range(w):
            if grid[r][c] == bg or (r, c) in seen:
                continue
            todo, cells = [(r, c)], {(r, c)}
            while todo:
                y, x = todo.pop()
                near = [(y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
                for n in near if eight else [(y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)]:
                    if n in cells or not (0 <= n[0] < h and 0 <= n[1] < w):
                        continue
                    v = grid[n[0]][n[1]]
                    if (v != bg) if eight else (v == grid[r][c]):
                        cells.add(n)
                        todo.append(n)
            seen |= cells
            out.append(sorted(cells))
    return out


def _random_grid(rng: Any, most: int) -> list[list[int]]:
    """A random grid of up to ``most`` x ``most`` cells, often with hollow rectangles."""
    h, w = rng.randint(1, most), rng.randint(1, most)
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
    return grid


def _boxed_grid(rng: Any) -> list[list[int]]:
    """A noisy grid of 20 to 30 sides with a hollow square (3 to 5 cells a side, sometimes a
    dot or another colour's cell inside) in most cells of a 6 x 6 lattice: many components
    and many boxes that can hold others."""
    h, w = rng.randint(20, 30), rng.randint(20, 30)
    grid = [[rng.choice([0, 0, 0, 1, 2]) for _ in range(w)] for _ in range(h)]
    for top in range(0, h - 5, 6):
        for left in range(0, w - 5, 6):
            if rng.random() < 0.2:
                continue
            side, colour = rng.randint(3, 5), rng.randint(3, 9)
            for r in range(top, top + side):
                for c in range(left, left + side):
                    edge = r in (top, top + side - 1) or c in (left, left + side - 1)
                    grid[r][c] = colour if edge else rng.choice([0, 0, 1, colour])
    return grid


@pytest.mark.parametrize("most", [14, 30])
def test_components_and_enclosure_agree_with_a_plain_flood(most: int) -> None:
    """Random grids up to 14 x 14 and up to 30 x 30 (many with more pairs of boxes than the
    pure-Python box comparison takes), many with nested hollow shapes: the repr's components
    (bbox, area, perimeter, centroid), its adjacent_to and its contained_in edges are the
    ones a plain flood fill finds; and so are the objects (as a repr leaves them for the
    pair and shape features, and as those compute them when it has not) and the blobs
    (joined from the repr's components, and flooded when no repr left them)."""
    import random

    from vault.grid.objects import blobs, objects
    from vault.grid.reprs import INSIDE_PYTHON_PAIRS, grid_to_repr

    rng = random.Random(23 + most)
    nested = many = few = merged = 0
    for i in range(400 if most == 14 else 150):
        # a third of the large grids: lattices of hollow squares (many boxes to hold others)
        grid = _boxed_grid(rng) if most == 30 and i % 3 == 0 else _random_grid(rng, most)
        h, w = len(grid), len(grid[0])
        rep = grid_to_repr(grid)
        comps, contained = _oracle(grid)
        nodes = [n for n in rep["nodes"] if n["type"] == "component"]
        owner = {cell: k for k, c in enumerate(comps) for cell in c}
        sides = [
            sum(
                1
                for y, x in c
                for n in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1))
                if owner.get(n) != k
            )
            for k, c in enumerate(comps)
        ]
        assert [(n["area"], n["bbox"], n["perimeter"], n["centroid"]) for n in nodes] == [
            (
                len(c),
                [c[0][0], min(x for _, x in c), max(y for y, _ in c), max(x for _, x in c)],
                sides[k],
                [round(sum(y for y, _ in c) / len(c), 3), round(sum(x for _, x in c) / len(c), 3)],
            )
            for k, c in enumerate(comps)
        ]
        touching = sorted(
            {
                (min(k, owner[n]), max(k, owner[n]))
                for k, c in enumerate(comps)
                for y, x in c
                for n in ((y + 1, x), (y, x + 1))
                if 0 <= n[0] < h and 0 <= n[1] < w and owner.get(n, k) != k
            }
        )
        assert [
            (int(e["src"][1:]), int(e["dst"][1:]))
            for e in rep["edges"]
            if e["type"] == "adjacent_to"
        ] == touching
        got = [
            (int(e["src"][1:]), int(e["dst"][1:]))
            for e in rep["edges"]
            if e["type"] == "contained_in"
        ]
        assert got == sorted(contained), grid
        g, bg = tuple(tuple(row) for row in grid), rep["globals"]["background"]
        for left_by_the_repr in (False, True):  # computed by their own floods, then primed
            clear_caches()
            if left_by_the_repr:
                grid_to_repr(grid)
            assert [sorted(o.cells) for o in objects(g, bg)] == comps
            assert [o.colour for o in objects(g, bg)] == [grid[c[0][0]][c[0][1]] for c in comps]
            assert [(o.area, list(o.bbox)) for o in objects(g, bg)] == [
                (n["area"], n["bbox"]) for n in nodes
            ]
            assert [sorted(b) for b in blobs(g, bg)] == _floods(grid, bg, eight=True), grid
        merged += sum(1 for b in blobs(g, bg) if len({grid[y][x] for y, x in b}) > 1)
        nested += len(got)
        # boxes of 3 x 3 cells or more: those another box can be strictly inside
        holders = sum(
            1
            for c in comps
            if c[-1][0] - c[0][0] >= 2 and max(x for _, x in c) - min(x for _, x in c) >= 2
        )
        many += len(comps) * holders > INSIDE_PYTHON_PAIRS
        few += 0 < len(comps) * holders <= INSIDE_PYTHON_PAIRS
    assert nested > 50  # the enclosure check was exercised
    assert merged > 100  # blobs of several components of several colours
    assert few > 40  # the pure-Python comparison of boxes
    if most == 30:
        assert many > 30  # and numpy's comparison of many boxes with their holders


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


def _sha_of_canonical_json(rep: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a repr without provenance, by json itself (FORMAT.md:
    sorted keys, no whitespace, UTF-8) — not through vault.canonical."""
    import hashlib

    body = {k: v for k, v in rep.items() if k not in ("provenance", "repr_id")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_ids_of_derived_reprs_equal_those_of_their_canonical_json() -> None:
    """``derived_repr_id`` writes a repr straight from ``grid_to_repr`` without the general
    encoder: on the corpus's grids and on random grids of every size (1 x 1 to 30 x 30, with
    and without lattices of hollow squares, uniform ones) its id is the sha256 of the
    repr's canonical JSON; a task's and a query's pairs and repr carry those ids; and a
    pair or query built by hand (its dicts could hold anything) takes ``repr_id``."""
    import random

    from vault.grid.reprs import derived_repr_id, grid_to_repr, repr_id
    from vault.records.query import Pair, Query, normalize_query, task_query

    rng = random.Random(41)
    grids = [g for _, task in ac.corpus() for p in task["train"] for g in p.values()]
    grids += [_random_grid(rng, 30) for _ in range(150)] + [_boxed_grid(rng) for _ in range(20)]
    grids += [[[5]], [[0] * 30] * 30, [[3, 3], [3, 3]], [[1, 2, 3]]]
    for grid in grids:
        rep = grid_to_repr(grid)
        assert derived_repr_id(rep) == _sha_of_canonical_json(rep) == repr_id(rep), grid
    for _, task in ac.corpus()[:40]:
        q = task_query(task)
        assert [p.ids for p in q.pairs] == [
            (_sha_of_canonical_json(p.input), _sha_of_canonical_json(p.output)) for p in q.pairs
        ]
        assert q.rid == _sha_of_canonical_json(q.repr)  # type: ignore[arg-type]
    grid = [[0, 1], [2, 0]]
    asked = normalize_query(
        {"schema_version": 1, "grid": grid, "pairs": [{"input": grid, "output": grid}]}
    )
    assert asked.rid == asked.pairs[0].ids[0] == _sha_of_canonical_json(grid_to_repr(grid))
    by_hand = grid_to_repr(grid)
    by_hand["nodes"][1]["centroid"] = [0, 1]  # ints where grid_to_repr writes floats
    by_hand["note"] = "x"
    assert Pair(by_hand, by_hand).ids == (_sha_of_canonical_json(by_hand),) * 2
    assert Query(repr=by_hand).rid == _sha_of_canonical_json(by_hand) != derived_repr_id(by_hand)
    given = normalize_query({"schema_version": 1, "repr": grid_to_repr(grid)})
    assert not given.derived and given.rid == _sha_of_canonical_json(grid_to_repr(grid))
