"""The deterministic embedder: reprs, pairs, queries and concepts in ONE 64-d int8 space.

A vector is three blocks, each scaled to a fixed norm before int8 quantization:

* appearance (26 dims) of input grids: size, palette, colour mass, components, symmetry,
  relations;
* transformation (24 dims) of demonstration pairs input -> output: size ratios, changed
  cells, colours added/removed, object count change, crop/scale/tile/D4/recolor/fill...;
* keys (14 dims): signed feature hashing of the matchable keys (shared vocabulary).

Features are normalized with fixed constants written in ``SPEC`` (nothing is fitted on
data) and computed with + - * / and sqrt only, which IEEE 754 rounds correctly on every
machine, so the same input gives the same int8 vector everywhere. Blocks of several
items (a concept's validated reprs, a task's pairs) are summed as integers and
re-normalized, so aggregation is exact too.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

from vault.canonical import canonical_bytes, sha256_hex
from vault.grid.pairs import PairFacts
from vault.records.keys import matchable, pair_keys, repr_keys

NAME = "vault-grid-embedder"
VERSION = "1.1.0"  # 1.1.0: a pair holds every D4 symmetry that maps it (symmetric inputs)
DIM = 64

# (name, centre, scale): feature = clip((raw - centre) / scale, -1, 1).
APPEARANCE: tuple[tuple[str, float, float], ...] = (
    ("height", 10.0, 10.0),
    ("width", 10.0, 10.0),
    ("palette_size", 3.0, 3.0),
    *((f"colour_{c}_mass", 0.0, 1.0) for c in range(10)),  # sqrt of the colour's cell fraction
    ("background_fraction", 0.6, 0.4),
    ("component_count", 0.5, 0.5),  # n / (n + 4)
    ("mean_component_fraction", 0.0, 0.25),  # mean area / cells
    ("max_component_fraction", 0.0, 0.5),
    ("singleton_fraction", 0.0, 1.0),
    ("symmetry_horizontal", 0.0, 1.0),
    ("symmetry_vertical", 0.0, 1.0),
    ("symmetry_diagonal", 0.0, 1.0),
    ("symmetry_anti_diagonal", 0.0, 1.0),
    ("symmetry_rot180", 0.0, 1.0),
    ("adjacency_per_component", 0.0, 2.0),
    ("containment_per_component", 0.0, 0.5),
    ("alignment_per_component", 0.0, 1.0),
)
TRANSFORM: tuple[tuple[str, float, float], ...] = (
    ("same_dims", 0.5, 0.5),
    ("height_ratio", 0.0, 1.0),  # (r - 1) / (r + 1) for r = out / in
    ("width_ratio", 0.0, 1.0),
    ("cell_ratio", 0.0, 1.0),
    ("changed_fraction", 0.0, 0.5),
    ("colours_added", 0.0, 2.0),
    ("colours_removed", 0.0, 2.0),
    ("palette_preserved", 0.5, 0.5),
    ("colour_counts_preserved", 0.0, 1.0),
    ("object_ratio", 0.0, 1.0),  # (o - i) / (o + i + 2)
    ("crop", 0.0, 1.0),
    ("extend", 0.0, 1.0),
    ("scale_up", 0.0, 1.0),
    ("scale_down", 0.0, 1.0),
    ("tile", 0.0, 1.0),
    ("rotate_quarter", 0.0, 1.0),
    ("rotate_half", 0.0, 1.0),
    ("flip", 0.0, 1.0),
    ("diagonal_flip", 0.0, 1.0),
    ("recolor", 0.0, 1.0),
    ("fill", 0.0, 1.0),
    ("erase", 0.0, 1.0),
    ("symmetrize", 0.0, 1.0),
    ("background_preserved", 0.5, 0.5),
)
KEY_DIMS = 14
FAMILY_WEIGHT = {"transform": 2.0, "invariant": 1.0, "feature": 1.0}
# Block norms after scaling (fraction of 127); the whole vector's norm is 127 * sqrt(sum w²).
BLOCK_WEIGHT = {"appearance": 0.55, "transform": 0.65, "keys": 0.5}
APP = slice(0, len(APPEARANCE))
TRN = slice(APP.stop, APP.stop + len(TRANSFORM))
KEY = slice(TRN.stop, TRN.stop + KEY_DIMS)
assert KEY.stop == DIM

SPEC: dict[str, Any] = {
    "name": NAME,
    "version": VERSION,
    "dim": DIM,
    "quantization": "int8: round(127 * block_weight * x / |x|) per block, half to even",
    "blocks": {
        "appearance": [list(f) for f in APPEARANCE],
        "transform": [list(f) for f in TRANSFORM],
        "keys": {
            "dims": KEY_DIMS,
            "hash": "sha256(key)[0] % dims, sign from bit 0 of byte 1",
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


def appearance_block(rep: dict[str, Any]) -> list[int]:
    g = rep["globals"]
    h, w = g["height"], g["width"]
    cells = h * w
    hist = g.get("colour_hist") or {}
    comps = [x for x in rep.get("nodes", ()) if x.get("type") == "component"]
    n = len(comps)
    areas = [x.get("area", 0) for x in comps]
    edges = rep.get("edges", ())
    count = {
        t: sum(1 for e in edges if e.get("type") == t)
        for t in ("adjacent_to", "contained_in", "aligned_with")
    }
    sym = g.get("symmetry", {})
    bg = g.get("background")
    raw = [
        float(h),
        float(w),
        float(g["palette_size"]),
        *(math.sqrt(hist.get(str(c), 0) / cells) for c in range(10)),
        (hist.get(str(bg), 0) / cells) if bg is not None else 0.6,
        n / (n + 4),
        (sum(areas) / n / cells) if n else 0.0,
        (max(areas) / cells) if n else 0.0,
        (sum(1 for a in areas if a == 1) / n) if n else 0.0,
        *(
            1.0 if sym.get(s) else 0.0
            for s in ("horizontal", "vertical", "diagonal", "anti_diagonal", "rot180")
        ),
        count["adjacent_to"] / max(1, n),
        count["contained_in"] / max(1, n),
        count["aligned_with"] / max(1, n),
    ]
    return _quantize(_normalize(raw, APPEARANCE), BLOCK_WEIGHT["appearance"])


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
        float(len(f.colours_out - f.colours_in)),
        float(len(f.colours_in - f.colours_out)),
        b(f.colours_in == f.colours_out),
        b(f.counts_preserved),
        (f.objects_out - f.objects_in) / (f.objects_out + f.objects_in + 2),
        b(f.crop),
        b(f.embed and not f.tiled and not f.scale_up),
        b(f.scale_up),
        b(f.scale_down),
        b(f.tiled),
        b(bool(f.d4 & {"rotate_90", "rotate_270"})),
        b("rotate_180" in f.d4),
        b(bool(f.d4 & {"flip_h", "flip_v"})),
        b(bool(f.d4 & {"transpose", "anti_transpose"})),
        b(f.recolor),
        b(f.fill),
        b(f.erase),
        b(f.symmetrized),
        b(f.background_in == f.background_out),
    ]
    return _quantize(_normalize(raw, TRANSFORM), BLOCK_WEIGHT["transform"])


def keys_block(keys: Iterable[str]) -> list[int]:
    acc = [0.0] * KEY_DIMS
    for key in matchable(keys):
        family = key.split(":", 1)[0]
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        sign = 1.0 if digest[1] & 1 else -1.0
        acc[digest[0] % KEY_DIMS] += sign * FAMILY_WEIGHT[family]
    return _quantize(acc, BLOCK_WEIGHT["keys"])


def repr_vector(rep: dict[str, Any]) -> list[int]:
    """A repr on its own: appearance + its feature keys (no transformation)."""
    return appearance_block(rep) + [0] * len(TRANSFORM) + keys_block(repr_keys(rep))


def pair_vector(in_rep: dict[str, Any], facts: PairFacts) -> list[int]:
    """A pair on its own: input appearance + transformation + its keys."""
    return appearance_block(in_rep) + transform_block(facts) + keys_block(pair_keys(facts))


def combine(
    appearance: Sequence[Sequence[int]], transform: Sequence[Sequence[int]], keys: Iterable[str]
) -> list[int]:
    """One vector from item vectors: their appearance and transformation blocks summed
    (exact integers) and re-normalized, plus the keys block of ``keys``."""
    app = [sum(v[i] for v in appearance) for i in range(APP.start, APP.stop)]
    trn = [sum(v[i] for v in transform) for i in range(TRN.start, TRN.stop)]
    return (
        _requantize(app, BLOCK_WEIGHT["appearance"])
        + _requantize(trn, BLOCK_WEIGHT["transform"])
        + keys_block(keys)
    )
