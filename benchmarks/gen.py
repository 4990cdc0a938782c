"""Deterministic synthetic vaults for `make bench`: N concept cards validated on generated
grids, with realistic key and vector distributions.

A pool of base grids (random sizes 3-10, a few coloured objects on a background) is shared
by all cards; every card names one transformation family (flip, rotation, recolour, crop,
scale, tile, move, fill...), carries that family's derived keys plus a few random feature
keys, and has one or two positive evidence pairs drawn from the pool and transformed by its
family — so keys overlap as in a real vault (a few very common keys, many rarer ones), and
vectors cluster by family and by the pool's appearance. Reprs are computed once per pool
grid and written back by id (as `vault arc import` does).

    python benchmarks/gen.py --concepts 100000 --vault /tmp/bench-1e5
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vault.grid.grid import flip_lr, flip_ud, rot90, tile, transpose, upscale
from vault.grid.reprs import grid_to_repr, repr_id
from vault.vault import Vault, fixed_clock

Grid = tuple[tuple[int, ...], ...]


def _recolour(g: Grid) -> Grid:
    return tuple(tuple((c + 1) % 10 if c else 0 for c in row) for row in g)


def _crop(g: Grid) -> Grid:
    h, w = len(g), len(g[0])
    return tuple(row[: max(1, w - 1)] for row in g[: max(1, h - 1)])


def _fill(g: Grid) -> Grid:
    return tuple(tuple(c if c else 4 for c in row) for row in g)


def _move(g: Grid) -> Grid:
    return tuple(row[-1:] + row[:-1] for row in g)


FAMILIES: dict[str, tuple[Callable[[Grid], Grid], list[str]]] = {
    "flip": (flip_lr, ["transform:flip_h", "invariant:same_dims"]),
    "flipv": (flip_ud, ["transform:flip_v", "invariant:same_dims"]),
    "rot": (rot90, ["transform:rotate_90"]),
    "transpose": (transpose, ["transform:transpose"]),
    "recolour": (_recolour, ["transform:recolor", "invariant:same_dims"]),
    "crop": (_crop, ["transform:crop", "feature:output_smaller"]),
    "scale": (lambda g: upscale(g, 2, 2), ["transform:scale_up", "feature:output_larger"]),
    "tile": (lambda g: tile(g, 1, 2), ["transform:tile", "feature:output_larger"]),
    "fill": (_fill, ["transform:fill", "invariant:same_dims"]),
    "move": (_move, ["transform:move", "invariant:same_dims"]),
}
EXTRA = [f"feature:tag_{i}" for i in range(40)] + [
    "invariant:palette_preserved",
    "invariant:background_preserved",
    "feature:multi_object",
    "feature:single_object",
    "feature:square",
]


def pool_grid(rng: random.Random) -> Grid:
    h, w = rng.randint(3, 10), rng.randint(3, 10)
    bg = 0 if rng.random() < 0.8 else rng.randint(1, 9)
    g = [[bg] * w for _ in range(h)]
    for _ in range(rng.randint(1, 4)):
        colour = rng.choice([c for c in range(10) if c != bg])
        r0, c0 = rng.randrange(h), rng.randrange(w)
        for r in range(r0, min(h, r0 + rng.randint(1, 3))):
            for c in range(c0, min(w, c0 + rng.randint(1, 3))):
                g[r][c] = colour
    return tuple(tuple(row) for row in g)


CHUNK = 10_000  # concepts per write-back
EVIDENCE_PAIRS = (1, 2)  # positive evidence pairs per concept: at least, at most


def generate(
    n: int, seed: int = 0, pool: int = 5000, start: int = 0
) -> Iterator[tuple[list[Any], list[Any], list[dict[str, Any]]]]:
    """Chunks of (cards, evidence, reprs) for concepts ``start .. start+n``."""
    rng = random.Random(f"{seed}:pool")
    grids = [pool_grid(rng) for _ in range(min(pool, max(1, n)))]
    reprs: dict[tuple[int, str], tuple[dict[str, Any], str]] = {}  # -> (repr, its id)
    families = sorted(FAMILIES)

    def rep(i: int, family: str | None) -> tuple[dict[str, Any], str]:
        key = (i, family or "")
        if key not in reprs:
            g = grids[i] if family is None else FAMILIES[family][0](grids[i])
            r = grid_to_repr(g)
            reprs[key] = (r, repr_id(r))
        return reprs[key]

    chunk = CHUNK
    for lo in range(start, start + n, chunk):
        crng = random.Random(f"{seed}:{lo}")
        cards: list[Any] = []
        evidence: list[Any] = []
        used: dict[str, dict[str, Any]] = {}
        for i in range(lo, min(start + n, lo + chunk)):
            family = families[crng.randrange(len(families))]
            cid = f"c{i:07d}"
            keys = FAMILIES[family][1] + crng.sample(EXTRA, crng.randint(0, 3))
            cards.append(
                (
                    {
                        "schema_version": 1,
                        "id": cid,
                        "version": "1.0.0",
                        "domain": "grid_2d",
                        "signature": {"keys": keys},
                        "template": {"template_dsl": f"({family} grid)"},
                    },
                    cid,
                )
            )
            for _ in range(crng.randint(*EVIDENCE_PAIRS)):
                j = crng.randrange(len(grids))
                (a, ia), (b, ib) = rep(j, None), rep(j, family)
                used[ia], used[ib] = a, b
                evidence.append(
                    (
                        {
                            "schema_version": 1,
                            "concept": cid,
                            "version": "1.0.0",
                            "polarity": "positive",
                            "pair": {"input": ia, "output": ib},
                        },
                        cid,
                    )
                )
        yield cards, evidence, list(used.values())


def build(root: Path, n: int, seed: int = 0, progress: bool = True) -> Vault:
    """A vault of ``n`` generated concepts at ``root`` (written back in chunks)."""
    v = Vault.init(root, clock=fixed_clock(0))
    t0 = time.perf_counter()
    done = 0
    for cards, evidence, reprs in generate(n, seed):
        v.write_back(cards, evidence, op="import", reprs=reprs)
        done += len(cards)
        if progress:
            print(f"  {done}/{n} concepts, {time.perf_counter() - t0:.0f} s", flush=True)
    return v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concepts", type=int, default=10_000)
    ap.add_argument("--vault", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t = time.perf_counter()
    build(Path(args.vault), args.concepts, args.seed)
    print(f"built {args.concepts} concepts in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
