"""Generations over time: ``vault index status``, ``vault rollback`` (and ``--list``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vault.embedding import embedder
from vault.errors import CorruptionError, NotFoundError, VaultError
from vault.index.generations import CurrentRef, IndexGeneration, read_manifest
from vault.store.audit import STATE_OPS
from vault.vault import Vault


@dataclass(frozen=True)
class IndexStatus:
    generation: str | None
    number: int | None
    audit_seq: int | None
    stale: bool
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
            "drift": self.drift,
            "counts": self.counts,
            "embedder": self.embedder,
            "running_embedder": self.running_embedder,
            "mode_default": self.mode_default,
            "problem": self.problem,
        }


def index_status(vault: Vault) -> IndexStatus:
    running = embedder.identity()
    mode = vault.config().mode
    try:
        loaded = vault.load_current()
    except VaultError as exc:
        return IndexStatus(None, None, None, True, False, {}, None, running, mode, str(exc))
    ident = loaded.manifest.get("embedder_id")
    drift = ident != running
    return IndexStatus(
        loaded.ref.generation,
        loaded.ref.number,
        loaded.ref.audit_seq,
        vault.stale(),
        drift,
        loaded.manifest.get("counts", {}),
        ident,
        running,
        mode,
        "embedder drift: run `vault index build`" if drift else None,
    )


@dataclass(frozen=True)
class RollbackResult:
    previous: str | None
    current: IndexGeneration

    def to_json(self) -> dict[str, Any]:
        return {"previous": self.previous, "current": self.current.to_json()}


def list_generations(vault: Vault) -> tuple[list[IndexGeneration], str | None]:
    """Every generation in order, and the current one's id (None if the ref is unreadable)."""
    try:
        cur = vault.generations.current()
    except CorruptionError:
        cur = None
    return vault.generations.history(), cur.generation if cur else None


def rollback(vault: Vault, to: str | None = None) -> RollbackResult:
    """Make an earlier (or, to undo, a later) generation current: one step back, or ``to``
    (number or id prefix). The state entries the target does not hold are recorded as
    reverted, so later write-backs and full builds build on the target, not around it."""
    with vault.lock:
        cur = None
        try:
            cur = vault.generations.current()
        except CorruptionError:
            if to is None:
                raise
        if to is None:
            assert cur is not None
            if cur.number <= 1:
                raise NotFoundError("already at the first generation: nothing to roll back to")
            target = vault.generations.find(str(cur.number - 1))
        else:
            target = vault.generations.find(to)
        manifest = read_manifest(vault.objects, target.generation)  # must still exist (gc)
        for name in ("symbolic", "embedder", "vectors", "ann_hash_file"):
            if not vault.objects.has(manifest[name]):
                raise CorruptionError(f"generation {target.number} is incomplete ({name} missing)")
        entries = vault.audit.entries()
        reverted = set(target.reverted) | {
            e.seq for e in entries if e.op in STATE_OPS and e.seq > target.audit_seq
        }
        vault.audit.append(
            "rollback",
            vault.clock(),
            [],
            {
                "from": cur.generation if cur else None,
                "to": target.generation,
                "number": target.number,
                "reverted": sorted(reverted),
            },
        )
        vault.files.write(
            vault.objects, manifest["embedder"], manifest["vectors"], manifest["ann_hash_file"]
        )
        seq = vault.audit.last_seq()
        vault.generations.set_current(
            CurrentRef(target.generation, target.number, seq, tuple(sorted(reverted)))
        )
        return RollbackResult(cur.generation if cur else None, target)
