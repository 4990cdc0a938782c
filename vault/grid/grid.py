"""Grids: validation and the small set of exact grid operations the tool needs."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from vault.errors import InvalidInputError, counted, json_value

MAX_SIDE = 30
Grid = tuple[tuple[int, ...], ...]


def parse_grid(value: Any, source: str | None = None, field: str = "grid") -> Grid:
    """Check ``value`` is a non-empty rectangular list of rows of ints 0-9, at most 30x30."""

    def bad(message: str) -> InvalidInputError:
        return InvalidInputError(message, source=source, field=field)

    if not isinstance(value, list) or not value:
        raise bad("expected a non-empty list of rows")
    if len(value) > MAX_SIDE:
        raise bad(f"grid has {len(value)} rows; at most {MAX_SIDE} allowed")
    fast = _parse_fast(value)
    if fast is not None:
        return fast
    width = None
    rows = []
    for r, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise bad(f"row {r}: expected a non-empty list of colours")
        if width is None:
            width = len(row)
            if width > MAX_SIDE:
                raise bad(f"grid has {width} columns; at most {MAX_SIDE} allowed")
        elif len(row) != width:
            raise bad(f"ragged grid: row {r} has {counted(len(row), 'cell')}, row 0 has {width}")
        for c, cell in enumerate(row):
            if isinstance(cell, bool) or not isinstance(cell, int) or not 0 <= cell <= 9:
                raise bad(f"cell [{r}][{c}] = {json_value(cell)}: expected an integer colour 0-9")
        rows.append(tuple(row))
    return tuple(rows)


_COLOURS = frozenset(range(10))


def _parse_fast(value: list[Any]) -> Grid | None:
    """The grid when every row is a list of the first row's length holding only ints 0-9
    (checked a row at a time in C), else None: the careful loop then says what is wrong."""
    first = value[0]
    if not isinstance(first, list):
        return None
    width = len(first)
    if not 0 < width <= MAX_SIDE:
        return None
    rows = []
    for row in value:
        if type(row) is not list or len(row) != width:
            return None
        t = tuple(row)
        # int only (not bool, whose values would pass the colour test), colours 0-9
        if set(map(type, t)) != _INT or not _COLOURS.issuperset(t):
            return None
        rows.append(t)
    return tuple(rows)


_INT = {int}


def to_lists(grid: Grid) -> list[list[int]]:
    return [list(row) for row in grid]


def dims(grid: Grid) -> tuple[int, int]:
    return len(grid), len(grid[0])


def rot90(g: Grid) -> Grid:
    """Rotate clockwise by 90 degrees."""
    return tuple(zip(*g[::-1], strict=True))


def flip_lr(g: Grid) -> Grid:
    return tuple(row[::-1] for row in g)


def flip_ud(g: Grid) -> Grid:
    return g[::-1]


def transpose(g: Grid) -> Grid:
    return tuple(zip(*g, strict=True))


# The seven non-identity symmetries of the square, by the name used in transform keys.
D4: dict[str, Any] = {
    "rotate_90": rot90,
    "rotate_180": lambda g: rot90(rot90(g)),
    "rotate_270": lambda g: rot90(rot90(rot90(g))),
    "flip_h": flip_lr,  # mirror left-right
    "flip_v": flip_ud,  # mirror top-bottom
    "transpose": transpose,
    "anti_transpose": lambda g: rot90(rot90(transpose(g))),
}


def colour_counts(g: Grid) -> list[int]:
    flat = b"".join(map(bytes, g))  # colours 0-9: one byte a cell
    return [flat.count(c) for c in _BYTES]


_BYTES = [bytes([c]) for c in range(10)]


def background_colour(g: Grid) -> int:
    """The most frequent colour; ties go to the lowest colour."""
    counts = colour_counts(g)
    return max(range(10), key=lambda c: (counts[c], -c))


def find_subgrid(small: Grid, big: Grid) -> bool:
    """True when ``small`` occurs as a contiguous block of ``big``."""
    sh, sw = dims(small)
    bh, bw = dims(big)
    if sh > bh or sw > bw or (sh, sw) == (bh, bw):
        return False
    first = small[0]
    for top in range(bh - sh + 1):
        row = big[top]
        left = _find(row, first, 0, bw - sw)
        while left >= 0:
            if all(big[top + r][left : left + sw] == small[r] for r in range(1, sh)):
                return True
            left = _find(row, first, left + 1, bw - sw)
    return False


def _find(row: tuple[int, ...], part: tuple[int, ...], lo: int, hi: int) -> int:
    """The first position p in [lo, hi] where ``part`` starts in ``row``, else -1."""
    if lo > hi:
        return -1
    p = bytes(row).find(bytes(part), lo, hi + len(part))
    return p


def upscale(g: Grid, fh: int, fw: int) -> Grid:
    return tuple(tuple(cell for cell in row for _ in range(fw)) for row in g for _ in range(fh))


def tile(g: Grid, th: int, tw: int) -> Grid:
    return tuple(tuple(row) * tw for _ in range(th) for row in g)


@lru_cache(maxsize=64)  # a few hundred KB at most
def coordinates(h: int, w: int) -> tuple[tuple[int, int], ...]:
    """(row, column) of every flat index of an h x w grid."""
    return tuple((r, c) for r in range(h) for c in range(w))


def padded(g: Grid, frame: int) -> list[int]:
    """The grid's cells with a frame of ``frame`` one cell wide around it, flat: cell (r, c)
    at ``(r + 1) * (w + 2) + c + 1``, so a neighbour is one addition away and never outside
    (the floods of ``vault.grid.reprs`` and ``vault.grid.objects`` walk it)."""
    pw = len(g[0]) + 2
    flat = [frame] * pw
    for row in g:
        flat.append(frame)
        flat.extend(row)
        flat.append(frame)
    flat.extend([frame] * pw)
    return flat
