"""Objects of a grid, and the structure around them, for the embedder's shape features and
the object-level facts of a pair.

An *object* is a 4-connected single-colour component of a non-background colour (the same
components as a repr's ``component`` nodes); a *blob* is an 8-connected component of
non-background cells of any colours (a multi-colour object); a *separator* is a full row or
column of one non-background colour (the lines that split many ARC grids into panels).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from vault.grid.grid import Grid, background_colour, dims, padded
from vault.memo import BoundedMemo, MiB

# A pair's input is analysed by both the pair and its appearance, so analyses are memoised —
# bounded in bytes: one of a noisy 30x30 grid weighs ~0.7 MB (measured with tracemalloc:
# ~250 B a cell and ~700 B an object once bbox and shape are cached, ~130 B a blob cell,
# plus the grid itself, which the memo keeps alive as the key).
MEMO_BYTES = 64 * MiB
_memo: BoundedMemo[tuple[str, Grid, int], Any] = BoundedMemo(MEMO_BYTES)


def _grid_bytes(g: Grid) -> int:
    return 64 + sum(64 + 8 * len(row) for row in g)


_ONE_CELL = frozenset({(0, 0)})  # the shape of an object of one cell


@dataclass(frozen=True)
class GridObject:
    colour: int
    cells: frozenset[tuple[int, int]]

    @cached_property
    def bbox(self) -> tuple[int, int, int, int]:
        rows = [r for r, _ in self.cells]
        cols = [c for _, c in self.cells]
        return min(rows), min(cols), max(rows), max(cols)

    @property
    def area(self) -> int:
        return len(self.cells)

    @cached_property
    def shape(self) -> frozenset[tuple[int, int]]:
        """The cells relative to the bounding box's corner (position-free)."""
        if len(self.cells) == 1:  # (most objects of ARC grids: one cell)
            return _ONE_CELL
        top, left, _, _ = self.bbox
        return frozenset((r - top, c - left) for r, c in self.cells)

    @property
    def box_area(self) -> int:
        top, left, bottom, right = self.bbox
        return (bottom - top + 1) * (right - left + 1)


def _flood(g: Grid, bg: int, eight: bool) -> list[list[tuple[int, int]]]:
    """Components of non-background cells in reading order of their first cell (4-connected
    of one colour, or 8-connected of any colours). The grid is walked with a frame of one
    background cell around it (flat index ``(r + 1) * (w + 2) + c + 1``), so a neighbour is
    one addition away and never out of bounds."""
    h, w = dims(g)
    pw = w + 2
    flat = padded(g, bg)
    seen = [x == bg for x in flat]  # background (and the frame) is never entered
    steps: tuple[int, ...] = (-pw, pw, -1, 1)
    if eight:
        steps += (-pw - 1, -pw + 1, pw - 1, pw + 1)
    out = []
    for r0 in range(h):
        base = (r0 + 1) * pw + 1
        for i0 in range(base, base + w):
            if seen[i0]:
                continue
            colour = flat[i0]
            seen[i0] = True
            cells = [i0]
            stack = [i0]
            while stack:
                i = stack.pop()
                for d in steps:
                    j = i + d
                    if not seen[j] and (eight or flat[j] == colour):
                        seen[j] = True
                        cells.append(j)
                        stack.append(j)
            out.append([(i // pw - 1, i % pw - 1) for i in cells])
    return out


def objects(g: Grid, bg: int | None = None) -> tuple[GridObject, ...]:
    """4-connected single-colour components of non-background colours, in reading order."""
    bg = background_colour(g) if bg is None else bg
    key = ("objects", g, bg)
    hit = _memo.get(key)
    if hit is None:
        found = tuple(
            GridObject(g[cells[0][0]][cells[0][1]], frozenset(cells))
            for cells in _flood(g, bg, False)
        )
        _remember(key, g, found)
        return found
    return hit  # type: ignore[no-any-return]


def _remember(key: tuple[str, Grid, int], g: Grid, found: tuple[GridObject, ...]) -> None:
    cells = sum(o.area for o in found)
    _memo.put(key, found, _grid_bytes(g) + 256 * cells + 768 * len(found) + 512)


def prime_objects(
    g: Grid,
    bg: int,
    found: list[tuple[int, frozenset[tuple[int, int]], tuple[int, int, int, int]]],
) -> None:
    """Remember ``objects(g, bg)`` from components a repr found (the same components:
    4-connected, one colour, in reading order of their first cell; each as (colour, cells,
    bounding box)), unless already known."""
    key = ("objects", g, bg)
    if _memo.get(key) is not None:
        return
    objs = []
    for colour, cells, box in found:
        o = GridObject(colour, cells)
        o.__dict__["bbox"] = box  # the cached property, as it would compute it
        objs.append(o)
    _remember(key, g, tuple(objs))


def blobs(g: Grid, bg: int | None = None) -> tuple[frozenset[tuple[int, int]], ...]:
    """8-connected components of non-background cells (colours mixed)."""
    bg = background_colour(g) if bg is None else bg
    key = ("blobs", g, bg)
    hit = _memo.get(key)
    if hit is None:
        found = tuple(frozenset(cells) for cells in _flood(g, bg, True))
        cells = sum(len(b) for b in found)
        _memo.put(key, found, _grid_bytes(g) + 128 * cells + 320 * len(found) + 512)
        return found
    return hit  # type: ignore[no-any-return]


def separators(g: Grid, bg: int | None = None) -> int:
    """How many full rows and columns are one non-background colour."""
    bg = background_colour(g) if bg is None else bg
    h, w = dims(g)
    n = sum(1 for row in g if row[0] != bg and all(x == row[0] for x in row))
    n += sum(1 for c in range(w) if g[0][c] != bg and all(g[r][c] == g[0][c] for r in range(h)))
    return n


def clear_objects() -> None:
    """Forget the memoised object analyses (``vault.grid.reprs.clear_caches`` forgets the
    reprs too)."""
    _memo.clear()
