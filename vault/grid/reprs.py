"""Reprs: the canonical description of one grid, and its stable ``repr_id``.

A repr lists 4-connected single-colour components of every non-background colour
(background = the most frequent colour, ties to the lowest), the relations between
them and global facts about the grid. ``repr_id`` is the sha256 of the canonical JSON
of the repr without its ``provenance`` block, so the same grid always has the same id.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vault.canonical import check_bounds, content_id
from vault.errors import InvalidInputError
from vault.grid.grid import (
    Grid,
    background_colour,
    colour_counts,
    dims,
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


def _components(g: Grid, background: int) -> tuple[list[list[int]], np.ndarray]:
    """4-connected single-colour components in reading order of their first cell: each the
    sorted flat indices (``r * width + c``) of its cells, and the flat label of every cell
    (-1 for background).

    Runs of one colour along a row are joined with the runs of the same colour they touch
    in the row below (union-find over runs, not cells: numpy finds the runs and the touching
    pairs, Python joins them)."""
    h, w = dims(g)
    flat = np.frombuffer(b"".join(map(bytes, g)), dtype=np.uint8)
    cells = flat.reshape(h, w)
    start = np.ones((h, w), dtype=bool)
    start[:, 1:] = cells[:, 1:] != cells[:, :-1]
    run_of = np.cumsum(start.ravel()) - 1  # the run of every cell, in reading order
    n_runs = int(run_of[-1]) + 1
    run_colour = flat[start.ravel()]
    # the runs of vertically touching cells of one (non-background) colour
    same = (cells[1:] == cells[:-1]) & (cells[1:] != background)
    upper = run_of[: (h - 1) * w][same.ravel()]
    lower = run_of[w:][same.ravel()]
    parent = list(range(n_runs))
    if len(upper):
        codes = np.unique(upper * n_runs + lower)
        for a, b in zip((codes // n_runs).tolist(), (codes % n_runs).tolist(), strict=True):
            while parent[a] != a:
                parent[a] = a = parent[parent[a]]
            while parent[b] != b:
                parent[b] = b = parent[parent[b]]
            if a != b:
                if a < b:
                    parent[b] = a
                else:
                    parent[a] = b
    root = np.array(parent, dtype=np.int64)
    for _ in range(64):  # roots of roots until none moves (a tree's depth, at most ~log)
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    else:  # pragma: no cover - path halving keeps trees shallow
        while not np.array_equal(root[root], root):
            root = root[root]
    keep = run_colour != background
    # components numbered by their first run (reading order: a root is its smallest run)
    is_root = keep & (root == np.arange(n_runs))
    number = np.cumsum(is_root) - 1
    run_label = np.where(keep, number[root], -1)
    label = run_label[run_of]
    nonbg = np.nonzero(label >= 0)[0]
    order = nonbg[np.argsort(label[nonbg], kind="stable")]
    sizes = np.bincount(label[nonbg], minlength=int(is_root.sum()))
    members = order.tolist()
    comps: list[list[int]] = []
    at = 0
    for size in sizes.tolist():
        comps.append(members[at : at + size])
        at += size
    return comps, label


def _enclosed(lab: np.ndarray, index: int) -> np.ndarray:
    """Per cell (flat ``r * w + c``, from the (h, w) label array): True where it cannot
    reach the grid border without crossing component ``index`` (the component's own cells
    are not enclosed) — the regions of the other cells (4-connected: runs along rows joined
    with the runs they touch in the next row) that touch no border."""
    h, w = lab.shape
    free = lab != index
    start = free.copy()
    start[:, 1:] &= ~free[:, :-1]  # a run of free cells starts here
    run_of = np.cumsum(start.ravel()) - 1
    n_runs = int(run_of[-1]) + 1
    if n_runs == 0:
        return np.zeros(h * w, dtype=bool)
    parent = list(range(n_runs))
    touch = (free[1:] & free[:-1]).ravel()
    if touch.any():
        codes = np.unique(run_of[: (h - 1) * w][touch] * n_runs + run_of[w:][touch])
        for a, b in zip((codes // n_runs).tolist(), (codes % n_runs).tolist(), strict=True):
            while parent[a] != a:
                parent[a] = a = parent[parent[a]]
            while parent[b] != b:
                parent[b] = b = parent[parent[b]]
            if a != b:
                parent[max(a, b)] = min(a, b)
    root = np.array(parent, dtype=np.int64)
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    edge = np.zeros((h, w), dtype=bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    outside = np.zeros(n_runs, dtype=bool)
    outside[root[run_of[(edge & free).ravel()]]] = True
    enclosed: np.ndarray = free.ravel() & ~outside[root[run_of]]
    return enclosed


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


def _repr(g: Grid) -> dict[str, Any]:
    h, w = dims(g)
    counts = colour_counts(g)
    bg = background_colour(g)
    comps, lab = _components(g, bg)
    m = len(comps)
    names = [f"c{i}" for i in range(m)]
    nodes: list[dict[str, Any]] = [{"id": "grid", "type": "grid"}]
    edges: list[dict[str, Any]] = []
    boxes: list[tuple[int, int, int, int]] = []
    adjacent: list[tuple[int, int]] = []
    if m:
        # per-component sums over the label array (numpy: one pass each, not per cell)
        cell = np.nonzero(lab >= 0)[0]
        of = lab[cell]
        rows, cols = cell // w, cell % w
        area = np.bincount(of, minlength=m)
        sum_r = np.bincount(of, weights=rows, minlength=m)
        sum_c = np.bincount(of, weights=cols, minlength=m)
        bottom = np.zeros(m, dtype=np.int64)
        np.maximum.at(bottom, of, rows)
        left = np.full(m, w, dtype=np.int64)
        np.minimum.at(left, of, cols)
        right = np.zeros(m, dtype=np.int64)
        np.maximum.at(right, of, cols)
        grid2 = lab.reshape(h, w)
        # perimeter: 4 sides a cell, less 2 for every side shared with its own component
        across_a, across_b = grid2[:, :-1].ravel(), grid2[:, 1:].ravel()
        down_a, down_b = grid2[:-1, :].ravel(), grid2[1:, :].ravel()
        a = np.concatenate([across_a, down_a])
        b = np.concatenate([across_b, down_b])
        inner = a[(a == b) & (a >= 0)]
        perimeter = 4 * area - 2 * np.bincount(inner, minlength=m)
        # adjacent_to: each unordered pair of 4-touching components once, src < dst
        touch = (a >= 0) & (b >= 0) & (a != b)
        lo, hi = np.minimum(a[touch], b[touch]), np.maximum(a[touch], b[touch])
        pair_codes = np.unique(lo * m + hi)
        adjacent = list(zip((pair_codes // m).tolist(), (pair_codes % m).tolist(), strict=True))
        firsts = [cells[0] for cells in comps]
        tops = [i // w for i in firsts]
        for i, (top, lf, bt, rt, ar, sr, sc, per) in enumerate(
            zip(
                tops,
                left.tolist(),
                bottom.tolist(),
                right.tolist(),
                area.tolist(),
                sum_r.tolist(),
                sum_c.tolist(),
                perimeter.tolist(),
                strict=True,
            )
        ):
            box = (top, lf, bt, rt)
            boxes.append(box)
            colour = g[top][firsts[i] % w]
            nodes.append(
                {
                    "id": names[i],
                    "type": "component",
                    "colour": colour,
                    "bbox": list(box),
                    "area": ar,
                    "centroid": [round(int(sr) / ar, 3), round(int(sc) / ar, 3)],
                    "colour_hist": {str(colour): ar},
                    "perimeter": per,
                }
            )
            edges.append({"type": "has_component", "src": "grid", "dst": names[i]})
        _prime_objects(g, bg, comps, boxes, w)
    for a_, b_ in adjacent:
        edges.append({"type": "adjacent_to", "src": names[a_], "dst": names[b_]})
    # contained_in: every cell of A is enclosed by B (checked only where B's box holds A's).
    # A is 4-connected and apart from B, so it lies in one region of the cells that are not
    # B: all of A is enclosed exactly when its first cell is.
    if m > 1:
        bx = np.array(boxes, dtype=np.int64)
        t, lf_, bt_, rt_ = bx[:, 0], bx[:, 1], bx[:, 2], bx[:, 3]
        inside = (
            (t[None, :] < t[:, None])
            & (lf_[None, :] < lf_[:, None])
            & (bt_[None, :] > bt_[:, None])
            & (rt_[None, :] > rt_[:, None])
        )
        enclosure: dict[int, np.ndarray] = {}
        lab2 = lab.reshape(h, w)
        for a_, b_ in zip(*(x.tolist() for x in np.nonzero(inside)), strict=True):
            if b_ not in enclosure:
                enclosure[b_] = _enclosed(lab2, b_)
            if enclosure[b_][comps[a_][0]]:
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
