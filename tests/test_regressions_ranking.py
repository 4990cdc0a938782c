"""Ranking regressions found by review, each built from the case that exposed it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from vault_cli.app import app

from .conftest import EXAMPLES

runner = CliRunner()


def _three_card_vault(tmp_path: Path) -> Path:
    """rotate-90, flip-horizontal, flip-vertical from the bundled cards: a vault whose hybrid
    shortlist holds every row of the table (in symbolic order, not row order)."""
    root = tmp_path / "v"
    wanted = {"rotate-90", "flip-horizontal", "flip-vertical"}
    lines = [
        line
        for line in (EXAMPLES / "cards.jsonl").read_text().splitlines()
        if json.loads(line)["id"] in wanted
    ]
    cards = tmp_path / "three.jsonl"
    cards.write_text("\n".join(lines) + "\n")
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    assert runner.invoke(app, ["--vault", str(root), "init"], env=env).exit_code == 0
    assert runner.invoke(app, ["--vault", str(root), "add", str(cards)], env=env).exit_code == 0
    return root


def _retrieve(root: Path, mode: str) -> list[dict[str, object]]:
    task = str(EXAMPLES / "tasks" / "rotate.json")
    res = runner.invoke(
        app, ["--vault", str(root), "retrieve", "--task", task, "--mode", mode, "--json"]
    )
    assert res.exit_code == 0, res.output
    hits: list[dict[str, object]] = json.loads(res.stdout)["results"]
    return hits


def test_hybrid_gives_each_concept_its_own_similarity_when_every_row_is_shortlisted(
    tmp_path: Path,
) -> None:
    root = _three_card_vault(tmp_path)
    soft = {h["id"]: h["similarity"] for h in _retrieve(root, "soft")}
    hybrid = _retrieve(root, "hybrid")
    assert hybrid[0]["id"] == "rotate-90"
    # the similarity reported for each concept is its own, whatever the shortlist order
    assert {h["id"]: h["similarity"] for h in hybrid} == soft
