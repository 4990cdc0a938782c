"""``Vault``: one vault directory — its paths, opening and creating it, its lock — and thin
methods over the operation modules (``writeback``, ``rollback``, ``gc``, ``verify``,
``retrieve``), which do the work."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault.canonical import dumps_line, loads
from vault.config import MODES, Config
from vault.config import default_text as default_config_text
from vault.config import load as load_config
from vault.embedding.cache import EmbeddingCache
from vault.errors import (
    CorruptionError,
    FormatError,
    InvalidInputError,
    NotAVaultError,
    UsageError,
)
from vault.index.generations import CurrentRef, Generations, IndexGeneration
from vault.index.view import View
from vault.store.audit import AuditLog
from vault.store.fs import (
    WriteLock,
    atomic_write,
    fsync_dir,
    refuse_symlinks,
    sweep_temporaries,
    unlink_durably,
)
from vault.store.objects import ObjectStore

if TYPE_CHECKING:
    from vault.gc import GcResult
    from vault.index.build import BuildResult, Progress
    from vault.index.snapshot import Snapshot
    from vault.retriever import Retriever
    from vault.rollback import RollbackResult
    from vault.verify import VerifyReport
    from vault.writeback import WriteResult

FORMAT_NAME = "concept-vault"
FORMAT_VERSION = 2
FORMAT_FILE = "format.json"

Clock = Callable[[], str]


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fixed_clock(epoch: int) -> Clock:
    """A clock frozen at ``epoch`` seconds (for reproducible vaults: SOURCE_DATE_EPOCH)."""
    text = _dt.datetime.fromtimestamp(epoch, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return lambda: text


class Vault:
    """A vault directory. Use ``Vault.open`` or ``Vault.init``.

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
        temporaries an interrupted writer left (``vault gc`` also sweeps the cache). Runs
        under the lock, before every write."""
        self.refuse_planted_symlinks()
        r = self.root
        sweep_temporaries(r, *(r / d for d in ("objects", "audit", "index", "refs", "embeddings")))

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
    def _refuse_package(root: Path) -> None:
        if (root / "__init__.py").exists() or (root / "pyproject.toml").exists():
            raise NotAVaultError(
                f"{root} is a Python package, not a vault (in a source checkout `vault/` is "
                "the library); pass --vault PATH or set VAULT_DIR"
            )

    @classmethod
    def open(cls, root: Path | str, *, clock: Clock | None = None, readonly: bool = False) -> Vault:
        root = Path(root)
        if not root.exists():
            raise NotAVaultError(f"{root}: no such directory; create a vault with `vault init`")
        if not root.is_dir():
            raise NotAVaultError(f"{root} is not a directory")
        cls._refuse_package(root)
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

    @classmethod
    def init(
        cls, root: Path | str, *, clock: Clock | None = None, embedder: str = "shipped"
    ) -> tuple[Vault, bool]:
        """Create a vault (or open the existing one); returns (vault, created).

        A new vault starts with the shipped fitted embedder (``vault.embedding.shipped``:
        its weights object stored in ``objects/`` and chosen by an ``embedder`` audit entry
        after ``init``); ``embedder="builtin"`` keeps the hand-set one. The vault is built
        in a temporary sibling directory and renamed into place, so a crash never leaves a
        half-made vault behind."""
        from vault.index.build import build_all

        root = Path(root)
        if (root / FORMAT_FILE).exists():
            return cls.open(root, clock=clock), False
        if root.exists():
            if not root.is_dir():
                raise NotAVaultError(f"{root} exists and is not a directory")
            cls._refuse_package(root)
            if any(root.iterdir()):
                raise NotAVaultError(f"{root} is not empty and not a vault; choose another path")
        root.parent.mkdir(parents=True, exist_ok=True)
        import tempfile

        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.init-"))
        try:
            os.chmod(tmp, 0o755)
            staged = cls(tmp, clock=clock)
            for sub in ("objects", "audit", "index", "refs", "embeddings/cache"):
                (tmp / sub).mkdir(parents=True, exist_ok=True)
            (tmp / "lock").touch()
            atomic_write(staged.config_path, default_config_text().encode())
            staged.audit.append("init", staged.clock(), [], {"format": FORMAT_VERSION})
            if embedder != "builtin":
                if embedder != "shipped":
                    raise ValueError(f"embedder must be shipped or builtin, not {embedder!r}")
                from vault.embedding import shipped

                digest = staged.objects.put(shipped.weights_bytes())
                staged.audit.append("embedder", staged.clock(), [], {"embedder": digest})
            build_all(staged, "init", parent=None)
            atomic_write(tmp / FORMAT_FILE, format_bytes())
            try:
                os.rename(tmp, root)  # replaces an empty directory, fails on a non-empty one
            except OSError:
                if (root / FORMAT_FILE).exists():  # another process made it meanwhile
                    return cls.open(root, clock=clock), False
                raise
            fsync_dir(root.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return cls(root, clock=clock), True

    @classmethod
    def upgrade(cls, root: Path | str, *, clock: Clock | None = None) -> tuple[int, int]:
        """Bring a vault of an older format to this tool's: records, the audit log, the
        config and the cache are kept; the index is rebuilt from the audit log as a new
        first generation (the old generation list is kept aside in ``index/``). Returns
        (old format, new format); a vault already current is left untouched."""
        from vault.index.build import build_all

        root = Path(root)
        cls._refuse_package(root)
        fmt = root / FORMAT_FILE
        if not fmt.is_file():
            raise NotAVaultError(f"{root} is not a vault (no {FORMAT_FILE})")
        version = read_format(fmt)
        if version > FORMAT_VERSION:
            raise FormatError(
                f"{fmt} says vault format {version}; this tool knows {FORMAT_VERSION}: "
                "upgrade the tool"
            )
        if version == FORMAT_VERSION:
            return version, version
        vault = cls(root, clock=clock)
        with vault.lock:
            index = root / "index"
            for name in ("generations.jsonl", "CURRENT"):
                old = index / name
                if old.exists():
                    os.replace(old, index / f"format{version}.{name}")
            build_all(vault, "upgrade", parent=None)
            vault.audit.append(
                "upgrade", vault.clock(), [], {"from": version, "to": FORMAT_VERSION}
            )
            atomic_write(fmt, format_bytes())
        return version, FORMAT_VERSION

    # ----------------------------------------------------------------- reading
    def config(self) -> Config:
        """config.toml with the kill switch (``vault rollback --mode``) applied to ``mode``."""
        cfg = load_config(self.config_path)
        mode = self.mode_override()
        return cfg.with_overrides(mode=mode) if mode else cfg

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
        from vault.index.snapshot import open_current

        return open_current(self.objects, self.generations)

    def stale(self) -> bool:
        """True when acknowledged write-backs or rollbacks are not in the current index yet."""
        from vault.index.build import is_stale

        cur = self.current_ref(tolerant=True)
        return cur is None or is_stale(self.audit.entries_after(cur.audit_seq))

    def concept_card(
        self, concept: str, version: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(state entry, card) of ``concept`` at ``version`` (default: the newest)."""
        snap = self.snapshot()
        _, entry = snap.entry(concept, version)
        return entry, self.objects.get_json(entry["card"])

    # ----------------------------------------------------------------- write-back
    def add(self, cards: Iterable[tuple[Any, str]], *, fork: bool = False) -> WriteResult:
        """Store concept cards (``(object, source)`` pairs); all are checked before any write.

        An id+version already stored with the same content is left as is; with different
        content it is refused. ``fork`` stores each card as the next minor version of its id,
        unless the newest version already holds that content (then it is left as is).
        """
        return self.write_back(cards=cards, fork=fork, op="fork" if fork else "add")

    def add_evidence(self, items: Iterable[tuple[Any, str]]) -> WriteResult:
        """Store evidence records (positive or negative) about stored concept versions."""
        return self.write_back(evidence=items, op="evidence")

    def write_back(
        self,
        cards: Iterable[tuple[Any, str]] = (),
        evidence: Iterable[tuple[Any, str]] = (),
        *,
        fork: bool = False,
        op: str = "add",
        detail: dict[str, Any] | None = None,
        reprs: Iterable[dict[str, Any]] = (),
    ) -> WriteResult:
        """One write-back (see ``vault.writeback.write_back``)."""
        from vault.writeback import write_back

        return write_back(self, cards, evidence, fork=fork, op=op, detail=detail, reprs=reprs)

    def set_status(
        self, concept: str, version: str, status: str, reason: str | None = None
    ) -> WriteResult:
        from vault.writeback import set_status

        return set_status(self, concept, version, status, reason)

    # ----------------------------------------------------------------- index
    def build_index(self, progress: Progress | None = None) -> BuildResult:
        """``vault index build``: the whole index from the audit log, as a new generation."""
        from vault.index.build import build_all, catch_up

        with self.lock:
            parent = catch_up(self, repair=True).number
            result = build_all(self, "build", parent, progress)
            self.audit.append(
                "index_build",
                self.clock(),
                [],
                {"generation": result.generation, "changed": result.changed},
            )
            return result

    def retriever(
        self, *, config: Config | None = None, refresh_every: int | None = None
    ) -> Retriever:
        """A handle for a solver's loop: the current snapshot, opened once (see
        ``vault.retriever``)."""
        from vault.retriever import Retriever

        return Retriever(self, config=config, refresh_every=refresh_every)

    def rollback(self, to: str | None = None) -> RollbackResult:
        from vault.rollback import rollback

        return rollback(self, to)

    def gc(
        self, keep: int | None = None, *, cache: bool = False, dry_run: bool = False
    ) -> GcResult:
        from vault.gc import gc

        return gc(self, keep, cache=cache, dry_run=dry_run)

    def verify(self, *, sample: int | None = None) -> VerifyReport:
        from vault.verify import verify

        return verify(self, sample=sample)

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
        raise NotAVaultError(f"{fmt} names format {name!r}, not {FORMAT_NAME!r}: not a vault")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise NotAVaultError(f"{fmt}: invalid format version {version!r}")
    return version
