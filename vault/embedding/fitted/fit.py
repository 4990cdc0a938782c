"""Fitting the fitted embedder (layer 2 of ``vault.embedding.fitted``): regularised LDA
per output block, with exactly rounded linear algebra, quantised to the weights object."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vault.embedding import linalg
from vault.embedding.fitted.raw import (
    OUTPUT_BLOCKS,
    RAW_DIM,
    RAW_SLICES,
    OutputBlocks,
)
from vault.embedding.fitted.weights import (
    FittedWeights,
    OutBlock,
)

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
