"""The raw features of a grid or a pair, shared by both embedders: every value is computed
here once, under one name, with its constants (``SCALES``: centre and scale), and an
embedder's spec (``builtin.SHAPE`` ..., ``fitted.raw.SHAPE_RAW`` ..., made by ``spec``) says
which it reads and in what order. The built-in embedder names a few its own way
(``builtin.READS``).

Also the rules both embedders share: a feature is ``clip((x - centre) / scale, -1, 1)``
(``normalize``); a block is quantised to int8 as ``round(127·w·v_i / sqrt(fsum(v²)))``,
half to even (``quantize``), a sum of int8 blocks as ``round(127·w·v_i / sqrt(Σ v²))`` with
an exact integer sum of squares (``requantize``); a key outside a vocabulary counts with the
sign of a bit of its sha256 (``other_key_sign``).

Every value is computed with + - * /, ``sqrt`` and integer counts (numpy counts cells; each
fraction is one Python division), so it is the same float on every machine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from vault.grid.grid import D4, Grid
from vault.grid.objects import blobs, objects, separators
from vault.grid.pairs import PairFacts
from vault.grid.reprs import SYMMETRIES

Feature = tuple[str, float, float]  # (name, centre, scale): clip((x - centre) / scale, -1, 1)
Values = dict[str, float]  # raw feature values by name


# ------------------------------------------------------------------ the shared rules


def clip(x: float) -> float:
    return -1.0 if x < -1.0 else 1.0 if x > 1.0 else x


def normalize(raw: Sequence[float], spec: Sequence[Feature]) -> list[float]:
    return [clip((x - c) / s) for x, (_, c, s) in zip(raw, spec, strict=True)]


def quantize(values: Sequence[float], weight: float) -> list[int]:
    """``round(127·weight·v_i / sqrt(fsum(v²)))``, half to even (all zero stays zero)."""
    norm = math.sqrt(math.fsum(v * v for v in values))
    if norm == 0.0:
        return [0] * len(values)
    scale = 127.0 * weight
    return [round(scale * v / norm) for v in values]


def requantize(total: Sequence[int], weight: float) -> list[int]:
    """``round(127·weight·v_i / sqrt(Σ v²))``, half to even: the sum of squares is an exact
    Python integer, ``int -> float`` and ``sqrt`` round correctly."""
    norm = math.sqrt(sum(v * v for v in total))  # exact integer sum, one rounding in sqrt
    if norm == 0.0:
        return [0] * len(total)
    scale = 127.0 * weight
    return [round(scale * v / norm) for v in total]


def read(
    values: Values, spec: Sequence[Feature], reads: Mapping[str, str] | None = None
) -> list[float]:
    """The values ``spec`` names, in its order (``reads`` as for ``spec``)."""
    own = reads or {}
    return [values[own.get(name, name)] for name, _, _ in spec]


def other_key_sign(key: str) -> float:
    """+1 or -1: the sign a key outside an embedder's slots counts with."""
    return 1.0 if hashlib.sha256(key.encode("utf-8")).digest()[1] & 1 else -1.0


def flag(b: bool) -> float:
    return 1.0 if b else 0.0


def ratio(a: float, b: float) -> float:
    """``(r - 1) / (r + 1)`` for ``r = a / b``: 0 for equal sizes, in (-1, 1)."""
    r = a / b
    return (r - 1.0) / (r + 1.0)


def grid_of(rep: dict[str, Any]) -> Grid | None:
    cells = rep.get("grid")
    return None if cells is None else tuple(tuple(r) for r in cells)


def grids_of(in_rep: dict[str, Any], out_rep: dict[str, Any]) -> tuple[Grid, Grid] | None:
    a, b = grid_of(in_rep), grid_of(out_rep)
    return None if a is None or b is None else (a, b)


def components(rep: dict[str, Any]) -> list[dict[str, Any]]:
    """The repr's ``component`` nodes (its objects)."""
    return [x for x in rep.get("nodes", ()) if x.get("type") == "component"]


# ------------------------------------------------------------------ the features

SYMMETRY = tuple(f"symmetry_{s}" for s in SYMMETRIES)
COLOUR_MASS = tuple(f"colour_{c}_mass" for c in range(10))
BACKGROUND = tuple(f"background_{c}" for c in range(10))
D4_KEYS = tuple(f"d4_{name}" for name in D4)
GAINS_SYMMETRY = tuple(f"gains_symmetry_{s}" for s in SYMMETRIES)
# groups of a pair's features both embedders read whole, in this order
RATIOS = ("height_ratio", "width_ratio", "cell_ratio")  # output / input sizes
CHANGES = ("changed_fraction", "changed_from_background", "changed_to_background")
COLOUR_CHANGES = (
    "colours_added",
    "colours_removed",
    "palette_preserved",
    "colour_counts_preserved",
)

# Every feature an embedder may read, with its constants: (centre, scale), the feature being
# clip((value - centre) / scale, -1, 1). An embedder's spec is a list of these names
# (``spec``); the constants are part of its hash, so a feature's never change.
SCALES: dict[str, tuple[float, float]] = {
    # one grid: its shape (colour-permutation invariant)
    "height": (10.0, 10.0),
    "width": (10.0, 10.0),
    "side": (10.0, 10.0),  # sqrt(cells)
    "aspect": (0.0, 0.5),  # (h - w) / (h + w)
    "square": (0.0, 1.0),
    "palette_size": (3.0, 3.0),
    "background_fraction": (0.6, 0.4),  # 0.6 when the repr names no background
    "second_colour_fraction": (0.0, 0.5),  # colour-frequency profile, not which colours
    "third_colour_fraction": (0.0, 0.25),
    "objects": (0.5, 0.5),  # n / (n + 4)
    "many_objects": (0.25, 0.25),  # n / (n + 32): noise grids apart from scenes
    "mean_object_fraction": (0.0, 0.25),  # mean area / cells
    "max_object_fraction": (0.0, 0.5),
    "singleton_objects": (0.0, 1.0),
    "box_fill": (0.5, 0.5),  # mean area / bounding-box area (1 for rectangles)
    "border_objects": (0.5, 0.5),  # share of objects touching the border
    "separators": (0.0, 0.2),  # full one-colour non-background rows + columns / (h + w)
    "multicolour_blobs": (0.0, 1.0),  # share of 8-connected blobs with several colours
    "blobs": (0.5, 0.5),  # b / (b + 4), 8-connected non-background blobs
    "objects_per_blob": (0.0, 1.0),  # (n - b) / (n + b + 1)
    "symmetry_horizontal": (0.0, 1.0),
    "symmetry_vertical": (0.0, 1.0),
    "symmetry_diagonal": (0.0, 1.0),
    "symmetry_anti_diagonal": (0.0, 1.0),
    "symmetry_rot180": (0.0, 1.0),
    "adjacency_per_object": (0.0, 2.0),
    "containment_per_object": (0.0, 1.0),
    "alignment_per_object": (0.0, 2.0),
    "distinct_shapes": (0.5, 0.5),  # distinct (box height, box width, area) of objects / n
    "monochrome_objects": (0.0, 1.0),  # > 1 object, all one colour
    "rectangle_objects": (0.0, 1.0),  # share of objects (area > 1) filling their box
    "line_objects": (0.0, 1.0),  # share of objects (area > 1) one cell thick
    "thinness": (0.5, 0.5),  # sum of perimeters / (4 * sum of areas)
    "isolated_pixels": (0.0, 1.0),  # share of non-background cells with no 8-neighbour
    "periodic": (0.0, 1.0),  # equal to itself shifted by p rows or columns, p <= side / 2
    "mirror_symmetry": (0.0, 1.0),  # horizontal or vertical
    # one grid: its colours
    **{name: (0.0, 1.0) for name in COLOUR_MASS},  # sqrt of the colour's cell fraction
    **{name: (0.0, 1.0) for name in BACKGROUND},  # the background colour
    # one pair: input -> output
    "same_dims": (0.5, 0.5),
    "height_ratio": (0.0, 1.0),  # (r - 1) / (r + 1), r = out / in
    "width_ratio": (0.0, 1.0),
    "cell_ratio": (0.0, 1.0),
    "dims_swapped": (0.0, 1.0),
    "one_side_kept": (0.0, 1.0),
    "out_height": (10.0, 10.0),
    "out_width": (10.0, 10.0),
    "out_bar": (0.0, 1.0),  # one row or one column
    "changed_fraction": (0.0, 0.5),  # same dims only (as every changed_* feature)
    "changed_from_background": (0.0, 1.0),  # share of changed cells (drawing, filling)
    "changed_to_background": (0.0, 1.0),  # (erasing)
    "changed_per_object_cell": (0.0, 1.0),  # changed / (non-background input cells + changed)
    "changed_next_to_object": (0.0, 1.0),  # 4-adjacent to a non-background input cell
    "changed_between_objects": (0.0, 1.0),  # input non-background cells on all four sides
    "changed_on_colour_line": (0.0, 1.0),  # new non-background colour on a row/column of it
    "changed_to_new_colour": (0.0, 1.0),  # new colour absent from the input
    "changed_box": (0.0, 1.0),  # bounding box of the changed cells / cells
    "changed_spread": (0.0, 1.0),  # (changed rows + changed columns) / (h + w)
    "colours_added": (0.0, 2.0),
    "colours_removed": (0.0, 2.0),
    "palette_preserved": (0.5, 0.5),
    "colour_counts_preserved": (0.0, 1.0),
    "background_preserved": (0.5, 0.5),
    "palette_change": (0.0, 0.5),  # (po - pi) / (po + pi)
    "object_ratio": (0.0, 1.0),  # (o - i) / (o + i + 2)
    "objects_kept": (0.0, 1.0),
    "objects_moved": (0.0, 1.0),
    "objects_recoloured": (0.0, 1.0),
    "objects_removed": (0.0, 1.0),  # 1 - kept - moved - recoloured
    "output_is_an_object": (0.0, 1.0),
    "output_uniform": (0.0, 1.0),
    "output_box_of_largest": (0.0, 1.0),  # output dims = bbox dims of the largest object
    "output_box_of_an_object": (0.0, 1.0),
    "output_counts_objects": (0.0, 1.0),  # output (non-background) cells = input objects
    "column_counts_preserved": (0.0, 1.0),  # per column non-background counts (not identity)
    "row_counts_preserved": (0.0, 1.0),
    "column_colours_preserved": (0.0, 1.0),  # per column colour multiset (not identity)
    "row_colours_preserved": (0.0, 1.0),
    **{key: (0.0, 1.0) for key in D4_KEYS},  # each D4 symmetry apart
    "identity": (0.0, 1.0),
    "scale_up": (0.0, 1.0),
    "scale_down": (0.0, 1.0),
    "tile": (0.0, 1.0),
    "crop": (0.0, 1.0),
    "extend": (0.0, 1.0),
    "recolor": (0.0, 1.0),
    "fill": (0.0, 1.0),
    "erase": (0.0, 1.0),
    **{key: (0.0, 1.0) for key in GAINS_SYMMETRY},
    "output_symmetric": (0.0, 1.0),
    "out_background_fraction": (0.6, 0.4),
    "out_objects": (0.5, 0.5),
    "out_palette_size": (3.0, 3.0),
    "out_singleton_objects": (0.0, 1.0),
    # the fate of the input's objects (vault.grid.objects: 4-connected, one colour)
    "removed_singletons": (0.0, 1.0),  # share of the removed objects that are one cell
    "survivor_size_contrast": (0.0, 1.0),  # (mean area survived - removed) / (sum of both)
    "largest_survives": (0.0, 1.0),  # the largest object is kept, moved or recoloured
    "one_object_left": (0.0, 1.0),  # several objects in, one out
    "objects_created": (0.0, 1.0),  # share of the output's objects matching no input object
    "objects_grown": (0.0, 1.0),  # share of input objects a larger output object extends
    "moved_distance": (0.0, 0.5),  # mean (|dr| + |dc|) / (h + w) of the moved objects
    "moved_together": (0.0, 1.0),  # every moved object has the same offset
    "moved_to_border": (0.0, 1.0),  # share of the moved objects touching the border after
    "changed_interior": (0.0, 1.0),  # share of changed cells inside an object (4 neighbours)
    # the fate of the input's 8-connected blobs (multi-colour objects)
    "blobs_kept": (0.0, 1.0),
    "blobs_erased": (0.0, 1.0),
    "erased_blob_singletons": (0.0, 1.0),  # share of the erased blobs that are one cell
    "largest_blob_kept": (0.0, 1.0),
    "one_blob_left": (0.0, 1.0),  # exactly one input blob not erased
    "rotate_quarter": (0.0, 1.0),  # the D4 symmetries that map the pair (any of several)
    "rotate_half": (0.0, 1.0),
    "flip": (0.0, 1.0),
    "diagonal_flip": (0.0, 1.0),
}


def spec(*names: str, reads: Mapping[str, str] | None = None) -> tuple[Feature, ...]:
    """The spec of the features ``names``, in that order: ``(name, centre, scale)`` each
    (``reads``: the feature an embedder's own name for it stands for)."""
    own = reads or {}
    return tuple((name, *SCALES[own.get(name, name)]) for name in names)


# ------------------------------------------------------------------ one grid


def _periodic(g: Grid) -> bool:
    """Equal to itself shifted by p rows or p columns for some p <= side / 2."""
    h, w = len(g), len(g[0])
    if h * w <= 4:
        return False
    if any(g[p:] == g[:-p] for p in range(1, h // 2 + 1)):
        return True
    t = tuple(zip(*g, strict=True))
    return any(t[p:] == t[:-p] for p in range(1, w // 2 + 1))


def structure(rep: dict[str, Any], h: int, w: int, *, full: bool = True) -> tuple[Values, int]:
    """The features of the repr's grid as objects (4-connected, one colour) and blobs
    (8-connected), and the number of blobs: neutral values for a repr without a grid or a
    background. ``h`` / ``w``: the dims border contact and separators are measured against
    (the built-in embedder takes the grid's, the fitted one the repr's globals: equal for
    every valid repr); ``full``: also the features only the fitted embedder reads."""
    grid = grid_of(rep)
    bg = rep["globals"].get("background")
    fill, border, seps, multi, nblobs = 0.5, 0.5, 0.0, 0.0, 0
    distinct, rects, lines, isolated_share, period = 1.0, 0.0, 0.0, 0.0, False
    if grid is not None and bg is not None:
        objs = objects(grid, bg)
        if objs:  # one pass: box fill, border contact (full: signatures, rectangles, lines)
            fill_sum = 0.0
            n_border = n_big = n_rect = n_line = 0
            signatures = set()
            for o in objs:
                top, left, bottom, right = o.bbox
                area = len(o.cells)
                box = (bottom - top + 1) * (right - left + 1)
                fill_sum += area / box
                n_border += top == 0 or left == 0 or bottom == h - 1 or right == w - 1
                if not full:
                    continue
                signatures.add((bottom - top, right - left, area))
                if area > 1:
                    n_big += 1
                    n_rect += area == box
                    n_line += top == bottom or left == right
            fill = fill_sum / len(objs)
            border = n_border / len(objs)
            distinct = len(signatures) / len(objs)
            if n_big:
                rects, lines = n_rect / n_big, n_line / n_big
        groups = blobs(grid, bg)
        nblobs = len(groups)
        if groups:
            multi = sum(1 for b in groups if len({grid[r][c] for r, c in b}) > 1) / nblobs
        seps = separators(grid, bg) / (h + w)
        if full:  # an isolated pixel is exactly a one-cell 8-connected blob
            nonbg = sum(len(b) for b in groups)
            isolated_share = sum(1 for b in groups if len(b) == 1) / nonbg if nonbg else 0.0
            period = nonbg > 0 and _periodic(grid)
    values = {
        "box_fill": fill,
        "border_objects": border,
        "separators": seps,
        "multicolour_blobs": multi,
    }
    if full:
        values |= {
            "distinct_shapes": distinct,
            "rectangle_objects": rects,
            "line_objects": lines,
            "isolated_pixels": isolated_share,
            "periodic": flag(period),
        }
    return values, nblobs


def shape_values(rep: dict[str, Any], *, full: bool = True, grid_dims: bool = False) -> Values:
    """The colour-permutation-invariant features of one grid (size, palette and colour
    profile, objects, blobs, symmetry, relations between objects); ``full`` as for
    ``structure``; ``grid_dims``: structure measured against the grid's own dims."""
    g = rep["globals"]
    h, w = int(g["height"]), int(g["width"])
    cells = h * w
    hist = g.get("colour_hist") or {}
    freqs = sorted((v / cells for v in hist.values()), reverse=True)
    comps = components(rep)
    n = len(comps)
    areas = [int(x.get("area", 0)) for x in comps]
    count = {"adjacent_to": 0, "contained_in": 0, "aligned_with": 0}
    for e in rep.get("edges", ()):
        t = e.get("type")
        if t in count:
            count[t] += 1
    sym = g.get("symmetry", {})
    bg = g.get("background")
    grid = rep.get("grid")
    dims = (len(grid), len(grid[0])) if grid_dims and grid is not None else (h, w)
    st, nblobs = structure(rep, *dims, full=full)
    values = {
        "height": float(h),
        "width": float(w),
        "palette_size": float(g["palette_size"]),
        "background_fraction": (hist.get(str(bg), 0) / cells) if bg is not None else 0.6,
        "second_colour_fraction": freqs[1] if len(freqs) > 1 else 0.0,
        "objects": n / (n + 4),
        "mean_object_fraction": (sum(areas) / n / cells) if n else 0.0,
        "max_object_fraction": (max(areas) / cells) if n else 0.0,
        "singleton_objects": (sum(1 for a in areas if a == 1) / n) if n else 0.0,
        **st,
        "mirror_symmetry": flag(bool(sym.get("horizontal") or sym.get("vertical"))),
        "symmetry_rot180": flag(bool(sym.get("rot180"))),
        "adjacency_per_object": count["adjacent_to"] / max(1, n),
    }
    if not full:
        return values
    perimeter = sum(int(x.get("perimeter", 0)) for x in comps)
    colours = {x.get("colour") for x in comps}
    return values | {
        "side": math.sqrt(cells),
        "aspect": (h - w) / (h + w),
        "square": flag(h == w),
        "third_colour_fraction": freqs[2] if len(freqs) > 2 else 0.0,
        "many_objects": n / (n + 32),
        "blobs": nblobs / (nblobs + 4),
        "objects_per_blob": (n - nblobs) / (n + nblobs + 1) if grid is not None else 0.0,
        **{name: flag(bool(sym.get(s))) for name, s in zip(SYMMETRY, SYMMETRIES, strict=True)},
        "containment_per_object": count["contained_in"] / max(1, n),
        "alignment_per_object": count["aligned_with"] / max(1, n),
        "monochrome_objects": flag(n > 1 and len(colours) == 1),
        "thinness": perimeter / (4 * sum(areas)) if n and sum(areas) else 0.5,
    }


def colour_values(rep: dict[str, Any], *, full: bool = True) -> Values:
    """The absolute colours of one grid: each colour's mass (sqrt of its cell fraction) and
    (``full``) which one is the background."""
    g = rep["globals"]
    cells = g["height"] * g["width"]
    hist = g.get("colour_hist") or {}
    out = {name: math.sqrt(hist.get(str(c), 0) / cells) for c, name in enumerate(COLOUR_MASS)}
    if not full:
        return out
    bg = g.get("background")
    return out | {name: flag(bg == c) for c, name in enumerate(BACKGROUND)}


@lru_cache(maxsize=1024)  # keyed by grid shape: at most 30 x 30 of them, < 4 MB in all
def _cell_index(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(10 * row, 10 * column) of every cell in row-major order (read-only, per shape)."""
    rows = np.repeat(np.arange(h, dtype=np.int64), w) * 10
    cols = np.tile(np.arange(w, dtype=np.int64), h) * 10
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols


def array(g: Grid) -> np.ndarray:
    """A grid (colours 0-9) as a uint8 array, without numpy parsing nested sequences."""
    return np.frombuffer(b"".join(bytes(row) for row in g), dtype=np.uint8).reshape(
        len(g), len(g[0])
    )


# ------------------------------------------------------------------ pair helpers


def _changed_cells(
    gi: np.ndarray, go: np.ndarray, bg_in: int
) -> tuple[list[float], list[float], float]:
    """Where the changed cells of a same-dims pair are (7 shares), whether per-row /
    per-column counts and colour multisets are preserved (4 flags), and the share of
    changed cells inside an object (all four neighbours non-background) — integer counts
    only (evaluated at the changed cells), then one division each."""
    h, w = gi.shape
    rr, cc = np.nonzero(gi != go)  # row-major: rr ascending
    n_c = len(rr)
    if n_c == 0:
        return [0.0] * 7, [0.0] * 4, 0.0
    nonbg = gi != bg_in
    n_nb = int(np.count_nonzero(nonbg))
    pad = np.zeros((h + 2, w + 2), dtype=bool)
    pad[1:-1, 1:-1] = nonbg
    r1, c1 = rr + 1, cc + 1
    up, down, left, right = pad[rr, c1], pad[rr + 2, c1], pad[r1, cc], pad[r1, cc + 2]
    adjacent = int(np.count_nonzero(up | down | left | right))
    inside = int(np.count_nonzero(up & down & left & right & nonbg[rr, cc]))
    # a non-background input cell strictly on each of the four sides
    nb = nonbg.astype(np.int16)
    across = np.cumsum(nb, axis=1)
    downs = np.cumsum(nb, axis=0)
    a, d, own = across[rr, cc], downs[rr, cc], nb[rr, cc]
    between = int(
        np.count_nonzero((a > own) & (a < across[rr, -1]) & (d > own) & (d < downs[-1, cc]))
    )
    # the new colour: absent from the input, or on a row / column holding it (rays, lines)
    new = go[rr, cc]
    rows10, cols10 = _cell_index(h, w)
    flat = gi.ravel()
    in_row = np.bincount(rows10 + flat, minlength=10 * h).reshape(h, 10) > 0
    in_col = np.bincount(cols10 + flat, minlength=10 * w).reshape(w, 10) > 0
    present = np.bincount(flat, minlength=10) > 0
    new_colour = int(np.count_nonzero(~present[new]))
    on_line = int(np.count_nonzero((in_row[rr, new] | in_col[cc, new]) & (new != bg_in)))
    c_lo, c_hi = int(cc.min()), int(cc.max())
    box = (int(rr[-1]) - int(rr[0]) + 1) * (c_hi - c_lo + 1)
    spread = 1 + int(np.count_nonzero(np.diff(rr))) + int(np.count_nonzero(np.bincount(cc)))
    shares = [
        n_c / (n_nb + n_c),
        adjacent / n_c,
        between / n_c,
        on_line / n_c,
        new_colour / n_c,
        box / (h * w),
        spread / (h + w),
    ]
    nb_out = (go != bg_in).astype(np.int16)
    cols_kept = bool((downs[-1] == nb_out.sum(axis=0)).all())
    rows_kept = bool((across[:, -1] == nb_out.sum(axis=1)).all())
    flags = [  # a colour multiset can only be kept where the count is
        flag(cols_kept),
        flag(rows_kept),
        flag(cols_kept and bool(np.array_equal(np.sort(gi, axis=0), np.sort(go, axis=0)))),
        flag(rows_kept and bool(np.array_equal(np.sort(gi, axis=1), np.sort(go, axis=1)))),
    ]
    return shares, flags, inside / n_c


def _object_fate(gi: Grid, go: Grid, bg_in: int, bg_out: int) -> list[float]:
    """What happened to each input object (the 9 object ``fate`` features): matched one to
    one with the output's objects, exact matches first, then the same colour and shape
    elsewhere (moved), then the same cells in another colour (recoloured)."""
    ins = objects(gi, bg_in)
    outs = objects(go, bg_out)
    if not ins:
        return [0.0] * 9
    h, w = len(go), len(go[0])
    free = [True] * len(outs)
    by_shape: dict[tuple[int, frozenset[tuple[int, int]]], list[int]] = {}
    by_cells: dict[frozenset[tuple[int, int]], list[int]] = {}
    for j, o in enumerate(outs):
        by_shape.setdefault((o.colour, o.shape), []).append(j)
        by_cells.setdefault(o.cells, []).append(j)

    def take(candidates: list[int] | None, colour: int | None = None) -> int | None:
        for j in candidates or ():
            if free[j] and (colour is None or outs[j].colour == colour):
                free[j] = False
                return j
        return None

    fate = [""] * len(ins)
    for i, o in enumerate(ins):
        if take(by_cells.get(o.cells), o.colour) is not None:
            fate[i] = "kept"
    offsets: list[tuple[int, int]] = []
    at_border = 0
    for i, o in enumerate(ins):
        if fate[i]:
            continue
        hit = take(by_shape.get((o.colour, o.shape)))
        if hit is not None:
            fate[i] = "moved"
            top, left, bottom, right = outs[hit].bbox
            offsets.append((top - o.bbox[0], left - o.bbox[1]))
            at_border += top == 0 or left == 0 or bottom == h - 1 or right == w - 1
    for i, o in enumerate(ins):
        if not fate[i] and take(by_cells.get(o.cells)) is not None:
            fate[i] = "recoloured"
    survived = [o.area for i, o in enumerate(ins) if fate[i]]
    removed = [o.area for i, o in enumerate(ins) if not fate[i]]
    largest = max(o.area for o in ins)
    largest_ok = any(o.area == largest and fate[i] for i, o in enumerate(ins))
    contrast = 0.0
    if survived and removed:
        ms, mr = sum(survived) / len(survived), sum(removed) / len(removed)
        contrast = (ms - mr) / (ms + mr)
    # grown: not kept, yet every cell keeps its colour, so (components being maximal) a
    # strictly larger output object of that colour holds it
    grown = 0
    if (h, w) == (len(gi), len(gi[0])):
        for i, o in enumerate(ins):
            if fate[i] != "kept" and o.colour != bg_out:
                grown += all(go[r][c] == o.colour for r, c in o.cells)
    created = free.count(True) / len(outs) if outs else 0.0
    dist = sum(abs(dr) + abs(dc) for dr, dc in offsets) / len(offsets) / (h + w) if offsets else 0.0
    return [
        sum(1 for a in removed if a == 1) / len(removed) if removed else 0.0,
        contrast,
        flag(len(ins) > 1 and largest_ok),
        flag(len(ins) > 1 and len(outs) == 1),
        created,
        grown / len(ins),
        dist,
        flag(bool(offsets) and len(set(offsets)) == 1),
        at_border / len(offsets) if offsets else 0.0,
    ]


def _blob_fate(gi: Grid, go: Grid, bg_in: int, bg_out: int) -> list[float]:
    """What happened to the input's 8-connected multi-colour blobs (same dims only): kept
    (every cell unchanged), erased (every cell background after), the erased ones' size,
    the largest kept, exactly one not erased."""
    ins = blobs(gi, bg_in)
    if not ins or len(gi) != len(go) or len(gi[0]) != len(go[0]):
        return [0.0] * 5
    kept = [b for b in ins if all(gi[r][c] == go[r][c] for r, c in b)]
    erased = [b for b in ins if all(go[r][c] == bg_out for r, c in b)]
    largest = max(len(b) for b in ins)
    return [
        len(kept) / len(ins),
        len(erased) / len(ins),
        sum(1 for b in erased if len(b) == 1) / len(erased) if erased else 0.0,
        flag(len(ins) > 1 and any(len(b) == largest for b in kept)),
        flag(len(ins) > 1 and len(ins) - len(erased) == 1),
    ]


# ------------------------------------------------------------------ one pair


def facts_values(f: PairFacts, *, full: bool = True) -> Values:
    """The features of a pair that its facts alone give: sizes, changed cells, colours,
    objects kept / moved / recoloured, the D4 symmetries (``full``: each apart, and the
    exact transforms; else in groups, as the built-in embedder reads them)."""
    (hi, wi), (ho, wo) = f.in_dims, f.out_dims
    n_in, n_out = f.objects_in, f.objects_out
    values = {
        "same_dims": flag(f.same_dims),
        "height_ratio": ratio(ho, hi),
        "width_ratio": ratio(wo, wi),
        "cell_ratio": ratio(ho * wo, hi * wi),
        "changed_fraction": f.changed_fraction if f.same_dims else 0.0,
        "changed_from_background": f.from_bg,
        "changed_to_background": f.to_bg,
        "colours_added": float(len(f.colours_out - f.colours_in)),
        "colours_removed": float(len(f.colours_in - f.colours_out)),
        "palette_preserved": flag(f.colours_in == f.colours_out),
        "colour_counts_preserved": flag(f.counts_preserved),
        "background_preserved": flag(f.background_in == f.background_out),
        "object_ratio": (n_out - n_in) / (n_out + n_in + 2),
        "objects_kept": f.objects_kept,
        "objects_moved": f.objects_moved,
        "objects_recoloured": f.objects_recoloured,
        "output_is_an_object": flag(f.out_is_object),
        "output_uniform": flag(f.out_uniform),
    }
    if not full:
        return values | {
            "rotate_quarter": flag(bool(f.d4 & {"rotate_90", "rotate_270"})),
            "rotate_half": flag("rotate_180" in f.d4),
            "flip": flag(bool(f.d4 & {"flip_h", "flip_v"})),
            "diagonal_flip": flag(bool(f.d4 & {"transpose", "anti_transpose"})),
        }
    pi, po = len(f.colours_in), len(f.colours_out)
    removed = max(0.0, 1.0 - f.objects_kept - f.objects_moved - f.objects_recoloured)
    return values | {
        "dims_swapped": flag(ho == wi and wo == hi and hi != wi),
        "one_side_kept": flag((ho == hi) != (wo == wi)),
        "out_height": float(ho),
        "out_width": float(wo),
        "out_bar": flag(ho == 1 or wo == 1),
        "palette_change": (po - pi) / (po + pi),
        "objects_removed": removed if n_in else 0.0,
        **{key: flag(name in f.d4) for key, name in zip(D4_KEYS, D4, strict=True)},
        "identity": flag(f.identity),
        "scale_up": flag(f.scale_up),
        "scale_down": flag(f.scale_down),
        "tile": flag(f.tiled),
        "crop": flag(f.crop),
        "extend": flag(f.embed and not f.tiled and not f.scale_up),
        "recolor": flag(f.recolor),
        "fill": flag(f.fill),
        "erase": flag(f.erase),
    }


CHANGED = (  # ``_changed_cells``: where a same-dims pair's changed cells are
    "changed_per_object_cell",
    "changed_next_to_object",
    "changed_between_objects",
    "changed_on_colour_line",
    "changed_to_new_colour",
    "changed_box",
    "changed_spread",
)
LINES = (  # ``_changed_cells``: per-column / per-row counts and colours kept
    "column_counts_preserved",
    "row_counts_preserved",
    "column_colours_preserved",
    "row_colours_preserved",
)
OBJECT_FATE = (  # ``_object_fate``
    "removed_singletons",
    "survivor_size_contrast",
    "largest_survives",
    "one_object_left",
    "objects_created",
    "objects_grown",
    "moved_distance",
    "moved_together",
    "moved_to_border",
)
BLOB_FATE = (  # ``_blob_fate``
    "blobs_kept",
    "blobs_erased",
    "erased_blob_singletons",
    "largest_blob_kept",
    "one_blob_left",
)


def pair_values(in_rep: dict[str, Any], out_rep: dict[str, Any], f: PairFacts) -> Values:
    """Every feature of a pair: its facts' (``facts_values``), then what its grids and reprs
    tell — where the changed cells are, the fate of each input object and blob, the output
    as an object's box or a count, the symmetries the output gains, its own structure."""
    ho, wo = f.out_dims
    changed = [0.0] * len(CHANGED)
    lines = [0.0] * len(LINES)
    interior = 0.0
    fate = [0.0] * len(OBJECT_FATE)
    blob_fate = [0.0] * len(BLOB_FATE)
    grids = grids_of(in_rep, out_rep)
    if grids is not None:
        gi_t, go_t = grids
        fate = _object_fate(gi_t, go_t, f.background_in, f.background_out)
        blob_fate = _blob_fate(gi_t, go_t, f.background_in, f.background_out)
        if f.same_dims:
            gi, go = array(gi_t), array(go_t)
            changed, lines, interior = _changed_cells(gi, go, f.background_in)
    comps = components(in_rep)
    boxes = {(x["bbox"][2] - x["bbox"][0] + 1, x["bbox"][3] - x["bbox"][1] + 1) for x in comps}
    largest = max(comps, key=lambda x: x.get("area", 0), default=None)
    largest_box = (
        (largest["bbox"][2] - largest["bbox"][0] + 1, largest["bbox"][3] - largest["bbox"][1] + 1)
        if largest is not None
        else None
    )
    og = out_rep["globals"]
    out_cells = ho * wo
    out_hist = og.get("colour_hist") or {}
    out_nonbg = out_cells - int(out_hist.get(str(f.background_in), 0))
    n_in, n_out = f.objects_in, f.objects_out
    out_comps = components(out_rep)
    sym_in = in_rep["globals"].get("symmetry", {})
    sym_out = og.get("symmetry", {})
    out_bg = og.get("background")
    return {
        **facts_values(f),
        **dict(zip(CHANGED, changed, strict=True)),
        **dict(zip(LINES, lines if not f.identity else [0.0] * len(LINES), strict=True)),
        "output_box_of_largest": flag(largest_box == (ho, wo)),
        "output_box_of_an_object": flag((ho, wo) in boxes),
        "output_counts_objects": flag(n_in > 0 and (out_cells == n_in or out_nonbg == n_in)),
        **{
            key: flag(bool(sym_out.get(s)) and not sym_in.get(s))
            for key, s in zip(GAINS_SYMMETRY, SYMMETRIES, strict=True)
        },
        "output_symmetric": flag(any(bool(sym_out.get(s)) for s in SYMMETRIES)),
        "out_background_fraction": (
            (out_hist.get(str(out_bg), 0) / out_cells) if out_bg is not None else 0.6
        ),
        "out_objects": n_out / (n_out + 4),
        "out_palette_size": float(len(f.colours_out)),
        "out_singleton_objects": (
            (sum(1 for x in out_comps if x.get("area") == 1) / len(out_comps)) if out_comps else 0.0
        ),
        **dict(zip(OBJECT_FATE, fate, strict=True)),
        "changed_interior": interior,
        **dict(zip(BLOB_FATE, blob_fate, strict=True)),
    }
