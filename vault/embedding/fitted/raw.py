"""The fitted embedder's raw features (layer 1 of ``vault.embedding.fitted``): eight
raw blocks of one item — a grid or a pair — each quantised to int8 exactly as the built-in
embedder quantises its blocks; the constants and layouts of every raw-feature version. The
values are ``vault.embedding.features``' (shared with the built-in embedder), read by the
names of the specs below."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from vault.canonical import canonical_bytes
from vault.embedding import features, relations
from vault.embedding.builtin import FAMILY_WEIGHT
from vault.embedding.features import (
    Feature,
    normalize,
    other_key_sign,
    quantize,
    read,
    requantize,
)
from vault.grid.grid import D4
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
FORMAT_MAGIC = b"VFITW\x00"
FORMAT_VERSION = 1

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
    *((f"d4_{name}", 0.0, 1.0) for name in D4),
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
    ``features.quantize`` does: ``round(127·v_i / sqrt(fsum(v²)))``, half to even.

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
    return quantize(normalize(raw, spec), RAW_WEIGHT)


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
            other += other_key_sign(key)
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
    shape = read(features.shape_values(rep), SHAPE_RAW)
    return _block(shape, SHAPE_RAW) + _block(
        read(features.colour_values(rep), COLOUR_RAW), COLOUR_RAW
    )


def transform_raw(
    in_rep: dict[str, Any], out_rep: dict[str, Any], facts: PairFacts | None = None
) -> list[int]:
    """The raw transformation block of a pair (80 int8)."""
    f = analyze_pair(in_rep, out_rep) if facts is None else facts
    return _block(read(features.pair_values(in_rep, out_rep, f), TRANSFORM_RAW), TRANSFORM_RAW)


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
    grids = features.grids_of(in_rep, out_rep)
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
        out += requantize(total, RAW_WEIGHT) if total else [0] * (s.stop - s.start)
    return out
