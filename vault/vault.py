"""``Vault``: one vault on disk, and every write-back operation.

Each write-back (add, fork, evidence, status change, import) runs under the vault's
write lock: validate everything first, store the new objects, append one audit line
(the acknowledgement), then bring the index up to date incrementally — one new index
generation per command, byte-identical to what ``vault index build`` makes from scratch.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault.canonical import canonical_bytes, dumps_line, loads, loads_trusted, sha256_hex
from vault.config import MODES, Config
from vault.config import default_text as default_config_text
from vault.config import load as load_config
from vault.embedding import embedder
from vault.embedding.cache import EmbeddingCache
from vault.embedding.vectors import (
    EmbeddingFiles,
    VectorLines,
    concept_vector,
    split_vector_lines,
    vector_line,
)
from vault.errors import (
    ConflictError,
    CorruptionError,
    FormatError,
    InvalidInputError,
    NotAVaultError,
    NotFoundError,
    UsageError,
    VaultError,
)
from vault.grid.reprs import repr_id, strip_provenance
from vault.index import symbolic as symbolic
from vault.index.generations import (
    CurrentRef,
    Generations,
    IndexGeneration,
    read_manifest,
    write_generation,
)
from vault.records.cards import (
    normalize_card,
    normalize_evidence,
    parse_version,
    ref,
    status_event,
    version_text,
)
from vault.store.audit import STATE_OPS, AuditEntry, AuditLog
from vault.store.fs import WriteLock, atomic_write, fsync_dir
from vault.store.objects import ObjectStore

FORMAT_NAME = "concept-vault"
FORMAT_VERSION = 1
FORMAT_FILE = "format.json"

Clock = Callable[[], str]
Progress = Callable[[int, int], None]


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fixed_clock(epoch: int) -> Clock:
    """A clock frozen at ``epoch`` seconds (for reproducible vaults: SOURCE_DATE_EPOCH)."""
    text = _dt.datetime.fromtimestamp(epoch, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return lambda: text


@dataclass(frozen=True)
class WriteResult:
    """What a write-back did."""

    op: str
    added: list[str] = field(default_factory=list)  # refs or evidence ids newly stored
    unchanged: list[str] = field(default_factory=list)
    audit_seq: int | None = None
    generation: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "added": self.added,
            "unchanged": self.unchanged,
            "audit_seq": self.audit_seq,
            "generation": self.generation,
        }


@dataclass(frozen=True)
class BuildResult:
    generation: str
    number: int
    concepts: int
    changed: bool
    counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "number": self.number,
            "concepts": self.concepts,
            "changed": self.changed,
            "counts": self.counts,
        }


@dataclass(frozen=True)
class Plan:
    """An index computed but not yet stored: what a generation will hold."""

    index: dict[str, Any]
    vectors: VectorLines
    audit_seq: int
    reverted: tuple[int, ...]


def reverted_in_effect(entries: list[AuditEntry]) -> frozenset[int]:
    """Audit seqs left out of the state by the last rollback among ``entries``."""
    for e in reversed(entries):
        if e.op == "rollback":
            return frozenset(e.detail.get("reverted", ()))
    return frozenset()


@dataclass
class Loaded:
    """The current generation, loaded for reading or incremental update."""

    ref: CurrentRef
    manifest: dict[str, Any]
    index: dict[str, Any]


class Vault:
    """A vault directory. Use ``Vault.open`` or ``Vault.init``."""

    def __init__(self, root: Path, *, clock: Clock | None = None):
        self.root = Path(root)
        self.clock = clock or utc_now
        self.objects = ObjectStore(self.root / "objects")
        self.audit = AuditLog(self.root / "audit" / "commits.jsonl")
        self.generations = Generations(self.root / "index")
        self.embeddings_dir = self.root / "embeddings"
        self.files = EmbeddingFiles(self.embeddings_dir)
        self.cache = EmbeddingCache(self.embeddings_dir / "cache")
        self.lock = WriteLock(self.root / "lock")
        self.config_path = self.root / "config.toml"
        self.mode_path = self.root / "refs" / "mode.json"

    # ----------------------------------------------------------------- open / init
    @staticmethod
    def _refuse_package(root: Path) -> None:
        if (root / "__init__.py").exists() or (root / "pyproject.toml").exists():
            raise NotAVaultError(
                f"{root} is a Python package, not a vault (in a source checkout `vault/` is "
                "the library); pass --vault PATH or set VAULT_DIR"
            )

    @classmethod
    def open(cls, root: Path | str, *, clock: Clock | None = None) -> Vault:
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
        try:
            info = loads(fmt.read_bytes(), source=str(fmt))
            name, version = info["format"], info["version"]
        except (InvalidInputError, KeyError, TypeError) as exc:
            raise NotAVaultError(f"{fmt} is unreadable ({exc})") from None
        if name != FORMAT_NAME:
            raise NotAVaultError(f"{root} holds a {name!r}, not a {FORMAT_NAME}")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise FormatError(
                f"{root} has vault format {version}; this vault tool reads format "
                f"{FORMAT_VERSION} and older: upgrade the tool"
            )
        return cls(root, clock=clock)

    @classmethod
    def init(cls, root: Path | str, *, clock: Clock | None = None) -> tuple[Vault, bool]:
        """Create a vault (or open the existing one); returns (vault, created).

        The vault is built in a temporary sibling directory and renamed into place, so a
        crash never leaves a half-made vault behind."""
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
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.init-"))
        try:
            os.chmod(tmp, 0o755)
            staged = cls(tmp, clock=clock)
            for sub in ("objects", "audit", "index", "refs", "embeddings/cache"):
                (tmp / sub).mkdir(parents=True, exist_ok=True)
            (tmp / "lock").touch()
            atomic_write(staged.config_path, default_config_text().encode())
            staged.audit.append("init", staged.clock(), [], {"format": FORMAT_VERSION})
            staged._publish(staged.full_index(), "init")
            atomic_write(
                tmp / FORMAT_FILE, dumps_line({"format": FORMAT_NAME, "version": FORMAT_VERSION})
            )
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

    # ----------------------------------------------------------------- reading
    def config(self) -> Config:
        """config.toml with the kill switch (``vault rollback --mode``) applied to ``mode``."""
        cfg = load_config(self.config_path)
        mode = self.mode_override()
        return cfg.with_overrides(mode=mode) if mode else cfg

    def mode_override(self) -> str | None:
        try:
            obj = loads(self.mode_path.read_bytes(), source=str(self.mode_path))
        except FileNotFoundError:
            return None
        except InvalidInputError as exc:
            raise CorruptionError(str(exc)) from None
        mode = obj.get("mode") if isinstance(obj, dict) else None
        if mode not in MODES:
            raise CorruptionError(f"{self.mode_path}: invalid mode {mode!r}")
        return str(mode)

    def load_current(self) -> Loaded:
        cur = self.generations.current()
        if cur is None:
            raise CorruptionError(
                f"{self.root}: no current index generation; run `vault index build`"
            )
        manifest = read_manifest(self.objects, cur.generation)
        try:  # not memoized: a write-back updates this index in place
            data = self.objects.get(manifest["symbolic"])
            try:
                index = loads_trusted(data)
            except ValueError:
                index = self.objects.get_json(manifest["symbolic"])
        except (InvalidInputError, NotFoundError) as exc:
            raise CorruptionError(
                f"generation {cur.generation}: symbolic index unreadable ({exc})"
            ) from None
        return Loaded(cur, manifest, index)

    def concept_card(
        self, concept: str, version: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(index entry, card) of ``concept`` at ``version`` (default: the newest)."""
        index = self.load_current().index
        if version is None:
            versions = symbolic.versions_of(index, concept)
            if not versions:
                raise NotFoundError(f"unknown concept {concept!r}")
            version = versions[-1]
        entry = index["concepts"].get(ref(concept, version))
        if entry is None:
            raise NotFoundError(f"unknown concept version {ref(concept, version)}")
        return entry, self.objects.get_json(entry["card"])

    # ----------------------------------------------------------------- write-back
    def add(self, cards: Iterable[tuple[Any, str]], *, fork: bool = False) -> WriteResult:
        """Store concept cards (``(object, source)`` pairs); all are checked before any write.

        An id+version already stored with the same content is left as is; with different
        content it is refused. ``fork`` stores each card as the next minor version of its id.
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
        """One write-back: cards and evidence (which may cite those cards) as one audit entry
        and one new index generation. Everything is validated before anything is written.
        ``reprs`` are reprs made by ``grid_to_repr`` that the evidence cites by id."""
        norm_cards = [(normalize_card(obj, src), src) for obj, src in cards]
        norm_ev = [(normalize_evidence(obj, src), src) for obj, src in evidence]
        with self.lock:
            loaded = self._catch_up()
            index = loaded.index
            new_cards, unchanged = self._plan_cards(index, norm_cards, fork)
            known = set(index["concepts"]) | set(new_cards)
            given = {repr_id(r): canonical_bytes(strip_provenance(r)) for r in reprs}
            new_ev, new_reprs, unchanged_ev = self._plan_evidence(index, known, norm_ev, given)
            added = list(new_cards) + list(new_ev)
            if not added:
                return WriteResult(op, [], unchanged + unchanged_ev)
            digests = self.objects.put_many(
                list(new_reprs.values())
                + [d for _, d in new_cards.values()]
                + list(new_ev.values())
            )
            info = detail or ({"concepts": list(new_cards)} if new_cards else {})
            if new_ev:
                info = {**info, "evidence": len(new_ev)}
            return self._commit(op, digests, added, unchanged + unchanged_ev, info, loaded)

    def _plan_cards(
        self, index: dict[str, Any], cards: list[tuple[dict[str, Any], str]], fork: bool
    ) -> tuple[dict[str, tuple[dict[str, Any], bytes]], list[str]]:
        concepts = index["concepts"]
        new: dict[str, tuple[dict[str, Any], bytes]] = {}
        unchanged = []
        for card, src in cards:
            if fork:
                card = self._forked(index, card, src, new)
            name = ref(card["id"], card["version"])
            data = canonical_bytes(card)
            if name in new:
                if new[name][1] != data:
                    raise ConflictError(f"{src}: {name} appears twice with different content")
                continue
            existing = concepts.get(name)
            if existing is not None:
                if self.objects.get(existing["card"]) == data:
                    unchanged.append(name)
                    continue
                raise ConflictError(
                    f"{src}: {name} is already stored with different content; a changed card "
                    f"is a new version: bump 'version' or use --fork"
                )
            new[name] = (card, data)
        return new, unchanged

    def _forked(
        self, index: dict[str, Any], card: dict[str, Any], src: str, pending: dict[str, Any]
    ) -> dict[str, Any]:
        versions = [parse_version(v) for v in symbolic.versions_of(index, card["id"])]
        versions += [
            parse_version(c["version"]) for c, _ in pending.values() if c["id"] == card["id"]
        ]
        if not versions:
            raise NotFoundError(f"{src}: cannot fork {card['id']!r}: no stored version (use add)")
        top = max(versions)
        forked = dict(card)
        forked["version"] = version_text((top[0], top[1] + 1, 0))
        forked["provenance"] = {
            **card["provenance"],
            "forked_from": ref(card["id"], version_text(top)),
        }
        return normalize_card(forked, src)

    def _plan_evidence(
        self,
        index: dict[str, Any],
        known: set[str],
        items: list[tuple[Any, str]],
        given: dict[str, bytes],
    ) -> tuple[dict[str, bytes], dict[str, bytes], list[str]]:
        new: dict[str, bytes] = {}
        reprs: dict[str, bytes] = {}
        unchanged = []
        for ev, src in items:
            name = ref(ev.record["concept"], ev.record["version"])
            if name not in known:
                raise NotFoundError(f"{src}: evidence for unknown concept version {name}")
            for rep in ev.reprs:
                reprs[repr_id(rep)] = canonical_bytes(rep)
            for rid, needs_grid in _repr_refs(ev.record):
                if rid in given:
                    reprs[rid] = given[rid]
                elif rid not in reprs:
                    self._check_stored_repr(rid, needs_grid, src)
            data = canonical_bytes(ev.record)
            digest = sha256_hex(data)
            stored = index["concepts"].get(name, {}).get("evidence", ())
            if digest in stored or digest in new:
                unchanged.append(digest)
                continue
            new[digest] = data
        return new, reprs, unchanged

    def set_status(
        self, concept: str, version: str, status: str, reason: str | None = None
    ) -> WriteResult:
        event = status_event(concept, version, status, reason)
        with self.lock:
            loaded = self._catch_up()
            name = ref(concept, version)
            entry = loaded.index["concepts"].get(name)
            if entry is None:
                raise NotFoundError(f"unknown concept version {name}")
            if entry["status"] == status:
                return WriteResult("status", [], [name])
            digest = self.objects.put(canonical_bytes(event))
            return self._commit(
                "status", [digest], [name], [], {"concept": name, "status": status}, loaded
            )

    def _check_stored_repr(self, rid: str, needs_grid: bool, src: str) -> None:
        if not self.objects.has(rid):
            raise NotFoundError(f"{src}: unknown repr id {rid}")
        rep = self.objects.get_record(rid)
        if not isinstance(rep, dict) or rep.get("kind") != "repr":
            raise InvalidInputError(f"{rid} is not a repr", source=src)
        if needs_grid and "grid" not in rep:
            raise InvalidInputError(f"repr {rid} has no grid; a pair needs grids", source=src)

    def _commit(
        self,
        op: str,
        digests: list[str],
        added: list[str],
        unchanged: list[str],
        detail: dict[str, Any],
        base: Loaded,
    ) -> WriteResult:
        """Compute the new index first (bad data fails here, before anything is
        acknowledged), then append the audit line, then publish the generation.
        ``base`` is the caught-up current generation (its index is updated in place)."""
        entry = AuditEntry(self.audit.last_seq() + 1, op, self.clock(), tuple(digests), detail)
        plan = self._incremental(base.ref, entry, base) or self.full_index(extra=entry)
        self.audit.append_entry(entry)
        build = self._publish(plan, op)
        return WriteResult(op, added, unchanged, entry.seq, build.generation)

    # ----------------------------------------------------------------- index
    def _catch_up(self) -> Loaded:
        """Under the lock: the current generation, first brought up to the audit log."""
        if self.stale():
            self._publish(self._plan(), "catch-up")
        return self.load_current()

    def build_index(self, progress: Progress | None = None) -> BuildResult:
        """``vault index build``: the whole index from scratch, as a new generation."""
        with self.lock:
            result = self._publish(self.full_index(progress), "build")
            self.audit.append(
                "index_build",
                self.clock(),
                [],
                {"generation": result.generation, "changed": result.changed},
            )
            return result

    def full_index(
        self,
        progress: Progress | None = None,
        *,
        upto: int | None = None,
        cache: EmbeddingCache | None | bool = True,
        extra: AuditEntry | None = None,
    ) -> Plan:
        """The index built from scratch without writing anything: the audit log (up to
        ``upto``; plus ``extra``) folded, minus entries a rollback reverted, every concept
        embedded."""
        entries = [e for e in self.audit.entries() if upto is None or e.seq <= upto]
        if extra is not None:
            entries.append(extra)
        use = self.cache if cache is True else None if cache is False else cache
        reverted = reverted_in_effect(entries)
        index = symbolic.build([e for e in entries if e.seq not in reverted], self.objects)
        vectors: VectorLines = {}
        total = len(index["concepts"])
        for i, (name, entry) in enumerate(sorted(index["concepts"].items()), start=1):
            vector = concept_vector(entry, self.objects, use)
            vectors[name] = vector_line(entry["id"], entry["version"], vector)
            if progress:
                progress(i, total)
        return Plan(index, vectors, entries[-1].seq if entries else 0, tuple(sorted(reverted)))

    def _current(self, *, tolerant: bool = False) -> CurrentRef | None:
        """The current ref; with ``tolerant`` a corrupted ref counts as none (rebuilds)."""
        try:
            return self.generations.current()
        except CorruptionError:
            if tolerant:
                return None
            raise

    def _plan(self, extra: AuditEntry | None = None) -> Plan:
        """The index brought up to the audit log (plus ``extra``): incrementally from the
        current generation when it can be, else from scratch."""
        cur = self._current(tolerant=True)
        plan = None if cur is None else self._incremental(cur, extra)
        return plan if plan is not None else self.full_index(extra=extra)

    def _publish(self, plan: Plan, op: str) -> BuildResult:
        """Store ``plan`` as a generation and make it current (under the lock)."""
        gen, manifest = write_generation(self.objects, plan.index, plan.vectors)
        self.files.write(
            self.objects, manifest["embedder"], manifest["vectors"], manifest["ann_hash_file"]
        )
        last = self.generations.last()
        cur = self._current(tolerant=True)
        if cur is not None and cur.generation == gen:
            number, changed = cur.number, False
        elif last is not None and last.generation == gen:
            number, changed = last.number, True
        else:
            number, changed = (last.number + 1 if last else 1), True
            self.generations.append(
                IndexGeneration(
                    number,
                    gen,
                    self.clock(),
                    plan.audit_seq,
                    op,
                    manifest["counts"],
                    embedder.identity(),
                    plan.reverted,
                )
            )
        self.generations.set_current(CurrentRef(gen, number, plan.audit_seq, plan.reverted))
        return BuildResult(gen, number, len(plan.index["concepts"]), changed, manifest["counts"])

    def _incremental(
        self, cur: CurrentRef, extra: AuditEntry | None, base: Loaded | None = None
    ) -> Plan | None:
        """``cur`` with the newer audit entries (and ``extra``) applied, re-embedding only the
        concepts they touch; None when a full build is needed (other embedder, unreadable
        generation, a rollback among the new entries). ``base``, if given, is ``cur``
        already loaded; its index is updated in place."""
        entries = self._entries_after(cur.audit_seq) + ([extra] if extra is not None else [])
        if any(e.op == "rollback" for e in entries):
            return None
        try:
            manifest = base.manifest if base else read_manifest(self.objects, cur.generation)
            if manifest.get("embedder_id") != embedder.identity():
                return None
            index = base.index if base else self.objects.get_json(manifest["symbolic"], check=True)
            vectors = split_vector_lines(self.objects.get(manifest["vectors"], check=True))
        except (VaultError, ValueError):
            return None
        touched: set[str] = set()
        for entry in entries:
            touched |= symbolic.apply(index, entry, self.objects)
        for name in sorted(touched):
            entry_ = index["concepts"][name]
            vector = concept_vector(entry_, self.objects, self.cache)
            vectors[name] = vector_line(entry_["id"], entry_["version"], vector)
        seq = entries[-1].seq if entries else cur.audit_seq
        return Plan(index, vectors, seq, cur.reverted)

    def _entries_after(self, seq: int) -> list[AuditEntry]:
        return self.audit.entries_after(seq)

    def stale(self) -> bool:
        """True when state-changing audit entries are not in the current generation."""
        cur = self._current(tolerant=True)
        if cur is None:
            return True
        return any(e.op in STATE_OPS for e in self._entries_after(cur.audit_seq))

    # ----------------------------------------------------------------- housekeeping
    def set_mode(self, mode: str | None) -> None:
        """The kill switch: make ``mode`` the retrieval default (None: back to config.toml)."""
        if mode is not None and mode not in MODES:
            raise UsageError(f"invalid mode {mode!r} (expected {' | '.join(MODES)})")
        with self.lock:
            if mode is None:
                self.mode_path.unlink(missing_ok=True)
            else:
                atomic_write(self.mode_path, dumps_line({"mode": mode}))
            self.audit.append("mode", self.clock(), [], {"mode": mode})


def _repr_refs(ev: dict[str, Any]) -> list[tuple[str, bool]]:
    """(repr id, whether its grid is needed) for each repr an evidence record cites."""
    out = [(ev["repr_id"], False)] if "repr_id" in ev else []
    if "pair" in ev:
        out += [(ev["pair"]["input"], True), (ev["pair"]["output"], True)]
    return out
