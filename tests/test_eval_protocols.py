"""The generalisation protocols of `vault eval` (issue 22): fresh instances by a rule-keeping
transformation (d4, colour) or by new grids of a synthetic task's parameters (fresh), and
the learning curve (evidence written back, then new instances asked with and without it).

The oracles here are written from the definitions (a rotation as index arithmetic, a
family's rule by hand), not with the code that builds the data sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from vault.errors import UsageError
from vault.eval import datasets, study
from vault.eval.protocols import Change, background, colour_map, draw, rng_for
from vault.eval.synthetic import FAMILIES, HELD_OUT_FAMILIES, TRAIN_FAMILIES, fresh_pairs, generate
from vault_cli.app import app

GRID = [[1, 2, 3], [4, 5, 6]]


def _rotations(g: list[list[int]]) -> list[list[list[int]]]:
    """The eight images of ``g`` under the square's symmetries, by index arithmetic."""
    h, w = len(g), len(g[0])
    out = []
    for transpose in (False, True):
        base = [[g[c][r] for c in range(h)] for r in range(w)] if transpose else g
        bh, bw = len(base), len(base[0])
        for flip_r in (False, True):
            for flip_c in (False, True):
                out.append(
                    [
                        [
                            base[bh - 1 - r if flip_r else r][bw - 1 - c if flip_c else c]
                            for c in range(bw)
                        ]
                        for r in range(bh)
                    ]
                )
    return out


def _grid(rep: dict[str, Any]) -> list[list[int]]:
    return [list(row) for row in rep["grid"]]


def test_d4_changes_are_the_symmetries_of_the_square() -> None:
    expected = {
        "rotate_90": [[4, 1], [5, 2], [6, 3]],
        "rotate_180": [[6, 5, 4], [3, 2, 1]],
        "rotate_270": [[3, 6], [2, 5], [1, 4]],
        "flip_h": [[3, 2, 1], [6, 5, 4]],
        "flip_v": [[4, 5, 6], [1, 2, 3]],
        "transpose": [[1, 4], [2, 5], [3, 6]],
        "anti_transpose": [[6, 3], [5, 2], [4, 1]],
    }
    for name, want in expected.items():
        assert Change(name, None).grid(GRID) == want, name
    assert sorted(map(str, expected.values())) == sorted(
        str(g) for g in _rotations(GRID) if g != GRID
    )


def test_colour_permutations_keep_the_background_and_move_a_used_colour() -> None:
    task = {"train": [{"input": [[0, 0, 3], [0, 7, 0]], "output": [[0, 3, 3], [0, 0, 0]]}]}
    assert background(task) == 0
    for i in range(50):
        cmap = colour_map(rng_for("t", i), task)
        assert sorted(cmap) == list(range(10)) and cmap[0] == 0
        assert cmap[3] != 3 or cmap[7] != 7
    tie = {"train": [{"input": [[5, 2]], "output": [[2, 5]]}]}
    assert background(tie) == 2  # equal counts: the lowest colour
    change = Change(None, colour_map(rng_for("x"), task))
    new = change.task(task)
    assert new["train"][0]["input"][0][:2] == [0, 0]  # background cells stay
    assert change.describe().startswith("colours ")


def test_draws_are_seeded() -> None:
    task = {"train": [{"input": [[1, 2]], "output": [[2, 1]]}]}
    a = [draw(rng_for("d4", 0, i), "both", task) for i in range(20)]
    assert a == [draw(rng_for("d4", 0, i), "both", task) for i in range(20)]
    assert a != [draw(rng_for("d4", 1, i), "both", task) for i in range(20)]
    assert all(c.d4 is not None and c.colours is not None for c in a)
    with pytest.raises(ValueError, match="unknown change"):
        draw(rng_for(0), "mirror", task)


def test_the_family_halves_split_the_families() -> None:
    assert set(TRAIN_FAMILIES) | set(HELD_OUT_FAMILIES) == set(FAMILIES)
    assert not set(TRAIN_FAMILIES) & set(HELD_OUT_FAMILIES)
    assert datasets.family_set("held-out") == HELD_OUT_FAMILIES
    assert datasets.family_set("tile,flip_h") == ("flip_h", "tile")  # FAMILIES order
    with pytest.raises(UsageError, match="unknown family 'nope'"):
        datasets.family_set("nope")


def test_fresh_pairs_follow_the_task_rule_on_new_grids() -> None:
    (task,) = generate(0, 1, 4, ["flip_h"])
    new = fresh_pairs(task, 0, 5)
    seen = [p["input"] for part in ("train", "test") for p in task.task[part]]
    assert len(new) == 5 and all(p["input"] not in seen for p in new)
    assert len({json.dumps(p["input"]) for p in new}) == 5
    assert all(p["output"] == [row[::-1] for row in p["input"]] for p in new)
    assert new == fresh_pairs(task, 0, 5)  # deterministic
    assert new != fresh_pairs(task, 0, 5, tag="other")
    (scale,) = generate(0, 1, 4, ["scale_up"])
    k = scale.params["factor"]
    for p in fresh_pairs(scale, 0, 3):
        assert p["output"] == [
            [v for v in row for _ in range(k)] for row in p["input"] for _ in range(k)
        ]


def test_the_fresh_protocol_asks_with_new_grids_of_the_own_task() -> None:
    ds = datasets.synthetic(tasks_per_family=2, families=["tile", "recolor"], protocol="fresh")
    assert ds.protocol == "fresh" and not ds.holdout_last and not ds.evidence
    stored = {json.dumps(p["input"]) for _, t, _ in ds.tasks for p in t["train"] + t["test"]}
    for q in ds.queries:
        assert q.relevant == {f"arc-{q.qid}"} and not q.exclude
        assert len(q.query.pairs) == 4 and q.query.repr is not None
        for p in q.query.pairs:
            assert json.dumps(_grid(p.input)) not in stored
    again = datasets.synthetic(tasks_per_family=2, families=["tile", "recolor"], protocol="fresh")
    assert again.fingerprint == ds.fingerprint and again.queries == ds.queries


@pytest.mark.parametrize("protocol", ["d4", "colour"])
def test_transformation_protocols_change_the_held_out_pair(protocol: str) -> None:
    ds = datasets.synthetic(tasks_per_family=2, families=["gravity", "denoise"], protocol=protocol)
    assert ds.holdout_last and len(ds.queries) == 4
    tasks = {t: task for t, task, _ in ds.tasks}
    for q in ds.queries:
        held = tasks[q.qid]["train"][-1]
        (pair,) = q.query.pairs
        got_in, got_out = _grid(pair.input), _grid(pair.output)
        if protocol == "d4":  # one symmetry, the same for input and output, not the identity
            images = list(zip(_rotations(held["input"]), _rotations(held["output"]), strict=True))
            assert (got_in, got_out) in images[1:]
        else:  # a consistent relabelling of the colours, background kept
            relabel: dict[int, int] = {}
            for a, b in zip(
                sum(held["input"] + held["output"], []), sum(got_in + got_out, []), strict=True
            ):
                assert relabel.setdefault(a, b) == b
            assert len(set(relabel.values())) == len(relabel)
            bg = background(tasks[q.qid])
            assert relabel.get(bg, bg) == bg and any(a != b for a, b in relabel.items())
    assert (
        ds.fingerprint
        != datasets.synthetic(
            tasks_per_family=2, families=["gravity", "denoise"], protocol=protocol, seed=1
        ).fingerprint
    )


def test_the_learning_protocol_writes_back_other_new_instances() -> None:
    ds = datasets.synthetic(tasks_per_family=2, families=["flip_v", "tile"], protocol="learning")
    assert len(ds.evidence) == 4 and all(
        len(e.pairs) == datasets.LEARNING_PAIRS for e in ds.evidence
    )
    asked = {json.dumps(_grid(p.input)) for q in ds.queries for p in q.query.pairs}
    taught = {json.dumps(_grid(p.input)) for e in ds.evidence for p in e.pairs}
    assert not asked & taught
    result = study.run(ds, modes=("symbolic", "soft"))
    assert result.learning is not None and set(result.learning) == {"symbolic", "soft"}
    assert result.dataset["evidence"] == 4 * datasets.LEARNING_PAIRS
    # symbolic ranks by keys and evidence penalty: positive evidence cannot move it
    a, b = result.learning["symbolic"].without.to_json(), result.summaries["symbolic"].to_json()
    a.pop("latency"), b.pop("latency")
    assert a == b
    assert result.learning["symbolic"].gain.mean_diff == 0.0
    again = study.StudyResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again.learning == result.learning


def test_arc_learning_holds_the_query_pair_out_of_the_evidence(tmp_path: Path) -> None:
    for name in ("a", "b"):
        pairs = [
            {"input": [[i, 0, 0], [0, i + 1, 0]], "output": [[0, 0, i], [0, i + 1, 0]]}
            for i in range(1, 4)
        ]
        task = {"train": pairs, "test": [{"input": [[5, 0], [0, 0]]}]}
        (tmp_path / f"{name}.json").write_text(json.dumps(task))
    ds = datasets.from_folder(tmp_path, protocol="learning")
    assert [len(e.pairs) for e in ds.evidence] == [2, 2]  # the train pairs but the held-out one
    for q, e in zip(ds.queries, ds.evidence, strict=True):
        (pair,) = q.query.pairs
        assert all(_grid(p.input) != _grid(pair.input) for p in e.pairs)
    with pytest.raises(UsageError, match="needs a task generator"):
        datasets.from_folder(tmp_path, protocol="fresh")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "arc1-eval", "--protocol", "fresh"], "needs a task generator"),
        (["--dataset", "arc1", "--families", "train"], "--families goes with --dataset synthetic"),
        (["--dataset", "synthetic", "--families", "nope"], "unknown family 'nope'"),
    ],
)
def test_cli_protocol_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["eval", *args])
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_cli_learning_reports_both_vaults(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--dataset",
            "synthetic",
            "--families",
            "flip_h,tile",
            "--tasks-per-family",
            "2",
            "--protocol",
            "learning",
            "--modes",
            "soft",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dataset"]["protocol"] == "learning" and set(data["learning"]) == {"soft"}
    text = (out / "REPORT.md").read_text()
    assert "without the written-back evidence" in text and "| soft |" in text
