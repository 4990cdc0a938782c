"""``vault gc --keep N``: drop old index generations and objects nothing refers to.

Live objects: every record named by the audit log (cards, evidence, status events,
reprs), and the manifest and blobs of the kept generations (the N newest and the current
one). Everything else under ``objects/`` goes, as do cache entries of other embedders.
``dry_run`` reports the same numbers and deletes nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from vault.canonical import dumps_line, loads
from vault.embedding import embedder
from vault.errors import InvalidInputError, UsageError
from vault.index.generations import read_manifest
from vault.store.fs import atomic_write
from vault.vault import Vault


@dataclass(frozen=True)
class GcResult:
    dry_run: bool
    kept_generations: list[int]
    removed_generations: list[int]
    removed_objects: int
    removed_bytes: int
    removed_cache_entries: int

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "kept_generations": self.kept_generations,
            "removed_generations": self.removed_generations,
            "removed_objects": self.removed_objects,
            "removed_bytes": self.removed_bytes,
            "removed_cache_entries": self.removed_cache_entries,
        }


def gc(vault: Vault, keep: int | None, *, dry_run: bool = False) -> GcResult:
    if keep is None:
        raise UsageError("gc needs a scope: --keep N (the N newest generations are kept)")
    if keep < 1:
        raise UsageError("--keep must be at least 1")
    with vault.lock:
        history = vault.generations.history()
        cur = vault.generations.current()
        kept = history[-keep:]
        if cur is not None and all(g.number != cur.number for g in kept):
            kept = [g for g in history if g.number == cur.number] + kept
        kept_numbers = {g.number for g in kept}
        live: set[str] = set()
        for entry in vault.audit.entries():
            live.update(entry.records)
        for g in kept:
            manifest = read_manifest(vault.objects, g.generation)
            live.add(g.generation)
            live.update(manifest[k] for k in ("symbolic", "embedder", "vectors", "ann_hash_file"))
        dead = [d for d in vault.objects if d not in live]
        size = sum(vault.objects.path(d).stat().st_size for d in dead)
        stale_cache = []
        for path in vault.cache.entries():
            try:
                key = loads(path.read_bytes())["key"]
                if not key.endswith(f":{embedder.VERSION}:{embedder.WEIGHTS_HASH}"):
                    stale_cache.append(path)
            except (InvalidInputError, KeyError, TypeError):
                stale_cache.append(path)
        removed = [g.number for g in history if g.number not in kept_numbers]
        if not dry_run:
            # the log first: a crash after it leaves unreferenced objects, never a dangling entry
            lines = b"".join(dumps_line(g.to_json()) for g in history if g.number in kept_numbers)
            atomic_write(vault.generations.log_path, lines)
            for d in dead:
                with contextlib.suppress(FileNotFoundError):
                    vault.objects.path(d).unlink()
            for path in stale_cache:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            vault.audit.append(
                "gc",
                vault.clock(),
                [],
                {"keep": keep, "removed_generations": removed, "removed_objects": len(dead)},
            )
        return GcResult(dry_run, sorted(kept_numbers), removed, len(dead), size, len(stale_cache))
