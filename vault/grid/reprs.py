"""Reprs: the canonical description of one grid, and its stable ``repr_id``.

A repr lists 4-connected single-colour components of every non-background colour
(background = the most frequent colour, ties to the lowest), the relations between
them and global facts about the grid. ``repr_id`` is the sha256 of the canonical JSON
of the repr without its ``provenance`` block, so the same grid always has the same id.
"""

from __future__ import annotations

from typing import Any

from vault.canonical import check_bounds, content_id
from vault.errors import InvalidInputError
from vault.grid.grid import Grid, background_colour, colour_counts, dims, parse_grid, to_lists
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
    return {
        "horizontal": g == g[::-1],
        "vertical": all(row == row[::-1] for row in g),
        "diagonal": square and all(g[r][c] == g[c][r] for r in range(h) for c in range(w)),
        "anti_diagonal": square
        and all(g[r][c] == g[w - 1 - c][h - 1 - r] for r in range(h) for c in range(w)),
        "rot180": all(g[r][c] == g[h - 1 - r][w - 1 - c] for r in range(h) for c in range(w)),
    }


def _components(g: Grid, background: int) -> tuple[list[list[tuple[int, int]]], list[list[int]]]:
    """4-connected single-colour components in reading order of their first cell."""
    h, w = dims(g)
    label = [[-1] * w for _ in range(h)]
    comps: list[list[tuple[int, int]]] = []
    for r0 in range(h):
        for c0 in range(w):
            colour = g[r0][c0]
            if colour == background or label[r0][c0] >= 0:
                continue
            index = len(comps)
            label[r0][c0] = index
            cells = [(r0, c0)]
            stack = [(r0, c0)]
            while stack:
                r, c = stack.pop()
                for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                    if 0 <= nr < h and 0 <= nc < w and label[nr][nc] < 0 and g[nr][nc] == colour:
                        label[nr][nc] = index
                        cells.append((nr, nc))
                        stack.append((nr, nc))
            cells.sort()
            comps.append(cells)
    return comps, label


def _enclosed_by(label: list[list[int]], index: int, h: int, w: int) -> set[tuple[int, int]]:
    """Cells that cannot reach the grid border without crossing component ``index``."""
    seen = [[False] * w for _ in range(h)]
    stack = []
    for r in range(h):
        for c in (0, w - 1):
            if label[r][c] != index and not seen[r][c]:
                seen[r][c] = True
                stack.append((r, c))
    for c in range(w):
        for r in (0, h - 1):
            if label[r][c] != index and not seen[r][c]:
                seen[r][c] = True
                stack.append((r, c))
    while stack:
        r, c = stack.pop()
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < h and 0 <= nc < w and not seen[nr][nc] and label[nr][nc] != index:
                seen[nr][nc] = True
                stack.append((nr, nc))
    return {(r, c) for r in range(h) for c in range(w) if not seen[r][c] and label[r][c] != index}


def grid_to_repr(grid: Any, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The canonical repr of ``grid`` (a list of rows or a parsed ``Grid``)."""
    g = grid if isinstance(grid, tuple) else parse_grid(grid)
    h, w = dims(g)
    counts = colour_counts(g)
    bg = background_colour(g)
    comps, label = _components(g, bg)
    nodes: list[dict[str, Any]] = [{"id": "grid", "type": "grid"}]
    edges: list[dict[str, Any]] = []
    boxes = []
    for i, cells in enumerate(comps):
        rows = [r for r, _ in cells]
        cols = [c for _, c in cells]
        box = (min(rows), min(cols), max(rows), max(cols))
        boxes.append(box)
        colour = g[cells[0][0]][cells[0][1]]
        members = set(cells)
        perimeter = sum(
            1
            for r, c in cells
            for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
            if n not in members
        )
        area = len(cells)
        nodes.append(
            {
                "id": f"c{i}",
                "type": "component",
                "colour": colour,
                "bbox": list(box),
                "area": area,
                "centroid": [round(sum(rows) / area, 3), round(sum(cols) / area, 3)],
                "colour_hist": {str(colour): area},
                "perimeter": perimeter,
            }
        )
        edges.append({"type": "has_component", "src": "grid", "dst": f"c{i}"})
    # adjacent_to: each unordered pair of 4-touching components once, src < dst.
    adjacent: set[tuple[int, int]] = set()
    for r in range(h):
        for c in range(w):
            a = label[r][c]
            for nr, nc in ((r + 1, c), (r, c + 1)):
                if nr < h and nc < w:
                    b = label[nr][nc]
                    if a >= 0 and b >= 0 and a != b:
                        adjacent.add((min(a, b), max(a, b)))
    for a, b in sorted(adjacent):
        edges.append({"type": "adjacent_to", "src": f"c{a}", "dst": f"c{b}"})
    # contained_in: every cell of A is enclosed by B (checked only where B's box holds A's).
    enclosure: dict[int, set[tuple[int, int]]] = {}
    for a, (top, left, bottom, right) in enumerate(boxes):
        for b, (t2, l2, b2, r2) in enumerate(boxes):
            if a == b or not (t2 < top and l2 < left and b2 > bottom and r2 > right):
                continue
            if b not in enclosure:
                enclosure[b] = _enclosed_by(label, b, h, w)
            if all(cell in enclosure[b] for cell in comps[a]):
                edges.append({"type": "contained_in", "src": f"c{a}", "dst": f"c{b}"})
    # aligned_with: chain the components sharing an identical row span / column span.
    for axis, (lo, hi) in (("row", (0, 2)), ("col", (1, 3))):
        groups: dict[tuple[int, int], list[int]] = {}
        for i, box in enumerate(boxes):
            groups.setdefault((box[lo], box[hi]), []).append(i)
        for members_ in groups.values():
            for x, y in zip(members_, members_[1:], strict=False):
                edges.append({"type": "aligned_with", "src": f"c{x}", "dst": f"c{y}", "axis": axis})
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
            "component_count": len(comps),
            "symmetry": symmetry_flags(g),
        },
        "nodes": nodes,
        "edges": edges,
    }
    if provenance:
        rep["provenance"] = provenance
    return rep


def repr_id(rep: dict[str, Any]) -> str:
    """sha256 of the canonical repr without its provenance block (and ``repr_id`` field)."""
    return content_id(strip_provenance(rep))


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
