"""Exact facts about one demonstration pair (input grid -> output grid).

Both the key vocabulary (``keys.py``) and the embedder's transformation block
(``embedder.py``) read these facts, so a symbolic key and an embedding feature that
describe the same thing cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vault.grid.grid import D4, Grid, colour_counts, dims, find_subgrid, tile, upscale
from vault.grid.reprs import SYMMETRIES


@dataclass(frozen=True)
class PairFacts:
    in_dims: tuple[int, int]
    out_dims: tuple[int, int]
    same_dims: bool
    identity: bool
    d4: frozenset[str]  # every D4 symmetry mapping input to output (several on symmetric input)
    scale_up: bool  # output = input with every cell blown up k x l (k or l > 1)
    scale_down: bool  # input = output blown up
    tiled: bool  # output = input repeated k x l times (k or l > 1)
    crop: bool  # output is a proper sub-grid of input
    embed: bool  # input is a proper sub-grid of output
    changed_fraction: float  # same dims only, else 1.0
    colours_in: frozenset[int]
    colours_out: frozenset[int]
    recolor: bool  # same dims, one colour map applies to every cell, not the identity
    fill: bool  # same dims, every changed cell was background in the input
    erase: bool  # same dims, every changed cell is background in the output
    counts_preserved: bool  # same multiset of colours
    background_in: int
    background_out: int
    objects_in: int
    objects_out: int
    symmetrized: bool  # output has a symmetry the input lacks


def _ratio(a: int, b: int) -> int | None:
    return a // b if b and a % b == 0 and a >= b else None


def analyze_pair(in_rep: dict[str, Any], out_rep: dict[str, Any]) -> PairFacts:
    """Facts of the pair of reprs (both must carry their ``grid``)."""
    gi: Grid = tuple(tuple(r) for r in in_rep["grid"])
    go: Grid = tuple(tuple(r) for r in out_rep["grid"])
    hi, wi = dims(gi)
    ho, wo = dims(go)
    same = (hi, wi) == (ho, wo)
    d4: set[str] = set()
    if gi != go and dims(go) in (dims(gi), dims(gi)[::-1]):  # a D4 image keeps or swaps dims
        for name, fn in D4.items():
            try:
                if fn(gi) == go:
                    d4.add(name)
            except ValueError:
                continue
    fh, fw = _ratio(ho, hi), _ratio(wo, wi)
    scaled = bool(fh and fw and (fh > 1 or fw > 1) and upscale(gi, fh, fw) == go)
    tiled = bool(fh and fw and (fh > 1 or fw > 1) and tile(gi, fh, fw) == go)
    dh, dw = _ratio(hi, ho), _ratio(wi, wo)
    down = bool(dh and dw and (dh > 1 or dw > 1) and upscale(go, dh, dw) == gi)
    ci = colour_counts(gi)
    co = colour_counts(go)
    bg_in = in_rep["globals"].get("background", max(range(10), key=lambda c: (ci[c], -c)))
    bg_out = out_rep["globals"].get("background", max(range(10), key=lambda c: (co[c], -c)))
    changed = 0
    recolor = fill = erase = False
    if same:
        mapping: dict[int, int] = {}
        consistent = True
        fill = erase = True
        for ri, ro in zip(gi, go, strict=True):
            for a, b in zip(ri, ro, strict=True):
                if mapping.setdefault(a, b) != b:
                    consistent = False
                if a != b:
                    changed += 1
                    fill = fill and a == bg_in
                    erase = erase and b == bg_out
        recolor = consistent and changed > 0 and not d4
        fill = fill and changed > 0
        erase = erase and changed > 0
    sym_in = in_rep["globals"].get("symmetry", {})
    sym_out = out_rep["globals"].get("symmetry", {})
    return PairFacts(
        in_dims=(hi, wi),
        out_dims=(ho, wo),
        same_dims=same,
        identity=gi == go,
        d4=frozenset(d4),
        scale_up=scaled,
        scale_down=down,
        tiled=tiled,
        crop=find_subgrid(go, gi),
        embed=find_subgrid(gi, go),
        changed_fraction=changed / (hi * wi) if same else 1.0,
        colours_in=frozenset(c for c in range(10) if ci[c]),
        colours_out=frozenset(c for c in range(10) if co[c]),
        recolor=recolor,
        fill=fill,
        erase=erase,
        counts_preserved=ci == co,
        background_in=bg_in,
        background_out=bg_out,
        objects_in=int(in_rep["globals"].get("component_count", 0)),
        objects_out=int(out_rep["globals"].get("component_count", 0)),
        symmetrized=any(sym_out.get(s) and not sym_in.get(s) for s in SYMMETRIES),
    )
