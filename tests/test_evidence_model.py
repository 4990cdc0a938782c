"""Issue 20, item 5 — one evidence model in every output.

A concept with 1 positive / 1 negative, one with 3 / 0 and one with 0 / 1 are reported
through every output that carries evidence — ``retrieve --task`` in each mode (``--json``,
``--jsonl``, the table), ``--like`` (``--json``, ``--jsonl``, the table), ``--batch``,
``show`` (``--json`` and the human form) and the library (``retrieve``, ``neighbours``,
``evidence_of`` of a stored concept's counts): the same counts, the same penalty
(FORMAT §10, computed here independently) and the same utility everywhere; the human forms
show the same rounded figures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vault.like import neighbours
from vault.records.query import query_from
from vault.retrieval import evidence_of, retrieve
from vault.vault import Vault, fixed_clock
from vault_cli.app import app

from .conftest import EXAMPLES, card

runner = CliRunner()
TASK = EXAMPLES / "tasks" / "rotate.json"
COUNTS = {"one-one": (1, 1), "three-zero": (3, 0), "zero-one": (0, 1)}


def oracle_penalty(positive: int, negative: int) -> float:
    """FORMAT §10 written out again: max(0, Wilson lower bound (z = 1.96) - 0.05)."""
    if negative == 0:
        return 0.0
    n = positive + negative
    p = negative / n
    z = 1.96
    low = (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (
        1 + z * z / n
    )
    return max(low - 0.05, 0.0)


@pytest.fixture
def ev_vault(tmp_path: Path) -> Vault:
    v = Vault.init(tmp_path / "ev", clock=fixed_clock(1_700_000_000))
    keys = ["transform:rotate_90", "invariant:palette_preserved"]
    v.add([(card(cid, keys, dsl=f"(rotate_90 {cid})"), cid) for cid in [*COUNTS, "anchor"]])
    items = []
    for cid, (pos, neg) in COUNTS.items():
        for i in range(pos):
            items.append(
                {"concept": cid, "version": "1.0.0", "polarity": "positive", "grid": [[i, 1]]}
            )
        for i in range(neg):
            items.append(
                {
                    "concept": cid,
                    "version": "1.0.0",
                    "polarity": "negative",
                    "tier": "test",
                    "reason": "wrong_output",
                    "grid": [[1, i + 5]],
                }
            )
    v.add_evidence([({"schema_version": 1, **e}, "ev") for e in items])
    return v


def _fields(hit: dict[str, Any]) -> tuple[tuple[int, int], float, float]:
    """(counts, penalty, utility) of a hit or a ``show --json`` document."""
    counts = (hit["evidence"]["positive"], hit["evidence"]["negative"])
    return counts, hit["penalty"], hit["utility"]


def _cli(root: Path, *args: str) -> str:
    result = runner.invoke(app, ["--vault", str(root), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_output_reports_the_same_evidence(ev_vault: Vault, tmp_path: Path) -> None:
    root = ev_vault.root
    seen: dict[str, list[tuple[str, tuple[tuple[int, int], float, float]]]] = {
        cid: [] for cid in COUNTS
    }

    def record(where: str, hits: list[dict[str, Any]]) -> None:
        for h in hits:
            if h["id"] in seen:
                seen[h["id"]].append((where, _fields(h)))

    query = query_from("task", json.loads(TASK.read_text()))
    cfg = ev_vault.config().with_overrides(k=10)
    for mode in ("symbolic", "hybrid", "soft"):
        record(f"api {mode}", [h.to_json() for h in retrieve(ev_vault, query, cfg, mode).results])
        doc = json.loads(_cli(root, "retrieve", "--task", str(TASK), "--mode", mode, "--json"))
        record(f"--task {mode} --json", doc["results"])
        lines = _cli(root, "retrieve", "--task", str(TASK), "--mode", mode, "--jsonl")
        record(f"--task {mode} --jsonl", [json.loads(x) for x in lines.splitlines()])
    like = neighbours(ev_vault, "anchor", None, cfg).result
    record("api like", [h.to_json() for h in like.results])
    record(
        "--like --json", json.loads(_cli(root, "retrieve", "--like", "anchor", "--json"))["results"]
    )
    lines = _cli(root, "retrieve", "--like", "anchor", "--jsonl")
    record("--like --jsonl", [json.loads(x) for x in lines.splitlines()])
    requests = tmp_path / "r.jsonl"
    requests.write_text(json.dumps({"task": json.loads(TASK.read_text())}) + "\n")
    record("--batch", json.loads(_cli(root, "retrieve", "--batch", str(requests)))["results"])
    for cid in COUNTS:
        shown = json.loads(_cli(root, "show", cid, "--json"))
        assert (shown["positive"], shown["negative"]) == COUNTS[cid]
        seen[cid].append(("show --json", _fields(shown)))
        entry, _ = ev_vault.concept_card(cid)
        seen[cid].append(
            ("api evidence_of", _fields(evidence_of(entry["positive"], entry["negative"])))
        )

    for cid, (pos, neg) in COUNTS.items():
        want_penalty = oracle_penalty(pos, neg)
        wheres = [w for w, _ in seen[cid]]
        assert len(wheres) >= 14, wheres  # every output above reported it
        values = {f for _, f in seen[cid]}
        assert len(values) == 1, seen[cid]  # identical, bit for bit, everywhere
        ((counts, penalty, utility),) = values
        assert counts == (pos, neg)
        assert penalty == pytest.approx(want_penalty, abs=1e-12)
        assert utility == 1.0 - penalty


def test_human_outputs_show_the_same_rounded_figures(ev_vault: Vault) -> None:
    """The table of `--task` and of `--like` and `show` agree, rounded for people (the
    table printed the penalty as 0.15654329147389295 and `show` none at all)."""
    root = ev_vault.root
    tables = [
        _cli(root, "retrieve", "--task", str(TASK)),
        _cli(root, "retrieve", "--like", "anchor"),
    ]
    for cid, (pos, neg) in COUNTS.items():
        penalty = oracle_penalty(pos, neg)
        figures = [f"+{pos} -{neg}", f"{penalty:.3f}", f"{1.0 - penalty:.3f}"]
        for table in tables:
            (row,) = [
                line
                for line in table.splitlines()
                if f" {cid} " in f" {line} " or f"\t{cid}\t" in line or f"│ {cid} " in line
            ]
            for figure in figures:
                assert figure in row, (figure, row)
            assert str(penalty) not in row or penalty == 0.0  # no full-precision float
        shown = _cli(root, "show", cid)
        assert f"evidence +{pos} -{neg}  penalty {figures[1]}  utility {figures[2]}" in shown
