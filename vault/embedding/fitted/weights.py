"""The fitted embedder's weights object (layer 3 of ``vault.embedding.fitted``): the
output blocks, bit-exact inference and the canonical bytes."""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vault.canonical import canonical_bytes
from vault.embedding import DIM, Vectors
from vault.embedding.features import requantize
from vault.embedding.fitted.raw import (
    _HASHES,
    _SLICES,
    FORMAT_MAGIC,
    FORMAT_VERSION,
    LAYOUTS,
    NAME,
    VERSION,
    VERSIONS,
    keys_raw,
    pair_row,
    quantise,
    repr_row,
)
from vault.grid.pairs import PairFacts

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
        self._names = tuple(blk.name for blk in self.blocks)
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

    def _blocks_of(self, raw: np.ndarray, names: Iterable[str]) -> list[list[int]]:
        """Output blocks ``names`` (concatenated) of each row of ``raw`` (int, one raw vector
        a row; a query's items are mapped in one product)."""
        z = np.asarray(raw, dtype=np.int64)
        if z.ndim != 2 or z.shape[1] != self.raw_dim:
            raise ValueError(f"raw vector must have {self.raw_dim} values, got {z.shape[1:]}")
        acc = (z.astype(np.float64) @ self._full.T).astype(np.int64) * self._m + self._b
        parts = []
        for name in names:
            i = self._by_name[name]
            blk = self.blocks[i]
            part = acc[:, blk.start : blk.stop]
            # an all-zero raw input stays zero (no bias); else the sum of squares as an
            # exact Python integer (|acc| < 2^53, squares are not exact in int64), then the
            # same float64 operations as ``features.requantize``
            live = (z[:, self._index[i]] != 0).any(axis=1).tolist()
            norms = np.array(
                [
                    math.sqrt(sum(v * v for v in row)) if on else 0.0
                    for row, on in zip(part.tolist(), live, strict=True)
                ]
            )[:, None]
            y = np.zeros(part.shape, dtype=np.float64)
            np.divide(127.0 * blk.weight * part.astype(np.float64), norms, out=y, where=norms != 0)
            parts.append(np.rint(y).astype(np.int64))
        return np.concatenate(parts, axis=1).tolist()  # type: ignore[no-any-return]

    def block(self, name: str, raw: Sequence[int] | np.ndarray) -> list[int]:
        """Output block ``name`` of a raw vector (``raw_dim`` int8): exact integers."""
        return self._blocks_of(self._one(raw), (name,))[0]

    def _one(self, raw: Sequence[int] | np.ndarray) -> np.ndarray:
        z = np.asarray(raw, dtype=np.int64)
        if z.shape != (self.raw_dim,):
            raise ValueError(f"raw vector must have {self.raw_dim} values, got {z.shape}")
        return z[None, :]

    def embed_raw(self, raw: Sequence[int] | np.ndarray) -> list[int]:
        """The 64-d vector of one raw vector (every block from it)."""
        return self._blocks_of(self._one(raw), self._names)[0]

    def embed_items(
        self,
        reprs: Sequence[dict[str, Any]],
        pairs: Sequence[tuple[dict[str, Any], dict[str, Any], PairFacts | None]],
    ) -> list[list[int]]:
        """The vectors of ``reprs`` then of ``pairs`` (input, output, facts or None), each
        ``embed_repr`` / ``embed_pair`` of it, quantised and mapped in one pass."""
        rows = [repr_row(rep, self.version) for rep in reprs]
        rows += [pair_row(a, b, f, self.version, self.reads) for a, b, f in pairs]
        if not rows:
            return []
        return self._blocks_of(quantise(rows, self.version), self._names)

    def embed_repr(self, rep: dict[str, Any]) -> list[int]:
        """A repr on its own: appearance + zero transformation + its feature keys."""
        return self.embed_items([rep], [])[0]

    def embed_pair(
        self, in_rep: dict[str, Any], out_rep: dict[str, Any], facts: PairFacts | None = None
    ) -> list[int]:
        """A pair on its own: the input's appearance + transformation + the pair's keys
        (``facts``: ``analyze_pair(in_rep, out_rep)`` when the caller has it)."""
        return self.embed_items([], [(in_rep, out_rep, facts)])[0]

    def embed_keys(self, keys: Iterable[str]) -> list[int]:
        """The keys output block of a key set."""
        raw = [0] * self.raw_dim
        raw[_SLICES[self.version]["keys"]] = keys_raw(keys)
        return self.block("keys", raw)

    def combine(self, appearance: Vectors, transform: Vectors, keys: Iterable[str]) -> list[int]:
        """One vector from 64-d item vectors, as ``builtin.combine``: the "items" blocks
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
                out += requantize(total, blk.weight)
            else:
                out += [0] * (blk.stop - blk.start)
        return out
