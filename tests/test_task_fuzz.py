"""Mutated task files through `vault retrieve --task`: a clean answer or a clean refusal.

The bundled example tasks are changed at random (seeded, so every run draws the same
files): cell values of the wrong type or range, ragged and oversized rows, empty, missing
or wrong-typed train / test, uniform and noisy 30 x 30 grids, transposed grids, one cell,
hundreds of pairs, extra fields; each asked in every mode, with and without --explain.
The command must exit 0 with one JSON document on stdout, or exit 1 with one ``error:``
line on stderr and nothing on stdout — never a traceback, never ``internal error`` (a
crash counted as a refusal is a bug), and the vault's files must not change.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from vault.vault import Vault
from vault_cli.app import app

from .conftest import EXAMPLES
from .helpers import tree

CASES = 120
OPTIONS: tuple[list[str], ...] = (
    [],
    ["--mode", "symbolic"],
    ["--mode", "soft"],
    ["--mode", "hybrid", "--explain"],
    ["--test-index", "1"],
    ["--similarity", "cosine"],
)


def _grid(task: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str] | None:
    pairs = [
        p
        for part in ("train", "test")
        if isinstance(task.get(part), list)
        for p in task[part]
        if isinstance(p, dict)
    ]
    if not pairs:
        return None
    return rng.choice(pairs), rng.choice(["input", "output"])


def mutate(task: Any, rng: random.Random) -> Any:
    """One to three random changes of a task (any of them may leave it valid)."""
    for _ in range(rng.randint(1, 3)):
        if not isinstance(task, dict):
            return task
        at = _grid(task, rng)
        kind = rng.randrange(14)
        if kind == 0:
            task = rng.choice([[], 1, "task", None, {}])
        elif kind == 1:
            task["train"] = rng.choice([[], None, {}, [{}], [{"input": [[1]]}], "x"])
        elif kind == 2:
            task["test"] = rng.choice([[], None, [{}], [{"output": [[1]]}], 7])
        elif kind == 3:
            task["train"] = [{"input": [[0, 1]], "output": [[1, 0]]}] * rng.choice([60, 300])
        elif kind == 4:
            task[rng.choice(["name", "extra", "id"])] = rng.choice([1, None, "x", [1], {}])
        elif at is None:
            continue
        else:
            pair, side = at
            g = pair.get(side)
            rows = g if isinstance(g, list) and g and all(isinstance(r, list) for r in g) else []
            if kind == 5 and rows and rows[0]:
                row = rng.randrange(len(rows))
                rows[row][0] = rng.choice([10, -1, 1.0, 1.5, True, None, "3", 2**70, []])
            elif kind == 6 and rows:
                rows.append([0] * (len(rows[0]) + 1))  # ragged
            elif kind == 7:
                pair[side] = rng.choice([[], [[]], 5, None, "x", [[[0]]], {"grid": [[1]]}])
            elif kind == 8:
                pair[side] = rng.choice([[[0] * 31], [[0]] * 31, [[0] * 30] * 31])  # too large
            elif kind == 9:
                h, w = rng.randint(1, 30), rng.randint(1, 30)
                pair[side] = [[rng.randrange(10) for _ in range(w)] for _ in range(h)]
            elif kind == 10:
                pair[side] = [[rng.randrange(10)] * 30 for _ in range(30)]  # uniform 30 x 30
            elif kind == 11 and rows and rows[0]:
                pair[side] = [list(r) for r in zip(*rows, strict=False)]  # transposed
            elif kind == 12:
                pair[side] = [[rng.randrange(10)]]
            elif kind == 13:
                pair.pop(side, None)
    return task


def _state(root: Path) -> dict[str, Any]:
    """Every file of the vault but the embedding cache (derived data queries may add to)."""
    return {k: v for k, v in tree(root).items() if not k.startswith("embeddings/cache")}


def test_mutated_tasks_are_answered_or_refused_cleanly(
    example_vault: Vault, tmp_path: Path
) -> None:
    rng = random.Random(20261207)
    originals = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "tasks").glob("*.json"))]
    runner = CliRunner()
    before = _state(example_vault.root)
    outcomes = {0: 0, 1: 0}
    for case in range(CASES):
        task = mutate(copy.deepcopy(rng.choice(originals)), rng)
        path = tmp_path / f"task-{case}.json"
        path.write_text(json.dumps(task))
        args = ["--vault", str(example_vault.root), "retrieve", "--task", str(path), "--json"]
        args += rng.choice(OPTIONS)
        result = runner.invoke(app, args, env={"VAULT_DIR": None})
        what = f"case {case}: {json.dumps(task)[:300]} {args[5:]}"
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{what}: unhandled {result.exception!r}"
        )
        text = result.stdout + result.stderr
        assert "Traceback" not in text and "internal error" not in text, f"{what}: {text[-400:]}"
        assert result.exit_code in outcomes, f"{what}: exit {result.exit_code}: {text[-400:]}"
        outcomes[result.exit_code] += 1
        if result.exit_code == 0:
            answer = json.loads(result.stdout)
            assert answer["mode_used"] in ("symbolic", "hybrid", "soft"), what
        else:
            err = result.stderr
            assert result.stdout == "", what
            assert err.startswith("error: ") and err.count("\n") == 1, f"{what}: {err!r}"
    assert _state(example_vault.root) == before  # a query changes no vault file
    assert min(outcomes.values()) >= CASES // 10, outcomes  # both kinds of outcome drawn
