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

from vault.grid.grid import Grid, background_colour, dims
from vault.memo import BoundedMemo, MiB

# A pair's input is analysed by both the pair and its appearance, so analyses are memoised —
# bounded in bytes: one of a noisy 30x30 grid weighs ~0.7 MB (measured with tracemalloc:
# ~250 B a cell and ~700 B an object once bbox and shape are cached, ~130 B a blob cell,
# plus the grid itself, which the memo keeps alive as the key).
MEMO_BYTES = 64 * MiB
_memo: BoundedMemo[tuple[str, Grid, int], Any] = BoundedMemo(MEMO_BYTES)


def _grid_bytes(g: Grid) -> int:
    return 64 + sum(64 + 8 * len(row) for row in g)


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
        top, left, _, _ = self.bbox
        return frozenset((r - top, c - left) for r, c in self.cells)

    @property
    def box_area(self) -> int:
        top, left, bottom, right = self.bbox
        return (bottom - top + 1) * (right - left + 1)


def _flood(g: Grid, bg: int, eight: bool) -> list[list[tuple[int, int]]]:
    h, w = dims(g)
    seen = [[False] * w for _ in range(h)]
    steps: tuple[tuple[int, int], ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))
    if eight:
        steps += ((-1, -1), (-1, 1), (1, -1), (1, 1))
    out = []
    for r0 in range(h):
        for c0 in range(w):
            if seen[r0][c0] or g[r0][c0] == bg:
                continue
            colour = g[r0][c0]
            seen[r0][c0] = True
            cells = [(r0, c0)]
            stack = [(r0, c0)]
            while stack:
                r, c = stack.pop()
                for dr, dc in steps:
                    nr, nc = r + dr, c + dc
                    if (
                        0 <= nr < h
                        and 0 <= nc < w
                        and not seen[nr][nc]
                        and g[nr][nc] != bg
                        and (eight or g[nr][nc] == colour)
                    ):
                        seen[nr][nc] = True
                        cells.append((nr, nc))
                        stack.append((nr, nc))
            out.append(cells)
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
        cells = sum(o.area for o in found)
        _memo.put(key, found, _grid_bytes(g) + 256 * cells + 768 * len(found) + 512)
        return found
    return hit  # type: ignore[no-any-return]


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


def clear_caches() -> None:
    """Forget every memoised analysis (the study times each query from a cold start)."""
    _memo.clear()
