"""A fitted embedder: ``y = requantise(W · LayerNorm(raw) + b)``, learned, yet bit-exact.

The seed's "Learned Embedding Tie-Break" (``z = LayerNorm([...]) · W + b``, "start linear;
keep deterministic"), in three layers.

1. **Raw features** (``RAW_SPEC``; version 2.0.0: ``RAW_DIM`` = 214 int8 values in eight raw
   blocks; version 1.0.0, the first four blocks, stays readable: ``LAYOUTS``), a richer
   description of one item (a grid, or a pair input -> output) than the built-in 64 dims:

   * ``shape`` [0, 35) — one grid, colour-permutation invariant: size, side, aspect, palette
     and colour-frequency profile, objects (count, sizes, singletons, box fill, border
     contact, rectangles, lines, thinness, distinct shapes, one colour), 8-connected blobs
     (count, multi-colour ones, objects per blob), separators, periodicity, isolated
     pixels, the five symmetries apart, adjacency / containment / alignment per object;
   * ``colour`` [35, 55) — one grid: the mass of each absolute colour, the background colour;
   * ``transform`` [55, 135) — one pair: size ratios, output size, swapped / kept sides,
     where the changed cells are (next to objects, between them, inside them, on a row or
     column of their new colour, in how small a box), colours added / removed / kept,
     per-row and per-column counts and colour multisets kept (gravity, sorting), the fate
     of each input object (kept, moved — how far, together, to the border —, recoloured,
     removed — singletons or not, the largest surviving, one left —, grown, created) and of
     each multi-colour blob, the output as an object's box or a count, every D4 symmetry
     apart, the exact transforms of ``vault.grid.pairs`` (scale, tile, crop, extend,
     recolour, fill, erase), the symmetries the output gains, the output's own structure;
   * ``keys`` [135, 177) — the key vocabulary as a fixed one-hot (every ``transform:`` and
     ``invariant:`` key and the known ``feature:`` keys; other keys sign-hashed into one slot);
   * version 2: the structure groups of ``vault.embedding.relations`` (pair blocks) —
     ``roles`` [177, 188), ``objects`` [188, 198), ``sizes`` [198, 207), ``counts``
     [207, 214); the default map reads ``sizes`` and ``counts`` (``STRUCTURE_READ``), and a
     raw block no output block reads is left zero when embedding (``FittedWeights.reads``).

   Each feature is ``clip((x − c) / s, −1, 1)`` with fixed constants and each raw block is
   quantised to int8 exactly as the built-in embedder quantises its blocks
   (``round(127·v_i / ‖v‖)``, half to even, ``‖v‖ = sqrt(fsum(v²))``): the "LayerNorm" step.
   Features use + − × ÷, ``sqrt`` and integer counts only (numpy counts cells; every
   fraction is one Python division), so they are IEEE-exact on every machine.

2. **A linear map per output block**, fitted (``fit``) from classes of items that should be
   close — the pairs, test inputs and key sets of one task (self-supervised), the reprs and
   pairs a concept verified on, the tasks of one labelled group — against the other
   classes: regularised LDA (``fit_block``: the top generalised eigenvectors of between-
   versus within-class scatter, with the within-class scatter shrunk towards each raw
   feature's own total variance, so rare but crisp features — a D4 flag, a key — count as
   much as frequent ones; directions whitened, centred on the mean of the class means).
   The output keeps the built-in layout so ``similarity`` (``cosine``, ``structured``)
   applies unchanged: appearance ``[0, 26)`` <- raw shape + colour; transformation
   ``[26, 48)`` <- raw transform + sizes + counts; keys ``[48, 64)`` <- raw keys. Training
   is float64 with exactly rounded linear algebra (``vault.embedding.linalg``: the same
   bytes on every machine and BLAS build); class statistics are kept as sums
   (``Scatter``), so the shipped prior pools with a vault's own classes. The result is
   quantised (``quantize_block``) to int8 ``W`` (each row using the full
   range), a non-negative integer multiplier ``m`` per row (≤ 2^20) and an integer bias ``b``.

3. **Bit-exact inference** (``FittedWeights``): for output block k with raw input ``z``,
   ``acc = m ⊙ (W z) + b`` in exact integers (``W z`` is a float64 matrix product of int8
   values: every product and partial sum is an integer below 2^53, so any BLAS kernel,
   order or thread count gives the exact integer; ``m`` and ``b`` are applied in int64,
   |acc| < 2^53); then the block is requantised like every built-in block:
   ``y_i = round(127·w_k·acc_i / sqrt(Σ acc²))`` (the sum of squares is an exact Python
   integer, ``int -> float`` and ``sqrt`` round correctly, then one multiply and one
   divide, Python ``round``, half to even). An all-zero raw input (a grid has no
   transformation; an empty key set) gives an all-zero block, never the bias. A query's or
   a concept's vector *combines* its items' 64-d vectors exactly as ``embedder.combine``
   does: integer sums of the items' appearance blocks (every item) and transformation
   blocks (the pairs), each requantised, plus the keys block of its key set.

The weights object is canonical bytes (``FittedWeights.to_bytes``, layout there): the same
fit gives the same bytes, and ``weights_hash`` = sha256 of them is its content address.

API for the integration: ``FittedWeights.from_bytes(data)``; ``w.embed_repr(rep)``,
``w.embed_pair(in_rep, out_rep, facts=None)``, ``w.combine(item_vectors, pair_vectors,
keys)`` (64 int8 each); ``w.identity()`` / ``w.weights_hash``; ``raw_repr`` / ``raw_pair`` /
``raw_combine`` for the raw space; ``fit(items_by_class, FitSettings(), class_weights=...)``
with items from ``task_items`` (an ARC task), ``concept_items`` (a concept's evidence) or
``items_from_tasks`` (a folder of tasks, optional labels).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from vault.canonical import canonical_bytes
from vault.embedding import linalg, relations
from vault.embedding.embedder import FAMILY_WEIGHT, _quantize
from vault.grid.grid import Grid
from vault.grid.objects import blobs, objects, separators
from vault.grid.pairs import PairFacts, analyze_pair
from vault.grid.reprs import SYMMETRIES
from vault.records.keys import INVARIANTS, TRANSFORMS, matchable, pair_keys, repr_keys

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
D4_ORDER = (
    "rotate_90",
    "rotate_180",
    "rotate_270",
    "flip_h",
    "flip_v",
    "transpose",
    "anti_transpose",
)
FEATURE_KEYS: tuple[str, ...] = (
    *(f"symmetry_{s}" for s in SYMMETRIES),
    "no_object",
    "single_object",
    "multi_object",
    "square",
    "has_containment",
    "monochrome_objects",
    "output_larger",
    "output_smaller",
    "colours_added",
    "colours_removed",
    "objects_added",
    "objects_removed",
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
        *(_b(name in f.d4) for name in D4_ORDER),
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


# ------------------------------------------------------------------ the weights object


@dataclass(frozen=True)
class OutBlock:
    """One output block: dims ``[start, stop)`` of the 64, fed by raw blocks ``inputs``."""

    name: str
    start: int
    stop: int
    inputs: tuple[str, ...]
    combine: str  # "items" (every item), "pairs" (pairs only) or "keys" (the key set)
    weight: float  # output norm 127 * weight
    w: np.ndarray = field(compare=False, repr=False)  # int8 (stop - start, len(raw inputs))
    m: np.ndarray = field(compare=False, repr=False)  # int64 (rows,) >= 0
    b: np.ndarray = field(compare=False, repr=False)  # int64 (rows,)

    def raw_index(self, version: str = VERSION) -> np.ndarray:
        slices = _SLICES[version]
        return np.concatenate([np.arange(slices[n].start, slices[n].stop) for n in self.inputs])


class FittedWeights:
    """The quantised map (int8 ``W``, integer multipliers and biases per output block) plus
    what it was fitted on (``meta``: free canonical JSON, part of the bytes and the hash).

    ``to_bytes`` layout (all integers little-endian):

    * ``b"VFITW\\0"``, u16 format version (1), u32 header length L, L bytes of canonical JSON
      ``{"name", "version", "raw_spec_hash", "dim", "raw_dim", "blocks": [{"name", "start",
      "stop", "inputs", "combine", "weight"}...], "meta": {...}}``;
    * then per block, in header order: ``W`` as int8, row-major ``(stop - start) x R_k``
      (R_k = total length of its raw input blocks, in ``inputs`` order); ``m`` as int64;
      ``b`` as int64.
    """

    def __init__(
        self,
        blocks: Sequence[OutBlock],
        meta: Mapping[str, Any] | None = None,
        version: str = VERSION,
    ):
        if version not in LAYOUTS:
            raise ValueError(f"raw-feature version {version!r} unknown (known: {VERSIONS})")
        self.version = version
        self.raw_dim = LAYOUTS[version].dim
        slices = _SLICES[version]
        self.blocks = tuple(blocks)
        self.meta: dict[str, Any] = dict(meta or {})
        at = 0
        for blk in self.blocks:
            if blk.start != at or blk.stop <= blk.start:
                raise ValueError("output blocks must tile [0, DIM) in order")
            at = blk.stop
            if blk.combine not in ("items", "pairs", "keys") or not blk.inputs:
                raise ValueError(f"block {blk.name}: combine must be items | pairs | keys")
            if any(n not in slices for n in blk.inputs) or len(set(blk.inputs)) != len(blk.inputs):
                raise ValueError(f"block {blk.name}: unknown raw block in {blk.inputs}")
            if not (0.0 < blk.weight <= 1.0):
                raise ValueError(f"block {blk.name}: weight must be in (0, 1]")
            rows = blk.stop - blk.start
            cols = sum(slices[n].stop - slices[n].start for n in blk.inputs)
            if blk.w.shape != (rows, cols) or blk.w.dtype != np.int8:
                raise ValueError(f"block {blk.name}: W must be int8 {rows}x{cols}")
            if blk.m.shape != (rows,) or blk.b.shape != (rows,):
                raise ValueError(f"block {blk.name}: m and b must have {rows} entries")
            if (blk.m < 0).any() or (blk.m >= 1 << 31).any():
                raise ValueError(f"block {blk.name}: multipliers must be in [0, 2^31)")
            if (np.abs(blk.b) >= 1 << 50).any():
                raise ValueError(f"block {blk.name}: biases must be below 2^50")
        if at != DIM:
            raise ValueError(f"output blocks must cover {DIM} dims")
        if len({blk.name for blk in self.blocks}) != len(self.blocks):
            raise ValueError("output block names must be distinct")
        self._index = [blk.raw_index(version) for blk in self.blocks]
        self.reads = frozenset(n for blk in self.blocks for n in blk.inputs)
        self._by_name = {blk.name: i for i, blk in enumerate(self.blocks)}
        # One block-diagonal float64 matrix: every product and partial sum of int8 x int8
        # values is an integer below 2^53 (|W z| <= 162 * 127 * 127), so any summation
        # order gives the exact integer; m and b are then applied in int64.
        full = np.zeros((DIM, self.raw_dim), dtype=np.float64)
        for blk, index in zip(self.blocks, self._index, strict=True):
            full[blk.start : blk.stop, index] = blk.w
        self._full = full
        self._m = np.concatenate([blk.m for blk in self.blocks])
        self._b = np.concatenate([blk.b for blk in self.blocks])
        self._bytes: bytes | None = None

    # ---------------------------------------------------------------- identity
    def header(self) -> dict[str, Any]:
        return {
            "name": NAME,
            "version": self.version,
            "raw_spec_hash": _HASHES[self.version],
            "dim": DIM,
            "raw_dim": self.raw_dim,
            "blocks": [
                {
                    "name": b.name,
                    "start": b.start,
                    "stop": b.stop,
                    "inputs": list(b.inputs),
                    "combine": b.combine,
                    "weight": b.weight,
                }
                for b in self.blocks
            ],
            "meta": self.meta,
        }

    def to_bytes(self) -> bytes:
        if self._bytes is None:
            head = canonical_bytes(self.header())
            parts = [FORMAT_MAGIC, struct.pack("<HI", FORMAT_VERSION, len(head)), head]
            for b in self.blocks:
                parts.append(np.ascontiguousarray(b.w, dtype="<i1").tobytes())
                parts.append(np.ascontiguousarray(b.m, dtype="<i8").tobytes())
                parts.append(np.ascontiguousarray(b.b, dtype="<i8").tobytes())
            self._bytes = b"".join(parts)
        return self._bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> FittedWeights:
        """The weights object of ``data``; ``ValueError`` if it is not one this version
        reads, is truncated or padded, or is not in canonical form."""
        if not data.startswith(FORMAT_MAGIC) or len(data) < len(FORMAT_MAGIC) + 6:
            raise ValueError("not a fitted-embedder weights object")
        at = len(FORMAT_MAGIC)
        version, n = struct.unpack_from("<HI", data, at)
        if version != FORMAT_VERSION:
            raise ValueError(f"weights format {version}; this tool reads {FORMAT_VERSION}")
        at += 6
        try:
            head = json.loads(data[at : at + n].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("weights header is not JSON") from None
        at += n
        raw_version = head.get("version") if isinstance(head, dict) else None
        if raw_version not in _HASHES or head.get("raw_spec_hash") != _HASHES[raw_version]:
            raise ValueError("weights were fitted for other raw features (version mismatch)")
        slices = _SLICES[raw_version]
        blocks = []
        try:
            for spec in head["blocks"]:
                rows = spec["stop"] - spec["start"]
                cols = sum(slices[x].stop - slices[x].start for x in spec["inputs"])
                if at + rows * (cols + 16) > len(data):
                    raise ValueError("weights object is truncated")
                w = np.frombuffer(data, dtype="<i1", count=rows * cols, offset=at)
                at += rows * cols
                m = np.frombuffer(data, dtype="<i8", count=rows, offset=at)
                at += 8 * rows
                b = np.frombuffer(data, dtype="<i8", count=rows, offset=at)
                at += 8 * rows
                blocks.append(
                    OutBlock(
                        spec["name"],
                        spec["start"],
                        spec["stop"],
                        tuple(spec["inputs"]),
                        spec["combine"],
                        float(spec["weight"]),
                        w.reshape(rows, cols).astype(np.int8),
                        m.astype(np.int64),
                        b.astype(np.int64),
                    )
                )
            meta = head["meta"]
        except (KeyError, TypeError):
            raise ValueError("weights header lacks a field or has a wrong type") from None
        if at != len(data):
            raise ValueError("trailing bytes after the weights")
        out = cls(blocks, meta, raw_version)
        if out.to_bytes() != data:
            raise ValueError("weights object is not in canonical form")
        return out

    @property
    def weights_hash(self) -> str:
        """sha256 of ``to_bytes()``: the content address of the weights object."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def identity(self) -> dict[str, Any]:
        """What ``embedder.json`` would hold for this embedder."""
        return {
            "name": NAME,
            "version": self.version,
            "dim": DIM,
            "quantization": "int8",
            "weights_hash": self.weights_hash,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FittedWeights) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    # ---------------------------------------------------------------- inference
    def _acc(self, z: np.ndarray) -> list[int]:
        """``m ⊙ (W z) + b`` for every output dim, as exact Python integers."""
        wz = (self._full @ z.astype(np.float64)).astype(np.int64)
        return (wz * self._m + self._b).tolist()  # type: ignore[no-any-return]

    def _blocks_of(self, raw: Sequence[int] | np.ndarray, names: Iterable[str]) -> list[int]:
        z = np.asarray(raw, dtype=np.int64)
        if z.shape != (self.raw_dim,):
            raise ValueError(f"raw vector must have {self.raw_dim} values, got {z.shape}")
        acc = (self._full @ z.astype(np.float64)).astype(np.int64) * self._m + self._b
        nonzero = z != 0
        out: list[int] = []
        for name in names:
            i = self._by_name[name]
            blk = self.blocks[i]
            if not nonzero[self._index[i]].any():  # an all-zero raw input stays zero (no bias)
                out += [0] * (blk.stop - blk.start)
                continue
            part = acc[blk.start : blk.stop]
            # the sum of squares as an exact Python integer (|acc| < 2^53, squares are not
            # exact in int64), then the same float64 operations as ``_requantize``
            norm = math.sqrt(sum(v * v for v in part.tolist()))
            if norm == 0.0:
                out += [0] * (blk.stop - blk.start)
                continue
            y = np.rint(127.0 * blk.weight * part.astype(np.float64) / norm)
            out += y.astype(np.int64).tolist()
        return out

    def block(self, name: str, raw: Sequence[int] | np.ndarray) -> list[int]:
        """Output block ``name`` of a raw vector (``raw_dim`` int8): exact integers."""
        return self._blocks_of(raw, (name,))

    def embed_raw(self, raw: Sequence[int] | np.ndarray) -> list[int]:
        """The 64-d vector of one raw vector (every block from it)."""
        return self._blocks_of(raw, (blk.name for blk in self.blocks))

    def embed_repr(self, rep: dict[str, Any]) -> list[int]:
        """A repr on its own: appearance + zero transformation + its feature keys."""
        return self.embed_raw(raw_repr(rep, self.version))

    def embed_pair(
        self, in_rep: dict[str, Any], out_rep: dict[str, Any], facts: PairFacts | None = None
    ) -> list[int]:
        """A pair on its own: the input's appearance + transformation + the pair's keys
        (``facts``: ``analyze_pair(in_rep, out_rep)`` when the caller has it)."""
        return self.embed_raw(raw_pair(in_rep, out_rep, facts, self.version, self.reads))

    def embed_keys(self, keys: Iterable[str]) -> list[int]:
        """The keys output block of a key set."""
        raw = [0] * self.raw_dim
        raw[_SLICES[self.version]["keys"]] = keys_raw(keys)
        return self.block("keys", raw)

    def combine(
        self,
        appearance: Sequence[Sequence[int]],
        transform: Sequence[Sequence[int]],
        keys: Iterable[str],
    ) -> list[int]:
        """One vector from 64-d item vectors, as ``embedder.combine``: the "items" blocks
        summed over ``appearance`` (every item), the "pairs" blocks over ``transform`` (the
        pairs), each requantised (exact integer sums), and the keys block of ``keys``."""
        out: list[int] = []
        for blk in self.blocks:
            if blk.combine == "keys":
                out += self.embed_keys(keys)
                continue
            rows = appearance if blk.combine == "items" else transform
            s = slice(blk.start, blk.stop)
            if rows:
                total = [sum(col) for col in zip(*(r[s] for r in rows), strict=True)]
                out += _requantize(total, blk.weight)
            else:
                out += [0] * (blk.stop - blk.start)
        return out


# ------------------------------------------------------------------ fitting

MULTIPLIER_BITS = 20  # the largest row multiplier of a block is 2^20
FLOOR = 1e-6  # the smallest per-feature shrinkage, as a share of the mean feature variance
LABEL_WEIGHT = 10.0  # a labelled group weighs as much as ten self-supervised tasks


@dataclass(frozen=True)
class FitSettings:
    """How ``fit`` fits (recorded in the weights' header). Defaults chosen by inner
    validation on training data only (benchmarks/FIT.md): fit on half of the ARC-AGI-1
    training tasks, retrieve the other half; fit on some synthetic training families,
    retrieve the others."""

    # ridge of each block's within-class scatter, as a share of each raw feature's total
    # variance ("diagonal" shrinkage) -- strong for the transformation and keys (they must
    # carry over to transformations never seen), light for appearance (same task again)
    regularization: Mapping[str, float] = field(
        default_factory=lambda: {"appearance": 0.05, "transform": 0.4, "keys": 0.4}
    )
    power: float = 0.0  # directions scaled by eigenvalue^power: 0 = within-class whitened
    block_weights: Mapping[str, float] = field(
        default_factory=lambda: {"appearance": 0.7, "transform": 0.6, "keys": 0.3}
    )
    shrink: str = "diagonal"  # or "identity": ridge = mean within-class variance

    def to_json(self) -> dict[str, Any]:
        return {
            "regularization": dict(self.regularization),
            "power": self.power,
            "block_weights": dict(self.block_weights),
            "shrink": self.shrink,
        }


@dataclass(frozen=True)
class BlockFit:
    """The floating-point map of one output block before quantisation (for studies)."""

    w: np.ndarray  # (rows, R_k)
    b: np.ndarray  # (rows,)
    eigenvalues: np.ndarray  # generalised eigenvalues of the kept directions


@dataclass(frozen=True)
class Scatter:
    """Weighted class statistics of one output block's raw inputs, kept as sums so that two
    sets of classes pool exactly as if fitted together (``+``): the shipped data's
    statistics are the prior of ``vault embedder fit --from-vault``.

    With classes c of weight w_c, n_c items, item sum s_c, Gram matrix G_c and mean
    m_c = s_c / n_c: ``weight`` = Σ w_c, ``mean_sum`` = Σ w_c m_c, ``between_sum`` =
    Σ w_c m_c m_cᵀ, and over the classes with at least two items ``within_weight`` =
    Σ w_c and ``within_sum`` = Σ w_c (G_c − s_c s_cᵀ / n_c) / n_c."""

    weight: float
    within_weight: float
    mean_sum: np.ndarray
    between_sum: np.ndarray
    within_sum: np.ndarray
    classes: int

    def __add__(self, other: Scatter) -> Scatter:
        if self.mean_sum.shape != other.mean_sum.shape:
            raise ValueError("scatters of different raw inputs cannot be pooled")
        return Scatter(
            self.weight + other.weight,
            self.within_weight + other.within_weight,
            self.mean_sum + other.mean_sum,
            self.between_sum + other.between_sum,
            self.within_sum + other.within_sum,
            self.classes + other.classes,
        )

    def scaled(self, factor: float) -> Scatter:
        """Every class weight multiplied by ``factor``."""
        return Scatter(
            self.weight * factor,
            self.within_weight * factor,
            self.mean_sum * factor,
            self.between_sum * factor,
            self.within_sum * factor,
            self.classes,
        )

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weighted mean of the class means, within-class scatter, between-class scatter)."""
        mu = self.mean_sum / self.weight
        sb = self.between_sum / self.weight - np.outer(mu, mu)
        sw = self.within_sum / self.within_weight if self.within_weight else self.within_sum * 0
        return mu, sw, sb


def scatter(groups: Sequence[np.ndarray], class_weight: np.ndarray) -> Scatter:
    """The ``Scatter`` of the classes' item rows (one float64 array of int8 values per
    class): every class counts with its weight whatever its number of items (a task with
    ten pairs counts as much as one with three). Each class's sums and Gram matrix are
    integers below 2^53, exact under any BLAS kernel or thread count; everything after is
    elementwise, accumulated class by class in the given order, so the statistics are
    the same bits on every machine."""
    p = groups[0].shape[1]
    mean_sum = np.zeros(p)
    between = np.zeros((p, p))
    within = np.zeros((p, p))
    weight = within_weight = 0.0
    for c, g in enumerate(groups):
        wc = float(class_weight[c])
        s = g.sum(axis=0)  # exact: integers
        m = s / len(g)
        weight += wc
        mean_sum += wc * m
        between += wc * np.outer(m, m)
        if len(g) > 1:
            gram = g.T @ g  # exact: integer products and sums below 2^53
            within += (wc / len(g)) * (gram - np.outer(s, s) / len(g))
            within_weight += wc
    return Scatter(weight, within_weight, mean_sum, between, within, len(groups))


def fit_block(
    stats: Scatter,
    dims: int,
    *,
    regularization: float,
    power: float = 0.0,
    shrink: str = "diagonal",
) -> BlockFit:
    """Regularised LDA on a block's class statistics: the ``dims`` directions v with the
    largest ``λ`` in ``S_b v = λ (S_w + ε D) v`` (D = diag of each raw feature's total
    variance, or the mean within-class variance times I), each scaled to unit regularised
    within-class spread and by ``λ^power``, centred on the weighted mean of the class means
    (``b = −W μ``). All linear algebra is ``vault.embedding.linalg`` (exactly rounded sums,
    Jacobi eigenvectors): the same statistics give the same bits on every machine."""
    if stats.classes < 2:
        raise ValueError("fitting needs at least two classes with items")
    mu, sw, sb = stats.moments()
    p = len(mu)
    total = np.diag(sw + sb).copy()
    typical = max(math.fsum(total.tolist()) / p, 1e-9)
    if shrink == "diagonal":  # each feature's own total variance: rare, crisp features
        swr = sw + regularization * np.diag(np.maximum(total, FLOOR * typical))
    elif shrink == "identity":
        ridge = regularization * max(math.fsum(np.diag(sw).tolist()) / p, 1e-9)
        swr = sw + ridge * np.eye(p)
    else:
        raise ValueError(f"unknown shrinkage {shrink!r} (diagonal | identity)")
    swr = (swr + swr.T) / 2.0
    inv = linalg.lower_inverse(linalg.cholesky(swr))
    m = linalg.matmul(linalg.matmul(inv, sb), inv.T)
    vals, vecs = linalg.eigh((m + m.T) / 2.0)
    order = np.argsort(-vals, kind="stable")[:dims]
    vals = np.maximum(vals[order], 0.0)
    v = linalg.matmul(inv.T, vecs[:, order])  # columns: v' (S_w + ε D) v = 1
    idx = np.argmax(np.abs(v), axis=0)  # a fixed sign: the largest coefficient positive
    v = v * np.where(v[idx, np.arange(v.shape[1])] < 0, -1.0, 1.0)
    w = (v * (vals**power)).T
    if w.shape[0] < dims:  # fewer raw features than outputs: zero rows
        w = np.vstack([w, np.zeros((dims - w.shape[0], p))])
        vals = np.concatenate([vals, np.zeros(dims - len(vals))])
    return BlockFit(w, -linalg.matmul(w, mu), vals)


def quantize_block(
    bf: BlockFit, name: str, start: int, inputs: tuple[str, ...], combine: str, weight: float
) -> OutBlock:
    """int8 rows (each row using the full range), integer multipliers (the largest 2^20)
    and integer biases with ``m_r·(W_r·z) + b_r ≈ K·(w_r·z + b_r)``, one K per block (the
    block is requantised to a fixed norm afterwards, so K itself does not matter)."""
    rows = bf.w.shape[0]
    scale = np.max(np.abs(bf.w), axis=1)
    top = float(scale.max())
    if top == 0.0:
        zero = np.zeros(rows, dtype=np.int64)
        w0 = np.zeros(bf.w.shape, dtype=np.int8)
        return OutBlock(name, start, start + rows, inputs, combine, weight, w0, zero, zero)
    safe = np.where(scale > 0, scale, 1.0)
    w8 = np.rint(bf.w * (127.0 / safe)[:, None]).astype(np.int8)
    k = float(1 << MULTIPLIER_BITS) * 127.0 / top
    m = np.rint(k * scale / 127.0).astype(np.int64)
    b = np.rint(k * bf.b).astype(np.int64)
    dead = m == 0
    b[dead] = 0
    w8[dead] = 0
    return OutBlock(name, start, start + rows, inputs, combine, weight, w8, m, b)


ItemsByClass = Mapping[str, Sequence[Sequence[int]]]


def _inputs_index(inputs: Sequence[str]) -> np.ndarray:
    return np.concatenate([np.arange(RAW_SLICES[n].start, RAW_SLICES[n].stop) for n in inputs])


def block_scatters(
    items_by_class: ItemsByClass,
    *,
    class_weights: Mapping[str, float] | None = None,
    output_blocks: OutputBlocks = OUTPUT_BLOCKS,
) -> dict[str, Scatter | None]:
    """Per output block, the ``Scatter`` of the classes' items whose raw input for it is
    not all zero (None when no class has any); classes in sorted order."""
    out: dict[str, Scatter | None] = {}
    for name, _, _, inputs, _ in output_blocks:
        index = _inputs_index(inputs)
        groups: list[np.ndarray] = []
        weights: list[float] = []
        for cls in sorted(items_by_class):
            items = items_by_class[cls]
            for item in items:
                if len(item) != RAW_DIM:
                    raise ValueError(
                        f"class {cls!r}: a raw vector has {len(item)} values, not {RAW_DIM}"
                    )
            block = np.array([np.asarray(item)[index] for item in items], dtype=np.float64)
            block = block.reshape(len(items), len(index))
            if (np.abs(block) > 127).any():
                raise ValueError(f"class {cls!r}: raw values must be int8")
            block = block[block.any(axis=1)]
            if len(block):
                groups.append(block)
                weights.append(float((class_weights or {}).get(cls, 1.0)))
        out[name] = scatter(groups, np.array(weights)) if groups else None
    return out


def fit(
    items_by_class: ItemsByClass,
    settings: FitSettings | None = None,
    *,
    class_weights: Mapping[str, float] | None = None,
    prior: Mapping[str, Scatter] | None = None,
    output_blocks: OutputBlocks = OUTPUT_BLOCKS,
    meta: Mapping[str, Any] | None = None,
) -> FittedWeights:
    """Fit the map from raw vectors (``RAW_DIM`` int8 each) grouped by class: items that
    should be close (the pairs and views of one task, the reprs and pairs one concept
    verified on, the tasks of one ``--labels`` group) against the other classes.

    Each output block is fitted by ``fit_block`` on the items whose raw input for it is not
    all zero (a repr has no transformation; a keys view has only keys), pooled with the
    block's ``prior`` statistics when given (the shipped data: ``Scatter`` sums, as if
    fitted together). ``class_weights`` weighs classes (default 1); ``output_blocks``
    chooses which raw blocks each output block reads (studies). Classes are taken in
    sorted order and items in their given order; the statistics and the linear algebra
    are exact or exactly rounded, so the same data gives the same bytes on every machine."""
    cfg = settings or FitSettings()
    names = [b[0] for b in output_blocks]
    for label, table in (
        ("regularization", cfg.regularization),
        ("block_weights", cfg.block_weights),
    ):
        missing = [n for n in names if n not in table]
        if missing:
            raise ValueError(f"FitSettings.{label} lacks {', '.join(missing)}")
    stats = block_scatters(items_by_class, class_weights=class_weights, output_blocks=output_blocks)
    blocks = []
    counts: dict[str, int] = {}
    for name, start, stop, inputs, combine in output_blocks:
        pooled = stats[name]
        if prior is not None and name in prior:
            pooled = prior[name] if pooled is None else prior[name] + pooled
        if pooled is None:
            raise ValueError("fitting needs at least two classes with items")
        counts[name] = pooled.classes
        bf = fit_block(
            pooled,
            stop - start,
            regularization=float(cfg.regularization[name]),
            power=cfg.power,
            shrink=cfg.shrink,
        )
        blocks.append(
            quantize_block(bf, name, start, inputs, combine, float(cfg.block_weights[name]))
        )
    info = {
        "method": "regularised LDA per output block (vault.embedding.fitted.fit)",
        "settings": cfg.to_json(),
        "classes": counts,
        "items": sum(len(v) for v in items_by_class.values()),
    }
    return FittedWeights(blocks, {**info, **(meta or {})})


# ------------------------------------------------------------------ training items


def _keys_view(keys: Iterable[str]) -> list[int]:
    z = [0] * RAW_DIM
    z[RAW_SLICES["keys"]] = keys_raw(keys)
    return z


def _without_keys(raw: list[int]) -> list[int]:
    ks = RAW_SLICES["keys"]
    return raw[: ks.start] + [0] * (ks.stop - ks.start) + raw[ks.stop :]


def concept_items(
    reprs: Sequence[dict[str, Any]],
    pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    keys: Iterable[str] | None = None,
    blocks: Collection[str] | None = DEFAULT_READS,
) -> list[list[int]]:
    """The training items of one class from a concept's evidence (or a task): each repr's
    appearance (its keys left out: a concept's keys are its own, not a grid's), each pair
    (input appearance, transformation, the pair's keys), and the keys view of ``keys``."""
    items = [_without_keys(raw_repr(r)) for r in reprs]
    items += [raw_pair(a, b, blocks=blocks) for a, b in pairs]
    if keys is not None:
        items.append(_keys_view(keys))
    return items


def task_items(
    task: Mapping[str, Any],
    source: str | None = None,
    blocks: Collection[str] | None = DEFAULT_READS,
) -> list[list[int]]:
    """Self-supervised training items of one ARC-format task: every demonstration pair
    (train, and test pairs that carry an output), every test input's appearance, and the
    key sets a query or a concept of the task would have (the task without pair i; pair i
    with the first test input) as keys views."""
    from vault.grid.reprs import grid_to_repr
    from vault.records.keys import task_keys
    from vault.records.query import parse_task

    pairs, tests = parse_task(dict(task), source)
    facts = [analyze_pair(p.input, p.output) for p in pairs]
    items = [
        raw_pair(p.input, p.output, f, blocks=blocks) for p, f in zip(pairs, facts, strict=True)
    ]
    for t in task.get("test", ()):
        if isinstance(t, dict) and "output" in t:
            items.append(
                raw_pair(grid_to_repr(t["input"]), grid_to_repr(t["output"]), blocks=blocks)
            )
    items += [_without_keys(raw_repr(t)) for t in tests]
    inputs = [p.input for p in pairs]
    extra = tests[:1]
    for i in range(len(pairs)):
        rest = [j for j in range(len(pairs)) if j != i] or [i]
        items.append(_keys_view(task_keys([facts[j] for j in rest], [inputs[j] for j in rest])))
        items.append(_keys_view(task_keys([facts[i]], [inputs[i], *extra])))
    return items


def items_from_tasks(
    tasks: Iterable[tuple[str, Mapping[str, Any]]],
    labels: Mapping[str, str] | None = None,
    *,
    label_weight: float = LABEL_WEIGHT,
) -> tuple[dict[str, list[list[int]]], dict[str, float]]:
    """(items by class, class weights) for ``fit`` from ARC-format tasks: a task is its own
    class (``task:<id>``, weight 1) unless ``labels`` puts it in a group, whose tasks form
    one class (``group:<name>``, weight ``label_weight``)."""
    classes: dict[str, list[list[int]]] = {}
    weights: dict[str, float] = {}
    for task_id, task in tasks:
        group = (labels or {}).get(task_id)
        cls = f"group:{group}" if group is not None else f"task:{task_id}"
        classes.setdefault(cls, []).extend(task_items(task, task_id))
        weights[cls] = label_weight if group is not None else 1.0
    return classes, weights
