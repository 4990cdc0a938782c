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
from vault.grid.pairs import PairFacts, analyze_pair
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

SHAPE_RAW = features.spec(
    "height",
    "width",
    "side",
    "aspect",
    "square",
    "palette_size",
    "background_fraction",
    "second_colour_fraction",
    "third_colour_fraction",
    "objects",
    "many_objects",
    "mean_object_fraction",
    "max_object_fraction",
    "singleton_objects",
    "box_fill",
    "border_objects",
    "separators",
    "multicolour_blobs",
    "blobs",
    "objects_per_blob",
    *features.SYMMETRY,
    "adjacency_per_object",
    "containment_per_object",
    "alignment_per_object",
    "distinct_shapes",
    "monochrome_objects",
    "rectangle_objects",
    "line_objects",
    "thinness",
    "isolated_pixels",
    "periodic",
)
COLOUR_RAW = features.spec(*features.COLOUR_MASS, *features.BACKGROUND)
TRANSFORM_RAW = features.spec(
    "same_dims",
    *features.RATIOS,
    "dims_swapped",
    "one_side_kept",
    "out_height",
    "out_width",
    "out_bar",
    *features.CHANGES,
    *features.CHANGED,
    *features.COLOUR_CHANGES,
    "background_preserved",
    "palette_change",
    "object_ratio",
    "objects_kept",
    "objects_moved",
    "objects_recoloured",
    "objects_removed",
    "output_is_an_object",
    "output_uniform",
    "output_box_of_largest",
    "output_box_of_an_object",
    "output_counts_objects",
    *features.LINES,
    *features.D4_KEYS,
    "identity",
    "scale_up",
    "scale_down",
    "tile",
    "crop",
    "extend",
    "recolor",
    "fill",
    "erase",
    *features.GAINS_SYMMETRY,
    "output_symmetric",
    "out_background_fraction",
    "out_objects",
    "out_palette_size",
    "out_singleton_objects",
    # the fate of the input's objects (vault.grid.objects: 4-connected, one colour)
    *features.OBJECT_FATE,
    "changed_interior",
    # the fate of the input's 8-connected blobs (multi-colour objects)
    *features.BLOB_FATE,
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


@lru_cache(maxsize=4)  # (one per raw-feature version: a few KB in all)
def _constants(version: str) -> tuple[np.ndarray, np.ndarray, tuple[slice, ...]]:
    """The centres and scales of every raw feature of ``version`` in layout order, and the
    slice of each raw block."""
    layout = LAYOUTS[version]
    spec = [f for _, block in layout.blocks for f in block]
    centre = np.array([c for _, c, _ in spec], dtype=np.float64)
    scale = np.array([s for _, _, s in spec], dtype=np.float64)
    return centre, scale, tuple(layout.slices.values())


def _centres(spec: Sequence[Feature]) -> list[float]:
    """A block's values that normalise to zero (``(c - c) / s`` is 0): a block not computed."""
    return [c for _, c, _ in spec]


def quantise(rows: Sequence[Sequence[float]], version: str = VERSION) -> np.ndarray:
    """Raw vectors (int64, one row each) of raw values in ``version``'s layout (``repr_row``,
    ``pair_row``): per feature ``clip((x - c) / s, -1, 1)``, then each raw block quantised
    to int8 exactly as ``features.quantize`` does, ``round(127·v_i / sqrt(fsum(v²)))``, half
    to even (an all-zero block stays zero).

    Elementwise float64 numpy (subtract, divide, clip, square, multiply, divide, rint) is
    the same correctly rounded IEEE operation per element as Python's, in the same order,
    and each block's sum of squares is ``math.fsum`` — so every row is bit-identical to the
    pure-Python rule (``_block_reference``; ``tests/test_fitted.py`` checks both), whatever
    the number of rows: a query's items are quantised in one pass."""
    centre, scale, slices = _constants(version)
    v = np.clip((np.array(rows, dtype=np.float64).reshape(-1, len(centre)) - centre) / scale, -1, 1)
    norms = np.empty_like(v)
    for i, squares in enumerate((v * v).tolist()):
        for s in slices:
            norms[i, s] = math.sqrt(math.fsum(squares[s]))
    out = np.zeros_like(v)
    np.divide(127.0 * RAW_WEIGHT * v, norms, out=out, where=norms != 0.0)
    return np.rint(out).astype(np.int64)  # type: ignore[no-any-return]


def _block_reference(raw: Sequence[float], spec: Sequence[Feature]) -> list[int]:
    """The pure-Python form of one block of ``quantise`` (the rule as the built-in embedder
    writes it)."""
    return quantize(normalize(raw, spec), RAW_WEIGHT)


def _key_slots(keys: Iterable[str]) -> dict[int, float]:
    """The non-zero values of the raw keys block of a key set: 1 in the slot of each
    matchable key of the vocabulary, the signed count of the others clipped to [-1, 1] in
    the last slot."""
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
    return acc


def key_values(keys: Iterable[str]) -> list[float]:
    """The raw values of the keys block of a key set (a fixed-vocabulary one-hot)."""
    out = [0.0] * len(KEYS_RAW)
    for i, v in _key_slots(keys).items():
        out[i] = v
    return out


def keys_raw(keys: Iterable[str]) -> list[int]:
    """The raw keys block of a key set (its matchable keys, as a fixed-vocabulary one-hot).

    ``quantise``'s rule computed on the non-zero slots only (every key feature has centre 0
    and scale 1, so a value is its clipped count)."""
    acc = _key_slots(keys)
    out = [0] * len(KEYS_RAW)
    if not acc:
        return out
    norm = math.sqrt(math.fsum(v * v for v in acc.values()))
    scale = 127.0 * RAW_WEIGHT
    for i, v in acc.items():
        out[i] = round(scale * v / norm)
    return out


def _appearance(rep: dict[str, Any]) -> list[float]:
    """The raw values of the shape and colour blocks of one grid."""
    return read(features.shape_values(rep), SHAPE_RAW) + read(
        features.colour_values(rep), COLOUR_RAW
    )


def repr_row(rep: dict[str, Any], version: str = VERSION) -> list[float]:
    """A repr's raw values (``quantise`` makes its raw vector): appearance, no
    transformation (nor structure groups), its keys."""
    row = _appearance(rep) + _centres(TRANSFORM_RAW) + key_values(repr_keys(rep))
    for _, spec in LAYOUTS[version].blocks[len(RAW_BLOCKS_V1) :]:
        row += _centres(spec)
    return row


def pair_row(
    in_rep: dict[str, Any],
    out_rep: dict[str, Any],
    facts: PairFacts | None = None,
    version: str = VERSION,
    blocks: Collection[str] | None = None,
) -> list[float]:
    """A pair's raw values (``quantise`` makes its raw vector): its input's appearance, the
    transformation, the pair's keys (and from version 2 the structure groups: those in
    ``blocks`` — the raw blocks an embedder reads — or all when None; the others zero)."""
    f = analyze_pair(in_rep, out_rep) if facts is None else facts
    row = _appearance(in_rep)
    row += read(features.pair_values(in_rep, out_rep, f), TRANSFORM_RAW)
    row += key_values(pair_keys(f))
    groups = LAYOUTS[version].blocks[len(RAW_BLOCKS_V1) :]
    if not groups:
        return row
    grids = features.grids_of(in_rep, out_rep)
    wanted = relations.NAMES if blocks is None else tuple(n for n in relations.NAMES if n in blocks)
    values = (
        relations.groups_raw(in_rep, out_rep, *grids, f, wanted)
        if grids is not None and wanted
        else relations.empty()
    )
    for name, spec in groups:  # (a group not computed is neutral: a zero block)
        row += values[name] if name in wanted else _centres(spec)
    return row


def raw_repr(rep: dict[str, Any], version: str = VERSION) -> list[int]:
    """A repr's raw vector (``RAW_DIM`` int8 of raw ``version``): appearance, no
    transformation (nor structure groups), its keys."""
    return quantise([repr_row(rep, version)], version)[0].tolist()  # type: ignore[no-any-return]


def raw_pair(
    in_rep: dict[str, Any],
    out_rep: dict[str, Any],
    facts: PairFacts | None = None,
    version: str = VERSION,
    blocks: Collection[str] | None = None,
) -> list[int]:
    """A pair's raw vector (raw ``version``; ``blocks`` as for ``pair_row``)."""
    row = pair_row(in_rep, out_rep, facts, version, blocks)
    return quantise([row], version)[0].tolist()  # type: ignore[no-any-return]


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
