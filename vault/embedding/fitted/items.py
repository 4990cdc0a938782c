"""Training items for the fit: the items of an ARC task, of a concept's evidence, of a
folder of tasks with optional labels (``vault.embedding.fitted``)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from vault.embedding.fitted.fit import (
    LABEL_WEIGHT,
)
from vault.embedding.fitted.raw import (
    DEFAULT_READS,
    RAW_DIM,
    RAW_SLICES,
    keys_raw,
    raw_pair,
    raw_repr,
)
from vault.grid.pairs import analyze_pair

# ------------------------------------------------------------------ training items


def _keys_view(keys: Iterable[str]) -> list[int]:
    z = [0] * RAW_DIM
    z[RAW_SLICES["keys"]] = keys_raw(keys)
    return z


def _without_keys(raw: list[int]) -> list[int]:
    ks = RAW_SLICES["keys"]
    return raw[: ks.start] + [0] * (ks.stop - ks.start) + raw[ks.stop :]


def concept_items(
    reprs: Sequence[dict[str, Any]],
    pairs: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    keys: Iterable[str] | None = None,
    blocks: Collection[str] | None = DEFAULT_READS,
) -> list[list[int]]:
    """The training items of one class from a concept's evidence (or a task): each repr's
    appearance (its keys left out: a concept's keys are its own, not a grid's), each pair
    (input appearance, transformation, the pair's keys), and the keys view of ``keys``."""
    items = [_without_keys(raw_repr(r)) for r in reprs]
    items += [raw_pair(a, b, blocks=blocks) for a, b in pairs]
    if keys is not None:
        items.append(_keys_view(keys))
    return items


def task_items(
    task: Mapping[str, Any],
    source: str | None = None,
    blocks: Collection[str] | None = DEFAULT_READS,
) -> list[list[int]]:
    """Self-supervised training items of one ARC-format task: every demonstration pair
    (train, and test pairs that carry an output), every test input's appearance, and the
    key sets a query or a concept of the task would have (the task without pair i; pair i
    with the first test input) as keys views."""
    from vault.grid.reprs import grid_to_repr
    from vault.records.keys import task_keys
    from vault.records.query import parse_task

    pairs, tests = parse_task(dict(task), source)
    facts = [analyze_pair(p.input, p.output) for p in pairs]
    items = [
        raw_pair(p.input, p.output, f, blocks=blocks) for p, f in zip(pairs, facts, strict=True)
    ]
    for t in task.get("test", ()):
        if isinstance(t, dict) and "output" in t:
            items.append(
                raw_pair(grid_to_repr(t["input"]), grid_to_repr(t["output"]), blocks=blocks)
            )
    items += [_without_keys(raw_repr(t)) for t in tests]
    inputs = [p.input for p in pairs]
    extra = tests[:1]
    for i in range(len(pairs)):
        rest = [j for j in range(len(pairs)) if j != i] or [i]
        items.append(_keys_view(task_keys([facts[j] for j in rest], [inputs[j] for j in rest])))
        items.append(_keys_view(task_keys([facts[i]], [inputs[i], *extra])))
    return items


def items_from_tasks(
    tasks: Iterable[tuple[str, Mapping[str, Any]]],
    labels: Mapping[str, str] | None = None,
    *,
    label_weight: float = LABEL_WEIGHT,
) -> tuple[dict[str, list[list[int]]], dict[str, float]]:
    """(items by class, class weights) for ``fit`` from ARC-format tasks: a task is its own
    class (``task:<id>``, weight 1) unless ``labels`` puts it in a group, whose tasks form
    one class (``group:<name>``, weight ``label_weight``)."""
    classes: dict[str, list[list[int]]] = {}
    weights: dict[str, float] = {}
    for task_id, task in tasks:
        group = (labels or {}).get(task_id)
        cls = f"group:{group}" if group is not None else f"task:{task_id}"
        classes.setdefault(cls, []).extend(task_items(task, task_id))
        weights[cls] = label_weight if group is not None else 1.0
    return classes, weights
