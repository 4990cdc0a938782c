"""``vault arc import``: one concept per ARC task (``vault.arc.task_records``), all in one
write-back."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from vault.arc import TaskItem, task_records
from vault.handle import Handle
from vault.ops.write import WriteResult, write_back


def import_tasks(
    vault: Handle,
    tasks: Iterable[TaskItem],
    *,
    holdout_last: bool = False,
    keep_single: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> WriteResult:
    """Write back one concept per task, all in one write-back (one generation).
    ``holdout_last`` refuses a task of one train pair (nothing is written) unless
    ``keep_single``, which keeps it whole (``vault.arc.task_records``)."""
    items = list(tasks)
    cards: list[tuple[Any, str]] = []
    evidence: list[tuple[Any, str]] = []
    reprs: list[dict[str, Any]] = []
    for i, (task_id, task, source) in enumerate(items, start=1):
        card, evs, task_reprs = task_records(
            task_id, task, source, holdout_last=holdout_last, keep_single=keep_single
        )
        cards.append((card, source))
        evidence.extend((ev, source) for ev in evs)
        reprs.extend(task_reprs)
        if progress:
            progress(i, len(items))
    return write_back(
        vault, cards, evidence, op="import", detail={"tasks": len(items)}, reprs=reprs
    )
