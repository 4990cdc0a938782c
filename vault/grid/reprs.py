"""Reprs: the canonical description of one grid, and its stable ``repr_id``.

A repr lists 4-connected single-colour components of every non-background colour
(background = the most frequent colour, ties to the lowest), the relations between
them and global facts about the grid. ``repr_id`` is the sha256 of the canonical JSON
of the repr without its ``provenance`` block, so the same grid always has the same id.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vault.canonical import check_bounds, content_id, sha256_hex
from vault.errors import InvalidInputError
from vault.grid.grid import (
    Grid,
    colour_counts,
    dims,
    padded,
    parse_grid,
    to_lists,
)
from vault.grid.objects import clear_objects
from vault.grid.objects import prime_objects as _prime_objects
from vault.memo import BoundedMemo, MiB
from vault.records.schema import validate

REPR_SCHEMA_VERSION = 1
SYMMETRIES = ("horizontal", "vertical", "diagonal", "anti_diagonal", "rot180")


def symmetry_flags(g: Grid) -> dict[str, bool]:
    """Real symmetry of the whole grid.

    horizontal: equal to its top-bottom mirror (symmetric about the horizontal axis);
    vertical: equal to its left-right mirror; diagonal / anti_diagonal: equal to its
    transpose / anti-transpose (square grids only); rot180: equal to its 180° rotation.
    """
    h, w = dims(g)
    square = h == w
    rot180 = tuple(row[::-1] for row in g[::-1])
    transposed = tuple(zip(*g, strict=True)) if square else ()
    return {
        "horizontal": g == g[::-1],
        "vertical": all(row == row[::-1] for row in g),
        "diagonal": square and g == transposed,
        # g[r][c] == g[w-1-c][h-1-r]: the transpose turned by 180 degrees
        "anti_diagonal": square and g == tuple(row[::-1] for row in transposed[::-1]),
        "rot180": g == rot180,
    }


FRAME = -1  # the colour of the frame of one cell around a padded grid (no real colour)


def _components(
    flat: list[int], h: int, w: int, background: int
) -> tuple[list[tuple[int, list[int], int]], list[int]]:
    """4-connected single-colour components of the padded grid ``flat`` in reading order of
    their first cell: each (colour, its padded cells with the first cell first, the number
    of its cells' sides shared with its own cells, counted from both sides), and the
    component of every padded cell (-1 for background, -2 for the frame).

    Plain Python over at most 900 cells: for ARC-sized grids (a median of 81 cells) a flood
    costs less than the fixed cost of the numpy calls a vectorised labelling makes."""
    pw = w + 2
    lab = [-2 if x == FRAME else -1 for x in flat]
    comps: list[tuple[int, list[int], int]] = []
    for r0 in range(h):
        base = (r0 + 1) * pw + 1
        for i0 in range(base, base + w):
            colour = flat[i0]
            if lab[i0] != -1 or colour == background:
                continue
            k = len(comps)
            lab[i0] = k
            cells = [i0]
            stack = [i0]
            same = 0
            while stack:
                i = stack.pop()
                for j in (i - pw, i + pw, i - 1, i + 1):
                    if flat[j] == colour:
                        same += 1
                        if lab[j] == -1:
                            lab[j] = k
                            cells.append(j)
                            stack.append(j)
            comps.append((colour, cells, same))
    return comps, lab


def _outside(lab: list[int], w: int, index: int, box: tuple[int, int, int, int]) -> bytearray:
    """Per padded cell of component ``index``'s bounding box ``box``: 1 where a cell that is
    not the component's reaches the border of the grid without crossing it. Every cell
    outside the box does (straight away from the box, every cell is outside it too), so
    this floods the box only, from its edge cells that are not the component's, over the
    cells that are not its. Any other cell in the box is enclosed by the component."""
    pw = w + 2
    top, left, bottom, right = ((x + 1) for x in box)  # padded rows and columns
    reached = bytearray(len(lab))
    stack = []
    for r in range(top, bottom + 1):
        row = r * pw
        cols = range(left, right + 1) if r in (top, bottom) else (left, right)
        for c in cols:
            i = row + c
            if lab[i] != index and not reached[i]:
                reached[i] = 1
                stack.append(i)
    while stack:
        i = stack.pop()
        r, c = divmod(i, pw)
        for j, inside in (
            (i - pw, r > top),
            (i + pw, r < bottom),
            (i - 1, c > left),
            (i + 1, c < right),
        ):
            if inside and not reached[j] and lab[j] != index:
                reached[j] = 1
                stack.append(j)
    return reached


# Reprs of grids seen before (a solver asks about the same grids again, a task's grids come
# back in its later requests), by the grid's content, bounded in bytes. Each caller gets its
# own copy, so what it does with the dict never reaches the memo; a copy costs about half a
# build, so a grid is only noted the first time (new grids, the common case, pay nothing)
# and its repr kept from the second.
MEMO_BYTES = 32 * MiB
_memo: BoundedMemo[Grid, dict[str, Any] | None] = BoundedMemo(MEMO_BYTES)
_SEEN = None  # the memo's note of a grid seen once


def grid_to_repr(grid: Any, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The canonical repr of ``grid`` (a list of rows or a parsed ``Grid``)."""
    g = grid if isinstance(grid, tuple) else parse_grid(grid)
    key_bytes = 64 + sum(64 + 8 * len(row) for row in g)  # the grid, kept as the key
    if not _memo.has(g):
        rep = _repr(g)
        _memo.put(g, _SEEN, key_bytes + 64)
    else:
        known = _memo.get(g)
        if known is None:  # the second time: keep a copy
            rep = _repr(g)
            size = key_bytes + 1024 + 1280 * len(rep["nodes"]) + 400 * len(rep["edges"])
            _memo.put(g, _copy(rep), size)
        else:
            rep = _copy(known)
    if provenance:
        rep["provenance"] = provenance
    return rep


def _copy(rep: dict[str, Any]) -> dict[str, Any]:
    """A copy of a repr as ``_repr`` builds it, sharing no mutable part (key order kept)."""
    g = rep["globals"]
    return {
        **rep,
        "grid": [list(row) for row in rep["grid"]],
        "globals": {
            **g,
            "palette": list(g["palette"]),
            "colour_hist": dict(g["colour_hist"]),
            "symmetry": dict(g["symmetry"]),
        },
        "nodes": [
            {
                **n,
                "bbox": list(n["bbox"]),
                "centroid": list(n["centroid"]),
                "colour_hist": dict(n["colour_hist"]),
            }
            if "bbox" in n
            else dict(n)
            for n in rep["nodes"]
        ],
        "edges": [dict(e) for e in rep["edges"]],
    }


def clear_caches() -> None:
    """Forget every memoised analysis: reprs and object analyses (the study times each
    query from a cold start)."""
    _memo.clear()
    clear_objects()


def _strictly_inside(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int]]:
    """(a, b) for every box a strictly inside box b (every side strictly within), ordered
    by a then b. Only a box of at least 3 x 3 cells has a cell strictly inside it, so only
    those are compared as b (few: most components are a cell or a line)."""
    holders = [b for b, (t, lf, bt, rt) in enumerate(boxes) if bt - t >= 2 and rt - lf >= 2]
    if len(boxes) * len(holders) <= INSIDE_PYTHON_PAIRS:
        held = [(b, boxes[b]) for b in holders]
        return [
            (a, b)
            for a, (t, lf, bt, rt) in enumerate(boxes)
            for b, (t2, lf2, bt2, rt2) in held
            if t2 < t and lf2 < lf and bt2 > bt and rt2 > rt
        ]
    bx = np.array(boxes, dtype=np.int64)
    hx = bx[holders]
    t, lf_, bt_, rt_ = bx[:, 0], bx[:, 1], bx[:, 2], bx[:, 3]
    inside = (
        (hx[None, :, 0] < t[:, None])
        & (hx[None, :, 1] < lf_[:, None])
        & (hx[None, :, 2] > bt_[:, None])
        & (hx[None, :, 3] > rt_[:, None])
    )
    a_, k_ = np.nonzero(inside)  # row-major: by a, then by holder (ascending b)
    return list(zip(a_.tolist(), np.array(holders, dtype=np.int64)[k_].tolist(), strict=True))


INSIDE_PYTHON_PAIRS = 1024  # (box, holder) pairs; above, numpy compares them
_DIGITS = tuple(str(c) for c in range(10))  # a colour as a colour_hist key


def _repr(g: Grid) -> dict[str, Any]:
    h, w = dims(g)
    pw = w + 2
    counts = colour_counts(g)
    bg = max(range(10), key=lambda c: (counts[c], -c))  # background_colour(g)
    flat = padded(g, FRAME)
    comps, lab = _components(flat, h, w, bg)
    m = len(comps)
    names = [f"c{i}" for i in range(m)]
    nodes: list[dict[str, Any]] = [{"id": "grid", "type": "grid"}]
    edges: list[dict[str, Any]] = []
    boxes: list[tuple[int, int, int, int]] = []
    found: list[tuple[int, frozenset[tuple[int, int]], tuple[int, int, int, int]]] = []
    firsts: list[int] = []
    for k, (colour, cells, same) in enumerate(comps):
        name = names[k]
        first = cells[0]
        firsts.append(first)
        if len(cells) == 1:  # a single cell (most components of ARC grids): the same values
            r, c = divmod(first, pw)
            r -= 1
            c -= 1
            box = (r, c, r, c)
            boxes.append(box)
            found.append((colour, frozenset(((r, c),)), box))
            node = {
                "id": name,
                "type": "component",
                "colour": colour,
                "bbox": [r, c, r, c],
                "area": 1,
                "centroid": [float(r), float(c)],  # (round(r / 1, 3) is float(r))
                "colour_hist": {_DIGITS[colour]: 1},
                "perimeter": 4,  # (no side is shared with a cell of its own)
            }
        else:
            rows = [i // pw - 1 for i in cells]
            cols = [i % pw - 1 for i in cells]
            area = len(cells)
            box = (rows[0], min(cols), max(rows), max(cols))  # the first cell: the top row
            boxes.append(box)
            found.append((colour, frozenset(zip(rows, cols, strict=True)), box))
            node = {
                "id": name,
                "type": "component",
                "colour": colour,
                "bbox": list(box),
                "area": area,
                "centroid": [round(sum(rows) / area, 3), round(sum(cols) / area, 3)],
                "colour_hist": {_DIGITS[colour]: area},
                # perimeter: 4 sides a cell, less the sides shared with its own cells
                "perimeter": 4 * area - same,
            }
        nodes.append(node)
        edges.append({"type": "has_component", "src": "grid", "dst": name})
    # adjacent_to: each unordered pair of 4-touching components once, src < dst, in order
    touching: set[tuple[int, int]] = set()
    for k, (_, cells, _) in enumerate(comps):
        for i in cells:
            for j in (i + 1, i + pw):
                other = lab[j]
                if other >= 0 and other != k:
                    touching.add((k, other) if k < other else (other, k))
    if m:
        _prime_objects(g, bg, found, (lab, pw, touching, [cells for _, cells, _ in comps]))
    for a_, b_ in sorted(touching):
        edges.append({"type": "adjacent_to", "src": names[a_], "dst": names[b_]})
    # contained_in: every cell of A is enclosed by B (checked only where B's box holds A's).
    # A is 4-connected and apart from B, so it lies in one region of the cells that are not
    # B: all of A is enclosed exactly when its first cell is.
    if m > 1:
        outside: dict[int, bytearray] = {}
        for a_, b_ in _strictly_inside(boxes):
            if b_ not in outside:
                outside[b_] = _outside(lab, w, b_, boxes[b_])
            if not outside[b_][firsts[a_]]:
                edges.append({"type": "contained_in", "src": names[a_], "dst": names[b_]})
    # aligned_with: chain the components sharing an identical row span / column span.
    for axis, (lo_, hi_) in (("row", (0, 2)), ("col", (1, 3))):
        groups: dict[tuple[int, int], list[int]] = {}
        for i, box in enumerate(boxes):
            groups.setdefault((box[lo_], box[hi_]), []).append(i)
        for members_ in groups.values():
            for x, y in zip(members_, members_[1:], strict=False):
                edges.append(
                    {"type": "aligned_with", "src": names[x], "dst": names[y], "axis": axis}
                )
    rep: dict[str, Any] = {
        "schema_version": REPR_SCHEMA_VERSION,
        "kind": "repr",
        "domain": "grid_2d",
        "grid": to_lists(g),
        "globals": {
            "height": h,
            "width": w,
            "palette": [c for c in range(10) if counts[c]],
            "palette_size": sum(1 for n in counts if n),
            "background": bg,
            "colour_hist": {str(c): counts[c] for c in range(10) if counts[c]},
            "component_count": m,
            "symmetry": symmetry_flags(g),
        },
        "nodes": nodes,
        "edges": edges,
    }
    return rep


def repr_id(rep: dict[str, Any]) -> str:
    """sha256 of the canonical repr without its provenance block (and ``repr_id`` field)."""
    return content_id(strip_provenance(rep))


_JSON_BOOL = {True: "true", False: "false"}


def derived_repr_id(rep: dict[str, Any]) -> str:
    """``repr_id`` of a repr exactly as ``grid_to_repr`` returned it (no provenance, not
    changed since): the same canonical bytes written without the general encoder, which
    sorts every node's and edge's keys (this knows their order, and every value's type).
    Any other dict needs ``repr_id``; tests/test_analysis_bytes.py checks both agree."""
    out = ['{"domain":"grid_2d","edges":[']
    out.append(
        ",".join(
            [
                f'{{"axis":"{e["axis"]}","dst":"{e["dst"]}","src":"{e["src"]}",'
                '"type":"aligned_with"}'
                if "axis" in e
                else f'{{"dst":"{e["dst"]}","src":"{e["src"]}","type":"{e["type"]}"}}'
                for e in rep["edges"]
            ]
        )
    )
    g = rep["globals"]
    sym = g["symmetry"]
    hist = ",".join(f'"{c}":{n}' for c, n in g["colour_hist"].items())  # ("0"-"9": in order)
    out.append(
        f'],"globals":{{"background":{g["background"]},"colour_hist":{{{hist}}},'
        f'"component_count":{g["component_count"]},"height":{g["height"]},'
        f'"palette":[{",".join(map(str, g["palette"]))}],"palette_size":{g["palette_size"]},'
        f'"symmetry":{{"anti_diagonal":{_JSON_BOOL[sym["anti_diagonal"]]},'
        f'"diagonal":{_JSON_BOOL[sym["diagonal"]]},"horizontal":{_JSON_BOOL[sym["horizontal"]]},'
        f'"rot180":{_JSON_BOOL[sym["rot180"]]},"vertical":{_JSON_BOOL[sym["vertical"]]}}},'
        f'"width":{g["width"]}}}'
    )
    out.append(',"grid":')
    out.append(str(rep["grid"]).replace(" ", ""))  # lists of ints: [[0,1],[2,3]]
    out.append(',"kind":"repr","nodes":[{"id":"grid","type":"grid"}')
    for n in rep["nodes"][1:]:
        b, c = n["bbox"], n["centroid"]
        out.append(  # (json writes a float as its repr)
            f',{{"area":{n["area"]},"bbox":[{b[0]},{b[1]},{b[2]},{b[3]}],'
            f'"centroid":[{c[0]!r},{c[1]!r}],"colour":{n["colour"]},'
            f'"colour_hist":{{"{n["colour"]}":{n["area"]}}},"id":"{n["id"]}",'
            f'"perimeter":{n["perimeter"]},"type":"component"}}'
        )
    out.append(f'],"schema_version":{REPR_SCHEMA_VERSION}}}')
    return sha256_hex("".join(out).encode())


def strip_provenance(rep: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a repr: without ``provenance`` and the informative ``repr_id``."""
    return {k: v for k, v in rep.items() if k not in ("provenance", "repr_id")}


def with_id(rep: dict[str, Any]) -> dict[str, Any]:
    """The repr as ``vault repr`` prints it: its ``repr_id`` added (to cite it in
    ``validated_on`` or evidence)."""
    return {**rep, "repr_id": repr_id(rep)}


def normalize_repr(value: Any, source: str | None = None) -> dict[str, Any]:
    """Validate a user-supplied repr; a repr carrying ``grid`` must match that grid exactly."""
    if not isinstance(value, dict):
        raise InvalidInputError("expected a repr object", source=source)
    rep = dict(value)
    rep.setdefault("kind", "repr")
    validate(rep, "repr", source)
    try:
        check_bounds(rep)
    except InvalidInputError as exc:
        raise exc.at(source) if source else exc from None
    if "repr_id" in rep and rep["repr_id"] != repr_id(rep):
        raise InvalidInputError(
            "does not match the repr (it is computed: omit it or fix the repr)",
            source=source,
            field="repr_id",
        )
    if "grid" in rep:
        derived = grid_to_repr(parse_grid(rep["grid"], source, "grid"))
        if strip_provenance(rep) != derived:
            raise InvalidInputError(
                "repr does not match its grid; omit the derived fields or let `vault repr` "
                "compute them",
                source=source,
            )
    return rep


def repr_grid(rep: dict[str, Any]) -> Grid | None:
    cells = rep.get("grid")
    return parse_grid(cells) if cells is not None else None
