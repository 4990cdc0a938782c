"""``vault verify``: rehash and recompute everything, read-only.

The vault is opened read-only: not one byte changes, the cache included (a corrupt cache
entry is reported with the command that drops it, ``vault gc --cache``, never repaired
here). Checks, each problem reported with its file and a kind:

1. cache entries (all, or a sample) recomputed from their source, each with its own
   embedder (the current generation's, or a kept generation's: a rollback may use them
   again) — first, before anything else reads the cache;
2. ``format.json``, ``config.toml`` and ``refs/mode.json`` parse and hold valid values; the
   root, ``index/``, ``audit/``, ``refs/``, ``embeddings/`` and ``remotes/`` hold nothing
   FORMAT.md §1 does not list (names starting with ``.`` are a writer's temporaries:
   ignored); ``lock`` is not a directory;
3. every object rehashed against its address (a damaged one that an interrupted pull,
   clone or write staged and nothing names, ``vault.store.staging``, is a warning);
4. the audit log well formed, every record it names present (those of write-backs a
   rollback reverted may have been collected by ``gc``);
5. ``generations.jsonl`` and ``CURRENT`` well formed and consistent with each other and with
   the audit log; every kept generation complete (but one ``vault gc`` dropped meanwhile:
   verify takes no lock);
6. the current generation rebuilt from the audit log twice in memory (without and with the
   cache: any difference is ``nondeterminism``) and compared with what is stored, object by
   object (state shards, table, vectors file, its binary form, ann hash);
7. the ``embeddings/`` view: the current generation's objects (a view one generation behind
   — a crash between ``CURRENT`` and the view — is a warning: the next write repairs it).

Exit 0 when no error is found (warnings do not fail it), 1 otherwise.
"""

from __future__ import annotations

import errno
import hashlib
import multiprocessing as mp
import os
import random
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from vault.canonical import CHECK, dumps_line, loads, sha256_hex, verify_check
from vault.config import load as load_config
from vault.embedding import Embedder, builtin
from vault.embedding.cache import EmbeddingCache, FreshCache, pack_name_ok
from vault.embedding.vectors import source_vector
from vault.errors import CorruptionError, EmbeddingError, InvalidInputError, VaultError, counted
from vault.handle import (
    CHANGE_OPS,
    FORMAT_FILE,
    REMOTE_FILES,
    REMOTE_NAME,
    REMOTE_PACK_INDEX,
    REMOTES_DIR,
    Handle,
    format_bytes,
)
from vault.index.build import plan_full
from vault.index.generations import CurrentRef, IndexGeneration
from vault.index.snapshot import Generation, generation_embedders
from vault.index.state import State, reverted_in_effect
from vault.index.view import EMBEDDER_FILE, HASH_FILE, VECTORS_FILE
from vault.store import staging
from vault.store.audit import AuditEntry
from vault.store.fs import LOCK_IS_DIRECTORY
from vault.store.objects import read_file
from vault.workers import exit_with_parent

HASH_PARALLEL_MIN = 5000  # objects: below this, worker processes cost more than they save
HASH_CHUNK = 2000
HASH_WORKERS_MAX = 8


@dataclass(frozen=True)
class Problem:
    kind: str
    path: str
    detail: str
    severity: str = "error"

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "path": self.path,
            "detail": self.detail,
            "severity": self.severity,
        }


@dataclass
class VerifyReport:
    problems: list[Problem] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def add(self, kind: str, path: Any, detail: str, severity: str = "error") -> None:
        self.problems.append(Problem(kind, str(path), detail, severity))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "problems": [p.to_json() for p in self.problems],
        }


class _Context:
    """What the checks learn and share (never written to disk)."""

    def __init__(self, vault: Handle):
        self.vault = vault
        self.bad_objects: set[str] = set()
        self.objects: set[str] = set()
        self.entries: list[AuditEntry] | None = None
        self.current: CurrentRef | None = None
        self.history: list[IndexGeneration] = []
        # cache entries read first: (where, key, source, vector); fresh vectors of the rebuild
        self.cache_entries: list[tuple[str, Any, Any, Any, EmbeddingCache]] = []
        self.fresh = FreshCache()


def verify(
    vault: Handle, *, sample: int | None = None, progress: Callable[[str], None] | None = None
) -> VerifyReport:
    """Check ``vault``; never writes (a read-only twin of ``vault`` does the reading)."""
    ro = Handle(vault.root, clock=vault.clock, readonly=True)
    report = VerifyReport()
    ctx = _Context(ro)
    step = progress or (lambda _: None)
    checks: list[tuple[str, Callable[[], None]]] = [
        ("cache", lambda: _read_cache(ctx, report, sample)),
        ("settings", lambda: _settings(ro, report)),
        ("objects", lambda: _objects(ctx, report)),
        ("audit log", lambda: _audit(ctx, report)),
        ("generations", lambda: _generations(ctx, report)),
        ("rebuild", lambda: _rebuild(ctx, report)),
        ("embeddings view", lambda: _view(ctx, report)),
        ("cache entries", lambda: _check_cache(ctx, report)),
    ]
    for label, check in checks:
        step(label)
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - verify reports, it never crashes
            if isinstance(exc, (VaultError, OSError)):
                detail = f"{type(exc).__name__}: {exc}"
            else:  # a bug: reported, and noted for the test suite
                from vault.internal import note

                detail = note(exc, f"verify {label}")
            report.add("check_failed", ro.root, f"{label}: {detail}")
    return report


# --------------------------------------------------------------------------- 1. cache
CACHE_FIX = "derived data: `vault gc --cache` drops it"


def check_cache(vault: Handle) -> tuple[int, list[Problem]]:
    """Only verify's cache checks, over every entry: (entries checked, problems) — each
    entry and pack line read and recomputed from its own source with its own embedder.
    ``vault gc --cache`` drops the files named."""
    ro = Handle(vault.root, clock=vault.clock, readonly=True)
    report = VerifyReport()
    ctx = _Context(ro)
    _read_cache(ctx, report, None)
    _check_cache(ctx, report)
    return report.checked.get("cache_entries", 0), report.problems


def _current_embedder(vault: Handle) -> Embedder:
    """The embedder of the current generation (the built-in one if it cannot be run:
    the generation checks report why)."""
    try:
        return vault.snapshot().embedder()
    except VaultError:
        return builtin.EMBEDDER


def _kept_caches(vault: Handle, current: Embedder) -> list[EmbeddingCache]:
    """The caches of the current embedder and of every kept generation's (a rollback may
    use those again); entries of any other embedder are unused."""
    try:
        kept = [g.generation for g in vault.generations.history()]
    except VaultError:
        kept = []
    embedders = [current, *generation_embedders(vault.objects, kept)]
    return list({id(c): c for c in (vault.cache.bound(e) for e in embedders)}.values())


def _read_cache(ctx: _Context, report: VerifyReport, sample: int | None) -> None:
    """Read every single entry and pack line (or a sample) before anything else runs."""
    ctx.fresh = FreshCache(_current_embedder(ctx.vault))
    caches = _kept_caches(ctx.vault, ctx.fresh.embedder)
    listing = ctx.vault.cache
    raw: list[tuple[str, bytes | None, Path, int]] = [
        (str(p), None, p, 1) for p in listing.entries()
    ]
    for path in listing.packs():
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.add("cache_pack_bad", path, _unreadable(exc))
            continue
        if not pack_name_ok(path, data):
            report.add(
                "cache_pack_bad",
                path,
                f"content does not match its name (torn or edited); {CACHE_FIX}",
            )
            continue
        if not any(c.owns(path) for c in caches):
            report.add("cache_stale", path, "pack of another embedder (unused)", "warning")
            continue
        raw += [(f"{path}:{n}", line, path, n) for n, line in enumerate(data.splitlines(), 1)]
    if sample is not None and sample < len(raw):
        raw = sorted(random.Random(0).sample(raw, sample))
    for where, packed, path, number in raw:
        try:
            data = path.read_bytes() if packed is None else packed
            entry = loads(data, source=where, line=number)
            key = entry["key"]
            if key.count(":") != 2:
                raise InvalidInputError("key is not content:version:weights_hash")
            if packed is None:  # the name first: an edited key is damage, not staleness
                h = xxhash.xxh3_128_hexdigest(key.encode())
                if path.parent.name + path.stem != h:
                    raise InvalidInputError("file name does not match the key")
            owner = next((c for c in caches if c.owns_key(key)), None)
            if owner is None:
                report.add("cache_stale", where, "entry of another embedder (unused)", "warning")
                continue
            ctx.cache_entries.append((where, key, entry["source"], entry["vector"], owner))
        except (InvalidInputError, KeyError, TypeError, ValueError, AttributeError) as exc:
            report.add("cache_entry_bad", where, f"{exc}; {CACHE_FIX}")
        except OSError as exc:
            report.add("cache_entry_bad", where, _unreadable(exc))
    report.checked["cache_entries"] = len(raw)


def _unreadable(exc: OSError) -> str:
    """Why a cache file cannot be read, and the fix."""
    if exc.errno == errno.EISDIR:  # (not vault's: `vault gc` leaves it in place)
        return "a directory where a cache file belongs, not vault's: move it out"
    return f"cannot read ({exc.strerror}); {CACHE_FIX}"


def _check_cache(ctx: _Context, report: VerifyReport) -> None:
    """Each entry equals the rebuild's fresh vector of its item (and the item's grids), or,
    for an item the rebuild did not use, its recomputation from the entry's own source. A
    difference on an item the index uses is nondeterminism: cache hit and miss disagree."""
    for where, key, source, vector, owner in ctx.cache_entries:
        try:
            content = key.split(":")[0]
            fresh = ctx.fresh.fresh(key)
            if fresh is not None:
                if source != fresh[1]:
                    raise InvalidInputError("source differs from the stored reprs' grids")
                if vector != fresh[0]:
                    report.add(
                        "nondeterminism", where, "cached vector differs from a fresh computation"
                    )
                    raise InvalidInputError("vector differs from recomputation")
                continue
            cid, recomputed = source_vector(owner.embedder, source)
            if cid != content:
                raise InvalidInputError("key does not match the source")
            if vector != recomputed:
                raise InvalidInputError("vector differs from recomputation")
        except (InvalidInputError, KeyError, TypeError, ValueError, AttributeError) as exc:
            report.add("cache_entry_bad", where, f"{exc}; {CACHE_FIX}")


# --------------------------------------------------------------------------- 2. settings
# What a vault's root and ``index/`` may hold (FORMAT.md §1; ``index/format<N>.*``: the log
# and ``CURRENT`` ``vault upgrade`` moved aside, §3). Names starting with ``.`` are a
# writer's temporaries or markers (``.clone-partial``): a writer sweeps them, readers ignore
# them.
ROOT_ENTRIES = frozenset(
    (
        FORMAT_FILE,
        "config.toml",
        "lock",
        "objects",
        "audit",
        "index",
        "refs",
        "remotes",
        "embeddings",
    )
)
INDEX_ENTRY = re.compile(r"(?:format[0-9]+\.)?(?:CURRENT|generations\.jsonl)")
# ... and ``audit/``, ``refs/``, ``embeddings/`` (the view's three files and ``cache/``,
# whose content the cache checks read) and ``remotes/`` (``vault.handle``: the staging
# journal, a directory per remote name, each with its ``head``, ``packs/*.idx`` and
# ``rebase.jsonl``; a remote ``vault remote remove`` forgot keeps its directory).
AUDIT_ENTRIES = frozenset(("commits.jsonl",))
REFS_ENTRIES = frozenset(("mode.json",))
EMBEDDINGS_ENTRIES = frozenset((EMBEDDER_FILE, VECTORS_FILE, HASH_FILE, "cache"))
UNEXPECTED = "not part of a vault (FORMAT.md §1): vault never reads it; move it out"


def _settings(vault: Handle, report: VerifyReport) -> None:
    for link in vault.planted_symlinks():
        report.add(
            "symlink_planted",
            link,
            "is a symbolic link; vault never reads or writes through one (remove it)",
        )
    _unexpected(vault.root, ROOT_ENTRIES.__contains__, "root_unexpected", report)
    _unexpected(vault.generations.root, INDEX_ENTRY.fullmatch, "index_unexpected", report)
    _unexpected(vault.audit.path.parent, AUDIT_ENTRIES.__contains__, "audit_unexpected", report)
    _unexpected(vault.mode_path.parent, REFS_ENTRIES.__contains__, "refs_unexpected", report)
    _unexpected(
        vault.embeddings_dir, EMBEDDINGS_ENTRIES.__contains__, "embeddings_unexpected", report
    )
    _remotes(vault.root / REMOTES_DIR, report)
    _lock(vault.lock.path, report)
    fmt = vault.root / FORMAT_FILE
    try:
        if fmt.read_bytes() != format_bytes():
            report.add("format_invalid", fmt, "is not the format file of this tool's format")
    except OSError as exc:
        report.add("format_invalid", fmt, f"cannot read ({exc.strerror})")
    try:
        load_config(vault.config_path)
    except VaultError as exc:
        report.add("config_invalid", vault.config_path, str(exc))
    try:
        vault.mode_override()
    except VaultError as exc:
        report.add("mode_invalid", vault.mode_path, str(exc))


def _unexpected(
    directory: Path, expected: Callable[[str], object], kind: str, report: VerifyReport
) -> None:
    """Report each entry directly in ``directory`` that is not ``expected`` by name (an
    error, as ``object_unexpected`` is in ``objects/``)."""
    try:
        with os.scandir(directory) as it:
            names = sorted(e.name for e in it)
    except (FileNotFoundError, NotADirectoryError):
        return  # (a missing index/ is reported by the generation checks)
    for name in names:
        if not name.startswith(".") and not expected(name):
            report.add(kind, directory / name, UNEXPECTED)


def _remotes(root: Path, report: VerifyReport) -> None:
    """``remotes/`` holds the staging journal and a directory per remote name (not a link:
    sync writes there); each of those its ``head``, ``rebase.jsonl`` and ``packs/`` of pack
    indexes (FORMAT.md §1, §14). Anything else is ``remotes_unexpected``."""
    journal = staging.journal_path(root.parent)

    def is_dir(path: Path) -> bool:
        return path.is_dir() and not path.is_symlink()

    def entry(name: str) -> bool:
        return root / name == journal or (
            REMOTE_NAME.fullmatch(name) is not None and is_dir(root / name)
        )

    _unexpected(root, entry, "remotes_unexpected", report)
    try:
        with os.scandir(root) as it:
            names = sorted(e.name for e in it)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        remote = root / name
        if remote != journal and REMOTE_NAME.fullmatch(name) and is_dir(remote):
            _unexpected(remote, REMOTE_FILES.__contains__, "remotes_unexpected", report)
            if is_dir(remote / "packs"):
                packs = remote / "packs"
                _unexpected(packs, REMOTE_PACK_INDEX.fullmatch, "remotes_unexpected", report)


def _lock(path: Path, report: VerifyReport) -> None:
    """A directory where the lock file belongs makes every write fail (``open`` gives
    ``EISDIR``). Absent is fine (the next writer creates it); a link is reported as
    ``symlink_planted``."""
    try:
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return  # (absent; an unreadable root fails the other checks)
    if is_dir:
        report.add("lock_unusable", path, LOCK_IS_DIRECTORY)


# --------------------------------------------------------------------------- 3. objects
def _walk(root: Path) -> Iterator[tuple[str, str, str, bool]]:
    """(path, fan-out directory name, file name, is a regular file) of every entry under
    ``root``, sorted; a top-level entry that is not a directory comes with fan-out ``""``.
    ``scandir`` gives the file type without a ``stat`` per object (10^5 objects and more)."""
    if not root.is_dir():
        return
    with os.scandir(root) as it:
        fans = sorted(it, key=lambda e: e.name)
    for fan in fans:
        if fan.is_dir() and not fan.is_symlink():
            with os.scandir(fan.path) as it:
                files = sorted(it, key=lambda e: e.name)
            for f in files:
                yield f.path, fan.name, f.name, f.is_file() and not f.is_symlink()
        else:
            yield fan.path, "", fan.name, False


def _hash_files(paths: list[str]) -> list[str | OSError]:
    """The sha256 of each file (or why it cannot be read), in order."""
    out: list[str | OSError] = []
    for path in paths:
        try:
            out.append(sha256_hex(read_file(path)))
        except OSError as exc:
            out.append(OSError(exc.errno, exc.strerror))  # (picklable, as a worker sends it)
    return out


def _hashes(paths: list[str]) -> list[str | OSError]:
    """``_hash_files`` of ``paths``, on every core when there are many (in order)."""
    workers = min(os.cpu_count() or 1, HASH_WORKERS_MAX)
    if len(paths) >= HASH_PARALLEL_MIN and workers >= 2:
        chunks = [paths[i : i + HASH_CHUNK] for i in range(0, len(paths), HASH_CHUNK)]
        try:
            with mp.get_context("fork").Pool(workers, exit_with_parent, (os.getpid(),)) as pool:
                return [h for part in pool.imap(_hash_files, chunks) for h in part]
        except Exception:  # noqa: BLE001 - no workers: hash them here
            pass
    return _hash_files(paths)


def _objects(ctx: _Context, report: VerifyReport) -> None:
    root = ctx.vault.objects.root
    listing = list(_walk(root))
    to_hash = [
        path
        for path, fan, name, regular in listing
        if fan and regular and not name.startswith(".") and len(fan) == 2 and len(fan + name) == 64
    ]
    hashes = iter(_hashes(to_hash))
    try:
        staged = set(staging.listed(ctx.vault.root))
    except VaultError as exc:
        report.add("staging_journal_bad", staging.journal_path(ctx.vault.root), str(exc))
        staged = set()
    n = 0
    for path, fan, filename, regular in listing:
        name = fan + filename
        if filename.startswith("."):
            report.add(
                "leftover_temporary",
                path,
                "temporary file of an interrupted write (swept by `vault gc`)",
                "warning",
            )
            continue
        if not fan or len(fan) != 2 or len(name) != 64:
            report.add("object_unexpected", path, "not an object name")
            continue
        if not regular:
            report.add("object_unexpected", path, "not a regular file")
            ctx.bad_objects.add(name)
            continue
        n += 1
        ctx.objects.add(name)
        digest = next(hashes)
        if name in staged and (isinstance(digest, OSError) or digest != name):
            ctx.objects.discard(name)  # (named by a live audit entry: reported missing there)
            report.add(
                "object_staged_damaged",
                path,
                "staged by an interrupted pull, clone or write, never made durable, named by "
                "nothing (removed by the next write; a pull fetches it again)",
                "warning",
            )
            continue
        if isinstance(digest, OSError) and digest.errno == errno.ENOENT:
            ctx.objects.discard(name)  # deleted since it was listed (`vault gc` meanwhile):
            n -= 1  # not in the vault any more (what still names it reports it missing)
            continue
        if isinstance(digest, OSError):
            report.add("object_unreadable", path, f"cannot read ({digest.strerror})")
            ctx.bad_objects.add(name)
            continue
        if digest != name:
            report.add("object_hash_mismatch", path, "content does not match its address")
            ctx.bad_objects.add(name)
    report.checked["objects"] = n


# --------------------------------------------------------------------------- 4. audit log
def _audit(ctx: _Context, report: VerifyReport) -> None:
    path = ctx.vault.audit.path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        report.add("audit_missing", path, "audit log missing")
        return
    lines = data.split(b"\n")
    tail = lines.pop()
    if tail:
        report.add(
            "audit_torn_tail", path, "unterminated last line (repaired on next write)", "warning"
        )
    ok = True
    for number, line in enumerate(lines, start=1):
        try:
            obj = loads(line, source=f"{path}:{number}", line=number)
            if obj.get("seq") != number:
                raise InvalidInputError(f"expected seq {number}")
            if dumps_line(obj) != line + b"\n":
                raise InvalidInputError("not canonical JSON")
            if set(obj) - {CHECK} != {"seq", "op", "time", "records", "detail"}:
                raise InvalidInputError("unexpected fields")
            verify_check(obj)
        except (InvalidInputError, KeyError, TypeError, AttributeError) as exc:
            what = exc.unlocated() if isinstance(exc, InvalidInputError) else str(exc)
            report.add("audit_malformed", f"{path}:{number}", what)
            ok = False
    report.checked["audit_entries"] = len(lines)
    if not ok:
        return
    try:
        ctx.entries = ctx.vault.audit.entries()
    except CorruptionError as exc:  # (the message names the file and line: not twice)
        report.add("audit_malformed", exc.source or path, exc.detail)
        return
    except VaultError as exc:
        report.add("audit_malformed", path, str(exc))
        return
    reverted = reverted_in_effect(ctx.entries)
    for e in ctx.entries:
        if e.seq in reverted:
            continue  # gc may have collected a reverted write-back's records
        for digest in e.records:
            if digest not in ctx.objects and digest not in ctx.bad_objects:
                report.add("audit_missing_object", f"{path}:{e.seq}", f"record {digest} missing")


# --------------------------------------------------------------------------- 5. generations
def _generations(ctx: _Context, report: VerifyReport) -> None:
    vault = ctx.vault
    gens = vault.generations
    try:
        ctx.history = gens.history()
    except CorruptionError as exc:  # (the message names the file and line: not twice)
        report.add("generations_corrupt", exc.source or gens.log_path, exc.detail)
    except VaultError as exc:
        report.add("generations_corrupt", gens.log_path, str(exc))
    try:
        cur = gens.current()
    except VaultError as exc:
        report.add("ref_corrupt", gens.current_path, str(exc))
        return
    if cur is None:
        report.add("ref_missing", gens.current_path, "no current generation")
        return
    ctx.current = cur
    report.checked["generations"] = len(ctx.history)
    numbers = {g.number for g in ctx.history}
    listed = [g for g in ctx.history if g.number == cur.number]
    if not listed:  # (every generation CURRENT names was recorded first: an empty or
        # missing log lost its records)
        report.add(
            "ref_inconsistent",
            gens.current_path,
            f"generation {cur.number} is not in {gens.log_path.name}"
            + ("" if gens.log_path.exists() else " (the file is missing)"),
        )
    elif listed and listed[0].generation != cur.generation:
        report.add(
            "ref_inconsistent",
            gens.current_path,
            f"names {cur.generation[:12]} but record {cur.number} is {listed[0].generation[:12]}",
        )
    elif listed and cur.audit_seq < listed[0].audit_seq:
        report.add("ref_inconsistent", gens.current_path, "audit_seq is older than its record's")
    for g in ctx.history:
        if g.parent is not None and g.parent >= g.number:
            report.add(
                "generations_corrupt",
                gens.log_path,
                f"record {g.number}: parent {g.parent} is not an earlier record",
            )
    if ctx.entries is not None:
        last = ctx.entries[-1].seq if ctx.entries else 0
        if cur.audit_seq > last:
            report.add(
                "ref_inconsistent",
                gens.current_path,
                f"audit_seq {cur.audit_seq} is beyond the audit log (last {last})",
            )
        upto = [e for e in ctx.entries if e.seq <= cur.audit_seq]
        if tuple(sorted(reverted_in_effect(upto))) != cur.reverted:
            report.add(
                "ref_inconsistent",
                gens.current_path,
                "reverted set differs from the audit log's last rollback",
            )
        waiting = [e for e in ctx.entries if e.seq > cur.audit_seq and e.op in CHANGE_OPS]
        if waiting:
            report.add(
                "index_stale",
                gens.current_path,
                f"{counted(len(waiting), 'acknowledged operation')} not indexed yet (a crash); "
                "the next write or `vault index build` completes them",
                "warning",
            )
        for g in ctx.history:
            if g.audit_seq > last:
                report.add(
                    "generations_corrupt",
                    gens.log_path,
                    f"record {g.number}: audit_seq beyond the audit log",
                )
    for g in ctx.history:
        _complete(ctx, report, g.generation, f"generation {g.number}", g)
    if cur.number not in numbers:
        _complete(ctx, report, cur.generation, "current generation")


def _complete(
    ctx: _Context,
    report: VerifyReport,
    generation: str,
    what: str,
    record: IndexGeneration | None = None,
) -> None:
    """Report ``generation`` (of ``record``, when the log lists it) unless its manifest and
    every object of its closure are present. A record ``vault gc`` dropped while verify ran
    is not reported (``_collected``)."""
    objects = ctx.vault.objects
    path = objects.path(generation)
    problem: tuple[str, str] | None = None
    if generation in ctx.bad_objects or generation not in ctx.objects:
        problem = ("generation_unreadable", f"{what}: manifest missing or corrupt")
    else:
        try:
            data = Generation(objects, generation)
            m = data.manifest
            names = [m["state"], m["embedder"], *m["table"].values()]
            names += [m["weights"]] if "weights" in m else []
            names += [d for c in data.metas for d in (c.digest, c.matrix)]
            names += data.state_shards["concepts"] + data.state_shards["reprs"]
        except VaultError as exc:
            problem = ("generation_unreadable", f"{what}: {exc}")
        else:
            missing = sorted({d for d in names if d not in ctx.objects})
            if missing:
                problem = (
                    "generation_incomplete",
                    f"{what}: {counted(len(missing), 'object')} missing, e.g. {missing[0]}",
                )
    if problem is not None and not (record is not None and _collected(ctx, record)):
        report.add(problem[0], path, problem[1])


def _collected(ctx: _Context, record: IndexGeneration) -> bool:
    """True when ``vault gc`` dropped ``record`` after verify read the log (verify takes no
    lock: gc may run beside it): the log, read again, no longer lists it but still holds a
    newer record (gc keeps the newest, and drops records before it deletes their objects),
    and neither ``CURRENT`` nor a kept record names its generation. Then its missing
    objects are not damage. Asked only for a generation found incomplete; one the log
    still lists is reported."""
    gens = ctx.vault.generations
    try:
        history = gens.history()
        cur = gens.current()
    except VaultError:
        return False
    if not history or history[-1].number <= record.number:
        return False
    if cur is not None and (cur.number == record.number or cur.generation == record.generation):
        return False
    return all(g.number != record.number and g.generation != record.generation for g in history)


# --------------------------------------------------------------------------- 6. rebuild
def _rebuild(ctx: _Context, report: VerifyReport) -> None:
    vault, cur = ctx.vault, ctx.current
    if cur is None or ctx.entries is None:
        return
    path = vault.objects.path(cur.generation)
    try:
        stored = Generation(vault.objects, cur.generation)
    except VaultError:
        return  # reported by _generations
    entries = [e for e in ctx.entries if e.seq <= cur.audit_seq]
    try:  # every item computed afresh, once (the cache entries are compared with it later)
        plan_a = plan_full(entries, State(vault.objects), vault.records, ctx.fresh)
    except EmbeddingError as exc:  # weights this tool cannot run (the object checks say why)
        report.add("embedder_drift", path, f"{exc}: vectors not re-checked", "warning")
        return
    except VaultError as exc:
        report.add("rebuild_failed", vault.audit.path, str(exc))
        return
    gen_a, man_a, _ = plan_a.materialize()
    report.checked["concepts"] = plan_a.table.n
    m = stored.manifest
    if m["embedder_id"] != plan_a.embedder.identity():
        report.add(
            "embedder_drift",
            path,
            "built by another embedder: vectors not re-checked; `vault index build` re-embeds",
            "warning",
        )
        if man_a["state"] != m["state"]:
            report.add("state_mismatch", path, "differs from a fresh fold of the audit log")
        return
    if gen_a == cur.generation:
        return
    if man_a["state"] != m["state"]:
        bad = [
            i
            for i, (x, y) in enumerate(
                zip(
                    plan_a.state.shard_bytes()[0]["concepts"]
                    + plan_a.state.shard_bytes()[0]["reprs"],
                    stored.state_shards["concepts"] + stored.state_shards["reprs"],
                    strict=False,
                )
            )
            if x != y
        ]
        report.add(
            "state_mismatch",
            path,
            f"{counted(len(bad), 'state shard')} {'differs' if len(bad) == 1 else 'differ'} from a "
            "fresh fold of the audit log",
        )
    if man_a["table"]["rows"] != m["table"]["rows"]:
        report.add(
            "table_mismatch",
            vault.objects.path(m["table"]["rows"]),
            "table rows differ from a fresh build",
        )
    if man_a["table"]["matrix"] != m["table"]["matrix"]:
        where = vault.objects.path(m["table"]["matrix"])
        try:
            fresh, old = plan_a.table, stored.table
            bad = [
                i
                for i in range(min(fresh.n, old.n))
                if fresh.ref(i) != old.ref(i) or not np.array_equal(fresh.matrix[i], old.matrix[i])
            ]
            count = len(bad) + abs(fresh.n - old.n)
            where_s = f"{where} (row {bad[0] + 1}: {old.ref(bad[0])})" if bad else str(where)
        except VaultError:
            count, where_s = 0, str(where)
        report.add(
            "vector_mismatch",
            where_s,
            f"{counted(count, 'concept vector')} {'differs' if count == 1 else 'differ'} from "
            "re-embedding with the current embedder",
        )
    for name in ("embedder", "ann_hash", "counts"):
        if man_a[name] != m[name]:
            report.add("manifest_mismatch", path, f"{name} differs from a fresh build")
    if not [p for p in report.problems if p.kind.endswith("_mismatch")]:
        report.add("manifest_mismatch", path, "the generation id differs from a fresh build")


# --------------------------------------------------------------------------- 7. view
def _view(ctx: _Context, report: VerifyReport) -> None:
    """The view is derived data of the current generation (FORMAT §8): behind, missing
    or different, it is a warning — the next write or `vault index build` rewrites it."""
    vault, cur = ctx.vault, ctx.current
    if cur is None:
        return
    try:
        data = Generation(vault.objects, cur.generation)
        manifest = data.manifest
    except VaultError:
        return
    paths = vault.view.paths()
    for p in paths.values():
        if p.is_symlink() or not p.is_file():
            report.add("view_file_missing", p, "missing or not a plain file", "warning")
            return
    if not vault.view.current(vault.objects, manifest):
        report.add(
            "view_behind",
            paths[HASH_FILE],
            "does not show the current generation (an interrupted publish); the next "
            "write or `vault index build` refreshes it",
            "warning",
        )
        return
    try:
        table = data.table
        want = hashlib.sha256()
        for c in range(len(table.metas)):
            want.update(table.view_lines(int(table.starts[c]), int(table.starts[c + 1])))
        emb = vault.objects.get(manifest["embedder"])
    except VaultError:
        return  # (reported by the generation checks)
    for name, expected in (
        (VECTORS_FILE, want.hexdigest()),
        (EMBEDDER_FILE, sha256_hex(emb)),
    ):
        try:
            digest = sha256_hex(paths[name].read_bytes())
        except OSError as exc:
            report.add("view_file_missing", paths[name], f"cannot read ({exc.strerror})", "warning")
            continue
        if digest != expected:
            report.add(
                "view_file_mismatch",
                paths[name],
                "differs from the current generation's table (edited?); "
                "`vault index build` rewrites it",
                "warning",
            )
