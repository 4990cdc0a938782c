"""Deterministic synthetic ARC-format tasks from known transformation families.

Used to measure *cross-task* retrieval: a solver's query task should retrieve concepts
learned from OTHER tasks of the same family. Every task is an exact, checkable
transformation; tasks of one family differ by their parameters, grid sizes, colours and
object layouts, so transfer between them is a real test and not a copy.

Families (``FAMILIES`` order) and what varies per task (every task also draws its own
background ``bg`` -- usually 0, sometimes another colour -- its palette ``colors`` and its
``height``/``width`` ranges ``[lo, hi]``, which every pair samples from):

- ``flip_h`` / ``flip_v`` / ``rotate_90`` (clockwise) / ``rotate_180`` / ``transpose`` --
  ``style``: ``"noise"`` (random cells, ``density`` in percent) or ``"objects"`` (a few
  random rectangles and blobs, possibly overlapping).
- ``recolor`` -- ``map``: a derangement of 2-4 colours (keys are the source colours as
  strings, for exact JSON round trips); ``colors`` also holds 0-2 colours that stay.
  Every input shows every mapped colour.
- ``crop_object`` -- ``shape``: ``solid`` / ``pattern`` / ``blob``; one object on plain
  background, output is its bounding box (always smaller than the input).
- ``scale_up`` -- ``factor`` 2 or 3 (each cell becomes a k x k block).
- ``tile`` -- ``reps`` ``[rows, cols]`` repetitions of the input.
- ``gravity`` -- ``direction`` down/up/left/right: non-background cells of each column
  (row) slide to that side keeping their order.
- ``fill_enclosed`` -- ``fill`` colour; hollow rectangles whose interiors (background cells
  not 4-connected to the border) get filled; with ``open`` true, rectangles with a one-cell
  gap are distractors that must stay unfilled.
- ``draw_line_to_border`` -- ``direction``: each seed pixel extends a ray of its colour to
  the border (seeds never share the ray's line, so rays never cross seeds).
- ``keep_largest_object`` -- 2-4 blobs of distinct sizes (all, per ``same_color``, of one
  colour or not); output keeps only the largest.
- ``count_to_bar`` -- ``mode`` ``objects`` (count connected objects) or ``cells`` (count
  cells of ``color``); output is a ``bar``-coloured 1 x n (``orient`` ``row``) or n x 1 bar.
- ``move_object`` -- ``dy``/``dx`` (rows down / columns right, -3..3, not both 0): the one
  object (``shape`` as for crop) moves; it never leaves the grid.
- ``mirror_complete`` -- ``side`` left/right/top/bottom: that half of a mirror-symmetric
  image is blanked to background in the input; the output is the completed image.
- ``denoise`` -- rectangles (>= 2 x 2) plus isolated pixels; pixels with no non-background
  8-neighbour are erased.
- ``outline_objects`` -- ``inner`` colour (the background when hollowing): cells of an
  object whose four neighbours are all inside the grid and non-background get ``inner``.

Objects meant to be separate (crop, fill, keep-largest, count, denoise, outline) are
placed with at least one background cell between bounding boxes, so 4- and 8-connected
components agree. Every pair has input != output; inputs within a task are distinct.

Determinism: the module imports only the standard library and never touches the global
``random``. Each task uses ``random.Random(f"{seed}:{family}:{index}")``; a ``str`` seed is
hashed with sha512 (seed version 2), which is stable on every Python >= 3.11, so adding a
family never changes another family's tasks. Only ``randrange``/``randint``/``choice``/
``shuffle``/``sample`` (on sequences) and ``random()`` are used, whose outputs are stable
across versions; no output order depends on set or hash order.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FAMILIES",
    "HELD_OUT_FAMILIES",
    "TRAIN_FAMILIES",
    "SyntheticTask",
    "fingerprint",
    "fresh_pairs",
    "generate",
]

Grid = list[list[int]]
Shape = list[tuple[int, int, int]]  # (row, col, colour) with min row == min col == 0
Params = dict[str, Any]
MakeInput = Callable[[random.Random], Grid | None]
Builder = Callable[[random.Random], tuple[Params, MakeInput]]
Transform = Callable[[Params, Grid], Grid]

_STEPS = ((1, 0), (-1, 0), (0, 1), (0, -1))
_DIRS = {"down": (1, 0), "up": (-1, 0), "right": (0, 1), "left": (0, -1)}
_DIR_NAMES = ("down", "up", "left", "right")
_SIDES = ("left", "right", "top", "bottom")


@dataclass(frozen=True)
class SyntheticTask:
    """One generated task: ``task`` is ARC format, ``params`` its (JSON) parameters."""

    task_id: str
    family: str
    params: dict[str, Any]
    task: dict[str, Any]


# ---------------------------------------------------------------- grid and shape helpers


def _blank(h: int, w: int, colour: int) -> Grid:
    return [[colour] * w for _ in range(h)]


def _valid(g: Grid) -> bool:
    return (
        1 <= len(g) <= 30
        and 1 <= len(g[0]) <= 30
        and all(len(row) == len(g[0]) for row in g)
        and all(type(v) is int and 0 <= v <= 9 for row in g for v in row)
    )


def _bg(rng: random.Random) -> int:
    return 0 if rng.random() < 0.7 else rng.randint(1, 9)


def _palette(rng: random.Random, exclude: Sequence[int], k: int) -> list[int]:
    return rng.sample([c for c in range(10) if c not in exclude], k)


def _span(rng: random.Random, lo: int, hi: int) -> list[int]:
    a = rng.randint(lo, hi)
    return [a, rng.randint(a, min(hi, a + 6))]


def _base(rng: random.Random, lo: int, hi: int, ncol: tuple[int, int] = (1, 4)) -> Params:
    bg = _bg(rng)
    return {
        "bg": bg,
        "colors": _palette(rng, [bg], rng.randint(*ncol)),
        "height": _span(rng, lo, hi),
        "width": _span(rng, lo, hi),
    }


def _size(rng: random.Random, p: Params) -> tuple[int, int]:
    return rng.randint(*p["height"]), rng.randint(*p["width"])


def _rect(h: int, w: int, colour: int) -> Shape:
    return [(r, c, colour) for r in range(h) for c in range(w)]


def _pattern(rng: random.Random, h: int, w: int, colours: Sequence[int]) -> Shape:
    return [(r, c, rng.choice(colours)) for r in range(h) for c in range(w)]


def _hollow(h: int, w: int, colour: int) -> Shape:
    return [s for s in _rect(h, w, colour) if s[0] in (0, h - 1) or s[1] in (0, w - 1)]


def _blob(rng: random.Random, h: int, w: int, n: int, colour: int) -> Shape:
    """A random 4-connected shape of ``n`` cells grown inside an ``h`` x ``w`` box."""
    n = max(1, min(n, h * w))
    cells = [(rng.randrange(h), rng.randrange(w))]
    taken = {cells[0]}  # membership only; the order lives in ``cells``
    while len(cells) < n:
        r, c = rng.choice(cells)
        dr, dc = rng.choice(_STEPS)
        q = (r + dr, c + dc)
        if 0 <= q[0] < h and 0 <= q[1] < w and q not in taken:
            cells.append(q)
            taken.add(q)
    r0, c0 = min(r for r, _ in cells), min(c for _, c in cells)
    return [(r - r0, c - c0, colour) for r, c in cells]


def _shape(rng: random.Random, kind: str, h: int, w: int, colours: Sequence[int]) -> Shape:
    if kind == "solid":
        return _rect(h, w, rng.choice(colours))
    if kind == "pattern":
        return _pattern(rng, h, w, colours)
    n = h * w
    return _blob(rng, h, w, rng.randint(min(n, max(2, n // 2)), n), rng.choice(colours))


def _dims(s: Shape) -> tuple[int, int]:
    return max(r for r, _, _ in s) + 1, max(c for _, c, _ in s) + 1


def _stamp(g: Grid, s: Shape, r0: int, c0: int) -> None:
    for r, c, v in s:
        g[r0 + r][c0 + c] = v


def _place(rng: random.Random, g: Grid, shapes: Sequence[Shape]) -> bool:
    """Stamp shapes at random spots with >= 1 free cell between bounding boxes."""
    h, w = len(g), len(g[0])
    boxes: list[tuple[int, int, int, int]] = []
    for s in shapes:
        sh, sw = _dims(s)
        if sh > h or sw > w:
            return False
        for _ in range(60):
            r0, c0 = rng.randint(0, h - sh), rng.randint(0, w - sw)
            if all(
                r0 + sh < br or br + bh < r0 or c0 + sw < bc or bc + bw < c0
                for br, bc, bh, bw in boxes
            ):
                break
        else:
            return False
        boxes.append((r0, c0, sh, sw))
        _stamp(g, s, r0, c0)
    return True


def _scene(rng: random.Random, p: Params, h: int, w: int) -> Grid:
    """Noise (``style == "noise"``) or a few overlapping random rectangles and blobs."""
    bg, cols = p["bg"], p["colors"]
    if p["style"] == "noise":
        d = p["density"]
        return [
            [rng.choice(cols) if rng.randrange(100) < d else bg for _ in range(w)] for _ in range(h)
        ]
    g = _blank(h, w, bg)
    for _ in range(rng.randint(1, 4)):
        sh, sw = rng.randint(1, h // 2 + 1), rng.randint(1, w // 2 + 1)
        s = _shape(rng, rng.choice(("solid", "blob")), sh, sw, cols)
        sh, sw = _dims(s)
        _stamp(g, s, rng.randint(0, h - sh), rng.randint(0, w - sw))
    return g


def _components(g: Grid, bg: int) -> list[list[tuple[int, int]]]:
    """4-connected components of non-background cells, in row-major order of first cell."""
    h, w = len(g), len(g[0])
    seen = [[False] * w for _ in range(h)]
    comps: list[list[tuple[int, int]]] = []
    for r in range(h):
        for c in range(w):
            if g[r][c] == bg or seen[r][c]:
                continue
            seen[r][c] = True
            stack: list[tuple[int, int]] = [(r, c)]
            comp: list[tuple[int, int]] = []
            while stack:
                y, x = stack.pop()
                comp.append((y, x))
                for dy, dx in _STEPS:
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < h and 0 <= nx < w and not seen[ny][nx] and g[ny][nx] != bg:
                        seen[ny][nx] = True
                        stack.append((ny, nx))
            comps.append(comp)
    return comps


# ---------------------------------------------------------------- families: builders


def _b_geometric(rng: random.Random) -> tuple[Params, MakeInput]:
    p = _base(rng, 3, 14)
    p["style"] = rng.choice(("noise", "objects"))
    if p["style"] == "noise":
        p["density"] = rng.randint(20, 60)
    return p, lambda r: _scene(r, p, *_size(r, p))


def _b_recolor(rng: random.Random) -> tuple[Params, MakeInput]:
    p = _base(rng, 3, 12)
    k = rng.randint(2, 4)
    src = _palette(rng, [p["bg"]], k + rng.randint(0, 2))
    dst = src[:k]
    while any(a == b for a, b in zip(src, dst, strict=False)):
        rng.shuffle(dst)
    p.update(colors=src, style="noise", density=rng.randint(40, 85))
    p["map"] = {str(a): b for a, b in zip(src, dst, strict=False)}

    def make(r: random.Random) -> Grid | None:
        g = _scene(r, p, *_size(r, p))
        present = [v for row in g for v in row]
        return g if all(c in present for c in src[:k]) else None

    return p, make


def _b_crop(rng: random.Random) -> tuple[Params, MakeInput]:
    p = _base(rng, 4, 14, (2, 3))
    p["shape"] = rng.choice(("solid", "pattern", "blob"))

    def make(r: random.Random) -> Grid | None:
        h, w = _size(r, p)
        oh, ow = r.randint(1, min(6, h - 1)), r.randint(1, min(6, w - 1))
        g = _blank(h, w, p["bg"])
        ok = oh * ow >= 2 and _place(r, g, [_shape(r, p["shape"], oh, ow, p["colors"])])
        return g if ok else None

    return p, make


def _b_scale(rng: random.Random) -> tuple[Params, MakeInput]:
    k = rng.choice((2, 3))
    p = _base(rng, 2, 14 if k == 2 else 10)
    p.update(factor=k, style=rng.choice(("noise", "objects")))
    if p["style"] == "noise":
        p["density"] = rng.randint(25, 70)
    return p, lambda r: _scene(r, p, *_size(r, p))


def _b_tile(rng: random.Random) -> tuple[Params, MakeInput]:
    ry, rx = rng.choice(((1, 2), (2, 1), (2, 2), (1, 3), (3, 1), (2, 3), (3, 2), (3, 3)))
    bg = _bg(rng)
    p: Params = {
        "bg": bg,
        "colors": _palette(rng, [bg], rng.randint(1, 4)),
        "height": _span(rng, 2, min(14, 30 // ry)),
        "width": _span(rng, 2, min(14, 30 // rx)),
        "reps": [ry, rx],
        "style": "noise",
        "density": rng.randint(25, 75),
    }
    return p, lambda r: _scene(r, p, *_size(r, p))


def _b_gravity(rng: random.Random) -> tuple[Params, MakeInput]:
    p = _base(rng, 3, 14)
    p.update(direction=rng.choice(_DIR_NAMES), style="noise", density=rng.randint(15, 50))
    return p, lambda r: _scene(r, p, *_size(r, p))


def _b_fill(rng: random.Random) -> tuple[Params, MakeInput]:
    bg = _bg(rng)
    fill = _palette(rng, [bg], 1)[0]
    p: Params = {
        "bg": bg,
        "fill": fill,
        "colors": _palette(rng, [bg, fill], rng.randint(1, 3)),
        "height": _span(rng, 6, 14),
        "width": _span(rng, 6, 14),
        "open": rng.random() < 0.5,
    }

    def make(r: random.Random) -> Grid | None:
        h, w = _size(r, p)
        shapes = []
        for i in range(r.randint(1, 3) + (r.randint(0, 2) if p["open"] else 0)):
            s = _hollow(r.randint(3, min(7, h)), r.randint(3, min(7, w)), r.choice(p["colors"]))
            if i >= 1 and p["open"] and r.random() < 0.6:  # a gap off the corners: not enclosed
                sh, sw = _dims(s)
                edge = [(y, x) for y, x, _ in s if (y in (0, sh - 1)) != (x in (0, sw - 1))]
                gap = r.choice(edge)
                s = [t for t in s if (t[0], t[1]) != gap]
            shapes.append(s)
        g = _blank(h, w, bg)
        return g if _place(r, g, shapes) else None

    return p, make


def _b_line(rng: random.Random) -> tuple[Params, MakeInput]:
    p = _base(rng, 4, 14)
    p["direction"] = rng.choice(_DIR_NAMES)

    def make(r: random.Random) -> Grid | None:
        h, w = _size(r, p)
        dy, dx = _DIRS[p["direction"]]
        g = _blank(h, w, p["bg"])
        vertical = dx == 0
        n_lines, n_along = (w, h) if vertical else (h, w)
        step = dy if vertical else dx
        for line in r.sample(range(n_lines), r.randint(1, min(4, n_lines))):
            along = r.randint(0, n_along - 2) if step > 0 else r.randint(1, n_along - 1)
            y, x = (along, line) if vertical else (line, along)
            g[y][x] = r.choice(p["colors"])
        return g

    return p, make


def _b_largest(rng: random.Random) -> tuple[Params, MakeInput]:
    p = _base(rng, 6, 14)
    p["same_color"] = rng.random() < 0.4

    def make(r: random.Random) -> Grid | None:
        h, w = _size(r, p)
        sizes = r.sample(range(1, 13), r.randint(2, 4))
        colour = r.choice(p["colors"])
        shapes = []
        for n in sizes:
            bh = r.randint(-(-n // 5), min(5, n))
            bw = r.randint(-(-n // bh), min(5, n))
            c = colour if p["same_color"] else r.choice(p["colors"])
            shapes.append(_blob(r, bh, bw, n, c))
        g = _blank(h, w, p["bg"])
        return g if _place(r, g, shapes) else None

    return p, make


def _b_count(rng: random.Random) -> tuple[Params, MakeInput]:
    p = _base(rng, 5, 14, (1, 3))
    p.update(
        mode=rng.choice(("objects", "cells")),
        orient=rng.choice(("row", "col")),
        bar=rng.randint(1, 9),
    )
    if p["mode"] == "cells":
        p["color"] = p["colors"][0]

    def make(r: random.Random) -> Grid | None:
        h, w = _size(r, p)
        g = _blank(h, w, p["bg"])
        if p["mode"] == "objects":
            shapes = []
            for _ in range(r.randint(1, 6)):
                bh, bw = r.randint(1, 3), r.randint(1, 3)
                shapes.append(_blob(r, bh, bw, r.randint(1, bh * bw), r.choice(p["colors"])))
            return g if _place(r, g, shapes) else None
        others = p["colors"][1:]
        n = r.randint(1, min(9, h * w // 3))
        m = r.randint(0, h * w // 4) if others else 0
        for i, cell in enumerate(r.sample(range(h * w), n + m)):
            g[cell // w][cell % w] = p["color"] if i < n else r.choice(others)
        return g

    return p, make


def _b_move(rng: random.Random) -> tuple[Params, MakeInput]:
    p = _base(rng, 5, 14, (1, 3))
    p["shape"] = rng.choice(("solid", "pattern", "blob"))
    dy = dx = 0
    while dy == dx == 0:
        dy, dx = rng.randint(-3, 3), rng.randint(-3, 3)
    p.update(dy=dy, dx=dx)

    def make(r: random.Random) -> Grid | None:
        h, w = _size(r, p)
        oh, ow = r.randint(1, min(4, h - abs(dy))), r.randint(1, min(4, w - abs(dx)))
        s = _shape(r, p["shape"], oh, ow, p["colors"])
        oh, ow = _dims(s)
        g = _blank(h, w, p["bg"])
        _stamp(
            g,
            s,
            r.randint(max(0, -dy), h - oh - max(0, dy)),
            r.randint(max(0, -dx), w - ow - max(0, dx)),
        )
        return g

    return p, make


def _b_mirror(rng: random.Random) -> tuple[Params, MakeInput]:
    p = _base(rng, 3, 14, (2, 4))
    p.update(side=rng.choice(_SIDES), density=rng.randint(30, 80))

    def make(r: random.Random) -> Grid | None:
        h, w = _size(r, p)
        bg, cols, horizontal = p["bg"], p["colors"], p["side"] in ("left", "right")
        n, m = (h, w) if horizontal else (w, h)  # n lines of length m, mirrored along m

        def cell() -> int:
            return int(r.choice(cols)) if r.randrange(100) < p["density"] else int(bg)

        lines = []
        for _ in range(n):
            half = [cell() for _ in range(m // 2)]
            lines.append(half + [cell() for _ in range(m % 2)] + half[::-1])
        full = lines if horizontal else [list(t) for t in zip(*lines, strict=True)]
        g = [row[:] for row in full]
        for y in range(h):
            for x in range(w):
                pos, size = (x, w) if horizontal else (y, h)
                if (pos < size // 2) if p["side"] in ("left", "top") else (pos >= size - size // 2):
                    g[y][x] = bg
        return g

    return p, make


def _b_denoise(rng: random.Random) -> tuple[Params, MakeInput]:
    p = _base(rng, 6, 14, (1, 3))

    def make(r: random.Random) -> Grid | None:
        h, w = _size(r, p)
        bg, cols = p["bg"], p["colors"]
        shapes = [
            _shape(r, r.choice(("solid", "pattern")), r.randint(2, 4), r.randint(2, 4), cols)
            for _ in range(r.randint(1, 3))
        ]
        g = _blank(h, w, bg)
        if not _place(r, g, shapes):
            return None
        placed = 0
        for _ in range(r.randint(1, 6)):
            for _ in range(30):
                y, x = r.randrange(h), r.randrange(w)
                if all(
                    g[yy][xx] == bg
                    for yy in range(max(0, y - 1), min(h, y + 2))
                    for xx in range(max(0, x - 1), min(w, x + 2))
                ):
                    g[y][x] = r.choice(cols)
                    placed += 1
                    break
        return g if placed else None

    return p, make


def _b_outline(rng: random.Random) -> tuple[Params, MakeInput]:
    bg = _bg(rng)
    inner = bg if rng.random() < 0.5 else _palette(rng, [bg], 1)[0]
    p: Params = {
        "bg": bg,
        "inner": inner,
        "colors": _palette(rng, [bg, inner], rng.randint(1, 3)),
        "height": _span(rng, 6, 14),
        "width": _span(rng, 6, 14),
    }

    def make(r: random.Random) -> Grid | None:
        h, w = _size(r, p)
        shapes = []
        for _ in range(r.randint(1, 3)):
            bh, bw, c = r.randint(3, 5), r.randint(3, 5), r.choice(p["colors"])
            shapes.append(
                _rect(bh, bw, c)
                if r.random() < 0.5
                else _blob(r, bh, bw, r.randint(bh * bw * 2 // 3, bh * bw), c)
            )
        g = _blank(h, w, bg)
        return g if _place(r, g, shapes) else None

    return p, make


# ---------------------------------------------------------------- families: transforms


def _t_recolor(p: Params, g: Grid) -> Grid:
    m = {int(k): v for k, v in p["map"].items()}
    return [[m.get(v, v) for v in row] for row in g]


def _t_crop(p: Params, g: Grid) -> Grid:
    cells = [(y, x) for y, row in enumerate(g) for x, v in enumerate(row) if v != p["bg"]]
    ys, xs = [y for y, _ in cells], [x for _, x in cells]
    return [row[min(xs) : max(xs) + 1] for row in g[min(ys) : max(ys) + 1]]


def _t_scale(p: Params, g: Grid) -> Grid:
    k = p["factor"]
    return [[v for v in row for _ in range(k)] for row in g for _ in range(k)]


def _t_tile(p: Params, g: Grid) -> Grid:
    ry, rx = p["reps"]
    return [row * rx for _ in range(ry) for row in g]


def _t_gravity(p: Params, g: Grid) -> Grid:
    bg, d = p["bg"], p["direction"]
    vertical = d in ("down", "up")
    lines = [list(col) for col in zip(*g, strict=True)] if vertical else [r[:] for r in g]
    packed = []
    for line in lines:
        cells = [v for v in line if v != bg]
        pad = [bg] * (len(line) - len(cells))
        packed.append(pad + cells if d in ("down", "right") else cells + pad)
    return [list(t) for t in zip(*packed, strict=True)] if vertical else packed


def _t_fill(p: Params, g: Grid) -> Grid:
    bg, h, w = p["bg"], len(g), len(g[0])
    outside = [[False] * w for _ in range(h)]
    stack = [
        (y, x)
        for y in range(h)
        for x in range(w)
        if (y in (0, h - 1) or x in (0, w - 1)) and g[y][x] == bg
    ]
    for y, x in stack:
        outside[y][x] = True
    while stack:
        y, x = stack.pop()
        for dy, dx in _STEPS:
            ny, nx = y + dy, x + dx
            if 0 <= ny < h and 0 <= nx < w and not outside[ny][nx] and g[ny][nx] == bg:
                outside[ny][nx] = True
                stack.append((ny, nx))
    return [
        [p["fill"] if v == bg and not outside[y][x] else v for x, v in enumerate(row)]
        for y, row in enumerate(g)
    ]


def _t_line(p: Params, g: Grid) -> Grid:
    dy, dx = _DIRS[p["direction"]]
    h, w, out = len(g), len(g[0]), [row[:] for row in g]
    for y, row in enumerate(g):
        for x, v in enumerate(row):
            if v == p["bg"]:
                continue
            ny, nx = y + dy, x + dx
            while 0 <= ny < h and 0 <= nx < w:
                out[ny][nx] = v
                ny, nx = ny + dy, nx + dx
    return out


def _t_largest(p: Params, g: Grid) -> Grid:
    out = _blank(len(g), len(g[0]), p["bg"])
    for y, x in max(_components(g, p["bg"]), key=len):
        out[y][x] = g[y][x]
    return out


def _t_count(p: Params, g: Grid) -> Grid:
    if p["mode"] == "objects":
        n = len(_components(g, p["bg"]))
    else:
        n = sum(v == p["color"] for row in g for v in row)
    return [[p["bar"]] * n] if p["orient"] == "row" else [[p["bar"]] for _ in range(n)]


def _t_move(p: Params, g: Grid) -> Grid:
    h, w, out = len(g), len(g[0]), _blank(len(g), len(g[0]), p["bg"])
    for y, row in enumerate(g):
        for x, v in enumerate(row):
            if v != p["bg"] and 0 <= y + p["dy"] < h and 0 <= x + p["dx"] < w:
                out[y + p["dy"]][x + p["dx"]] = v
    return out


def _t_mirror(p: Params, g: Grid) -> Grid:
    h, w, side = len(g), len(g[0]), p["side"]
    out = [row[:] for row in g]
    for y in range(h):
        for x in range(w):
            if (side == "left" and x < w // 2) or (side == "right" and x >= w - w // 2):
                out[y][x] = g[y][w - 1 - x]
            elif (side == "top" and y < h // 2) or (side == "bottom" and y >= h - h // 2):
                out[y][x] = g[h - 1 - y][x]
    return out


def _t_denoise(p: Params, g: Grid) -> Grid:
    bg, h, w = p["bg"], len(g), len(g[0])

    def lonely(y: int, x: int) -> bool:
        return all(
            g[yy][xx] == bg or (yy, xx) == (y, x)
            for yy in range(max(0, y - 1), min(h, y + 2))
            for xx in range(max(0, x - 1), min(w, x + 2))
        )

    return [
        [bg if v != bg and lonely(y, x) else v for x, v in enumerate(row)]
        for y, row in enumerate(g)
    ]


def _t_outline(p: Params, g: Grid) -> Grid:
    bg, h, w = p["bg"], len(g), len(g[0])

    def interior(y: int, x: int) -> bool:
        return g[y][x] != bg and all(
            0 <= y + dy < h and 0 <= x + dx < w and g[y + dy][x + dx] != bg for dy, dx in _STEPS
        )

    return [
        [p["inner"] if interior(y, x) else v for x, v in enumerate(row)] for y, row in enumerate(g)
    ]


_REGISTRY: dict[str, tuple[Builder, Transform]] = {
    "flip_h": (_b_geometric, lambda p, g: [row[::-1] for row in g]),
    "flip_v": (_b_geometric, lambda p, g: [row[:] for row in g[::-1]]),
    "rotate_90": (_b_geometric, lambda p, g: [list(t) for t in zip(*g[::-1], strict=True)]),
    "rotate_180": (_b_geometric, lambda p, g: [row[::-1] for row in g[::-1]]),
    "transpose": (_b_geometric, lambda p, g: [list(t) for t in zip(*g, strict=True)]),
    "recolor": (_b_recolor, _t_recolor),
    "crop_object": (_b_crop, _t_crop),
    "scale_up": (_b_scale, _t_scale),
    "tile": (_b_tile, _t_tile),
    "gravity": (_b_gravity, _t_gravity),
    "fill_enclosed": (_b_fill, _t_fill),
    "draw_line_to_border": (_b_line, _t_line),
    "keep_largest_object": (_b_largest, _t_largest),
    "count_to_bar": (_b_count, _t_count),
    "move_object": (_b_move, _t_move),
    "mirror_complete": (_b_mirror, _t_mirror),
    "denoise": (_b_denoise, _t_denoise),
    "outline_objects": (_b_outline, _t_outline),
}

FAMILIES: tuple[str, ...] = tuple(_REGISTRY)  # dict order is insertion order, not hash order
# The training side (every other family from the first) and the held-out side (the rest):
# the shipped embedder is fitted on TRAIN_FAMILIES only, so that cross-task retrieval on
# HELD_OUT_FAMILIES measures transfer to transformations it never saw.
TRAIN_FAMILIES: tuple[str, ...] = FAMILIES[0::2]
HELD_OUT_FAMILIES: tuple[str, ...] = FAMILIES[1::2]


# ---------------------------------------------------------------- public API


def _make_task(seed: int, family: str, index: int, pairs: int) -> SyntheticTask:
    rng = random.Random(f"{seed}:{family}:{index}")
    build, transform = _REGISTRY[family]
    params, make = build(rng)
    drawn: list[dict[str, Grid]] = []
    attempts = 0
    while len(drawn) < pairs + 1:
        attempts += 1
        if attempts > 500 * (pairs + 1):  # pragma: no cover - a generator bug, not bad luck
            raise RuntimeError(f"could not draw {pairs + 1} pairs for {family}-{index:02d}")
        grid = make(rng)
        if grid is None or not _valid(grid) or any(d["input"] == grid for d in drawn):
            continue
        out = transform(params, grid)
        if _valid(out) and out != grid:
            drawn.append({"input": grid, "output": out})
    return SyntheticTask(
        task_id=f"{family}-{index:02d}",
        family=family,
        params=params,
        task={"train": drawn[:-1], "test": drawn[-1:]},
    )


def generate(
    seed: int = 0,
    tasks_per_family: int = 6,
    pairs: int = 4,
    families: Sequence[str] | None = None,
) -> list[SyntheticTask]:
    """Tasks of each family (in ``FAMILIES`` order, then by index): ``pairs`` train + 1 test.

    ``families`` selects a subset (any order; duplicates ignored); a family's tasks do not
    depend on which other families are generated.
    """
    if pairs < 2:
        raise ValueError(f"pairs must be >= 2, got {pairs}")
    if tasks_per_family < 0:
        raise ValueError(f"tasks_per_family must be >= 0, got {tasks_per_family}")
    wanted = list(FAMILIES) if families is None else list(families)
    unknown = [f for f in wanted if f not in _REGISTRY]
    if unknown:
        raise ValueError(f"unknown families {unknown}; known: {list(FAMILIES)}")
    return [
        _make_task(seed, family, index, pairs)
        for family in FAMILIES
        if family in wanted
        for index in range(tasks_per_family)
    ]


def fresh_pairs(
    task: SyntheticTask, seed: int, count: int, tag: str = "fresh"
) -> list[dict[str, Grid]]:
    """``count`` new pairs of ``task``'s rule: the same family and parameters (its builder
    replayed from the task's own seed), new grids drawn by ``random.Random(f"{tag}:{seed}:
    {task_id}")``, none equal to an input of the task or to each other. ``seed`` is the
    seed ``generate`` made the task with; another ``tag`` gives another independent set."""
    family, index = task.family, int(task.task_id.rsplit("-", 1)[1])
    build, transform = _REGISTRY[family]
    params, make = build(random.Random(f"{seed}:{family}:{index}"))
    if params != task.params:  # pragma: no cover - a task not made by generate(seed)
        raise ValueError(f"{task.task_id} was not generated with seed {seed}")
    rng = random.Random(f"{tag}:{seed}:{task.task_id}")
    seen = [p["input"] for part in ("train", "test") for p in task.task[part]]
    drawn: list[dict[str, Grid]] = []
    attempts = 0
    while len(drawn) < count:
        attempts += 1
        if attempts > 500 * (count + 1):  # pragma: no cover - a generator bug
            raise RuntimeError(f"could not draw {count} fresh pairs for {task.task_id}")
        grid = make(rng)
        if grid is None or not _valid(grid) or grid in seen:
            continue
        out = transform(params, grid)
        if _valid(out) and out != grid:
            seen.append(grid)
            drawn.append({"input": grid, "output": out})
    return drawn


def fingerprint(tasks: Sequence[SyntheticTask]) -> str:
    """sha256 hex of the canonical JSON of ``[[task_id, family, task], ...]``."""
    data = [[t.task_id, t.family, t.task] for t in tasks]
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
