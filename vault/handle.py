"""The bottom handle: one vault directory — its paths and format, its lock, its config and
kill switch, the audit log, the object store and cache, and opening the current snapshot.

It imports no operation: the operations (``vault.ops``, ``vault.index.build``) and
retrieval take a ``Handle`` and do the work; ``vault.vault.Vault`` is the facade over them
(see ARCHITECTURE.md)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Self

from vault.canonical import dumps_line, loads
from vault.config import MODES, Config, load_declared
from vault.config import load as load_config
from vault.embedding.cache import EmbeddingCache
from vault.errors import (
    CorruptionError,
    FormatError,
    InvalidInputError,
    NotAVaultError,
    UsageError,
    json_value,
)
from vault.index.generations import CurrentRef, Generations, IndexGeneration
from vault.index.snapshot import Snapshot, open_current
from vault.index.view import View
from vault.records.keys import Declared
from vault.store import staging
from vault.store.audit import STATE_OPS, AuditEntry, AuditLog
from vault.store.fs import (
    WriteLock,
    atomic_write,
    refuse_symlinks,
    sweep_temporaries,
    unlink_durably,
)
from vault.store.objects import ObjectStore

FORMAT_NAME = "concept-vault"
FORMAT_VERSION = 3
FORMAT_FILE = "format.json"

CHANGE_OPS = STATE_OPS | {"rollback"}  # audit entries that change what the index must hold

Clock = Callable[[], str]


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fixed_clock(epoch: int) -> Clock:
    """A clock frozen at ``epoch`` seconds (for reproducible vaults: SOURCE_DATE_EPOCH)."""
    text = _dt.datetime.fromtimestamp(epoch, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return lambda: text


def is_stale(entries: Iterable[AuditEntry]) -> bool:
    """True when one of ``entries`` changes what the index must hold."""
    return any(e.op in CHANGE_OPS for e in entries)


# ``remotes/`` (FORMAT.md §1, §14): the staging journal ``staged`` and one directory per
# remote name, holding ``head``, ``packs/<sha256>.idx`` and, while a sync re-applies its
# tail, ``rebase.jsonl`` (``vault.remote`` writes them; ``vault verify`` checks the layout).
REMOTES_DIR = "remotes"
REMOTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
REMOTE_FILES = frozenset(("head", "packs", "rebase.jsonl"))
REMOTE_PACK_INDEX = re.compile(r"[0-9a-f]{64}\.idx")


class Handle:
    """A vault directory. Use ``Handle.open`` (``vault.ops.create`` makes one).

    ``readonly`` vaults never write a byte (``vault verify`` opens them so): no objects, no
    cache entries, no lock file."""

    def __init__(self, root: Path, *, clock: Clock | None = None, readonly: bool = False):
        self.root = Path(root)
        self.clock = clock or utc_now
        self.readonly = readonly
        self.objects = ObjectStore(self.root / "objects", readonly=readonly)
        self.audit = AuditLog(self.root / "audit" / "commits.jsonl")
        self.objects.on_repair = self._log_repair
        self.generations = Generations(self.root / "index")
        self.embeddings_dir = self.root / "embeddings"
        self.view = View(self.embeddings_dir)
        self.cache = EmbeddingCache(self.embeddings_dir / "cache", writable=not readonly)
        self.lock = WriteLock(self.root / "lock", on_acquire=self.check_layout)
        self.config_path = self.root / "config.toml"
        self.mode_path = self.root / "refs" / "mode.json"

    def check_layout(self) -> None:
        """Refuse to write when a symbolic link was planted inside the vault, then sweep the
        temporaries an interrupted writer left (``vault gc`` also sweeps the cache) and
        recheck the objects an interrupted pull, clone or write staged
        (``vault.store.staging``). Runs under the lock, before every write."""
        self.refuse_planted_symlinks()
        r = self.root
        dirs = ("objects", "audit", "index", "refs", "embeddings", "remotes")  # (the journal's)
        sweep_temporaries(r, *(r / d for d in dirs))
        staging.recover(self.objects, r)

    @contextlib.contextmanager
    def report_lock(self) -> Iterator[None]:
        """The write lock for a command that only reports what it would do (``gc
        --dry-run``, which deletes nothing): the layout is checked, but the temporaries are
        not swept nor staged objects rechecked (``check_layout``)."""
        saved = self.lock.on_acquire
        self.lock.on_acquire = self.refuse_planted_symlinks
        try:
            with self.lock:
                yield
        finally:
            self.lock.on_acquire = saved

    def put_objects(self, items: list[tuple[str, bytes]]) -> None:
        """Store ``(sha256, bytes)`` pairs durably (under the lock): many new ones staged
        and made durable by one ``syncfs`` (``vault.store.staging.put_durably``)."""
        staging.put_durably(self.objects, self.root, items)

    def refuse_planted_symlinks(self) -> None:
        """Raise when a symbolic link sits where vault keeps a directory or file it writes
        to: it must never write outside its root. Changes nothing."""
        refuse_symlinks(*self.planted_symlinks()[:1])

    def planted_symlinks(self) -> list[Path]:
        """The symbolic links sitting where vault keeps a directory or file (``verify``
        reports each; writers refuse)."""
        r = self.root
        dirs = [r / d for d in ("objects", "audit", "index", "refs", "embeddings")]
        dirs += [self.cache.root, self.cache.packs_dir]
        files = [
            self.audit.path,
            self.generations.current_path,
            self.generations.log_path,
            self.config_path,
            self.mode_path,
            r / FORMAT_FILE,
            r / "lock",
            *self.view.paths().values(),
        ]
        found = [p for p in (*dirs, *files) if p.is_symlink()]
        for parent in (self.objects.root, self.cache.root):
            if parent.is_symlink():
                continue
            try:
                with os.scandir(parent) as it:
                    found += sorted(Path(e.path) for e in it if e.is_symlink())
            except (FileNotFoundError, NotADirectoryError):
                continue
        return found

    def _log_repair(self, digests: list[str]) -> None:
        """A damaged object file was rewritten (FORMAT §3): one audit line ``repair``."""
        with self.lock:
            self.audit.append("repair", self.clock(), [], {"objects": digests})

    def records(self, digest: str) -> Any:
        """A stored record, parsed (memoized; do not mutate it)."""
        return self.objects.get_record(digest)

    # ----------------------------------------------------------------- open / init
    @staticmethod
    def refuse_package(root: Path) -> None:
        if (root / "__init__.py").exists() or (root / "pyproject.toml").exists():
            raise NotAVaultError(
                f"{root} is a Python package, not a vault (in a source checkout `vault/` is "
                "the library); pass --vault PATH or set VAULT_DIR"
            )

    @classmethod
    def open(cls, root: Path | str, *, clock: Clock | None = None, readonly: bool = False) -> Self:
        root = Path(root)
        if not root.exists():
            raise NotAVaultError(f"{root}: no such directory; create a vault with `vault init`")
        if not root.is_dir():
            raise NotAVaultError(f"{root} is not a directory")
        cls.refuse_package(root)
        fmt = root / FORMAT_FILE
        if not fmt.is_file():
            raise NotAVaultError(
                f"{root} is not a vault (no {FORMAT_FILE}); run `vault init {root}`"
            )
        version = read_format(fmt)
        if version > FORMAT_VERSION:
            raise FormatError(
                f"{fmt} says vault format {version}; this vault tool reads format "
                f"{FORMAT_VERSION}: upgrade the tool"
            )
        if version < FORMAT_VERSION:
            raise FormatError(
                f"{fmt} says vault format {version}, older than this tool's "
                f"{FORMAT_VERSION}: run `vault upgrade --vault {root}` (keeps every record "
                "and the audit log, rebuilds the index)"
            )
        return cls(root, clock=clock, readonly=readonly)

    # ----------------------------------------------------------------- reading
    def config(self) -> Config:
        """config.toml with the kill switch (``vault rollback --mode``) applied to ``mode``."""
        cfg = load_config(self.config_path)
        mode = self.mode_override()
        return cfg.with_overrides(mode=mode) if mode else cfg

    def declared(self) -> Declared:
        """The key names config.toml's ``[keys]`` adds to the closed families."""
        names = load_declared(self.config_path)
        return Declared(**names)

    def mode_override(self) -> str | None:
        try:
            data = self.mode_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CorruptionError(f"{self.mode_path}: cannot read ({exc.strerror})") from None
        try:
            obj = loads(data, source=str(self.mode_path))
        except InvalidInputError as exc:
            raise CorruptionError(str(exc)) from None
        mode = obj.get("mode") if isinstance(obj, dict) else None
        if mode not in MODES or data != dumps_line({"mode": mode}):
            raise CorruptionError(
                f'{self.mode_path}: invalid kill switch (expected {{"mode": ...}} with one '
                f"of {', '.join(MODES)}); `vault rollback --mode config` removes it"
            )
        return str(mode)

    def current_ref(self, *, tolerant: bool = False) -> CurrentRef | None:
        """``index/CURRENT``; with ``tolerant`` a corrupted one counts as none."""
        try:
            return self.generations.current()
        except CorruptionError:
            if tolerant:
                return None
            raise

    def last_record(self, *, tolerant: bool = False) -> IndexGeneration | None:
        try:
            return self.generations.last()
        except CorruptionError:
            if tolerant:
                return None
            raise

    def snapshot(self) -> Snapshot:
        """The current generation, as one immutable snapshot (no catch-up, no lock)."""
        return open_current(self.objects, self.generations)

    def stale(self) -> bool:
        """True when acknowledged write-backs or rollbacks are not in the current index yet."""
        cur = self.current_ref(tolerant=True)
        return cur is None or is_stale(self.audit.entries_after(cur.audit_seq))

    def concept_card(
        self, concept: str, version: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(state entry, card) of ``concept`` at ``version`` (default: the newest); the
        card's bytes checked against its address (a damaged one: ``CorruptionError``)."""
        snap = self.snapshot()
        _, entry = snap.entry(concept, version)
        return entry, self.objects.get_json(entry["card"], check=True)

    # ----------------------------------------------------------------- housekeeping
    def set_mode(self, mode: str | None) -> None:
        """The kill switch: make ``mode`` the retrieval default (None: back to config.toml)."""
        if mode is not None and mode not in MODES:
            raise UsageError(f"invalid mode {mode!r} (expected {' | '.join(MODES)})")
        with self.lock:
            try:
                before: bytes | None = self.mode_path.read_bytes()
            except FileNotFoundError:
                before = None
            try:
                if mode is None:
                    unlink_durably([self.mode_path])  # refs/ fsynced before the audit line
                else:
                    atomic_write(self.mode_path, dumps_line({"mode": mode}))
                self.audit.append("mode", self.clock(), [], {"mode": mode})
            except OSError:  # not acknowledged: put the switch back as it was
                with contextlib.suppress(OSError):
                    if before is None:
                        unlink_durably([self.mode_path])
                    else:
                        atomic_write(self.mode_path, before)
                raise


def format_bytes(version: int = FORMAT_VERSION) -> bytes:
    return dumps_line({"format": FORMAT_NAME, "version": version})


def read_format(fmt: Path) -> int:
    """The format version in ``format.json`` (an integer ≥ 1), or a clear error."""
    try:
        info = loads(fmt.read_bytes(), source=str(fmt))
        name, version = info["format"], info["version"]
    except (InvalidInputError, KeyError, TypeError, OSError) as exc:
        raise NotAVaultError(f"{fmt} is unreadable ({exc})") from None
    if name != FORMAT_NAME:
        raise NotAVaultError(
            f"{fmt} names format {json_value(name)}, not {json_value(FORMAT_NAME)}: not a vault"
        )
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise NotAVaultError(f"{fmt}: invalid format version {json_value(version)}")
    return version


def find_vault(start: Path) -> Path | None:
    """Which vault a command means when none is named: the nearest directory at or above
    ``start`` holding a concept vault's ``format.json`` (of any format version, so that an
    old vault is found and `vault upgrade` suggested), or None — as git and dvc find their
    repository. Paths are not resolved: a vault reached through a symlink is named as it
    was."""
    here = start if start.is_absolute() else Path.cwd() / start
    for directory in (here, *here.parents):
        fmt = directory / FORMAT_FILE
        if fmt.is_file():
            try:
                read_format(fmt)
            except NotAVaultError:
                continue
            return directory
    return None
