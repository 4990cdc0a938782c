"""Objects of a grid, and the structure around them, for the embedder's shape features and
the object-level facts of a pair.

An *object* is a 4-connected single-colour component of a non-background colour (the same
components as a repr's ``component`` nodes); a *blob* is an 8-connected component of
non-background cells of any colours (a multi-colour object); a *separator* is a full row or
column of one non-background colour (the lines that split many ARC grids into panels).
"""

from __future__ import annotations

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


class GridObject:
    """One object: its colour and cells (an immutable value: equal and hashed by both), its
    area and bounding box (top, left, bottom, right), and its shape on demand.

    A slotted class rather than a frozen dataclass: grids of a task make thousands of them,
    and this one is built in a third of the time."""

    __slots__ = ("colour", "cells", "area", "bbox", "_shape")

    def __init__(
        self,
        colour: int,
        cells: frozenset[tuple[int, int]],
        bbox: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.colour = colour
        self.cells = cells
        self.area = len(cells)
        if bbox is None:
            rows = [r for r, _ in cells]
            cols = [c for _, c in cells]
            bbox = (min(rows), min(cols), max(rows), max(cols))
        self.bbox = bbox
        self._shape: frozenset[tuple[int, int]] | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GridObject):
            return NotImplemented
        return self.colour == other.colour and self.cells == other.cells

    def __hash__(self) -> int:
        return hash((self.colour, self.cells))

    def __repr__(self) -> str:
        return f"GridObject(colour={self.colour!r}, cells={self.cells!r})"

    @property
    def shape(self) -> frozenset[tuple[int, int]]:
        """The cells relative to the bounding box's corner (position-free)."""
        if self._shape is None:
            if self.area == 1:  # (most objects of ARC grids: one cell)
                self._shape = _ONE_CELL
            else:
                top, left, _, _ = self.bbox
                self._shape = frozenset((r - top, c - left) for r, c in self.cells)
        return self._shape

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


# (labelling of the padded grid, padded width, 4-touching pairs, each component's flat cells)
Labels = tuple[list[int], int, set[tuple[int, int]], list[list[int]]]


def prime_objects(
    g: Grid,
    bg: int,
    found: list[tuple[int, frozenset[tuple[int, int]], tuple[int, int, int, int]]],
    labels: Labels | None = None,
) -> None:
    """Remember ``objects(g, bg)`` from components a repr found (the same components:
    4-connected, one colour, in reading order of their first cell; each as (colour, cells,
    bounding box)), unless already known. ``labels``: the repr's labelling of the padded
    grid (each cell's component, < 0 for none), its width, the pairs of components that
    4-touch (a < b) and each component's cells as flat indices of the padded grid, from
    which ``blobs`` is derived if it is asked for."""
    key = ("objects", g, bg)
    if _memo.get(key) is not None:
        return
    _remember(key, g, tuple([GridObject(colour, cells, box) for colour, cells, box in found]))
    if labels is not None:
        size = _grid_bytes(g) + 8 * len(labels[0]) + 120 * len(labels[2]) + 256
        size += sum(64 + 8 * len(cells) for cells in labels[3])
        _memo.put(("labels", g, bg), labels, size)


def blobs(g: Grid, bg: int | None = None) -> tuple[frozenset[tuple[int, int]], ...]:
    """8-connected components of non-background cells (colours mixed), in reading order of
    their first cell."""
    bg = background_colour(g) if bg is None else bg
    key = ("blobs", g, bg)
    hit = _memo.get(key)
    if hit is None:
        objs = _memo.get(("objects", g, bg))
        labels = _memo.get(("labels", g, bg))
        if objs is not None and labels is not None:
            found = _joined(objs, *labels)
        else:
            found = tuple(frozenset(cells) for cells in _flood(g, bg, True))
        cells = sum(len(b) for b in found)
        _memo.put(key, found, _grid_bytes(g) + 128 * cells + 320 * len(found) + 512)
        return found
    return hit  # type: ignore[no-any-return]


def _joined(
    objs: tuple[GridObject, ...],
    lab: list[int],
    pw: int,
    touching: set[tuple[int, int]],
    flats: list[list[int]],
) -> tuple[frozenset[tuple[int, int]], ...]:
    """The blobs of a grid from its objects: an 8-connected component of non-background
    cells is a union of 4-connected one-colour ones, those that 4-touch (``touching``) or
    touch at a corner (found here from each object's own cells ``flats`` in the labelling
    ``lab``). Each blob's first cell in reading order is the first cell of its first object,
    so blobs come in the order of their first objects."""
    pairs = set(touching)
    for k, cells in enumerate(flats):
        for i in cells:
            # the corners below (those above: from the object there)
            other = lab[i + pw - 1]
            if other >= 0 and other != k:
                pairs.add((k, other) if k < other else (other, k))
            other = lab[i + pw + 1]
            if other >= 0 and other != k:
                pairs.add((k, other) if k < other else (other, k))
    if not pairs:  # every object a blob of its own
        return tuple(o.cells for o in objs)
    parent = list(range(len(objs)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = x = parent[parent[x]]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:  # the first object of a blob is its root
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for k in range(len(objs)):
        members.setdefault(root(k), []).append(k)  # (roots ascending: in reading order)
    return tuple(
        objs[ks[0]].cells if len(ks) == 1 else frozenset().union(*(objs[k].cells for k in ks))
        for ks in members.values()
    )


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
