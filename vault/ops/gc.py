"""``vault gc --keep N`` drops old generation records and the objects no kept one reaches;
``vault gc --cache`` drops every cache file ``vault verify`` reports (derived data).

Liveness is the union of the kept generations' closures — every object a kept generation
depends on, reached from its manifest: its own blobs, its state shards, and from those each
concept's card, evidence and status events and every known repr, and the fitted weights
object its manifest names (see ``closure``) — and the roots its caller names (the latest
fit's weights, so that `vault embedder use fitted` still works). The kept
generations are the N newest records plus the current one, after catching up (so every
acknowledged write is in the current generation). Objects no kept generation reaches — old
index blobs, records of write-backs a rollback reverted, leftovers of write-backs killed
before their audit line — are deleted, as are cache entries of embedders no kept generation
uses and the
temporaries interrupted writes left below ``objects/`` and ``embeddings/cache/``, and
packs whose bytes do not match their name (torn by a power cut). Only what gc owns is
deleted — object files, temporaries, cache files (FORMAT §13): a stray entry (a directory
under the fan-out or where a cache file belongs, a file not named as an object) is left in
place and named in the result (``GcResult.left``), never an error.

``--cache`` checks the cache as ``vault verify`` does — every entry and pack line read and
recomputed from its own source with its own embedder — and drops each file that fails (an
entry left empty or truncated by a power cut, a torn pack, a vector that differs from its
recomputation, an entry of an embedder no kept generation uses): the cache is derived data,
what is dropped is recomputed when next needed. Audited as ``gc`` with ``detail.cache``.

Readers are not disturbed: a reader holds open what it reads of its generation from the
moment it opens it (``vault.index.snapshot``), so deleting a generation's objects never
breaks a reader that has it open; their space comes back when the last such reader drops
the generation. ``dry_run`` reports the same numbers and deletes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault.canonical import loads
from vault.config import Retention
from vault.embedding.cache import EmbeddingCache, read_pack
from vault.errors import (
    CommittedError,
    CorruptionError,
    InvalidInputError,
    UsageError,
    VaultError,
    json_value,
)
from vault.handle import Handle
from vault.index.build import catch_up
from vault.index.generations import IndexGeneration
from vault.index.snapshot import Generation, generation_embedders
from vault.store.fs import fsync_dir, is_temporary
from vault.store.objects import ObjectStore, is_digest


@dataclass(frozen=True)
class GcResult:
    dry_run: bool
    kept_generations: list[int]
    removed_generations: list[int]
    removed_objects: int
    removed_bytes: int
    removed_cache_entries: int
    removed_temporaries: int = 0
    left: list[str] = field(default_factory=list)  # entries gc does not own, left in place

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "kept_generations": self.kept_generations,
            "removed_generations": self.removed_generations,
            "removed_objects": self.removed_objects,
            "removed_bytes": self.removed_bytes,
            "removed_cache_entries": self.removed_cache_entries,
            "removed_temporaries": self.removed_temporaries,
            "left": self.left,
        }


class Closures:
    """Closures of generations, sharing the work for shards that generations share."""

    def __init__(self, objects: ObjectStore):
        self.objects = objects
        self._shards: dict[str, frozenset[str]] = {}

    def _shard(self, digest: str, kind: str) -> frozenset[str]:
        done = self._shards.get(digest)
        if done is not None:
            return done
        shard = self.objects.get_record(digest)
        out: set[str] = set()
        try:
            if kind == "concepts":
                for entry in shard.values():
                    out.add(entry["card"])
                    out.update(entry["evidence"])
                    out.update(entry["events"])
            else:
                out.update(shard["known"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise CorruptionError(f"state shard {digest} is malformed ({exc})") from None
        self._shards[digest] = frozenset(out)
        return self._shards[digest]

    def of(self, generation: str) -> set[str]:
        """Every object ``generation`` depends on (its manifest included)."""
        data = Generation(self.objects, generation)
        m = data.manifest
        out = {generation, m["state"], m["embedder"]}
        out.update(m["table"].values())
        out.update(d for c in data.metas for d in (c.digest, c.matrix))
        if "weights" in m:
            out.add(m["weights"])
        shards = data.state_shards
        for kind in ("concepts", "reprs"):
            for digest in shards[kind]:
                out.add(digest)
                out |= self._shard(digest, kind)
        return out


SCOPE = (
    "gc needs a scope: --keep N (the N newest generations are kept) and/or --cache "
    "(drop the cache files verify reports)"
)
CACHE_KINDS = ("cache_entry_bad", "cache_pack_bad", "cache_stale", "nondeterminism")


Roots = Callable[[Handle], Iterable[str]]


def gc(
    vault: Handle,
    keep: int | None,
    *,
    cache: bool = False,
    dry_run: bool = False,
    roots: Roots | None = None,
    keep_days: float = 0.0,
    policy: bool = False,
) -> GcResult:
    """Collect what no kept generation reaches. ``roots`` names the objects the caller keeps
    live besides the kept generations' closures (``vault.ops.embedder.fit_roots``: the latest
    fit's weights); it is asked under the write lock, after catching up. ``keep_days`` also
    keeps every generation younger than that many days; ``policy`` marks a run of the
    ``[gc]`` retention policy (``retain``) in the audit line."""
    if keep is None and not cache:
        raise UsageError(SCOPE)
    if keep is not None and keep < 1:
        raise UsageError("keep must be at least 1")
    if not (isinstance(keep_days, int | float) and 0 <= keep_days <= 36_500):
        raise UsageError(f"keep_days must be a number of days in [0, 36500], got {keep_days!r}")
    with vault.report_lock() if dry_run else vault.lock:
        history: list[IndexGeneration] = []
        kept: list[IndexGeneration] = []
        dead: list[str] = []
        size = 0
        stale_cache: list[Path] = []
        ours: dict[EmbeddingCache, list[Path]] = {}
        if keep is not None:
            history, kept, dead, size, stale_cache, ours = _plan(vault, keep, roots, keep_days)
        kept_numbers = {g.number for g in kept}
        checked, bad_cache = _bad_cache(vault) if cache else (0, [])
        dropped = sorted(set(stale_cache) | set(bad_cache))
        removed = [g.number for g in history if g.number not in kept_numbers]
        temporaries, left = _temporaries(vault) if keep is not None else ([], [])
        left += _cache_strays(vault)
        if not dry_run:
            # acknowledged first (what it removes is decided), then the records: a failure or
            # crash after that leaves unreachable objects, never a record naming a deleted one
            detail: dict[str, Any] = {}
            if keep is not None:
                detail |= {
                    "keep": keep,
                    "removed_generations": removed,
                    "removed_objects": len(dead),
                }
                if keep_days:
                    detail["keep_days"] = keep_days
                if policy:
                    detail["policy"] = "config"
            if cache:
                detail["cache"] = {"checked": checked, "removed": len(bad_cache)}
            entry = vault.audit.append("gc", vault.clock(), [], detail)
            try:
                _remove(vault, history, kept_numbers, dead, dropped, temporaries, ours)
            except OSError as exc:
                raise CommittedError.after(
                    "gc",
                    entry.seq,
                    "could not remove everything",
                    exc,
                    "nothing kept was touched — `vault gc` again finishes it",
                ) from None
        return GcResult(
            dry_run,
            sorted(kept_numbers),
            removed,
            len(dead),
            size,
            len(dropped),
            len(temporaries),
            sorted(str(p) for p in set(left)),
        )


def past(history: list[IndexGeneration], keep: int, keep_days: float, now: str) -> list[int]:
    """Numbers of the records neither among the ``keep`` newest nor younger than
    ``keep_days`` days at ``now`` (an ISO-8601 UTC time, as the records hold)."""
    limit = _seconds(now) - keep_days * 86_400
    older = history[:-keep] if keep else history
    return [g.number for g in older if not (keep_days and _seconds(g.time) > limit)]


def _seconds(stamp: str) -> float:
    try:
        when = _dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        raise CorruptionError(
            f"generation record time {json_value(stamp)} is not YYYY-MM-DDTHH:MM:SSZ"
        ) from None
    return when.replace(tzinfo=_dt.UTC).timestamp()


def retain(vault: Handle, policy: Retention, roots: Roots | None = None) -> GcResult | None:
    """The ``[gc]`` retention policy after a write-back: ``gc`` with its ``keep`` and
    ``keep_days`` once ``policy.slack`` generations are past them (so the work is shared by
    that many write-backs); None when it did not run. At most ``keep + slack`` generation
    records stay, besides those younger than ``keep_days``."""
    if policy.keep == 0:
        return None
    history = vault.generations.history()
    if len(past(history, policy.keep, policy.keep_days, vault.clock())) < policy.slack:
        return None
    return gc(vault, policy.keep, roots=roots, keep_days=policy.keep_days, policy=True)


def _plan(
    vault: Handle, keep: int, roots: Roots | None, keep_days: float = 0.0
) -> tuple[
    list[IndexGeneration],
    list[IndexGeneration],
    list[str],
    int,
    list[Path],
    dict[EmbeddingCache, list[Path]],
]:
    """What ``--keep`` removes: (history, kept records, dead objects, their bytes, cache
    files of other embedders or torn, the kept embedders' packs to merge)."""
    cur = catch_up(vault).ref
    history = vault.generations.history()
    gone = set(past(history, keep, keep_days, vault.clock()))
    kept = [g for g in history if g.number not in gone]
    if all(g.number != cur.number for g in kept):
        kept = [g for g in history if g.number == cur.number] + kept
    if not any(g.number == cur.number and g.generation == cur.generation for g in kept):
        raise CorruptionError(  # (the log lost CURRENT's record: never delete on a guess)
            f"{vault.generations.log_path} has no record of generation {cur.number} "
            f"({cur.generation[:12]}), which {vault.generations.current_path} names; "
            "nothing was removed — `vault verify` tells more"
        )
    closures = Closures(vault.objects)
    live: set[str] = set()
    for g in kept:
        try:
            live |= closures.of(g.generation)
        except VaultError as exc:  # never delete on a guess
            raise CorruptionError(
                f"generation {g.number} cannot be read ({exc}); nothing was removed — "
                "`vault verify` tells more"
            ) from None
    if roots is not None:
        live.update(roots(vault))
    dead = [d for d in vault.objects if d not in live]
    size = sum(vault.objects.path(d).stat().st_size for d in dead)
    embedders = generation_embedders(vault.objects, [g.generation for g in kept])
    caches = [vault.cache.bound(e) for e in embedders]
    stale_cache = []
    for path in _files(vault.cache.entries()):
        try:
            key = loads(path.read_bytes())["key"]
            if not any(c.owns_key(key) for c in caches):
                stale_cache.append(path)
        except (InvalidInputError, KeyError, TypeError, OSError):
            stale_cache.append(path)
    packs = _files(vault.cache.packs())
    torn = [p for p in packs if read_pack(p) is None]
    stale_cache += [p for p in packs if p in torn or not any(c.owns(p) for c in caches)]
    ours = {c: [p for p in packs if c.owns(p) and p not in torn] for c in caches}
    return history, kept, dead, size, stale_cache, ours


def _bad_cache(vault: Handle) -> tuple[int, list[Path]]:
    """(entries checked, the cache files ``vault verify``'s cache checks report): each
    single entry, or the whole pack a bad line is in."""
    from vault.ops.verify import check_cache

    checked, problems = check_cache(vault)
    files = {str(p): p for p in _files([*vault.cache.entries(), *vault.cache.packs()])}
    bad: set[Path] = set()
    for problem in problems:
        if problem.kind not in CACHE_KINDS:
            continue
        path = files.get(problem.path) or files.get(problem.path.rsplit(":", 1)[0])
        if path is not None:
            bad.add(path)
    return checked, sorted(bad)


def _remove(
    vault: Handle,
    history: list[IndexGeneration],
    kept_numbers: set[int],
    dead: list[str],
    stale_cache: list[Path],
    temporaries: list[Path],
    ours: dict[EmbeddingCache, list[Path]],
) -> None:
    """The removals gc decided, records first."""
    if len(kept_numbers) < len(history):
        vault.generations.rewrite([g for g in history if g.number in kept_numbers])
    for d in dead:
        with contextlib.suppress(FileNotFoundError):
            vault.objects.path(d).unlink()
    for path in stale_cache:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    for path in temporaries:  # a reader's cache write may lose its entry: a miss
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    for cache, packs_of in ours.items():
        _merge_packs(cache, packs_of)
    # the removals from objects/ survive a power cut (the cache's are not made durable: its
    # writes never are, and an fsync of its directories could name an un-fsynced entry)
    objects = vault.objects.root
    parents = {vault.objects.path(d).parent for d in dead}
    parents |= {p.parent for p in temporaries if p.is_relative_to(objects)}
    for parent in sorted(parents):
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(parent)


def _temporaries(vault: Handle) -> tuple[list[Path], list[Path]]:
    """(the temporaries below the object fan-out and the cache, which writers do not sweep
    (the cache's may be a reader's; writers sweep the other directories themselves); the
    entries of ``objects/`` gc does not own — neither an object nor a temporary file, what
    ``vault verify`` reports as ``object_unexpected`` — and the directories named as
    temporaries: left in place, never deleted, named in gc's result)."""
    out: list[Path] = []
    left: list[Path] = []
    for parent in (vault.objects.root, vault.cache.root):
        if not parent.is_dir():
            continue
        objects = parent == vault.objects.root
        for sub in sorted(parent.iterdir()):
            if not (sub.is_dir() and not sub.is_symlink()):
                if objects and not sub.name.startswith("."):
                    left.append(sub)
                continue
            for p in sorted(sub.iterdir()):
                if p.name.startswith("."):
                    if not is_temporary(p.name):
                        continue
                    (left if _is_dir(p) else out).append(p)
                elif objects and not (
                    len(sub.name) == 2
                    and is_digest(sub.name + p.name)
                    and p.is_file()
                    and not p.is_symlink()
                ):
                    left.append(p)
    return out, left


def _is_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _files(paths: Iterable[Path]) -> list[Path]:
    """``paths`` without the directories among them (not gc's to delete)."""
    return [p for p in paths if not _is_dir(p)]


def _cache_strays(vault: Handle) -> list[Path]:
    """Directories where a cache entry or pack is expected: left in place."""
    return [p for p in [*vault.cache.entries(), *vault.cache.packs()] if _is_dir(p)]


def _merge_packs(cache: EmbeddingCache, packs: list[Path]) -> None:
    """Many packs of one embedder become one (a bad line is dropped: a miss)."""
    if len(packs) < 2:
        return
    entries: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for path in packs:
        entries.update(read_pack(path) or {})
    merged = cache.write_pack(entries)
    if merged is None:
        return
    for path in packs:
        if path != merged:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
