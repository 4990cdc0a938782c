"""A fitted embedder (the package: ``raw`` features, the ``weights`` object, the ``fit``,
the training ``items``): ``y = requantise(W · LayerNorm(raw) + b)``, learned, yet bit-exact.

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
   a concept's vector *combines* its items' 64-d vectors exactly as ``builtin.combine``
   does: integer sums of the items' appearance blocks (every item) and transformation
   blocks (the pairs), each requantised, plus the keys block of its key set.

The weights object is canonical bytes (``FittedWeights.to_bytes``, layout there): the same
fit gives the same bytes, and ``weights_hash`` = sha256 of them is its content address.

API for the integration: ``FittedWeights.from_bytes(data)``; ``w.embed_repr(rep)``,
``w.embed_pair(in_rep, out_rep, facts=None)``, ``w.embed_items(reprs, pairs)`` (many at
once: one quantisation pass and one product), ``w.combine(item_vectors, pair_vectors,
keys)`` (64 int8 each); ``w.identity()`` / ``w.weights_hash``; ``raw_repr`` / ``raw_pair`` /
``raw_combine`` for the raw space (``repr_row`` / ``pair_row`` and ``quantise``: the raw
values before quantisation, many rows at once); ``fit(items_by_class, FitSettings(),
class_weights=...)`` with items from ``task_items`` (an ARC task), ``concept_items`` (a
concept's evidence) or ``items_from_tasks`` (a folder of tasks, optional labels).
"""

from __future__ import annotations

from vault.embedding.features import Feature
from vault.embedding.fitted.fit import (
    FLOOR,
    LABEL_WEIGHT,
    MULTIPLIER_BITS,
    BlockFit,
    FitSettings,
    ItemsByClass,
    Scatter,
    block_scatters,
    fit,
    fit_block,
    quantize_block,
    scatter,
)
from vault.embedding.fitted.items import (
    concept_items,
    items_from_tasks,
    task_items,
)
from vault.embedding.fitted.raw import (
    _HASHES,
    COLOUR_RAW,
    DEFAULT_READS,
    FORMAT_MAGIC,
    FORMAT_VERSION,
    KEY_INDEX,
    KEY_VOCABULARY,
    KEYS_RAW,
    LAYOUTS,
    NAME,
    OUTPUT_BLOCKS,
    PAIR_BLOCKS,
    RAW_BLOCKS,
    RAW_BLOCKS_V1,
    RAW_DIM,
    RAW_SLICES,
    RAW_SPEC,
    RAW_SPEC_HASH,
    RAW_WEIGHT,
    SHAPE_RAW,
    STRUCTURE_READ,
    TRANSFORM_RAW,
    VERSION,
    VERSIONS,
    Layout,
    OutputBlocks,
    _block_reference,
    key_values,
    keys_raw,
    pair_row,
    quantise,
    raw_combine,
    raw_pair,
    raw_repr,
    repr_row,
)
from vault.embedding.fitted.weights import (
    FittedWeights,
    OutBlock,
)

__all__ = [
    "BlockFit",
    "COLOUR_RAW",
    "DEFAULT_READS",
    "FLOOR",
    "FORMAT_MAGIC",
    "FORMAT_VERSION",
    "Feature",
    "FitSettings",
    "FittedWeights",
    "ItemsByClass",
    "KEYS_RAW",
    "KEY_INDEX",
    "KEY_VOCABULARY",
    "LABEL_WEIGHT",
    "LAYOUTS",
    "Layout",
    "MULTIPLIER_BITS",
    "NAME",
    "OUTPUT_BLOCKS",
    "OutBlock",
    "OutputBlocks",
    "PAIR_BLOCKS",
    "RAW_BLOCKS",
    "RAW_BLOCKS_V1",
    "RAW_DIM",
    "RAW_SLICES",
    "RAW_SPEC",
    "RAW_SPEC_HASH",
    "RAW_WEIGHT",
    "SHAPE_RAW",
    "STRUCTURE_READ",
    "Scatter",
    "TRANSFORM_RAW",
    "VERSION",
    "VERSIONS",
    "_HASHES",
    "_block_reference",
    "block_scatters",
    "concept_items",
    "fit",
    "fit_block",
    "items_from_tasks",
    "key_values",
    "keys_raw",
    "quantize_block",
    "pair_row",
    "quantise",
    "raw_combine",
    "raw_pair",
    "raw_repr",
    "repr_row",
    "scatter",
    "task_items",
]
