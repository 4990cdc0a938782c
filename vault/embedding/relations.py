"""Pair features from the structure of a transformation (issue 22), for the fitted embedder's
raw blocks after the first four (``vault.embedding.fitted``, raw version 2).

Four groups, each its own raw block so that each can be judged on its own (the fit reads a
group or not: ``benchmarks/features_study.py``):

* ``roles`` — colours by their role rather than their number: the input's most and least
  frequent non-background colour (``major``, ``minor``), colours new to the pair, the
  colour of a neighbouring object; which role the output and the changed cells take;
* ``objects`` — correspondences between input and output objects beyond the exact ones of
  ``transform``: a shape turned or mirrored, scaled, copied, its box filled, moved to touch
  another object; output objects that are input shapes;
* ``sizes`` — the output's size against the input's structure: the box of its content or of
  its smallest object, a count of objects or colours, a divisor or multiple of the input,
  a panel between separator lines (and that panel's content);
* ``counts`` — counts and orders: output cells as a count of colours, output objects as a
  count of colours, object sizes kept as a multiset, the output's colour as the colour with
  the most objects or of the largest one, bars sorted by length.

Every feature is a share or a flag computed from integer counts with at most one division,
so it is the same float on every machine (as every raw feature of the fitted embedder).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from vault.embedding.features import Feature, array, flag
from vault.grid.grid import Grid
from vault.grid.objects import GridObject, objects
from vault.grid.pairs import PairFacts

ROLES: tuple[Feature, ...] = (
    ("out_major_is_in_major", 0.0, 1.0),  # the output's most frequent non-bg colour is M
    ("out_major_is_in_minor", 0.0, 1.0),  # ... is the input's least frequent (m != M)
    ("out_major_is_new", 0.0, 1.0),  # ... is absent from the input
    ("out_background_is_in_major", 0.0, 1.0),  # the output's background is M (swapped)
    ("changed_to_major", 0.0, 1.0),  # share of changed cells that become M
    ("changed_to_minor", 0.0, 1.0),  # ... that become m (m != M)
    ("changed_to_neighbour", 0.0, 1.0),  # ... that take a 4-neighbour's non-bg input colour
    ("removed_major", 0.0, 1.0),  # M is absent from the output
    ("removed_minor", 0.0, 1.0),  # m is absent from the output (m != M)
    ("colour_rank_kept", 0.0, 1.0),  # colours in both keep their order by frequency
    ("recoloured_to_major", 0.0, 1.0),  # share of recoloured objects that become M
)
OBJECTS: tuple[Feature, ...] = (
    ("objects_turned", 0.0, 1.0),  # share of input objects whose shape turns up rotated or mirrored
    ("objects_scaled", 0.0, 1.0),  # ... scaled by an integer k >= 2
    ("objects_reshaped_recoloured", 0.0, 1.0),  # ... the same shape in another colour elsewhere
    ("objects_copied", 0.0, 1.0),  # ... the same colour and shape at least twice in the output
    ("boxes_filled", 0.0, 1.0),  # ... (not rectangles) whose box is all non-bg in the output
    ("moved_one_way", 0.0, 1.0),  # every moved object moves in the same direction (signs)
    ("moved_to_contact", 0.0, 1.0),  # share of moved objects touching another only after
    ("out_shapes_from_input", 0.0, 1.0),  # share of output objects whose shape is an input shape
    ("smallest_survives", 0.0, 1.0),  # the smallest object is kept, moved or recoloured
    ("largest_removed", 0.0, 1.0),  # the largest object is gone (several objects)
)
SIZES: tuple[Feature, ...] = (
    ("out_dims_content_box", 0.0, 1.0),  # = bounding box of every non-bg input cell
    ("out_dims_smallest_box", 0.0, 1.0),  # = bounding box of the smallest object
    ("out_side_is_objects", 0.0, 1.0),  # a side = the number of input objects
    ("out_side_is_colours", 0.0, 1.0),  # a side = the number of non-bg input colours
    ("out_dims_divide", 0.0, 1.0),  # smaller, each side dividing the input's
    ("out_dims_multiply", 0.0, 1.0),  # larger, each side a multiple of the input's
    ("out_dims_panel", 0.0, 1.0),  # = a panel between the input's separator lines
    ("out_is_panel", 0.0, 1.0),  # equals one of those panels
    ("out_square_from_oblong", 0.0, 1.0),  # square output of a non-square input
)
COUNTS: tuple[Feature, ...] = (
    ("out_cells_are_colours", 0.0, 1.0),  # non-bg output cells = non-bg input colours
    ("out_objects_are_colours", 0.0, 1.0),  # output objects = non-bg input colours (several)
    ("object_sizes_kept", 0.0, 1.0),  # the multiset of object areas is kept (not identity)
    ("out_colour_most_objects", 0.0, 1.0),  # the output's main colour has the most input objects
    ("out_colour_of_largest", 0.0, 1.0),  # ... is the colour of the largest input object
    ("bars_sorted", 0.0, 1.0),  # the output's rows or columns are bars sorted by length
    ("out_cells_are_largest", 0.0, 1.0),  # non-bg output cells = the largest object's area
)
GROUPS: tuple[tuple[str, tuple[Feature, ...]], ...] = (
    ("roles", ROLES),
    ("objects", OBJECTS),
    ("sizes", SIZES),
    ("counts", COUNTS),
)
NAMES = tuple(name for name, _ in GROUPS)


def _ranked(hist: Counter[int], bg: int) -> list[int]:
    """Non-background colours by count (desc), then colour (asc)."""
    return sorted((c for c in hist if c != bg), key=lambda c: (-hist[c], c))


_D4_MAPS: tuple[tuple[int, int, int, int], ...] = (  # (r, c) -> (a·r + b·c, d·r + e·c)
    (0, 1, -1, 0),
    (-1, 0, 0, -1),
    (0, -1, 1, 0),
    (1, 0, 0, -1),
    (-1, 0, 0, 1),
    (0, 1, 1, 0),
    (0, -1, -1, 0),
)


def _d4_shapes(shape: frozenset[tuple[int, int]]) -> set[frozenset[tuple[int, int]]]:
    """The shape's images under the seven non-identity symmetries, each moved to (0, 0)."""
    out = set()
    for a, b, d, e in _D4_MAPS:
        cells = [(a * r + b * c, d * r + e * c) for r, c in shape]
        r0 = min(r for r, _ in cells)
        c0 = min(c for _, c in cells)
        out.add(frozenset((r - r0, c - c0) for r, c in cells))
    out.discard(shape)
    return out


def _scaled(shape: frozenset[tuple[int, int]], k: int) -> frozenset[tuple[int, int]]:
    return frozenset((r * k + i, c * k + j) for r, c in shape for i in range(k) for j in range(k))


def _touching(o: GridObject, others: Sequence[GridObject]) -> bool:
    near = {(r + dr, c + dc) for r, c in o.cells for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))}
    return any(x is not o and not near.isdisjoint(x.cells) for x in others)


def _panels(g: Grid, bg: int) -> list[Grid]:
    """The sub-grids between full one-colour non-background rows and columns (separators),
    when the input has at least one separator."""
    h, w = len(g), len(g[0])
    rows = [r for r in range(h) if g[r][0] != bg and all(x == g[r][0] for x in g[r])]
    cols = [c for c in range(w) if g[0][c] != bg and all(g[r][c] == g[0][c] for r in range(h))]
    if not rows and not cols:
        return []

    def spans(cuts: list[int], n: int) -> list[tuple[int, int]]:
        out, start = [], 0
        for cut in [*cuts, n]:
            if cut > start:
                out.append((start, cut))
            start = cut + 1
        return out

    return [
        tuple(tuple(g[r][c0:c1]) for r in range(r0, r1))
        for r0, r1 in spans(rows, h)
        for c0, c1 in spans(cols, w)
    ]


def _counts(rep: dict[str, Any]) -> Counter[int]:
    return Counter({int(c): int(n) for c, n in (rep["globals"].get("colour_hist") or {}).items()})


def groups_raw(
    in_rep: dict[str, Any],
    out_rep: dict[str, Any],
    gi: Grid,
    go: Grid,
    f: PairFacts,
    wanted: Collection[str] = NAMES,
) -> dict[str, list[float]]:
    """The groups' raw values (before centring and quantisation) for one pair; a group not
    ``wanted`` (read by no output block of the embedder at hand) keeps its neutral values."""
    bg_in, bg_out = f.background_in, f.background_out
    (hi, wi), (ho, wo) = f.in_dims, f.out_dims
    hist_in, hist_out = _counts(in_rep), _counts(out_rep)
    rank_in = _ranked(hist_in, bg_in)
    rank_out = _ranked(hist_out, bg_out)
    major = rank_in[0] if rank_in else None
    minor = rank_in[-1] if len(rank_in) > 1 else None
    out_major = rank_out[0] if rank_out else None
    ins = objects(gi, bg_in)
    outs = objects(go, bg_out)
    colour_at = {o.cells: o.colour for o in outs}  # an output object's cells -> its colour

    # ------------------------------------------------------------------ roles
    roles = [c for _, c, _ in ROLES]
    if "roles" in wanted:
        changed_major = changed_minor = changed_neigh = n_changed = 0
        if f.same_dims:
            a, b = array(gi), array(go)
            rr, cc = np.nonzero(a != b)
            n_changed = len(rr)
            if n_changed:
                new = b[rr, cc]
                changed_major = int(np.count_nonzero(new == major)) if major is not None else 0
                changed_minor = int(np.count_nonzero(new == minor)) if minor is not None else 0
                pad = np.full((hi + 2, wi + 2), 255, dtype=np.uint8)
                pad[1:-1, 1:-1] = a
                r1, c1 = rr + 1, cc + 1
                near = (
                    (pad[rr, c1] == new)
                    | (pad[rr + 2, c1] == new)
                    | (pad[r1, cc] == new)
                    | (pad[r1, cc + 2] == new)
                )
                changed_neigh = int(np.count_nonzero(near & (new != bg_in)))
        both = [c for c in rank_in if c in hist_out and c != bg_out]
        both_out = sorted(both, key=lambda c: (-hist_out[c], c))
        recoloured = [  # the same cells, one object of another colour
            colour_at[o.cells] for o in ins if colour_at.get(o.cells, o.colour) != o.colour
        ]
        roles = [
            flag(out_major is not None and out_major == major),
            flag(out_major is not None and out_major == minor),
            flag(out_major is not None and out_major not in hist_in),
            flag(major is not None and bg_out == major),
            changed_major / n_changed if n_changed else 0.0,
            changed_minor / n_changed if n_changed else 0.0,
            changed_neigh / n_changed if n_changed else 0.0,
            flag(major is not None and major not in hist_out),
            flag(minor is not None and minor not in hist_out),
            flag(len(both) > 1 and both == both_out),
            sum(1 for c in recoloured if c == major) / len(recoloured) if recoloured else 0.0,
        ]

    # ------------------------------------------------------------------ objects
    objs = [0.0] * len(OBJECTS)
    if "objects" in wanted and ins:
        out_shapes: dict[frozenset[tuple[int, int]], list[GridObject]] = {}
        sizes_out: set[tuple[int, int, int]] = set()  # (area, box height, box width)
        for o in outs:
            out_shapes.setdefault(o.shape, []).append(o)
            sizes_out.add((o.area, o.bbox[2] - o.bbox[0] + 1, o.bbox[3] - o.bbox[1] + 1))
        out_exact = {(o.colour, o.cells) for o in outs}
        by_colour_shape = Counter((o.colour, o.shape) for o in outs)
        turned = scaled = reshaped = copied = filled = 0
        turned_cache: dict[frozenset[tuple[int, int]], bool] = {}
        scaled_cache: dict[frozenset[tuple[int, int]], bool] = {}
        n_shaped = 0
        filled_at = None
        if f.same_dims:  # non-background output cells in any box, from an integral image
            filled_at = np.zeros((ho + 1, wo + 1), dtype=np.int64)
            filled_at[1:, 1:] = np.cumsum(np.cumsum(array(go) != bg_out, axis=0), axis=1)
        for o in ins:
            top, left, bottom, right = o.bbox
            oh, ow = bottom - top + 1, right - left + 1
            shape = o.shape
            if shape not in turned_cache:  # only when an output object has its size
                turned_cache[shape] = (
                    (o.area, oh, ow) in sizes_out or (o.area, ow, oh) in sizes_out
                ) and any(s in out_shapes for s in _d4_shapes(shape))
            turned += turned_cache[shape]
            if shape not in scaled_cache:
                scaled_cache[shape] = any(
                    (o.area * k * k, oh * k, ow * k) in sizes_out
                    and _scaled(shape, k) in out_shapes
                    for k in (2, 3, 4)
                )
            scaled += scaled_cache[shape]
            alike = by_colour_shape[(o.colour, shape)]
            others = len(out_shapes.get(shape, ())) - alike
            if colour_at.get(o.cells, o.colour) != o.colour:  # recoloured in place: not elsewhere
                others -= 1
            reshaped += others > 0
            copied += alike >= 2
            if filled_at is not None and 1 < o.area < oh * ow:
                n_shaped += 1
                inside = (
                    filled_at[bottom + 1, right + 1]
                    - filled_at[top, right + 1]
                    - filled_at[bottom + 1, left]
                    + filled_at[top, left]
                )
                filled += int(inside) == oh * ow
        moved: list[tuple[GridObject, GridObject]] = []
        used: set[int] = set()
        for o in ins:
            if (o.colour, o.cells) in out_exact:
                continue
            for x in out_shapes.get(o.shape, ()):
                if x.colour == o.colour and id(x) not in used:
                    used.add(id(x))
                    moved.append((o, x))
                    break
        signs = {
            (
                (x.bbox[0] > o.bbox[0]) - (x.bbox[0] < o.bbox[0]),
                (x.bbox[1] > o.bbox[1]) - (x.bbox[1] < o.bbox[1]),
            )
            for o, x in moved
        }
        contact = sum(1 for o, x in moved if _touching(x, outs) and not _touching(o, ins))
        in_shapes = {o.shape for o in ins}
        areas = [o.area for o in ins]
        smallest, largest = min(areas), max(areas)
        survivors = {o.cells for o in ins if (o.colour, o.cells) in out_exact}  # kept in place
        moved_ids = {id(o) for o, _ in moved}
        objs = [
            turned / len(ins),
            scaled / len(ins),
            reshaped / len(ins),
            copied / len(ins),
            filled / n_shaped if n_shaped else 0.0,
            flag(len(moved) > 0 and len(signs) == 1),
            contact / len(moved) if moved else 0.0,
            sum(1 for o in outs if o.shape in in_shapes) / len(outs) if outs else 0.0,
            flag(
                len(ins) > 1
                and any(
                    o.area == smallest and (o.cells in survivors or id(o) in moved_ids) for o in ins
                )
            ),
            flag(
                len(ins) > 1
                and not any(
                    o.area == largest
                    and (o.cells in survivors or id(o) in moved_ids or o.shape in out_shapes)
                    for o in ins
                )
            ),
        ]

    # ------------------------------------------------------------------ sizes
    content = None
    if ins:  # the objects cover every non-background cell
        content = (
            max(o.bbox[2] for o in ins) - min(o.bbox[0] for o in ins) + 1,
            max(o.bbox[3] for o in ins) - min(o.bbox[1] for o in ins) + 1,
        )
    smallest_box = None
    if ins:
        o = min(ins, key=lambda x: (x.area, x.bbox))
        smallest_box = (o.bbox[2] - o.bbox[0] + 1, o.bbox[3] - o.bbox[1] + 1)
    panels = _panels(gi, bg_in)
    n_colours = len(rank_in)
    smaller = ho * wo < hi * wi
    larger = ho * wo > hi * wi
    sizes = [
        flag(not f.same_dims and content == (ho, wo)),
        flag(not f.same_dims and smallest_box == (ho, wo)),
        flag(len(ins) > 0 and not f.same_dims and len(ins) in (ho, wo)),
        flag(n_colours > 0 and not f.same_dims and n_colours in (ho, wo)),
        flag(smaller and hi % ho == 0 and wi % wo == 0),
        flag(larger and ho % hi == 0 and wo % wi == 0),
        flag(any((len(p), len(p[0])) == (ho, wo) for p in panels)),
        flag(any(p == go for p in panels)),
        flag(ho == wo and hi != wi),
    ]

    # ------------------------------------------------------------------ counts
    out_nonbg = sum(v for c, v in hist_out.items() if c != bg_out)
    per_colour = Counter(o.colour for o in ins)
    most_objects = max(per_colour.values()) if per_colour else 0
    largest_obj = max(ins, key=lambda x: (x.area, -x.colour)) if ins else None
    bars = 0.0
    if not f.same_dims and out_nonbg:
        lines = [sum(1 for v in row if v != bg_out) for row in go]
        cols = [sum(1 for r in range(ho) if go[r][c] != bg_out) for c in range(wo)]
        for seq in (lines, cols):
            if (
                len(seq) > 1
                and len(set(seq)) > 1
                and (seq == sorted(seq) or seq == sorted(seq)[::-1])
            ):
                bars = 1.0
    counts = [
        flag(n_colours > 0 and not f.same_dims and out_nonbg == n_colours),
        flag(n_colours > 1 and len(outs) == n_colours and not f.identity),
        flag(
            len(ins) > 1
            and not f.identity
            and sorted(o.area for o in ins) == sorted(o.area for o in outs)
        ),
        flag(
            out_major is not None
            and per_colour.get(out_major, 0) == most_objects
            and most_objects > 0
            and len(per_colour) > 1
        ),
        flag(
            out_major is not None
            and largest_obj is not None
            and largest_obj.colour == out_major
            and len(ins) > 1
        ),
        bars,
        flag(largest_obj is not None and not f.same_dims and out_nonbg == largest_obj.area),
    ]
    return {"roles": roles, "objects": objs, "sizes": sizes, "counts": counts}


def empty() -> dict[str, list[float]]:
    """The groups' values for a pair without grids (all neutral)."""
    return {name: [c for _, c, _ in spec] for name, spec in GROUPS}
