"""The deterministic embedder: reprs, pairs, queries and concepts in ONE 64-d int8 space.

A vector is four blocks, each scaled to a fixed norm before int8 quantization:

* shape (16 dims) of input grids, colour-permutation invariant: size, palette size, colour
  frequency profile, objects (count, sizes, fill of their boxes, border contact), panel
  separators, multi-colour objects, symmetry, relations between objects;
* colour (10 dims) of input grids: the mass of each absolute colour (which tasks share
  colours — strong for "the same task again", weak across tasks, so it has its own weight);
* transformation (22 dims) of demonstration pairs input -> output: size ratios, changed
  cells and where they come from / go to, colours added / removed / preserved, objects kept,
  moved, recoloured, the output as a crop of one input object, a uniform output;
* keys (16 dims): the matchable keys, each known ``transform:`` key in a slot shared only
  with a mutually exclusive one (opposite signs), each ``invariant:`` key in its own slot,
  other keys (``feature:``, user keys) sign-hashed into the last slot.

Features are normalized with fixed constants written in ``SPEC`` (nothing is fitted on
data) and computed with + - * / and sqrt only, which IEEE 754 rounds correctly on every
machine, so the same input gives the same int8 vector everywhere. Blocks of several
items (a concept's validated reprs, a task's pairs) are summed as integers and
re-normalized, so aggregation is exact too.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

from vault.canonical import canonical_bytes, sha256_hex
from vault.grid.grid import Grid
from vault.grid.objects import blobs, objects, separators
from vault.grid.pairs import PairFacts
from vault.records.keys import matchable, pair_keys, repr_keys

NAME = "vault-grid-embedder"
# 2.0.0: colour-invariant shape block, absolute colours apart, object-level transformation
# features, known keys in their own slots; 1.1.0: every D4 symmetry of a pair.
VERSION = "2.0.0"
DIM = 64

# (name, centre, scale): feature = clip((raw - centre) / scale, -1, 1).
SHAPE: tuple[tuple[str, float, float], ...] = (
    ("height", 10.0, 10.0),
    ("width", 10.0, 10.0),
    ("palette_size", 3.0, 3.0),
    ("background_fraction", 0.6, 0.4),  # 0.6 when the repr names no background
    ("second_colour_fraction", 0.0, 0.5),  # colour-frequency profile, not which colours
    ("object_count", 0.5, 0.5),  # n / (n + 4)
    ("mean_object_fraction", 0.0, 0.25),  # mean area / cells
    ("max_object_fraction", 0.0, 0.5),
    ("singleton_fraction", 0.0, 1.0),
    ("box_fill", 0.5, 0.5),  # mean area / bounding-box area (1 for rectangles)
    ("border_objects", 0.5, 0.5),  # share of objects touching the border
    ("separators", 0.0, 0.2),  # full one-colour rows and columns / (height + width)
    ("multicolour_objects", 0.0, 1.0),  # share of 8-connected blobs with several colours
    ("mirror_symmetry", 0.0, 1.0),  # horizontal or vertical
    ("rot180_symmetry", 0.0, 1.0),
    ("adjacency_per_object", 0.0, 2.0),
)
COLOUR: tuple[tuple[str, float, float], ...] = tuple(
    (f"colour_{c}_mass", 0.0, 1.0)
    for c in range(10)  # sqrt of the colour's cell fraction
)
TRANSFORM: tuple[tuple[str, float, float], ...] = (
    ("same_dims", 0.5, 0.5),
    ("height_ratio", 0.0, 1.0),  # (r - 1) / (r + 1) for r = out / in
    ("width_ratio", 0.0, 1.0),
    ("cell_ratio", 0.0, 1.0),
    ("changed_fraction", 0.0, 0.5),  # same dims only
    ("changed_from_background", 0.0, 1.0),  # share of changed cells (drawing, filling)
    ("changed_to_background", 0.0, 1.0),  # (erasing)
    ("colours_added", 0.0, 2.0),
    ("colours_removed", 0.0, 2.0),
    ("palette_preserved", 0.5, 0.5),
    ("colour_counts_preserved", 0.0, 1.0),
    ("object_ratio", 0.0, 1.0),  # (o - i) / (o + i + 2)
    ("objects_kept", 0.0, 1.0),
    ("objects_moved", 0.0, 1.0),
    ("objects_recoloured", 0.0, 1.0),
    ("output_is_an_object", 0.0, 1.0),
    ("output_uniform", 0.0, 1.0),
    ("background_preserved", 0.5, 0.5),
    ("rotate_quarter", 0.0, 1.0),  # the D4 symmetries that map the pair (any of several)
    ("rotate_half", 0.0, 1.0),
    ("flip", 0.0, 1.0),
    ("diagonal_flip", 0.0, 1.0),
)
# Known transform keys in pairs that never hold together (the sign tells them apart).
TRANSFORM_SLOTS: tuple[tuple[str, str], ...] = (
    ("scale_up", "scale_down"),
    ("crop", "extend"),
    ("fill", "erase"),
    ("tile", "identity"),
    ("rotate_90", "rotate_180"),
    ("rotate_270", "recolor"),
    ("flip_h", "flip_v"),
    ("transpose", "anti_transpose"),
    ("move", "symmetrize"),
)
INVARIANT_SLOTS: tuple[str, ...] = (
    "same_dims",
    "fixed_dims",
    "palette_preserved",
    "object_count_preserved",
    "colour_count_preserved",
    "background_preserved",
)
KEY_DIMS = len(TRANSFORM_SLOTS) + len(INVARIANT_SLOTS) + 1
FAMILY_WEIGHT = {"transform": 2.0, "invariant": 1.0, "feature": 1.0}
# Block norms after scaling (fraction of 127); the whole vector's norm is 127 * sqrt(sum w²).
BLOCK_WEIGHT = {"shape": 0.7, "colour": 0.6, "transform": 0.6, "keys": 0.55}
SHP = slice(0, len(SHAPE))
COL = slice(SHP.stop, SHP.stop + len(COLOUR))
TRN = slice(COL.stop, COL.stop + len(TRANSFORM))
KEY = slice(TRN.stop, TRN.stop + KEY_DIMS)
APPEARANCE = slice(SHP.start, COL.stop)  # the blocks summed over a concept's input grids
assert KEY.stop == DIM


def _key_slots() -> dict[str, tuple[int, float]]:
    slots: dict[str, tuple[int, float]] = {}
    for i, (plus, minus) in enumerate(TRANSFORM_SLOTS):
        slots[f"transform:{plus}"] = (i, 1.0)
        slots[f"transform:{minus}"] = (i, -1.0)
    for j, name in enumerate(INVARIANT_SLOTS):
        slots[f"invariant:{name}"] = (len(TRANSFORM_SLOTS) + j, 1.0)
    return slots


KEY_SLOTS = _key_slots()

SPEC: dict[str, Any] = {
    "name": NAME,
    "version": VERSION,
    "dim": DIM,
    "quantization": "int8: round(127 * block_weight * x / |x|) per block, half to even",
    "blocks": {
        "shape": [list(f) for f in SHAPE],
        "colour": [list(f) for f in COLOUR],
        "transform": [list(f) for f in TRANSFORM],
        "keys": {
            "dims": KEY_DIMS,
            "slots": sorted([k, s, sign] for k, (s, sign) in KEY_SLOTS.items()),
            "other": "last slot, sign + if sha256(key)[1] & 1 else -",
            "family_weight": FAMILY_WEIGHT,
        },
    },
    "block_weight": BLOCK_WEIGHT,
}
WEIGHTS_HASH = sha256_hex(canonical_bytes(SPEC))


def identity() -> dict[str, Any]:
    """The content of ``embedder.json``."""
    return {
        "name": NAME,
        "version": VERSION,
        "dim": DIM,
        "quantization": "int8",
        "weights_hash": WEIGHTS_HASH,
    }


def _clip(x: float) -> float:
    return -1.0 if x < -1.0 else 1.0 if x > 1.0 else x


def _normalize(raw: Sequence[float], spec: Sequence[tuple[str, float, float]]) -> list[float]:
    return [_clip((x - c) / s) for x, (_, c, s) in zip(raw, spec, strict=True)]


def _quantize(values: Sequence[float], weight: float) -> list[int]:
    norm = math.sqrt(math.fsum(v * v for v in values))
    if norm == 0.0:
        return [0] * len(values)
    scale = 127.0 * weight
    return [round(scale * v / norm) for v in values]


def _requantize(total: Sequence[int], weight: float) -> list[int]:
    norm = math.sqrt(sum(v * v for v in total))  # exact integer sum, one rounding in sqrt
    if norm == 0.0:
        return [0] * len(total)
    scale = 127.0 * weight
    return [round(scale * v / norm) for v in total]


def _grid_structure(rep: dict[str, Any]) -> tuple[float, float, float, float]:
    """(box fill, border objects, separators, multi-colour blobs) from the repr's grid;
    neutral values for a repr given without one."""
    cells = rep.get("grid")
    bg = rep["globals"].get("background")
    if cells is None or bg is None:
        return 0.5, 0.5, 0.0, 0.0
    g: Grid = tuple(tuple(r) for r in cells)
    h, w = len(g), len(g[0])
    objs = objects(g, bg)
    if objs:
        fill = sum(o.area / o.box_area for o in objs) / len(objs)
        border = sum(
            1
            for o in objs
            if o.bbox[0] == 0 or o.bbox[1] == 0 or o.bbox[2] == h - 1 or o.bbox[3] == w - 1
        ) / len(objs)
    else:
        fill, border = 0.5, 0.5
    groups = blobs(g, bg)
    multi = (
        sum(1 for b in groups if len({g[r][c] for r, c in b}) > 1) / len(groups) if groups else 0.0
    )
    return fill, border, separators(g, bg) / (h + w), multi


def shape_block(rep: dict[str, Any]) -> list[int]:
    g = rep["globals"]
    h, w = g["height"], g["width"]
    cells = h * w
    hist = g.get("colour_hist") or {}
    comps = [x for x in rep.get("nodes", ()) if x.get("type") == "component"]
    n = len(comps)
    areas = [x.get("area", 0) for x in comps]
    edges = rep.get("edges", ())
    count = {"adjacent_to": sum(1 for e in edges if e.get("type") == "adjacent_to")}
    sym = g.get("symmetry", {})
    bg = g.get("background")
    second = sorted((v / cells for v in hist.values()), reverse=True)[1:2]
    fill, border, seps, multi = _grid_structure(rep)
    raw = [
        float(h),
        float(w),
        float(g["palette_size"]),
        (hist.get(str(bg), 0) / cells) if bg is not None else 0.6,
        second[0] if second else 0.0,
        n / (n + 4),
        (sum(areas) / n / cells) if n else 0.0,
        (max(areas) / cells) if n else 0.0,
        (sum(1 for a in areas if a == 1) / n) if n else 0.0,
        fill,
        border,
        seps,
        multi,
        1.0 if sym.get("horizontal") or sym.get("vertical") else 0.0,
        1.0 if sym.get("rot180") else 0.0,
        count["adjacent_to"] / max(1, n),
    ]
    return _quantize(_normalize(raw, SHAPE), BLOCK_WEIGHT["shape"])


def colour_block(rep: dict[str, Any]) -> list[int]:
    g = rep["globals"]
    cells = g["height"] * g["width"]
    hist = g.get("colour_hist") or {}
    raw = [math.sqrt(hist.get(str(c), 0) / cells) for c in range(10)]
    return _quantize(_normalize(raw, COLOUR), BLOCK_WEIGHT["colour"])


def appearance_blocks(rep: dict[str, Any]) -> list[int]:
    """The shape and colour blocks of one grid."""
    return shape_block(rep) + colour_block(rep)


def _ratio(a: float, b: float) -> float:
    r = a / b
    return (r - 1.0) / (r + 1.0)


def transform_block(f: PairFacts) -> list[int]:
    (hi, wi), (ho, wo) = f.in_dims, f.out_dims

    def b(flag: bool) -> float:
        return 1.0 if flag else 0.0

    raw = [
        b(f.same_dims),
        _ratio(ho, hi),
        _ratio(wo, wi),
        _ratio(ho * wo, hi * wi),
        f.changed_fraction if f.same_dims else 0.0,
        f.from_bg,
        f.to_bg,
        float(len(f.colours_out - f.colours_in)),
        float(len(f.colours_in - f.colours_out)),
        b(f.colours_in == f.colours_out),
        b(f.counts_preserved),
        (f.objects_out - f.objects_in) / (f.objects_out + f.objects_in + 2),
        f.objects_kept,
        f.objects_moved,
        f.objects_recoloured,
        b(f.out_is_object),
        b(f.out_uniform),
        b(f.background_in == f.background_out),
        b(bool(f.d4 & {"rotate_90", "rotate_270"})),
        b("rotate_180" in f.d4),
        b(bool(f.d4 & {"flip_h", "flip_v"})),
        b(bool(f.d4 & {"transpose", "anti_transpose"})),
    ]
    return _quantize(_normalize(raw, TRANSFORM), BLOCK_WEIGHT["transform"])


KEY_MEMO_CHARS = 256  # keys up to this long are memoised (4096 of them: < 2 MB in all)


def _key_term(key: str) -> tuple[int, float]:
    """(dim, signed weight) a key adds to the keys block (a pure function of the key)."""
    return _key_term_memo(key) if len(key) <= KEY_MEMO_CHARS else _key_term_of(key)


def _key_term_of(key: str) -> tuple[int, float]:
    weight = FAMILY_WEIGHT.get(key.split(":", 1)[0], 1.0)
    slot = KEY_SLOTS.get(key)
    if slot is None:
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        slot = (KEY_DIMS - 1, 1.0 if digest[1] & 1 else -1.0)
    return slot[0], slot[1] * weight


# bounded in bytes by bounding the keys it holds: a query may carry any long key string
_key_term_memo = functools.lru_cache(maxsize=4096)(_key_term_of)


def keys_block(keys: Iterable[str]) -> list[int]:
    acc = [0.0] * KEY_DIMS
    for key in matchable(keys):
        dim, term = _key_term(key)
        acc[dim] += term
    return _quantize(acc, BLOCK_WEIGHT["keys"])


def repr_vector(rep: dict[str, Any]) -> list[int]:
    """A repr on its own: shape + colour + its feature keys (no transformation)."""
    return appearance_blocks(rep) + [0] * len(TRANSFORM) + keys_block(repr_keys(rep))


def pair_vector(in_rep: dict[str, Any], facts: PairFacts) -> list[int]:
    """A pair on its own: the input's shape and colour + transformation + its keys."""
    return appearance_blocks(in_rep) + transform_block(facts) + keys_block(pair_keys(facts))


def _column_sums(vectors: Sequence[Sequence[int]]) -> list[int]:
    """Exact integer sums per dim (one vector: itself, as a query's lone repr is)."""
    if len(vectors) == 1:
        return list(vectors[0])
    return [sum(col) for col in zip(*vectors, strict=True)] if vectors else [0] * DIM


def combine(
    appearance: Sequence[Sequence[int]], transform: Sequence[Sequence[int]], keys: Iterable[str]
) -> list[int]:
    """One vector from item vectors: their shape, colour and transformation blocks summed
    (exact integers) and re-normalized, plus the keys block of ``keys``."""
    app = _column_sums(appearance)
    trans = _column_sums(transform)
    shp, col, trn = app[SHP], app[COL], trans[TRN]
    return (
        _requantize(shp, BLOCK_WEIGHT["shape"])
        + _requantize(col, BLOCK_WEIGHT["colour"])
        + _requantize(trn, BLOCK_WEIGHT["transform"])
        + keys_block(keys)
    )
