"""Generations over time: ``vault rollback`` (and ``--list``), ``vault index status``.

Plain ``vault rollback`` returns to the record that was current before the current one (its
``parent``), so repeated rollbacks walk back through what was really current — a write-back
made after a rollback is undone by the next rollback, never resurrecting what the first one
undid. ``--to N`` (a number or a generation id prefix) moves to any kept record, later ones
included (undo of an undo). A rollback is one audit line (the acknowledgement, naming the
target and the entries it reverts) and one atomic replace of ``CURRENT``: O(1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vault.embedding import builtin
from vault.errors import (
    CommittedError,
    CorruptionError,
    EmbeddingError,
    NotFoundError,
    VaultError,
)
from vault.handle import CHANGE_OPS, Handle
from vault.index.build import catch_up, point_current, refresh_view
from vault.index.generations import CurrentRef, IndexGeneration
from vault.index.snapshot import Snapshot
from vault.store.audit import STATE_OPS, AuditEntry


@dataclass(frozen=True)
class RollbackResult:
    previous: str | None
    previous_number: int | None
    current: IndexGeneration
    audit_seq: int
    changed: bool = True
    dry_run: bool = False  # the plan: nothing written (``current`` is the target)
    previous_record: IndexGeneration | None = None  # the record of ``previous`` (a plan's)

    def to_json(self) -> dict[str, Any]:
        out = {
            "previous": self.previous,
            "previous_number": self.previous_number,
            "current": self.current.to_json(),
            "audit_seq": self.audit_seq,
            "changed": self.changed,
        }
        return out | {"dry_run": True} if self.dry_run else out


def list_generations(vault: Handle) -> tuple[list[IndexGeneration], str | None, int | None]:
    """Every kept record in order, and the current generation id and number (None if the
    ref is unreadable)."""
    cur = vault.current_ref(tolerant=True)
    return vault.generations.history(), cur.generation if cur else None, cur.number if cur else None


def rollback(vault: Handle, to: str | None = None, *, dry_run: bool = False) -> RollbackResult:
    """Make the previous (or ``to``) generation current; see the module docstring.

    ``dry_run``: the plan, computed as the rollback computes it — under the lock, after
    completing acknowledged operations (as every command does), with the same errors — and
    nothing else written: a result with ``dry_run`` set, ``current`` the target and
    ``previous_record`` the generation it leaves. When there is nothing to write (the target
    is already current, or the catch-up just completed this very rollback, a retry) the
    result is the final one, as without ``dry_run``."""
    with vault.lock:
        cur: CurrentRef | None
        seen = vault.current_ref(tolerant=True)  # what the caller saw as current
        # (asked before the catch-up, which would complete the view it looks at)
        if seen is not None:  # a log that lost CURRENT's record refuses even an explicit
            vault.generations.check(seen)  # target (which tolerates catch-up's errors)
        interrupted = _interrupted_rollback(vault, seen) if to is None else None
        completed: list[AuditEntry] = []
        if to is None:
            cur = catch_up(vault, completed=completed).ref
        else:  # an explicit target also repairs an unreadable CURRENT
            try:
                cur = catch_up(vault, completed=completed).ref
            except CorruptionError:
                cur = None
        earlier = _earlier_rollback(completed, seen, to)
        if earlier is None and interrupted is not None and cur is not None and cur == seen:
            earlier, manifest = interrupted  # it moved CURRENT, then was stopped
            if not dry_run:
                refresh_view(vault, cur.generation, manifest)  # (done already: no work)
        if earlier is not None and cur is not None:  # a retry of one that took effect
            record = vault.generations.record(cur.number)
            if record is not None:
                return RollbackResult(
                    earlier.detail.get("from"),
                    earlier.detail.get("from_number"),
                    record,
                    earlier.seq,
                    True,
                )
        if to is None:
            assert cur is not None
            record = vault.generations.record(cur.number)
            if record is None:
                raise CorruptionError(
                    f"{vault.generations.log_path} has no record of generation {cur.number}, "
                    f"which {vault.generations.current_path} names; nothing was written "
                    "(`vault verify` tells more)"
                )
            if record.parent is None:
                raise NotFoundError(
                    f"generation {cur.number} has no earlier generation to roll back to"
                )
            target = vault.generations.record(record.parent)
            if target is None:
                raise NotFoundError(
                    f"generation {record.parent} (before {cur.number}) was removed by "
                    "`vault gc`; `vault rollback --list` shows the kept ones"
                )
        else:
            target = vault.generations.find(to)
        if cur is not None and target.number == cur.number:
            return RollbackResult(cur.generation, cur.number, target, cur.audit_seq, False)
        try:  # the target must still be whole (gc, corruption) before anything is written
            manifest = Snapshot.open(
                vault.objects, CurrentRef(target.generation, target.number, target.audit_seq)
            ).manifest
            complete(vault, manifest)
        except VaultError as exc:
            raise CorruptionError(
                f"cannot roll back to generation {target.number}: {exc}"
            ) from None
        if dry_run:
            return RollbackResult(
                cur.generation if cur else None,
                cur.number if cur else None,
                target,
                vault.audit.last_seq(),
                dry_run=True,
                previous_record=vault.generations.record(cur.number) if cur else None,
            )
        vault.generations.sync()  # the target's record is durable before a line names it
        later = vault.audit.entries_after(target.audit_seq)
        reverted = sorted(set(target.reverted) | {e.seq for e in later if e.op in STATE_OPS})
        entry = vault.audit.append(
            "rollback",
            vault.clock(),
            [],
            {
                "from": cur.generation if cur else None,
                "from_number": cur.number if cur else None,
                "to": target.generation,
                "number": target.number,
                "reverted": reverted,
            },
        )
        try:
            point_current(
                vault,
                CurrentRef(target.generation, target.number, entry.seq, tuple(reverted)),
                manifest,
                before=cur,
            )
        except (OSError, VaultError) as exc:
            raise CommittedError.after(
                f"the rollback to generation {target.number}",
                entry.seq,
                "CURRENT could not be moved",
                exc,
                "the next vault command completes it — do not roll back again",
            ) from None
        return RollbackResult(
            cur.generation if cur else None, cur.number if cur else None, target, entry.seq
        )


def _interrupted_rollback(
    vault: Handle, cur: CurrentRef | None
) -> tuple[AuditEntry, dict[str, Any]] | None:
    """The rollback that made ``cur`` current and was stopped before its view was written
    (killed, interrupted, the power lost after ``CURRENT`` moved): its audit entry and the
    generation's manifest. Plain ``vault rollback`` again is then its retry, not a second
    rollback: CURRENT is the last state change's (its entry a rollback to ``cur``) and the
    ``embeddings/`` view, written last, is not ``cur``'s. (A rollback that finished wrote the
    view; one asked again after it goes one generation further back, as asked.)"""
    if cur is None:
        return None
    last = vault.audit.entries_after(cur.audit_seq - 1)
    if not last or last[0].seq != cur.audit_seq or last[0].op != "rollback":
        return None
    detail = last[0].detail if isinstance(last[0].detail, dict) else {}
    if detail.get("number") != cur.number or detail.get("to") != cur.generation:
        return None
    try:
        manifest = Snapshot.open(vault.objects, cur).manifest
    except VaultError:
        return None
    if vault.view.current(vault.objects, manifest):
        return None
    return last[0], manifest


def _earlier_rollback(
    completed: list[AuditEntry], seen: CurrentRef | None, to: str | None
) -> AuditEntry | None:
    """A rollback this command's catch-up just completed that is the same request: from
    the generation the caller saw as current, to the same target. Its retry is done."""
    for e in reversed(completed):
        if e.op != "rollback":
            continue
        d = e.detail if isinstance(e.detail, dict) else {}
        if to is None and seen is not None and d.get("from_number") == seen.number:
            return e
        if to is not None and to.isdigit() and d.get("number") == int(to):
            return e
    return None


def complete(vault: Handle, manifest: dict[str, Any]) -> None:
    """Raise unless every object a manifest names directly is present."""
    names = [manifest[k] for k in ("state", "embedder")]
    names += list(manifest["table"].values())
    names += [manifest["weights"]] if "weights" in manifest else []
    missing = [d for d in names if not vault.objects.has(d)]
    if missing:
        raise CorruptionError(f"{len(missing)} of its objects are missing ({missing[0][:12]}…)")


@dataclass(frozen=True)
class IndexStatus:
    generation: str | None
    number: int | None
    audit_seq: int | None
    stale: bool
    pending: int
    drift: bool
    counts: dict[str, int]
    embedder: dict[str, Any] | None
    running_embedder: dict[str, Any]
    mode_default: str
    problem: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "number": self.number,
            "audit_seq": self.audit_seq,
            "stale": self.stale,
            "pending": self.pending,
            "drift": self.drift,
            "counts": self.counts,
            "embedder": self.embedder,
            "running_embedder": self.running_embedder,
            "mode_default": self.mode_default,
            "problem": self.problem,
        }


def index_status(vault: Handle) -> IndexStatus:
    mode = vault.config().mode
    running = builtin.EMBEDDER.identity()
    try:
        snap = vault.snapshot()
    except VaultError as exc:
        return IndexStatus(None, None, None, True, 0, False, {}, None, running, mode, str(exc))
    pending = [e for e in vault.audit.entries_after(snap.audit_seq) if e.op in CHANGE_OPS]
    try:
        running = snap.embedder().identity()
        problem = None
    except EmbeddingError as exc:
        problem = str(exc)
    return IndexStatus(
        snap.generation,
        snap.number,
        snap.audit_seq,
        bool(pending),
        len(pending),
        snap.drift,
        snap.counts,
        snap.embedder_id,
        running,
        mode,
        problem,
    )
