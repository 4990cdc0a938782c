"""Exact facts about one demonstration pair (input grid -> output grid).

Both the key vocabulary (``keys.py``) and the embedder's transformation block
(``vault.embedding.builtin``) read these facts, so a symbolic key and an embedding feature that
describe the same thing cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vault.grid.grid import D4, Grid, colour_counts, dims, find_subgrid, tile, upscale
from vault.grid.objects import blobs, objects
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
    # object-level structure (see vault.grid.objects); shares of the input's objects
    from_bg: float  # share of the changed cells that were background in the input
    to_bg: float  # share of the changed cells that are background in the output
    objects_kept: float  # found unchanged (colour and cells) in the output
    objects_moved: float  # not kept, but the same colour and shape appears elsewhere
    objects_recoloured: float  # not kept, but the same cells form an object of another colour
    out_is_object: bool  # the output is the bounding-box crop of one input object or blob
    out_uniform: bool  # the output is one colour


def _ratio(a: int, b: int) -> int | None:
    return a // b if b and a % b == 0 and a >= b else None


def _object_facts(gi: Grid, go: Grid, bg_in: int, bg_out: int) -> tuple[float, float, float, bool]:
    ins = objects(gi, bg_in)
    outs = objects(go, bg_out)
    if not ins:
        kept = moved = recoloured = 0.0
    else:
        exact = {(o.colour, o.cells) for o in outs}
        shapes = {(o.colour, o.shape) for o in outs}
        cells = {o.cells: o.colour for o in outs}
        n_kept = n_moved = n_recol = 0
        for o in ins:
            if (o.colour, o.cells) in exact:
                n_kept += 1
            elif (o.colour, o.shape) in shapes:
                n_moved += 1
            elif o.cells in cells:
                n_recol += 1
        kept, moved, recoloured = n_kept / len(ins), n_moved / len(ins), n_recol / len(ins)
    ho, wo = dims(go)
    boxes = {o.bbox for o in ins} | {_box(b) for b in blobs(gi, bg_in)}
    is_object = any(
        (bottom - top + 1, right - left + 1) == (ho, wo)
        and all(gi[top + r][left : right + 1] == go[r] for r in range(ho))
        for top, left, bottom, right in boxes
    )
    return kept, moved, recoloured, is_object


def _box(cells: frozenset[tuple[int, int]]) -> tuple[int, int, int, int]:
    rows = [r for r, _ in cells]
    cols = [c for _, c in cells]
    return min(rows), min(cols), max(rows), max(cols)


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
    changed = from_bg = to_bg = 0
    recolor = fill = erase = False
    if same:
        mapping: dict[int, int] = {}
        consistent = True
        for ri, ro in zip(gi, go, strict=True):
            for a, b in zip(ri, ro, strict=True):
                if mapping.setdefault(a, b) != b:
                    consistent = False
                if a != b:
                    changed += 1
                    from_bg += a == bg_in
                    to_bg += b == bg_out
        recolor = consistent and changed > 0 and not d4
        fill = changed > 0 and from_bg == changed
        erase = changed > 0 and to_bg == changed
    kept, moved, recoloured, is_object = _object_facts(gi, go, bg_in, bg_out)
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
        from_bg=from_bg / changed if changed else 0.0,
        to_bg=to_bg / changed if changed else 0.0,
        objects_kept=kept,
        objects_moved=moved,
        objects_recoloured=recoloured,
        out_is_object=is_object,
        out_uniform=len({x for row in go for x in row}) == 1,
    )
