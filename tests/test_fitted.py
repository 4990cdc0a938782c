"""The fitted embedder (vault.embedding.fitted): golden vectors, exact integer inference, the
weights object's round trip, deterministic fitting, and that fitting separates classes."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from vault.embedding import fitted, relations
from vault.embedding.fitted import FitSettings, FittedWeights, OutBlock
from vault.embedding.similarity import similarity
from vault.eval.synthetic import generate
from vault.grid.pairs import analyze_pair
from vault.grid.reprs import grid_to_repr
from vault.records.keys import pair_keys

GRIDS: dict[str, list[list[int]]] = {
    "noise": [[0, 3, 0, 0], [5, 0, 0, 7], [0, 0, 2, 0]],
    "ring": [[1, 1, 1], [1, 0, 1], [1, 1, 1]],
    "panels": [[2, 0, 5, 0, 2], [0, 2, 5, 2, 0], [5, 5, 5, 5, 5], [0, 3, 5, 3, 0]],
    "scene": [
        [0, 0, 0, 0, 0, 0],
        [0, 4, 4, 0, 0, 0],
        [0, 4, 4, 0, 6, 0],
        [0, 0, 0, 0, 0, 0],
        [8, 0, 0, 0, 0, 0],
    ],
}
PAIRS: dict[str, tuple[list[list[int]], list[list[int]]]] = {
    "flip": (GRIDS["noise"], [row[::-1] for row in GRIDS["noise"]]),
    "fill": (GRIDS["ring"], [[1, 1, 1], [1, 2, 1], [1, 1, 1]]),
    "move": (
        GRIDS["scene"],
        [
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 6, 0],
            [0, 4, 4, 0, 0, 0],
            [8, 4, 4, 0, 0, 0],
        ],
    ),
    "crop": (GRIDS["scene"], [[4, 4], [4, 4]]),
}


V1_OUTPUT_BLOCKS: fitted.OutputBlocks = (
    ("appearance", 0, 26, ("shape", "colour"), "items"),
    ("transform", 26, 48, ("transform",), "pairs"),
    ("keys", 48, 64, ("keys",), "keys"),
)


def fixed_weights(version: str = fitted.VERSION) -> FittedWeights:
    """A small weights object built by formula (no fitting, no random generator), so its
    bytes depend only on the layout, the raw feature count and the format."""
    blocks = []
    slices = fitted.LAYOUTS[version].slices
    layout = V1_OUTPUT_BLOCKS if version == "1.0.0" else fitted.OUTPUT_BLOCKS
    for k, (name, start, stop, inputs, combine) in enumerate(layout):
        cols = sum(slices[n].stop - slices[n].start for n in inputs)
        rows = stop - start
        w = np.array(
            [[(i * 31 + j * 17 + k * 7) % 255 - 127 for j in range(cols)] for i in range(rows)],
            dtype=np.int8,
        )
        m = np.array([1 + (i * 37 + k) % 50 for i in range(rows)], dtype=np.int64)
        b = np.array([(i * 7919 + k * 104729) % 200_001 - 100_000 for i in range(rows)])
        blocks.append(
            OutBlock(
                name, start, stop, inputs, combine, (0.7, 0.6, 0.3)[k], w, m, b.astype(np.int64)
            )
        )
    return FittedWeights(blocks, {"purpose": "golden test"}, version)


# Golden values: any change of raw features, layout, format or inference rule changes them.
# One entry per line ("name value..."; indented lines continue the entry above). Regenerate
# with `python tests/test_fitted.py` and review the diff before pasting. GOLDEN_V1 pins raw
# version 1.0.0, which stays readable: weights fitted before version 2 keep embedding the
# same vectors (their vaults never drift because of the upgrade).
GOLDEN_V1 = """
combined -7 -9 -21 -2 17 3 -16 -1 45 -12 -18 0 25 21 -13 1 36 -12 -8 1 20 18 -8 5 23 11 0 -11
    -28 4 21 32 -2 11 -23 30 -5 9 11 1 3 -8 21 0 -25 -9 20 0 -5 -11 15 8 -2 5 -14 -6 -16 -9 14 7
    3 6 -10 -2
keys_only 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 -5 -11 15 8 -2 5 -14 -6 -16 -9 14 7 3 6 -10 -2
pair.crop -5 -7 -20 -3 9 7 -12 0 54 -9 -17 -1 9 16 -10 1 46 -9 -10 0 6 14 -6 4 28 12 1 -21 -26
    -11 -1 41 11 13 13 -6 -12 -4 0 28 2 1 18 -13 -17 -8 -23 8 -3 14 2 -3 -3 -21 -5 1 -2 12 2 -1
    -16 -19 -4 2
pair.fill -4 4 -3 5 33 -19 -13 -6 -31 2 -3 4 41 24 -11 -2 -31 0 -1 3 35 20 -8 2 -5 8 -1 -25 -7 5
    13 40 -7 8 -38 -6 -5 6 10 24 9 -4 -4 -17 -14 -3 17 10 -3 16 7 7 -2 -21 -6 -5 2 13 6 6 1 -19
    -4 -2
pair.flip -7 -20 -19 -4 8 11 -13 4 45 -21 -17 -2 32 11 -11 4 36 -21 -2 2 25 9 -7 5 12 1 0 17 -12
    13 17 4 -8 -4 -22 42 3 13 6 -21 2 -11 4 14 -15 -4 37 2 -4 1 8 8 -2 0 -13 -8 -15 0 7 6 24 0
    -11 -4
pair.move -5 -7 -20 -3 9 7 -12 0 54 -9 -17 -1 9 16 -10 1 46 -9 -10 0 6 14 -6 4 28 12 0 4 -21 3
    20 -11 -1 9 -7 40 3 5 10 -28 -7 -4 32 17 -12 -6 15 -20 -4 -3 7 8 -2 -3 -6 -5 -23 -4 6 6 24
    -4 -5 -2
raw.pair:crop 2ba2c79b784698f3
raw.pair:fill 87d15b0ee3950f3e
raw.pair:flip f4eb7f6e1b00c9e6
raw.pair:move 0a48f53b0c37ae3e
raw.repr:noise bca7f5024cc5777f
raw.repr:panels 80b2b4cb6594712f
raw.repr:ring d6c54076e9761976
raw.repr:scene 5ba5fe66c361bf86
raw_dim 177
raw_spec_hash dffaf77168ea8cccb744272af3ff2da65e2ca3b592dcbdff2ace7053271ea5e6
repr.noise -7 -20 -19 -4 8 11 -13 4 45 -21 -17 -2 32 11 -11 4 36 -21 -2 2 25 9 -7 5 12 1 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 -5 -15 -7 -3 -2 8 9 5 -24 -13 -5 -1 5 9 9 5
repr.panels -6 11 15 2 9 -5 -34 -8 -8 6 11 2 43 2 -29 -3 -13 2 17 8 34 -1 -22 3 -28 16 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 -7 0 9 -14 -4 0 9 8 -18 1 9 -8 -17 1 10 8
repr.ring -4 4 -3 5 33 -19 -13 -6 -31 2 -3 4 41 24 -11 -2 -31 0 -1 3 35 20 -8 2 -5 8 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 -3 7 -11 -15 -3 -3 8 2 11 6 -9 -5 -25 -4 7 3
repr.scene -5 -7 -20 -3 9 7 -12 0 54 -9 -17 -1 9 16 -10 1 46 -9 -10 0 6 14 -6 4 28 12 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 -5 -15 -7 -3 -2 8 9 5 -24 -13 -5 -1 5 9 9 5
weights_bytes 5380
weights_sha256 7b239a66a6f8ab7b5ce85244ddad274a772bd3b4358873f67826441cbbd71789
"""

GOLDEN_V2 = """
combined -7 -9 -21 -2 17 3 -16 -1 45 -12 -18 0 25 21 -13 1 36 -12 -8 1 20 18 -8 5 23 11 -1 -31
    -21 0 16 33 13 7 -37 -1 -11 2 10 17 13 -1 2 -13 -19 -5 9 10 -5 -11 15 8 -2 5 -14 -6 -16 -9
    14 7 3 6 -10 -2
keys_only 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 -5 -11 15 8 -2 5 -14 -6 -16 -9 14 7 3 6 -10 -2
pair.crop -5 -7 -20 -3 9 7 -12 0 54 -9 -17 -1 9 16 -10 1 46 -9 -10 0 6 14 -6 4 28 12 1 -32 -26
    -10 -6 26 10 11 26 14 -16 -5 -6 17 3 2 27 6 -18 -6 -21 4 -3 14 2 -3 -3 -21 -5 1 -2 12 2 -1
    -16 -19 -4 2
pair.fill -4 4 -3 5 33 -19 -13 -6 -31 2 -3 4 41 24 -11 -2 -31 0 -1 3 35 20 -8 2 -5 8 -1 -25 -7 5
    13 40 -7 8 -38 -6 -5 6 10 24 9 -4 -4 -17 -14 -3 17 10 -3 16 7 7 -2 -21 -6 -5 2 13 6 6 1 -19
    -4 -2
pair.flip -7 -20 -19 -4 8 11 -13 4 45 -21 -17 -2 32 11 -11 4 36 -21 -2 2 25 9 -7 5 12 1 -2 -16
    -12 5 19 21 16 -2 -51 -7 -7 4 11 8 16 -1 -16 -16 -13 -2 19 13 -4 1 8 8 -2 0 -13 -8 -15 0 7 6
    24 0 -11 -4
pair.move -5 -7 -20 -3 9 7 -12 0 54 -9 -17 -1 9 16 -10 1 46 -9 -10 0 6 14 -6 4 28 12 -2 -22 -19
    1 24 16 21 4 -51 -3 -7 2 15 2 13 1 -2 -14 -14 -4 14 3 -4 -3 7 8 -2 -3 -6 -5 -23 -4 6 6 24 -4
    -5 -2
raw.pair:crop ef0d275bc8003861
raw.pair:fill ded1145ca9933741
raw.pair:flip 31a5c7e5cf2cbc7a
raw.pair:move 93bcc6004f65dc67
raw.repr:noise d88039ff7e44d27c
raw.repr:panels 50c7ce0018a03055
raw.repr:ring 95f54efa15e85ae4
raw.repr:scene 8fdb6b430eaf3d20
raw_dim 214
raw_spec_hash 1017d3553f7247c497caa70e6f1e4f7bce851be46af838e30593f4c03d77e559
repr.noise -7 -20 -19 -4 8 11 -13 4 45 -21 -17 -2 32 11 -11 4 36 -21 -2 2 25 9 -7 5 12 1 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 -5 -15 -7 -3 -2 8 9 5 -24 -13 -5 -1 5 9 9 5
repr.panels -6 11 15 2 9 -5 -34 -8 -8 6 11 2 43 2 -29 -3 -13 2 17 8 34 -1 -22 3 -28 16 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 -7 0 9 -14 -4 0 9 8 -18 1 9 -8 -17 1 10 8
repr.ring -4 4 -3 5 33 -19 -13 -6 -31 2 -3 4 41 24 -11 -2 -31 0 -1 3 35 20 -8 2 -5 8 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 -3 7 -11 -15 -3 -3 8 2 11 6 -9 -5 -25 -4 7 3
repr.scene -5 -7 -20 -3 9 7 -12 0 54 -9 -17 -1 9 16 -10 1 46 -9 -10 0 6 14 -6 4 28 12 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 -5 -15 -7 -3 -2 8 9 5 -24 -13 -5 -1 5 9 9 5
weights_bytes 5749
weights_sha256 69c08d864e1a553b372b6ce1f50648779d6844cf85f755724f2c27fc7ebd6704
"""


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in sorted(values.items()):
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _format(values: dict[str, Any]) -> str:
    lines = []
    for k, v in _flatten(values).items():
        tokens = [str(x) for x in v] if isinstance(v, list) else [str(v)]
        line = k
        for tok in tokens:
            if len(line) + 1 + len(tok) > 96:
                lines.append(line)
                line = "   "
            line += " " + tok
        lines.append(line)
    return "\n".join(lines)


def _parse(text: str) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    key = ""
    for line in text.strip().splitlines():
        if line.startswith(" "):
            entries[key] += line.split()
        else:
            key, *rest = line.split()
            entries[key] = rest
    return entries


def golden_values(version: str = fitted.VERSION) -> dict[str, Any]:
    w = fixed_weights(version)
    reprs = {k: grid_to_repr(g) for k, g in GRIDS.items()}
    out: dict[str, Any] = {
        "raw_spec_hash": fitted.LAYOUTS[version].spec_hash,
        "raw_dim": fitted.LAYOUTS[version].dim,
        "weights_sha256": w.weights_hash,
        "weights_bytes": len(w.to_bytes()),
        "raw": {},
        "repr": {},
        "pair": {},
    }
    for name, rep in reprs.items():
        raw = fitted.raw_repr(rep, version)
        out["raw"][f"repr:{name}"] = hashlib.sha256(json.dumps(raw).encode()).hexdigest()[:16]
        out["repr"][name] = w.embed_repr(rep)
    pair_vectors = []
    for name, (a, b) in PAIRS.items():
        ra, rb = grid_to_repr(a), grid_to_repr(b)
        raw = fitted.raw_pair(ra, rb, version=version)
        out["raw"][f"pair:{name}"] = hashlib.sha256(json.dumps(raw).encode()).hexdigest()[:16]
        out["pair"][name] = w.embed_pair(ra, rb)
        pair_vectors.append(out["pair"][name])
    keys = ["domain:grid_2d", "invariant:same_dims", "transform:flip_h", "feature:my_own"]
    out["combined"] = w.combine(pair_vectors + [out["repr"]["scene"]], pair_vectors, keys)
    out["keys_only"] = w.combine([], [], keys)
    return out


@pytest.mark.parametrize(("version", "golden"), [("1.0.0", GOLDEN_V1), ("2.0.0", GOLDEN_V2)])
def test_golden_vectors_of_a_fixed_weights_object(version: str, golden: str) -> None:
    assert _parse(_format(golden_values(version))) == _parse(golden)


def test_raw_layout() -> None:
    assert fitted.VERSION == "2.0.0" and fitted.RAW_DIM == 214
    assert [(n, s.start, s.stop) for n, s in fitted.RAW_SLICES.items()] == [
        ("shape", 0, 35),
        ("colour", 35, 55),
        ("transform", 55, 135),
        ("keys", 135, 177),
        ("roles", 177, 188),
        ("objects", 188, 198),
        ("sizes", 198, 207),
        ("counts", 207, 214),
    ]
    v1 = fitted.LAYOUTS["1.0.0"]  # a prefix of version 2: old weights read the same values
    assert v1.dim == 177 and list(v1.slices) == ["shape", "colour", "transform", "keys"]
    assert all(v1.slices[n] == fitted.RAW_SLICES[n] for n in v1.slices)
    assert [b[1:3] for b in fitted.OUTPUT_BLOCKS] == [(0, 26), (26, 48), (48, 64)]
    names = [f[0] for _, spec in fitted.RAW_BLOCKS for f in spec]
    assert len(names) == len(set(names)) == fitted.RAW_DIM


def test_version_1_weights_still_load_and_embed() -> None:
    """Weights of raw version 1 (fitted before the structure groups) parse, name their
    version, and embed from the first 177 raw values only."""
    w1 = fixed_weights("1.0.0")
    back = FittedWeights.from_bytes(w1.to_bytes())
    assert back.version == "1.0.0" and back.identity()["version"] == "1.0.0"
    a, b = (grid_to_repr(g) for g in PAIRS["move"])
    raw = fitted.raw_pair(a, b)
    assert fitted.raw_pair(a, b, version="1.0.0") == raw[:177]
    assert back.embed_pair(a, b) == back.embed_raw(raw[:177])


def test_raw_vectors_are_int8_blocks_of_norm_127() -> None:
    for a, b in PAIRS.values():
        raw = fitted.raw_pair(grid_to_repr(a), grid_to_repr(b))
        assert len(raw) == fitted.RAW_DIM
        assert all(isinstance(x, int) and -127 <= x <= 127 for x in raw)
        for s in fitted.RAW_SLICES.values():
            norm = sum(x * x for x in raw[s]) ** 0.5
            assert norm == 0 or abs(norm - 127) < 6  # rounding of each entry
    raw = fitted.raw_repr(grid_to_repr(GRIDS["ring"]))
    assert not any(raw[fitted.RAW_SLICES["transform"]])


def _requantize(acc: list[int], weight: float) -> list[int]:
    """FORMAT.md §9.1 written out here, not imported (an oracle shares no code with what it
    checks): ``y_i = round(127·weight·acc_i / sqrt(Σ acc²))``, the sum of squares an exact
    integer, Python ``round`` (half to even); all zero stays all zero."""
    squares = 0
    for a in acc:
        squares += int(a) * int(a)
    if squares == 0:
        return [0 for _ in acc]
    root = math.sqrt(squares)
    return [round((127.0 * weight) * int(a) / root) for a in acc]


def test_inference_is_exact_integer_arithmetic() -> None:
    """``m ⊙ (W z) + b`` through float64 BLAS equals the same sum in Python integers, and
    each block is the built-in requantisation of those integers."""
    w = fixed_weights()
    rng = np.random.default_rng(0)  # only to pick test inputs, not part of any golden value
    for _ in range(20):
        z = rng.integers(-127, 128, size=fitted.RAW_DIM)
        acc = w._acc(z)
        for blk, index in zip(w.blocks, w._index, strict=True):
            zz = [int(z[j]) for j in index]
            for r in range(blk.stop - blk.start):
                row = [int(x) for x in blk.w[r]]
                exact = sum(a * c for a, c in zip(row, zz, strict=True)) * int(blk.m[r])
                assert acc[blk.start + r] == exact + int(blk.b[r])
        vec = w.embed_raw(z)
        for blk in w.blocks:
            total = acc[blk.start : blk.stop]
            assert vec[blk.start : blk.stop] == _requantize(total, blk.weight)


def test_numpy_block_rule_equals_the_python_rule() -> None:
    """``quantise`` (float64 numpy, elementwise, many rows at once) is bit-identical to the
    built-in's Python rule block by block, clipping and zero blocks included, for every
    raw-feature version, whatever rows it is given with; and the keys fast path too."""
    rng = np.random.default_rng(1)  # test inputs only
    for version, layout in fitted.LAYOUTS.items():
        rows = []
        for scale in (0.0, 1e-3, 1.0, 30.0):
            for _ in range(3):
                row: list[float] = []
                for _, spec in layout.blocks:
                    if rng.random() < 0.25:  # a block not computed: its centres
                        row += [c for _, c, _ in spec]
                    else:
                        centres = np.array([c for _, c, _ in spec])
                        row += (centres + rng.standard_normal(len(spec)) * scale).tolist()
                rows.append(row)
        together = fitted.quantise(rows, version).tolist()
        for row, got in zip(rows, together, strict=True):
            assert fitted.quantise([row], version).tolist() == [got]
            for (_, spec), s in zip(layout.blocks, layout.slices.values(), strict=True):
                assert got[s] == fitted._block_reference(row[s], spec)
    keys = ["transform:flip_h", "invariant:same_dims", "feature:a", "feature:b", "feature:c"]
    for n in range(len(keys) + 1):
        acc = [0.0] * len(fitted.KEYS_RAW)
        for k in keys[:n]:
            if k in fitted.KEY_INDEX:
                acc[fitted.KEY_INDEX[k]] = 1.0
            else:
                acc[-1] += 1.0 if hashlib.sha256(k.encode()).digest()[1] & 1 else -1.0
        assert fitted.keys_raw(keys[:n]) == fitted._block_reference(acc, fitted.KEYS_RAW)


def test_zero_raw_input_gives_a_zero_block() -> None:
    w = fixed_weights()
    v = w.embed_repr(grid_to_repr(GRIDS["scene"]))
    assert not any(v[26:48])  # a grid has no transformation: no bias leaks in
    assert w.combine([], [], []) == [0] * 64
    assert w.combine([], [], ["domain:grid_2d"]) == [0] * 64  # domain keys do not match


def test_same_vectors_in_a_fresh_process() -> None:
    w = fixed_weights()
    here = [w.embed_pair(grid_to_repr(a), grid_to_repr(b)) for a, b in PAIRS.values()]
    code = (
        "import json,sys; sys.path.insert(0, '.');"
        "from tests.test_fitted import fixed_weights, PAIRS;"
        "from vault.grid.reprs import grid_to_repr;"
        "w = fixed_weights();"
        "print(json.dumps([w.embed_pair(grid_to_repr(a), grid_to_repr(b))"
        " for a, b in PAIRS.values()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == here


# ---------------------------------------------------------------- the weights object


def test_bytes_round_trip() -> None:
    w = fixed_weights()
    data = w.to_bytes()
    back = FittedWeights.from_bytes(data)
    assert back == w and back.to_bytes() == data and back.weights_hash == w.weights_hash
    assert back.weights_hash == hashlib.sha256(data).hexdigest()
    for a, b in PAIRS.values():
        ra, rb = grid_to_repr(a), grid_to_repr(b)
        assert back.embed_pair(ra, rb) == w.embed_pair(ra, rb)
    assert back.identity() == {
        "name": "vault-fitted-embedder",
        "version": fitted.VERSION,
        "dim": 64,
        "quantization": "int8",
        "weights_hash": w.weights_hash,
    }


def test_bytes_are_checked() -> None:
    data = fixed_weights().to_bytes()
    with pytest.raises(ValueError, match="not a fitted"):
        FittedWeights.from_bytes(b"XXXXXX" + data[6:])
    with pytest.raises(ValueError, match="trailing"):
        FittedWeights.from_bytes(data + b"\0")
    with pytest.raises(ValueError):
        FittedWeights.from_bytes(data[:-3])
    head_len = int.from_bytes(data[8:12], "little")
    head = json.loads(data[12 : 12 + head_len])
    head["raw_spec_hash"] = "0" * 64
    other = json.dumps(head, sort_keys=True, separators=(",", ":")).encode()
    forged = data[:8] + len(other).to_bytes(4, "little") + other + data[12 + head_len :]
    with pytest.raises(ValueError, match="other raw features"):
        FittedWeights.from_bytes(forged)


def test_constructor_checks_shapes() -> None:
    good = fixed_weights().blocks
    bad_w = OutBlock(
        *[getattr(good[0], f) for f in ("name", "start", "stop", "inputs", "combine", "weight")],
        good[0].w[:, :-1],
        good[0].m,
        good[0].b,
    )
    with pytest.raises(ValueError, match="int8"):
        FittedWeights([bad_w, *good[1:]])
    with pytest.raises(ValueError, match="cover"):
        FittedWeights(good[:2])
    with pytest.raises(ValueError, match="tile"):
        FittedWeights([good[1], good[0], good[2]])


def test_input_shape_checks() -> None:
    w = fixed_weights()
    with pytest.raises(ValueError, match="214"):
        w.embed_raw([0] * 64)
    with pytest.raises(ValueError, match="214"):
        fitted.fit({"a": [[0] * 10], "b": [[0] * 10]})
    z = fitted.raw_pair(*(grid_to_repr(g) for g in PAIRS["flip"]))
    with pytest.raises(ValueError, match="int8"):
        fitted.fit({"a": [z, [200] * fitted.RAW_DIM], "b": [z]})
    with pytest.raises(ValueError, match="two classes"):
        fitted.fit({"only": [z, z]})


# ---------------------------------------------------------------- fitting


FAMILIES = ("flip_h", "transpose", "recolor", "crop_object", "gravity")


def _family_items(seed: int, per_family: int) -> tuple[dict[str, list[list[int]]], list[Any]]:
    tasks = generate(seed, per_family, 3, FAMILIES)
    classes: dict[str, list[list[int]]] = {}
    for t in tasks:
        classes.setdefault(t.family, []).extend(fitted.task_items(t.task, t.task_id))
    return classes, tasks


def test_fit_is_deterministic_and_recorded() -> None:
    classes, _ = _family_items(0, 2)
    w1 = fitted.fit(classes)
    w2 = fitted.fit(dict(reversed(list(classes.items()))))  # class order does not matter
    assert w1.to_bytes() == w2.to_bytes()
    assert FittedWeights.from_bytes(w1.to_bytes()) == w1
    assert w1.meta["settings"] == FitSettings().to_json()
    assert w1.meta["classes"] == {"appearance": 5, "transform": 5, "keys": 5}
    other = fitted.fit(classes, FitSettings(power=0.5))
    assert other.weights_hash != w1.weights_hash


def test_fitting_separates_transformations_on_new_tasks() -> None:
    """Fit on tasks of five families (a family = a class); on NEW tasks of those families
    (another seed), a task's nearest concept by the fitted behaviour is of its family."""
    classes, _ = _family_items(0, 3)
    w = fitted.fit(classes)
    tasks = generate(7, 2, 3, FAMILIES)
    vecs = []
    for t in tasks:
        pairs = [(grid_to_repr(p["input"]), grid_to_repr(p["output"])) for p in t.task["train"]]
        items = [w.embed_pair(a, b) for a, b in pairs]
        keys = sorted(set.intersection(*(pair_keys(analyze_pair(a, b)) for a, b in pairs)))
        vecs.append(w.combine(items, items, keys))
    matrix = np.array(vecs, dtype=np.int8)
    hits = 0
    for i, t in enumerate(tasks):
        sims = similarity(matrix, matrix[i], "structured")
        sims[i] = -np.inf
        hits += tasks[int(np.argmax(sims))].family == t.family
    assert hits >= len(tasks) - 1


def test_items_from_tasks_labels_and_weights() -> None:
    tasks = generate(0, 2, 3, ("flip_h", "recolor"))
    items, weights = fitted.items_from_tasks(
        [(t.task_id, t.task) for t in tasks], {tasks[0].task_id: "mirror"}
    )
    assert weights == {
        "group:mirror": fitted.LABEL_WEIGHT,
        **{f"task:{t.task_id}": 1.0 for t in tasks[1:]},
    }
    # 3 train pairs + 1 test pair with output + 1 test input + 2 key views per train pair
    assert all(len(v) == 3 + 1 + 1 + 6 for v in items.values())


def test_concept_items_from_evidence() -> None:
    a, b = (grid_to_repr(g) for g in PAIRS["fill"])
    items = fitted.concept_items([a], [(a, b)], ["transform:fill", "invariant:same_dims"])
    ks = fitted.RAW_SLICES["keys"]
    assert len(items) == 3
    assert not any(items[0][ks]) and any(items[0][: ks.start])  # a repr: appearance only
    # a pair: the raw blocks the default map reads (structure groups it does not read: zero)
    assert items[1] == fitted.raw_pair(a, b, blocks=fitted.DEFAULT_READS)
    full = fitted.raw_pair(a, b)
    for name, s in fitted.RAW_SLICES.items():
        unread = name in relations.NAMES and name not in fitted.DEFAULT_READS
        assert items[1][s] == ([0] * (s.stop - s.start) if unread else full[s]), name
    assert not any(items[2][: ks.start]) and not any(items[2][ks.stop :])
    assert any(items[2][ks])  # the concept's own keys


if __name__ == "__main__":  # print the golden values (review the diff before pasting)
    print(_format(golden_values(sys.argv[1] if len(sys.argv) > 1 else fitted.VERSION)))
