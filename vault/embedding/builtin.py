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
data); their values come from ``vault.embedding.features`` (shared with the fitted embedder)
by the names of ``SHAPE``, ``COLOUR`` and ``TRANSFORM`` (``READS`` for the shape features
this embedder names its own way), computed with + - * / and sqrt only, which IEEE 754
rounds correctly on every machine, so the same input gives the same int8 vector everywhere.
Blocks of several items (a concept's validated reprs, a task's pairs) are summed as integers
and re-normalized, so aggregation is exact too.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from vault.canonical import canonical_bytes, sha256_hex
from vault.embedding import DIM, Item, Vectors, features
from vault.embedding.features import COLOUR_MASS, normalize, quantize, requantize, spec
from vault.grid.pairs import PairFacts
from vault.records.keys import matchable, pair_keys, repr_keys

NAME = "vault-grid-embedder"
# 2.0.0: colour-invariant shape block, absolute colours apart, object-level transformation
# features, known keys in their own slots; 1.1.0: every D4 symmetry of a pair.
VERSION = "2.0.0"
BUILTIN = "builtin"  # the choice naming this embedder (``vault.embedding.select``)

# The shape features this embedder names its own way (its names are part of its hash): the
# ``vault.embedding.features`` value each reads.
READS = {
    "object_count": "objects",
    "singleton_fraction": "singleton_objects",
    "multicolour_objects": "multicolour_blobs",
    "rot180_symmetry": "symmetry_rot180",
}
# The features of each block, in order (their constants: ``features.SCALES``).
SHAPE = spec(
    "height",
    "width",
    "palette_size",
    "background_fraction",
    "second_colour_fraction",
    "object_count",
    "mean_object_fraction",
    "max_object_fraction",
    "singleton_fraction",
    "box_fill",
    "border_objects",
    "separators",
    "multicolour_objects",
    "mirror_symmetry",
    "rot180_symmetry",
    "adjacency_per_object",
    reads=READS,
)
COLOUR = spec(*COLOUR_MASS)
TRANSFORM = spec(
    "same_dims",
    *features.RATIOS,
    *features.CHANGES,
    *features.COLOUR_CHANGES,
    "object_ratio",
    "objects_kept",
    "objects_moved",
    "objects_recoloured",
    "output_is_an_object",
    "output_uniform",
    "background_preserved",
    "rotate_quarter",
    "rotate_half",
    "flip",
    "diagonal_flip",
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


def shape_block(rep: dict[str, Any]) -> list[int]:
    raw = features.read(features.shape_values(rep, full=False, grid_dims=True), SHAPE, READS)
    return quantize(normalize(raw, SHAPE), BLOCK_WEIGHT["shape"])


def colour_block(rep: dict[str, Any]) -> list[int]:
    raw = features.read(features.colour_values(rep, full=False), COLOUR)
    return quantize(normalize(raw, COLOUR), BLOCK_WEIGHT["colour"])


def appearance_blocks(rep: dict[str, Any]) -> list[int]:
    """The shape and colour blocks of one grid."""
    return shape_block(rep) + colour_block(rep)


def transform_block(f: PairFacts) -> list[int]:
    raw = features.read(features.facts_values(f, full=False), TRANSFORM)
    return quantize(normalize(raw, TRANSFORM), BLOCK_WEIGHT["transform"])


KEY_MEMO_CHARS = 256  # keys up to this long are memoised (4096 of them: < 2 MB in all)


def _key_term(key: str) -> tuple[int, float]:
    """(dim, signed weight) a key adds to the keys block (a pure function of the key)."""
    return _key_term_memo(key) if len(key) <= KEY_MEMO_CHARS else _key_term_of(key)


def _key_term_of(key: str) -> tuple[int, float]:
    weight = FAMILY_WEIGHT.get(key.split(":", 1)[0], 1.0)
    slot = KEY_SLOTS.get(key) or (KEY_DIMS - 1, features.other_key_sign(key))
    return slot[0], slot[1] * weight


# bounded in bytes by bounding the keys it holds: a query may carry any long key string
_key_term_memo = functools.lru_cache(maxsize=4096)(_key_term_of)


def keys_block(keys: Iterable[str]) -> list[int]:
    acc = [0.0] * KEY_DIMS
    for key in matchable(keys):
        dim, term = _key_term(key)
        acc[dim] += term
    return quantize(acc, BLOCK_WEIGHT["keys"])


def repr_vector(rep: dict[str, Any]) -> list[int]:
    """A repr on its own: shape + colour + its feature keys (no transformation)."""
    return appearance_blocks(rep) + [0] * len(TRANSFORM) + keys_block(repr_keys(rep))


def pair_vector(in_rep: dict[str, Any], facts: PairFacts) -> list[int]:
    """A pair on its own: the input's shape and colour + transformation + its keys."""
    return appearance_blocks(in_rep) + transform_block(facts) + keys_block(pair_keys(facts))


def _column_sums(vectors: Vectors) -> list[int]:
    """Exact integer sums per dim (one vector: itself, as a query's lone repr is)."""
    if len(vectors) == 1:
        return list(vectors[0])
    return [sum(col) for col in zip(*vectors, strict=True)] if vectors else [0] * DIM


def combine(appearance: Vectors, transform: Vectors, keys: Iterable[str]) -> list[int]:
    """One vector from item vectors: their shape, colour and transformation blocks summed
    (exact integers) and re-normalized, plus the keys block of ``keys``."""
    app = _column_sums(appearance)
    trans = _column_sums(transform)
    shp, col, trn = app[SHP], app[COL], trans[TRN]
    return (
        requantize(shp, BLOCK_WEIGHT["shape"])
        + requantize(col, BLOCK_WEIGHT["colour"])
        + requantize(trn, BLOCK_WEIGHT["transform"])
        + keys_block(keys)
    )


class BuiltinEmbedder:
    """This module as an ``Embedder`` (its constants read at call time)."""

    choice = BUILTIN
    repr_vector = staticmethod(repr_vector)
    combine = staticmethod(combine)

    @property
    def version(self) -> str:
        return VERSION

    @property
    def weights_hash(self) -> str:
        return WEIGHTS_HASH

    def identity(self) -> dict[str, Any]:
        return identity()

    def pair_vector(
        self, in_rep: dict[str, Any], out_rep: dict[str, Any], facts: PairFacts
    ) -> list[int]:
        return pair_vector(in_rep, facts)  # (the built-in one reads the facts only)

    def item_vectors(
        self, reprs: Sequence[dict[str, Any]], pairs: Sequence[Item]
    ) -> list[list[int]]:
        return [repr_vector(r) for r in reprs] + [pair_vector(a, f) for a, _, f in pairs]


EMBEDDER = BuiltinEmbedder()  # the one instance (``vault.embedding.select.resolve``)
