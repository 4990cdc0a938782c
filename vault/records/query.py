"""Queries: what a solver asks with (a repr, constraints, demonstration pairs), and ARC tasks
as queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from vault.errors import InvalidInputError, counted
from vault.grid.grid import Grid, parse_grid
from vault.grid.pairs import PairFacts, analyze_pair
from vault.grid.reprs import (
    derived_repr_id,
    grid_to_repr,
    normalize_repr,
    repr_id,
    strip_provenance,
)
from vault.limits import MAX_PAIRS, MAX_TESTS
from vault.records.cards import _kind
from vault.records.keys import (
    NONE_DECLARED,
    Declared,
    canonical_name,
    obligation_key,
    stored_obligation_key,
    task_keys,
)
from vault.records.schema import expect_kind, validate


@dataclass(frozen=True)
class Pair:
    input: dict[str, Any]
    output: dict[str, Any]
    # both reprs made here from grids by ``grid_to_repr`` (their ids by ``derived_repr_id``)
    derived: bool = field(default=False, compare=False, repr=False)

    @cached_property
    def ids(self) -> tuple[str, str]:
        """The repr ids of the input and the output."""
        ident = derived_repr_id if self.derived else repr_id
        return ident(self.input), ident(self.output)


@dataclass(frozen=True)
class Query:
    """What the solver asks with: a repr, constraints and optional demonstration pairs."""

    domain: str = "grid_2d"
    repr: dict[str, Any] | None = None
    constraints: tuple[str, ...] = ()
    pairs: tuple[Pair, ...] = ()
    # ``repr`` made here from a grid by ``grid_to_repr`` (its id by ``derived_repr_id``)
    derived: bool = field(default=False, compare=False, repr=False)

    @cached_property
    def rid(self) -> str | None:
        """The repr id of ``repr`` (None without one)."""
        if self.repr is None:
            return None
        return derived_repr_id(self.repr) if self.derived else repr_id(self.repr)

    def facts(self) -> list[PairFacts]:
        """The facts of each pair (computed once: keys and the vector both need them)."""
        return list(self._facts)

    @cached_property
    def _facts(self) -> tuple[PairFacts, ...]:
        return tuple(analyze_pair(p.input, p.output) for p in self.pairs)

    def all_keys(self) -> list[str]:
        """The query's keys: domain, constraints, pair-inferred keys and repr features."""
        return list(self._keys)

    @cached_property
    def _keys(self) -> tuple[str, ...]:
        keys = {f"domain:{self.domain}"}
        keys.update(stored_obligation_key(c) for c in self.constraints)
        inputs = [p.input for p in self.pairs] + ([self.repr] if self.repr else [])
        keys |= task_keys(list(self._facts), inputs)
        return tuple(sorted(keys))


def normalize_query(
    obj: Any, source: str | None = None, declared: Declared = NONE_DECLARED
) -> Query:
    """A query record, checked (``declared``: invariant names the vault's config adds)."""
    q = _kind(obj, "query", source)
    validate(q, "query", source)
    if "repr" in q and "grid" in q:
        raise InvalidInputError("give either repr or grid, not both", source=source)
    rep = None
    derived = "grid" in q
    if derived:
        rep = grid_to_repr(parse_grid(q["grid"], source, "grid"))
    elif "repr" in q:
        rep = strip_provenance(normalize_repr(q["repr"], source))
    for i, name in enumerate(q.get("constraints", ())):
        obligation_key(name, source, f"constraints[{i}]", declared)
    constraints = tuple(sorted({canonical_name(c) for c in q.get("constraints", ())}))
    if len(q.get("pairs", ())) > MAX_PAIRS:
        raise InvalidInputError(
            f"{len(q['pairs'])} pairs; at most {MAX_PAIRS} (vault.limits)",
            source=source,
            field="pairs",
        )
    pairs = tuple(
        Pair(
            grid_to_repr(parse_grid(p["input"], source, f"pairs[{i}].input")),
            grid_to_repr(parse_grid(p["output"], source, f"pairs[{i}].output")),
            derived=True,
        )
        for i, p in enumerate(q.get("pairs", ()))
    )
    if rep is None and not pairs:
        raise InvalidInputError(
            "a query needs a repr, a grid or demonstration pairs", source=source
        )
    return Query(
        domain=q.get("domain", "grid_2d"),
        repr=rep,
        constraints=constraints,
        pairs=pairs,
        derived=derived,
    )


def is_arc_task(obj: Any) -> bool:
    return isinstance(obj, dict) and "train" in obj and "kind" not in obj


def parse_task(obj: Any, source: str | None = None) -> tuple[list[Pair], list[dict[str, Any]]]:
    """An ARC task file: its train pairs (as reprs) and its test input reprs."""
    pairs, tests = _task_parts(obj, source)
    return pairs, [grid_to_repr(t) for t in tests]


def _task_parts(obj: Any, source: str | None) -> tuple[list[Pair], list[Grid]]:
    """An ARC task file checked: its train pairs (as reprs) and its test input grids."""
    expect_kind(obj, ("task",), source)
    if not isinstance(obj, dict) or not isinstance(obj.get("train"), list):
        raise InvalidInputError(
            'expected an ARC task: {"train": [{"input", "output"}...], "test": [{"input"}...]}',
            source=source,
        )
    unknown = set(obj) - {"train", "test", "name", "id"}
    if unknown:
        raise InvalidInputError(
            "unknown field (allowed: train, test, name, id)",
            source=source,
            field=sorted(unknown)[0],
        )
    if not obj["train"]:
        raise InvalidInputError(
            "a task needs at least one train pair", source=source, field="train"
        )
    if len(obj["train"]) > MAX_PAIRS:
        raise InvalidInputError(
            f"{len(obj['train'])} train pairs; at most {MAX_PAIRS} (vault.limits)",
            source=source,
            field="train",
        )
    if isinstance(obj.get("test"), list) and len(obj["test"]) > MAX_TESTS:
        raise InvalidInputError(
            f"{len(obj['test'])} test inputs; at most {MAX_TESTS} (vault.limits)",
            source=source,
            field="test",
        )
    pairs = []
    for i, p in enumerate(obj["train"]):
        if not isinstance(p, dict) or "input" not in p or "output" not in p:
            raise InvalidInputError(
                'expected {"input": grid, "output": grid}', source=source, field=f"train[{i}]"
            )
        pairs.append(
            Pair(
                grid_to_repr(parse_grid(p["input"], source, f"train[{i}].input")),
                grid_to_repr(parse_grid(p["output"], source, f"train[{i}].output")),
                derived=True,
            )
        )
    tests: list[Grid] = []
    test = obj.get("test", [])
    if not isinstance(test, list):
        raise InvalidInputError('expected a list of {"input": grid}', source=source, field="test")
    for i, t in enumerate(test):
        if not isinstance(t, dict) or "input" not in t:
            raise InvalidInputError('expected {"input": grid}', source=source, field=f"test[{i}]")
        tests.append(parse_grid(t["input"], source, f"test[{i}].input"))
    return pairs, tests


def task_query(obj: Any, test_index: int = 0, source: str | None = None) -> Query:
    """An ARC task as a query: all train pairs plus test input ``test_index`` as the repr
    (every test input is checked; only that one is analysed). A task without test inputs
    is asked by its pairs alone: only with ``test_index`` 0 (another index names nothing)."""
    pairs, tests = _task_parts(obj, source)
    if not 0 <= test_index < max(len(tests), 1):
        raise InvalidInputError(
            f"--test-index {test_index} out of range "
            f"(task has {counted(len(tests), 'test input')})",
            source=source,
        )
    return Query(
        repr=grid_to_repr(tests[test_index]) if tests else None, pairs=tuple(pairs), derived=True
    )


QUERY_KINDS = ("repr", "query", "task")


def query_from(
    kind: str,
    value: Any,
    source: str | None = None,
    test_index: int = 0,
    declared: Declared = NONE_DECLARED,
) -> Query:
    """A query from user input of ``kind``: ``repr`` (a repr or a bare grid), ``query`` (a
    query record) or ``task`` (an ARC task; its test input ``test_index`` is the repr)."""
    if kind == "repr":
        expect_kind(value, ("grid", "repr"), source)
        key = "grid" if isinstance(value, list) else "repr"
        return normalize_query({"schema_version": 1, key: value}, source)
    if kind == "query":
        return normalize_query(value, source, declared)
    if kind == "task":
        return task_query(value, test_index, source)
    raise InvalidInputError(f"unknown query kind {kind!r} (expected {', '.join(QUERY_KINDS)})")
