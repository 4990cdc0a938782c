"""New instances of a task's rule, for the generalisation protocols of ``vault.eval.datasets``.

A solver asks the vault about grids it has not stored. Two ways to make such grids from a
task without changing its rule, both deterministic (every draw comes from a
``random.Random`` seeded with a string, hashed with sha512: stable on every Python ≥ 3.11):

* **rule-keeping transformations** of an ARC-format task: a D4 symmetry of the square
  applied to every input and output alike (``d4``), and a permutation of the colours that
  keeps the task's background (``colour``) — the task's most frequent colour over all its
  grids — and moves at least one colour the task uses; ``both`` composes the two;
* **fresh grids** of a synthetic task: new pairs drawn from the same task parameters
  (``vault.eval.synthetic.fresh_pairs``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vault.grid.grid import D4

Grid = list[list[int]]
D4_NAMES: tuple[str, ...] = tuple(D4)  # the seven non-identity symmetries
KINDS = ("d4", "colour", "both")


@dataclass(frozen=True)
class Change:
    """One rule-keeping transformation: a D4 symmetry (None: none) then a colour map."""

    d4: str | None
    colours: tuple[int, ...] | None  # colour c becomes colours[c]; None: unchanged

    def grid(self, grid: Sequence[Sequence[int]]) -> Grid:
        g: Any = tuple(tuple(row) for row in grid)
        if self.d4 is not None:
            g = D4[self.d4](g)
        if self.colours is not None:
            cmap = self.colours
            return [[cmap[v] for v in row] for row in g]
        return [list(row) for row in g]

    def task(self, task: dict[str, Any]) -> dict[str, Any]:
        """The task with every grid (train and test, input and output) changed alike."""
        out: dict[str, Any] = {}
        for part in ("train", "test"):
            if part in task:
                out[part] = [
                    {k: self.grid(v) if k in ("input", "output") else v for k, v in p.items()}
                    for p in task[part]
                ]
        return out

    def describe(self) -> str:
        parts = [self.d4] if self.d4 else []
        if self.colours is not None:
            moved = [f"{c}>{t}" for c, t in enumerate(self.colours) if c != t]
            parts.append("colours " + ",".join(moved))
        return " + ".join(parts) or "identity"


def _grids(task: dict[str, Any]) -> list[Any]:
    return [
        p[k]
        for part in ("train", "test")
        for p in task.get(part, ())
        for k in ("input", "output")
        if k in p
    ]


def background(task: dict[str, Any]) -> int:
    """The task's background: its most frequent colour over every grid (ties: the lowest)."""
    counts = [0] * 10
    for g in _grids(task):
        for row in g:
            for v in row:
                counts[v] += 1
    return max(range(10), key=lambda c: (counts[c], -c))


def colours_used(task: dict[str, Any]) -> set[int]:
    return {v for g in _grids(task) for row in g for v in row}


def colour_map(rng: random.Random, task: dict[str, Any]) -> tuple[int, ...]:
    """A random permutation of the colours that keeps the background and moves at least one
    colour the task uses (when it uses any but the background)."""
    bg = background(task)
    used = colours_used(task) - {bg}
    others = [c for c in range(10) if c != bg]
    while True:
        shuffled = others[:]
        rng.shuffle(shuffled)
        cmap = list(range(10))
        for c, t in zip(others, shuffled, strict=True):
            cmap[c] = t
        if not used or any(cmap[c] != c for c in used):
            return tuple(cmap)


def draw(rng: random.Random, kind: str, task: dict[str, Any]) -> Change:
    """A random rule-keeping change of ``kind`` (``d4``, ``colour`` or ``both``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown change {kind!r} (known: {', '.join(KINDS)})")
    d4 = rng.choice(D4_NAMES) if kind in ("d4", "both") else None
    colours = colour_map(rng, task) if kind in ("colour", "both") else None
    return Change(d4, colours)


def rng_for(*parts: object) -> random.Random:
    """A generator seeded with the parts joined by ``:`` (a str seed: hashed with sha512)."""
    return random.Random(":".join(str(p) for p in parts))
