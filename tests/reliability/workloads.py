"""The vaults and write-backs the reliability tests run: a seeded vault holding every kind of
file and history (a reverted write-back, a status event, an orphan object, cache entries),
the input files of each kind of write-back, and the write-backs as CLI argument lists."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import card, example_cards, example_evidence
from vault.canonical import canonical_bytes
from vault.grid.reprs import grid_to_repr
from vault.records.query import task_query
from vault.retrieval import retrieve
from vault.vault import Vault, fixed_clock

from .harness import EPOCH

GRID_A = [[1, 2, 0], [0, 1, 2], [2, 0, 1]]
GRID_B = [[3, 3, 0, 0], [0, 3, 3, 0], [0, 0, 3, 3]]
ORPHAN_GRID = [[7, 7], [7, 0]]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def rot90(g: list[list[int]]) -> list[list[int]]:
    return [list(r) for r in zip(*g[::-1], strict=True)]


def flip(g: list[list[int]]) -> list[list[int]]:
    return [row[::-1] for row in g]


def task(rng: random.Random, pairs: int = 2, size: int = 4) -> dict[str, Any]:
    """A small ARC task whose outputs are the inputs rotated by 90 degrees."""
    train = []
    for _ in range(pairs):
        h, w = rng.randint(2, size), rng.randint(2, size)
        g = [[rng.randrange(4) for _ in range(w)] for _ in range(h)]
        train.append({"input": g, "output": rot90(g)})
    g = [[rng.randrange(4) for _ in range(3)] for _ in range(3)]
    return {"train": train, "test": [{"input": g}]}


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def write_lines(path: Path, values: list[Any]) -> Path:
    path.write_text("".join(json.dumps(v) + "\n" for v in values))
    return path


@dataclass
class Seed:
    """A pristine seeded vault and the inputs of every kind of write-back."""

    root: Path  # the vault (never modified by tests: copy it)
    inputs: Path
    query_task: Path  # an ARC task used as the retrieval query
    #: refs in the state, the rollback target number, a redo target number
    rollback_target: int
    redo_target: int


def seed_vault(root: Path, inputs: Path) -> Seed:
    """init; the example cards; their evidence; a status event; a junk write-back undone by
    a rollback; a card added after it; a retrieval (cache entries); an orphan object."""
    inputs.mkdir(parents=True, exist_ok=True)
    v = Vault.init(root, clock=fixed_clock(EPOCH))
    v.add(example_cards())  # generation 2
    v.add_evidence(example_evidence())  # 3
    v.set_status("gravity-down", "1.0.0", "deprecated")  # 4
    v.add([(card("junk", ["transform:flip_h"]), "junk")])  # 5
    v.rollback()  # back to 4; junk's add is reverted
    late = card(
        "late",
        ["transform:flip_h", "feature:square"],
        provenance={"validated_on": ["0" * 64]},
    )
    v.write_back([(late, "late")], [(_ev("late", grid=GRID_A), "late-ev")])  # 6, parent 4
    query = write_json(
        inputs / "query-task.json", json.loads((EXAMPLES / "tasks/rotate.json").read_text())
    )
    retrieve(v, task_query(json.loads(query.read_text())), v.config())  # warms the cache
    v.objects.put(canonical_bytes(grid_to_repr(ORPHAN_GRID)))  # killed before its line
    _inputs(inputs)
    return Seed(root, inputs, query, rollback_target=4, redo_target=5)


def _ev(concept: str, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    ev = {"schema_version": 1, "concept": concept, "version": version, "polarity": "positive"}
    ev.update(extra)
    return ev


def _inputs(d: Path) -> None:
    rng = random.Random(10)
    write_lines(
        d / "new-cards.jsonl",
        [
            card("new-a", ["transform:rotate_90", "feature:square"]),
            card("new-b", ["transform:flip_h"], provenance={"validated_on": ["1" * 64]}),
        ],
    )
    write_json(
        d / "fork.json", card("rotate-90", ["transform:rotate_90"], dsl="(rotate_90 (x grid))")
    )
    write_lines(
        d / "evidence.jsonl",
        [
            _ev("rotate-90", pair={"input": GRID_B, "output": rot90(GRID_B)}),
            _ev("flip-horizontal", grid=GRID_A),
            {
                **_ev("rotate-180"),
                "polarity": "negative",
                "tier": "train",
                "reason": "wrong_output",
            },
        ],
    )
    for i in range(2):
        write_json(d / f"task{i}.json", task(rng))
    for i in range(12):  # 12 tasks x 3 pairs: > 64 new objects, the one-sync() batch path
        write_json(d / f"batch{i:02d}.json", task(rng, pairs=3, size=6))
    write_json(d / "next-card.json", card("next", ["transform:crop"]))
    write_json(d / "retry-card.json", card("retry", ["transform:crop"]))


def ops(seed: Seed) -> dict[str, list[str]]:
    """Every kind of write-back, as CLI arguments (after ``--vault ROOT``)."""
    d = seed.inputs
    return {
        "add": ["add", str(d / "new-cards.jsonl"), "--json"],
        "fork": ["add", "--fork", str(d / "fork.json"), "--json"],
        "evidence": ["evidence", "add", str(d / "evidence.jsonl"), "--json"],
        "status": ["status", "rotate-90", "1.0.0", "suppressed", "--json"],
        "import": ["arc", "import", str(d / "task0.json"), str(d / "task1.json"), "--json"],
        "import-batch": ["arc", "import", *sorted(str(p) for p in d.glob("batch*.json")), "--json"],
        "build": ["index", "build", "--json"],
        "rollback": ["rollback", "--json"],
        "rollback-to": ["rollback", "--to", str(seed.redo_target), "--json"],
        "gc": ["gc", "--keep", "1", "--json"],
        "mode": ["rollback", "--mode", "symbolic", "--json"],
    }


#: write-backs whose effect is on the state (concepts); the others change the history/refs
STATE_CHANGING = {
    "add",
    "fork",
    "evidence",
    "status",
    "import",
    "import-batch",
    "rollback",
    "rollback-to",
}

#: the audit op each kind of write-back appends (its acknowledgement)
AUDIT_OP = {
    "add": "add",
    "fork": "fork",
    "evidence": "evidence",
    "status": "status",
    "import": "import",
    "import-batch": "import",
    "build": "index_build",
    "rollback": "rollback",
    "rollback-to": "rollback",
    "gc": "gc",
    "mode": "mode",
}
