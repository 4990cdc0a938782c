"""Ranking regressions found by review, each built from the case that exposed it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vault.config import Config
from vault.like import neighbours
from vault.records.keys import matchable
from vault.records.query import query_from
from vault.retrieval import Hit, retrieve
from vault.vault import Vault, fixed_clock
from vault_cli.app import app

from .conftest import EXAMPLES, card

ROTATE = json.loads((EXAMPLES / "tasks" / "rotate.json").read_text())

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


# --------------------------------------------------------------------------- domain filter
def _text_card_vault(tmp_path: Path) -> Vault:
    """A grid concept and a ``text`` concept whose signature carries ``domain:grid_2d``."""
    v = Vault.init(tmp_path / "d", clock=fixed_clock(1_700_000_000))
    v.add(
        [
            (card("grid-rot", ["transform:rotate_90"]), "a"),
            (card("text-rot", ["transform:rotate_90", "domain:grid_2d"], domain="text"), "b"),
        ]
    )
    return v


@pytest.mark.parametrize("mode", ["symbolic", "hybrid", "soft"])
def test_domain_filter_reads_the_cards_domain_not_a_domain_key(tmp_path: Path, mode: str) -> None:
    v = _text_card_vault(tmp_path)
    result = retrieve(v, query_from("task", ROTATE), v.config(), mode)
    assert result.mode_used == mode
    assert [h.id for h in result.results] == ["grid-rot"]


def test_the_domain_posting_is_the_same_after_an_incremental_update(tmp_path: Path) -> None:
    """The posting comes from the card's domain in a full build and in an incremental
    update alike (verify rebuilds from the audit log and compares the table's bytes)."""
    v = _text_card_vault(tmp_path)
    v.add([(card("text-2", ["domain:grid_2d", "feature:zz"], domain="text"), "c")])
    t = v.snapshot().table
    assert [t.ref(int(r)) for r in t.posting("domain:grid_2d")] == ["grid-rot@1.0.0"]
    assert [t.ref(int(r)) for r in t.posting("domain:text")] == ["text-2@1.0.0", "text-rot@1.0.0"]
    assert v.verify().ok


def test_like_of_a_grid_concept_leaves_out_a_text_concept_with_a_grid_key(tmp_path: Path) -> None:
    v = _text_card_vault(tmp_path)
    assert [h.id for h in neighbours(v, "grid-rot", None, v.config()).result.results] == []
    # and the text concept's neighbours are text concepts only
    assert [h.id for h in neighbours(v, "text-rot", None, v.config()).result.results] == []


# --------------------------------------------------------------------------- one evidence model
def _evidence_vault(tmp_path: Path) -> Vault:
    """``a-rot`` with one positive and one negative evidence record, ``b-rot`` with none."""
    v = Vault.init(tmp_path / "e", clock=fixed_clock(1_700_000_000))
    v.add(
        [
            (card("a-rot", ["transform:rotate_90"]), "a"),
            (card("b-rot", ["transform:rotate_90"]), "b"),
        ]
    )
    v.add_evidence(
        [
            (
                {"concept": "a-rot", "version": "1.0.0", "polarity": "positive", "grid": [[1, 2]]},
                "p",
            ),
            (
                {
                    "concept": "a-rot",
                    "version": "1.0.0",
                    "polarity": "negative",
                    "tier": "test",
                    "reason": "wrong",
                    "grid": [[2, 1]],
                },
                "n",
            ),
        ]
    )
    return v


# Wilson lower bound of 1 failure in 2 tries (z = 1.96) minus the tolerated 5%, by hand
_L = (0.5 + 3.8416 / 4 - 1.96 * math.sqrt(0.25 / 2 + 3.8416 / 16)) / (1 + 3.8416 / 2)
ONE_IN_TWO = _L - 0.05


def test_like_reports_the_evidence_model_every_other_output_reports(tmp_path: Path) -> None:
    v = _evidence_vault(tmp_path)
    soft = retrieve(v, query_from("task", ROTATE), v.config(), "soft")
    (from_soft,) = [h.to_json() for h in soft.results if h.id == "a-rot"]
    (from_like,) = [h.to_json() for h in neighbours(v, "b-rot", None, v.config()).result.results]
    assert from_like["evidence"] == {"positive": 1, "negative": 1}
    assert from_like["penalty"] == pytest.approx(ONE_IN_TWO, abs=1e-12)
    assert from_like["utility"] == 1.0 - from_like["penalty"]
    for field in ("evidence", "penalty", "utility", "status", "key_overlap"):
        assert from_like[field] == from_soft[field], field


def test_show_json_reports_the_same_penalty_and_utility(tmp_path: Path) -> None:
    v = _evidence_vault(tmp_path)
    res = runner.invoke(app, ["--vault", str(v.root), "show", "a-rot", "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    (hit,) = [
        h
        for h in retrieve(v, query_from("task", ROTATE), v.config(), "soft").results
        if h.id == "a-rot"
    ]
    assert (shown["positive"], shown["negative"]) == (hit.positive, hit.negative) == (1, 1)
    assert shown["penalty"] == hit.penalty and shown["utility"] == hit.utility


# --------------------------------------------------------------------------- weighted scores
def _base(h: Hit, cfg: Config, n_keys: int) -> float:
    """FORMAT §10's score without the diversity term, from the hit's own fields."""
    return (
        cfg.alpha * (h.similarity or 0.0)
        + cfg.beta * h.utility
        + cfg.gamma * h.key_overlap / n_keys
    )


def test_weighted_ranks_an_active_concept_before_a_deprecated_one_whatever_the_scores(
    tmp_path: Path,
) -> None:
    """The reported case (``1 a-flip 0.2``, ``2 b-rot 0.518``): each status class is ranked
    in turn, so the score rises where the deprecated ones begin — FORMAT §10 says so (it
    said "never increasing" without the exception)."""
    v = Vault.init(tmp_path / "w", clock=fixed_clock(1_700_000_000))
    v.add(
        [(card("a-flip", ["transform:flip_h"]), "a"), (card("b-rot", ["transform:rotate_90"]), "b")]
    )
    v.set_status("b-rot", "1.0.0", "deprecated")
    cfg = v.config()
    result = retrieve(v, query_from("task", ROTATE), cfg, "hybrid")
    n = len(matchable(result.keys))
    assert [(h.id, h.status) for h in result.results] == [
        ("a-flip", "active"),
        ("b-rot", "deprecated"),
    ]
    assert [h.score for h in result.results] == [_base(h, cfg, n) for h in result.results]
    assert result.results[0].score < result.results[1].score


def test_mmr_dup_is_the_true_highest_similarity_even_when_negative(tmp_path: Path) -> None:
    """rotate_90 and rotate_180 share a keys slot with opposite signs: two keys-only concept
    vectors with cosine -1. With delta > 0, the second's dup is -1 (it was clamped to 0),
    so its score is its relevance + delta. (The built-in embedder's key layout.)"""
    v = Vault.init(tmp_path / "m", clock=fixed_clock(1_700_000_000), embedder="builtin")
    v.add(
        [
            (card("x-rot", ["transform:rotate_90"]), "x"),
            (card("y-rot180", ["transform:rotate_180"]), "y"),
        ]
    )
    cfg = v.config().with_overrides(delta=0.5, similarity="cosine")
    result = retrieve(v, query_from("task", ROTATE), cfg, "hybrid")
    n = len(matchable(result.keys))
    first, second = result.results
    assert (first.id, second.id) == ("x-rot", "y-rot180")
    assert second.similarity == -first.similarity  # opposite vectors
    assert first.score == _base(first, cfg, n)  # nothing chosen yet: dup = 0
    assert second.score == _base(second, cfg, n) - cfg.delta * -1.0
    # the exception FORMAT §10 states: with delta > 0 the second may score above the first
    assert second.score > first.score
