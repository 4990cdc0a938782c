"""The fitted embedder's raw features (layer 1 of ``vault.embedding.fitted``): eight
raw blocks of one item — a grid or a pair — each quantised to int8 exactly as the built-in
embedder quantises its blocks; the constants and layouts of every raw-feature version."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from vault.canonical import canonical_bytes
from vault.embedding import relations
from vault.embedding.embedder import FAMILY_WEIGHT, _quantize
from vault.grid.grid import D4, Grid
from vault.grid.objects import blobs, objects, separators
from vault.grid.pairs import PairFacts, analyze_pair
from vault.grid.reprs import SYMMETRIES
from vault.records.keys import (
    FEATURE_KEYS,
    INVARIANTS,
    TRANSFORMS,
    matchable,
    pair_keys,
    repr_keys,
)

NAME = "vault-fitted-embedder"
VERSION = "2.0.0"  # of the raw features and the inference rule (the weights have their hash)
VERSIONS = ("1.0.0", "2.0.0")  # every raw-feature version this tool runs (old weights keep working)
DIM = 64
FORMAT_MAGIC = b"VFITW\x00"
FORMAT_VERSION = 1

Feature = tuple[str, float, float]  # (name, centre, scale): clip((x - centre) / scale, -1, 1)

SHAPE_RAW: tuple[Feature, ...] = (
    ("height", 10.0, 10.0),
    ("width", 10.0, 10.0),
    ("side", 10.0, 10.0),  # sqrt(cells)
    ("aspect", 0.0, 0.5),  # (h - w) / (h + w)
    ("square", 0.0, 1.0),
    ("palette_size", 3.0, 3.0),
    ("background_fraction", 0.6, 0.4),
    ("second_colour_fraction", 0.0, 0.5),
    ("third_colour_fraction", 0.0, 0.25),
    ("objects", 0.5, 0.5),  # n / (n + 4)
    ("many_objects", 0.25, 0.25),  # n / (n + 32): noise grids apart from scenes
    ("mean_object_fraction", 0.0, 0.25),
    ("max_object_fraction", 0.0, 0.5),
    ("singleton_objects", 0.0, 1.0),
    ("box_fill", 0.5, 0.5),
    ("border_objects", 0.5, 0.5),
    ("separators", 0.0, 0.2),  # full one-colour non-background rows + columns / (h + w)
    ("multicolour_blobs", 0.0, 1.0),
    ("blobs", 0.5, 0.5),  # b / (b + 4), 8-connected non-background blobs
    ("objects_per_blob", 0.0, 1.0),  # (n - b) / (n + b + 1)
    ("symmetry_horizontal", 0.0, 1.0),
    ("symmetry_vertical", 0.0, 1.0),
    ("symmetry_diagonal", 0.0, 1.0),
    ("symmetry_anti_diagonal", 0.0, 1.0),
    ("symmetry_rot180", 0.0, 1.0),
    ("adjacency_per_object", 0.0, 2.0),
    ("containment_per_object", 0.0, 1.0),
    ("alignment_per_object", 0.0, 2.0),
    ("distinct_shapes", 0.5, 0.5),  # distinct (box height, box width, area) of objects / n
    ("monochrome_objects", 0.0, 1.0),  # > 1 object, all one colour
    ("rectangle_objects", 0.0, 1.0),  # share of objects (area > 1) filling their box
    ("line_objects", 0.0, 1.0),  # share of objects (area > 1) one cell thick
    ("thinness", 0.5, 0.5),  # sum of perimeters / (4 * sum of areas)
    ("isolated_pixels", 0.0, 1.0),  # share of non-background cells with no 8-neighbour
    ("periodic", 0.0, 1.0),  # equal to itself shifted by p rows or columns, p <= side / 2
)
COLOUR_RAW: tuple[Feature, ...] = tuple(
    (f"colour_{c}_mass", 0.0, 1.0)
    for c in range(10)  # sqrt of the colour's cell fraction
) + tuple((f"background_{c}", 0.0, 1.0) for c in range(10))
TRANSFORM_RAW: tuple[Feature, ...] = (
    ("same_dims", 0.5, 0.5),
    ("height_ratio", 0.0, 1.0),  # (r - 1) / (r + 1), r = out / in
    ("width_ratio", 0.0, 1.0),
    ("cell_ratio", 0.0, 1.0),
    ("dims_swapped", 0.0, 1.0),
    ("one_side_kept", 0.0, 1.0),
    ("out_height", 10.0, 10.0),
    ("out_width", 10.0, 10.0),
    ("out_bar", 0.0, 1.0),  # one row or one column
    ("changed_fraction", 0.0, 0.5),  # same dims only (as every changed_* feature)
    ("changed_from_background", 0.0, 1.0),
    ("changed_to_background", 0.0, 1.0),
    ("changed_per_object_cell", 0.0, 1.0),  # changed / (non-background input cells + changed)
    ("changed_next_to_object", 0.0, 1.0),  # 4-adjacent to a non-background input cell
    ("changed_between_objects", 0.0, 1.0),  # input non-background cells on all four sides
    ("changed_on_colour_line", 0.0, 1.0),  # new non-background colour on a row/column of it
    ("changed_to_new_colour", 0.0, 1.0),  # new colour absent from the input
    ("changed_box", 0.0, 1.0),  # bounding box of the changed cells / cells
    ("changed_spread", 0.0, 1.0),  # (changed rows + changed columns) / (h + w)
    ("colours_added", 0.0, 2.0),
    ("colours_removed", 0.0, 2.0),
    ("palette_preserved", 0.5, 0.5),
    ("colour_counts_preserved", 0.0, 1.0),
    ("background_preserved", 0.5, 0.5),
    ("palette_change", 0.0, 0.5),  # (po - pi) / (po + pi)
    ("object_ratio", 0.0, 1.0),  # (o - i) / (o + i + 2)
    ("objects_kept", 0.0, 1.0),
    ("objects_moved", 0.0, 1.0),
    ("objects_recoloured", 0.0, 1.0),
    ("objects_removed", 0.0, 1.0),  # 1 - kept - moved - recoloured
    ("output_is_an_object", 0.0, 1.0),
    ("output_uniform", 0.0, 1.0),
    ("output_box_of_largest", 0.0, 1.0),  # output dims = bbox dims of the largest object
    ("output_box_of_an_object", 0.0, 1.0),
    ("output_counts_objects", 0.0, 1.0),  # output (non-background) cells = input objects
    ("column_counts_preserved", 0.0, 1.0),  # per column non-background counts (not identity)
    ("row_counts_preserved", 0.0, 1.0),
    ("column_colours_preserved", 0.0, 1.0),  # per column colour multiset (not identity)
    ("row_colours_preserved", 0.0, 1.0),
    *((f"d4_{name}", 0.0, 1.0) for name in ("rotate_90", "rotate_180", "rotate_270")),
    *((f"d4_{name}", 0.0, 1.0) for name in ("flip_h", "flip_v", "transpose", "anti_transpose")),
    ("identity", 0.0, 1.0),
    ("scale_up", 0.0, 1.0),
    ("scale_down", 0.0, 1.0),
    ("tile", 0.0, 1.0),
    ("crop", 0.0, 1.0),
    ("extend", 0.0, 1.0),
    ("recolor", 0.0, 1.0),
    ("fill", 0.0, 1.0),
    ("erase", 0.0, 1.0),
    *((f"gains_symmetry_{s}", 0.0, 1.0) for s in SYMMETRIES),
    ("output_symmetric", 0.0, 1.0),
    ("out_background_fraction", 0.6, 0.4),
    ("out_objects", 0.5, 0.5),
    ("out_palette_size", 3.0, 3.0),
    ("out_singleton_objects", 0.0, 1.0),
    # the fate of the input's objects (vault.grid.objects: 4-connected, one colour)
    ("removed_singletons", 0.0, 1.0),  # share of the removed objects that are one cell
    ("survivor_size_contrast", 0.0, 1.0),  # (mean area survived - removed) / (sum of both)
    ("largest_survives", 0.0, 1.0),  # the largest object is kept, moved or recoloured
    ("one_object_left", 0.0, 1.0),  # several objects in, one out
    ("objects_created", 0.0, 1.0),  # share of the output's objects matching no input object
    ("objects_grown", 0.0, 1.0),  # share of input objects a larger output object extends
    ("moved_distance", 0.0, 0.5),  # mean (|dr| + |dc|) / (h + w) of the moved objects
    ("moved_together", 0.0, 1.0),  # every moved object has the same offset
    ("moved_to_border", 0.0, 1.0),  # share of the moved objects touching the border after
    ("changed_interior", 0.0, 1.0),  # share of changed cells inside an object (4 neighbours)
    # the fate of the input's 8-connected blobs (multi-colour objects)
    ("blobs_kept", 0.0, 1.0),
    ("blobs_erased", 0.0, 1.0),
    ("erased_blob_singletons", 0.0, 1.0),  # share of the erased blobs that are one cell
    ("largest_blob_kept", 0.0, 1.0),
    ("one_blob_left", 0.0, 1.0),  # exactly one input blob not erased
)
KEY_VOCABULARY: tuple[str, ...] = (
    tuple(f"transform:{t}" for t in TRANSFORMS)
    + tuple(sorted(INVARIANTS.values()))
    + tuple(f"feature:{f}" for f in FEATURE_KEYS)
)
KEYS_RAW: tuple[Feature, ...] = tuple((k, 0.0, 1.0) for k in KEY_VOCABULARY) + (
    ("other_keys", 0.0, 1.0),  # signed count of keys outside the vocabulary
)
KEY_INDEX = {k: i for i, k in enumerate(KEY_VOCABULARY)}

RAW_BLOCKS_V1: tuple[tuple[str, tuple[Feature, ...]], ...] = (
    ("shape", SHAPE_RAW),
    ("colour", COLOUR_RAW),
    ("transform", TRANSFORM_RAW),
    ("keys", KEYS_RAW),
)
# raw version 2 appends the structure groups of ``vault.embedding.relations`` (pair blocks):
# the first four blocks keep their place, so a version-1 raw vector is a prefix of version 2's
RAW_BLOCKS: tuple[tuple[str, tuple[Feature, ...]], ...] = RAW_BLOCKS_V1 + relations.GROUPS
PAIR_BLOCKS = ("transform", *(name for name, _ in relations.GROUPS))  # zero for a repr
RAW_WEIGHT = 1.0  # every raw block is scaled to norm 127 before the fitted map reweights it


@dataclass(frozen=True)
class Layout:
    """One raw-feature version: its blocks in order, their slices, its spec and hash."""

    version: str
    blocks: tuple[tuple[str, tuple[Feature, ...]], ...]

    @property
    def slices(self) -> dict[str, slice]:
        out, at = {}, 0
        for name, spec in self.blocks:
            out[name] = slice(at, at + len(spec))
            at += len(spec)
        return out

    @property
    def dim(self) -> int:
        return sum(len(spec) for _, spec in self.blocks)

    @property
    def spec(self) -> dict[str, Any]:
        return {
            "name": NAME,
            "version": self.version,
            "raw_dim": self.dim,
            "quantization": "int8 per raw block: round(127 * x / |x|), half to even",
            "blocks": {name: [list(f) for f in spec] for name, spec in self.blocks},
            "key_other": "signed: + if sha256(key)[1] & 1 else -",
            "key_family_weight": FAMILY_WEIGHT,
        }

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(canonical_bytes(self.spec)).hexdigest()


LAYOUTS: dict[str, Layout] = {
    "1.0.0": Layout("1.0.0", RAW_BLOCKS_V1),
    "2.0.0": Layout("2.0.0", RAW_BLOCKS),
}
_HASHES = {v: lay.spec_hash for v, lay in LAYOUTS.items()}
_SLICES = {v: lay.slices for v, lay in LAYOUTS.items()}
RAW_SLICES: dict[str, slice] = _SLICES[VERSION]
RAW_DIM = LAYOUTS[VERSION].dim
RAW_SPEC: dict[str, Any] = LAYOUTS[VERSION].spec
RAW_SPEC_HASH = _HASHES[VERSION]

# Output layout: the built-in one, so similarity's appearance/behaviour split applies.
# (name, start, stop, raw blocks read, how items are combined)
OutputBlocks = tuple[tuple[str, int, int, tuple[str, ...], str], ...]
# The structure groups the transformation block reads: ``sizes`` and ``counts``; ``roles``
# and ``objects`` are in the raw spec but read by no default block (judged by
# ``benchmarks/features_study.py`` on the generalisation protocols: they did not help).
STRUCTURE_READ = ("sizes", "counts")
OUTPUT_BLOCKS: OutputBlocks = (
    ("appearance", 0, 26, ("shape", "colour"), "items"),
    ("transform", 26, 48, ("transform", *STRUCTURE_READ), "pairs"),
    ("keys", 48, 64, ("keys",), "keys"),
)
DEFAULT_READS = frozenset(n for block in OUTPUT_BLOCKS for n in block[3])


# ------------------------------------------------------------------ raw features


@lru_cache(maxsize=16)  # (keyed by the few feature specs: a few KB in all)
def _constants(spec: tuple[Feature, ...]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([c for _, c, _ in spec]), np.array([s for _, _, s in spec])


def _block(raw: Sequence[float], spec: tuple[Feature, ...]) -> list[int]:
    """``clip((x - c) / s, -1, 1)`` per feature, then the block quantised to int8 exactly as
    ``embedder._quantize`` does: ``round(127·v_i / sqrt(fsum(v²)))``, half to even.

    Elementwise float64 numpy (subtract, divide, clip, square, multiply, divide, rint) is
    the same correctly rounded IEEE operation per element as Python's, in the same order,
    and the sum of squares is ``math.fsum`` — so the result is bit-identical to the
    pure-Python rule (``tests/test_fitted.py`` checks both)."""
    centre, scale = _constants(spec)
    v = np.clip((np.array(raw, dtype=np.float64) - centre) / scale, -1.0, 1.0)
    norm = math.sqrt(math.fsum((v * v).tolist()))
    if norm == 0.0:
        return [0] * len(v)
    return np.rint(127.0 * RAW_WEIGHT * v / norm).astype(np.int64).tolist()  # type: ignore[no-any-return]


def _block_reference(raw: Sequence[float], spec: Sequence[Feature]) -> list[int]:
    """The pure-Python form of ``_block`` (the rule as the built-in embedder writes it)."""
    values = [
        -1.0 if v < -1.0 else 1.0 if v > 1.0 else v
        for v in ((x - c) / s for x, (_, c, s) in zip(raw, spec, strict=True))
    ]
    return _quantize(values, RAW_WEIGHT)


def _b(flag: bool) -> float:
    return 1.0 if flag else 0.0


def _grid(rep: dict[str, Any]) -> Grid | None:
    cells = rep.get("grid")
    return None if cells is None else tuple(tuple(r) for r in cells)


def _periodic(g: Grid) -> bool:
    """Equal to itself shifted by p rows or p columns for some p <= side / 2."""
    h, w = len(g), len(g[0])
    if h * w <= 4:
        return False
    if any(g[p:] == g[:-p] for p in range(1, h // 2 + 1)):
        return True
    t = tuple(zip(*g, strict=True))
    return any(t[p:] == t[:-p] for p in range(1, w // 2 + 1))


def _shape_raw(rep: dict[str, Any]) -> list[float]:
    g = rep["globals"]
    h, w = int(g["height"]), int(g["width"])
    cells = h * w
    hist = g.get("colour_hist") or {}
    freqs = sorted((v / cells for v in hist.values()), reverse=True)
    comps = [x for x in rep.get("nodes", ()) if x.get("type") == "component"]
    n = len(comps)
    areas = [int(x.get("area", 0)) for x in comps]
    edges = rep.get("edges", ())
    count = {"adjacent_to": 0, "contained_in": 0, "aligned_with": 0}
    for e in edges:
        t = e.get("type")
        if t in count:
            count[t] += 1
    sym = g.get("symmetry", {})
    bg = g.get("background")
    perimeter = sum(int(x.get("perimeter", 0)) for x in comps)
    colours = {x.get("colour") for x in comps}
    grid = _grid(rep)
    fill, border, seps, multi, nblobs = 0.5, 0.5, 0.0, 0.0, 0
    distinct, rects, lines, isolated_share, periodic = 1.0, 0.0, 0.0, 0.0, False
    if grid is not None and bg is not None:
        objs = objects(grid, bg)
        if objs:  # one pass: box fill, border contact, shape signatures, rectangles, lines
            fill_sum = 0.0
            n_border = n_big = n_rect = n_line = 0
            signatures = set()
            for o in objs:
                top, left, bottom, right = o.bbox
                area = len(o.cells)
                box = (bottom - top + 1) * (right - left + 1)
                fill_sum += area / box
                n_border += top == 0 or left == 0 or bottom == h - 1 or right == w - 1
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
        # an isolated pixel is exactly a one-cell 8-connected blob
        nonbg = sum(len(b) for b in groups)
        isolated_share = sum(1 for b in groups if len(b) == 1) / nonbg if nonbg else 0.0
        periodic = nonbg > 0 and _periodic(grid)
    return [
        float(h),
        float(w),
        math.sqrt(cells),
        (h - w) / (h + w),
        _b(h == w),
        float(g["palette_size"]),
        (hist.get(str(bg), 0) / cells) if bg is not None else 0.6,
        freqs[1] if len(freqs) > 1 else 0.0,
        freqs[2] if len(freqs) > 2 else 0.0,
        n / (n + 4),
        n / (n + 32),
        (sum(areas) / n / cells) if n else 0.0,
        (max(areas) / cells) if n else 0.0,
        (sum(1 for a in areas if a == 1) / n) if n else 0.0,
        fill,
        border,
        seps,
        multi,
        nblobs / (nblobs + 4),
        (n - nblobs) / (n + nblobs + 1) if grid is not None else 0.0,
        *(_b(bool(sym.get(s))) for s in SYMMETRIES),
        count["adjacent_to"] / max(1, n),
        count["contained_in"] / max(1, n),
        count["aligned_with"] / max(1, n),
        distinct,
        _b(n > 1 and len(colours) == 1),
        rects,
        lines,
        perimeter / (4 * sum(areas)) if n and sum(areas) else 0.5,
        isolated_share,
        _b(periodic),
    ]


def _colour_raw(rep: dict[str, Any]) -> list[float]:
    g = rep["globals"]
    cells = g["height"] * g["width"]
    hist = g.get("colour_hist") or {}
    bg = g.get("background")
    return [math.sqrt(hist.get(str(c), 0) / cells) for c in range(10)] + [
        _b(bg == c) for c in range(10)
    ]


def _ratio(a: float, b: float) -> float:
    r = a / b
    return (r - 1.0) / (r + 1.0)


@lru_cache(maxsize=1024)  # keyed by grid shape: at most 30 x 30 of them, < 4 MB in all
def _cell_index(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(10 * row, 10 * column) of every cell in row-major order (read-only, per shape)."""
    rows = np.repeat(np.arange(h, dtype=np.int64), w) * 10
    cols = np.tile(np.arange(w, dtype=np.int64), h) * 10
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols


def _array(g: Grid) -> np.ndarray:
    """A grid (colours 0-9) as a uint8 array, without numpy parsing nested sequences."""
    return np.frombuffer(b"".join(bytes(row) for row in g), dtype=np.uint8).reshape(
        len(g), len(g[0])
    )


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
        _b(cols_kept),
        _b(rows_kept),
        _b(cols_kept and bool(np.array_equal(np.sort(gi, axis=0), np.sort(go, axis=0)))),
        _b(rows_kept and bool(np.array_equal(np.sort(gi, axis=1), np.sort(go, axis=1)))),
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
        _b(len(ins) > 1 and largest_ok),
        _b(len(ins) > 1 and len(outs) == 1),
        created,
        grown / len(ins),
        dist,
        _b(bool(offsets) and len(set(offsets)) == 1),
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
        _b(len(ins) > 1 and any(len(b) == largest for b in kept)),
        _b(len(ins) > 1 and len(ins) - len(erased) == 1),
    ]


def _transform_raw(in_rep: dict[str, Any], out_rep: dict[str, Any], f: PairFacts) -> list[float]:
    (hi, wi), (ho, wo) = f.in_dims, f.out_dims
    changed = [0.0] * 7
    lines = [0.0] * 4
    interior = 0.0
    fate = [0.0] * 9
    blob_fate = [0.0] * 5
    gi_t, go_t = _grid(in_rep), _grid(out_rep)
    if gi_t is not None and go_t is not None:
        fate = _object_fate(gi_t, go_t, f.background_in, f.background_out)
        blob_fate = _blob_fate(gi_t, go_t, f.background_in, f.background_out)
        if f.same_dims:
            gi, go = _array(gi_t), _array(go_t)
            changed, lines, interior = _changed_cells(gi, go, f.background_in)
    comps = [x for x in in_rep.get("nodes", ()) if x.get("type") == "component"]
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
    n_in = f.objects_in
    out_comps = [x for x in out_rep.get("nodes", ()) if x.get("type") == "component"]
    sym_in = in_rep["globals"].get("symmetry", {})
    sym_out = og.get("symmetry", {})
    out_bg = og.get("background")
    pi, po = len(f.colours_in), len(f.colours_out)
    n_out = f.objects_out
    removed = max(0.0, 1.0 - f.objects_kept - f.objects_moved - f.objects_recoloured)
    return [
        _b(f.same_dims),
        _ratio(ho, hi),
        _ratio(wo, wi),
        _ratio(ho * wo, hi * wi),
        _b(ho == wi and wo == hi and hi != wi),
        _b((ho == hi) != (wo == wi)),
        float(ho),
        float(wo),
        _b(ho == 1 or wo == 1),
        f.changed_fraction if f.same_dims else 0.0,
        f.from_bg,
        f.to_bg,
        *changed,
        float(len(f.colours_out - f.colours_in)),
        float(len(f.colours_in - f.colours_out)),
        _b(f.colours_in == f.colours_out),
        _b(f.counts_preserved),
        _b(f.background_in == f.background_out),
        (po - pi) / (po + pi),
        (n_out - n_in) / (n_out + n_in + 2),
        f.objects_kept,
        f.objects_moved,
        f.objects_recoloured,
        removed if n_in else 0.0,
        _b(f.out_is_object),
        _b(f.out_uniform),
        _b(largest_box == (ho, wo)),
        _b((ho, wo) in boxes),
        _b(n_in > 0 and (out_cells == n_in or out_nonbg == n_in)),
        *(lines if not f.identity else [0.0] * 4),
        *(_b(name in f.d4) for name in D4),  # (vault.grid.grid.D4: the order)
        _b(f.identity),
        _b(f.scale_up),
        _b(f.scale_down),
        _b(f.tiled),
        _b(f.crop),
        _b(f.embed and not f.tiled and not f.scale_up),
        _b(f.recolor),
        _b(f.fill),
        _b(f.erase),
        *(_b(bool(sym_out.get(s)) and not sym_in.get(s)) for s in SYMMETRIES),
        _b(any(bool(sym_out.get(s)) for s in SYMMETRIES)),
        (out_hist.get(str(out_bg), 0) / out_cells) if out_bg is not None else 0.6,
        n_out / (n_out + 4),
        float(po),
        (sum(1 for x in out_comps if x.get("area") == 1) / len(out_comps)) if out_comps else 0.0,
        *fate,
        interior,
        *blob_fate,
    ]


def keys_raw(keys: Iterable[str]) -> list[int]:
    """The raw keys block of a key set (its matchable keys, as a fixed-vocabulary one-hot).

    The same rule as ``_block`` (every key feature has centre 0 and scale 1, so a value is
    its clipped count), computed on the non-zero slots only."""
    acc: dict[int, float] = {}
    other = 0.0
    for key in matchable(keys):
        i = KEY_INDEX.get(key)
        if i is not None:
            acc[i] = 1.0
        else:
            digest = hashlib.sha256(key.encode("utf-8")).digest()
            other += 1.0 if digest[1] & 1 else -1.0
    if other:
        acc[len(KEYS_RAW) - 1] = -1.0 if other < -1.0 else 1.0 if other > 1.0 else other
    out = [0] * len(KEYS_RAW)
    if not acc:
        return out
    norm = math.sqrt(math.fsum(v * v for v in acc.values()))
    scale = 127.0 * RAW_WEIGHT
    for i, v in acc.items():
        out[i] = round(scale * v / norm)
    return out


def appearance_raw(rep: dict[str, Any]) -> list[int]:
    """The raw shape and colour blocks of one grid (55 int8)."""
    return _block(_shape_raw(rep), SHAPE_RAW) + _block(_colour_raw(rep), COLOUR_RAW)


def transform_raw(
    in_rep: dict[str, Any], out_rep: dict[str, Any], facts: PairFacts | None = None
) -> list[int]:
    """The raw transformation block of a pair (80 int8)."""
    f = analyze_pair(in_rep, out_rep) if facts is None else facts
    return _block(_transform_raw(in_rep, out_rep, f), TRANSFORM_RAW)


def raw_repr(rep: dict[str, Any], version: str = VERSION) -> list[int]:
    """A repr's raw vector (``RAW_DIM`` int8 of raw ``version``): appearance, no
    transformation (nor structure groups), its keys."""
    out = appearance_raw(rep) + [0] * len(TRANSFORM_RAW) + keys_raw(repr_keys(rep))
    return out + [0] * (LAYOUTS[version].dim - len(out))


def structure_raw(
    in_rep: dict[str, Any],
    out_rep: dict[str, Any],
    f: PairFacts,
    blocks: Collection[str] | None = None,
) -> list[int]:
    """The raw structure groups of a pair (``relations.GROUPS``, each its own block); only
    those in ``blocks`` (None: all) are computed, the others stay zero."""
    grids = relations.grids_of(in_rep, out_rep)
    wanted = relations.NAMES if blocks is None else tuple(n for n in relations.NAMES if n in blocks)
    values = (
        relations.groups_raw(in_rep, out_rep, *grids, f, wanted)
        if grids is not None and wanted
        else relations.empty()
    )
    out: list[int] = []
    for name, spec in relations.GROUPS:  # (a group not computed is neutral: a zero block)
        out += _block(values[name], spec) if name in wanted else [0] * len(spec)
    return out


def raw_pair(
    in_rep: dict[str, Any],
    out_rep: dict[str, Any],
    facts: PairFacts | None = None,
    version: str = VERSION,
    blocks: Collection[str] | None = None,
) -> list[int]:
    """A pair's raw vector (raw ``version``): its input's appearance, the transformation,
    the pair's keys (and from version 2 the structure groups: those in ``blocks`` — the raw
    blocks an embedder reads — or all when None; the others zero)."""
    f = analyze_pair(in_rep, out_rep) if facts is None else facts
    out = appearance_raw(in_rep) + transform_raw(in_rep, out_rep, f) + keys_raw(pair_keys(f))
    if LAYOUTS[version].dim > len(out):
        out += structure_raw(in_rep, out_rep, f, blocks)
    return out


def _requantize(total: Sequence[int], weight: float) -> list[int]:
    """``round(127·w·v_i / sqrt(Σ v²))``, half to even: the sum of squares is an exact
    Python integer, ``int -> float`` and ``sqrt`` round correctly (``embedder._requantize``)."""
    norm = math.sqrt(sum(v * v for v in total))  # exact integer sum, then one sqrt
    if norm == 0.0:
        return [0] * len(total)
    scale = 127.0 * weight
    return [round(scale * v / norm) for v in total]


def raw_combine(
    items: Sequence[Sequence[int]], pairs: Sequence[Sequence[int]], keys: Iterable[str]
) -> list[int]:
    """One raw vector from raw item vectors (the views ``fit`` can learn from): the raw shape
    and colour blocks summed over ``items``, the transform block over ``pairs``, each
    requantised as a raw block, plus the raw keys block of ``keys``."""
    out: list[int] = []
    for name, _ in RAW_BLOCKS:
        s = RAW_SLICES[name]
        if name == "keys":
            out += keys_raw(keys)
            continue
        rows = pairs if name in PAIR_BLOCKS else items
        total = [sum(col) for col in zip(*(r[s] for r in rows), strict=True)] if rows else []
        out += _requantize(total, RAW_WEIGHT) if total else [0] * (s.stop - s.start)
    return out


