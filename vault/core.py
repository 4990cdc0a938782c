"""``Vault``: one vault on disk, and every write-back operation.

Each write-back (add, fork, evidence, status change, import) runs under the vault's
write lock: validate everything first, store the new objects, append one audit line
(the acknowledgement), then bring the index up to date incrementally — one new index
generation per command, byte-identical to what ``vault index build`` makes from scratch.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import embedder
from . import index as symbolic
from .audit import STATE_OPS, AuditEntry, AuditLog
from .canonical import canonical_bytes, dumps_line, loads, sha256_hex
from .config import MODES, Config
from .config import default_text as default_config_text
from .config import load as load_config
from .embeddings import EmbeddingCache, EmbeddingFiles, concept_vector, parse_vectors
from .errors import (
    ConflictError,
    CorruptionError,
    FormatError,
    InvalidInputError,
    NotAVaultError,
    NotFoundError,
    UsageError,
    VaultError,
)
from .generations import CurrentRef, Generations, IndexGeneration, read_manifest, write_generation
from .records import (
    normalize_card,
    normalize_evidence,
    parse_version,
    ref,
    status_event,
    version_text,
)
from .reprs import repr_id, strip_provenance
from .store import ObjectStore, WriteLock, atomic_write

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
        return {"op": self.op, "added": self.added, "unchanged": self.unchanged,
                "audit_seq": self.audit_seq, "generation": self.generation}  # fmt: skip


@dataclass(frozen=True)
class BuildResult:
    generation: str
    number: int
    concepts: int
    changed: bool
    counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"generation": self.generation, "number": self.number, "concepts": self.concepts,
                "changed": self.changed, "counts": self.counts}  # fmt: skip


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
            raise NotAVaultError(f"{root} is not a vault (no {FORMAT_FILE}); run `vault init {root}`")
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
        """Create a vault (or open the existing one); returns (vault, created)."""
        root = Path(root)
        if (root / FORMAT_FILE).exists():
            return cls.open(root, clock=clock), False
        if root.exists():
            if not root.is_dir():
                raise NotAVaultError(f"{root} exists and is not a directory")
            cls._refuse_package(root)
            if any(root.iterdir()):
                raise NotAVaultError(f"{root} is not empty and not a vault; choose another path")
        root.mkdir(parents=True, exist_ok=True)
        vault = cls(root, clock=clock)
        with vault.lock:
            for sub in ("objects", "audit", "index", "refs", "embeddings/cache"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            atomic_write(vault.config_path, default_config_text().encode())
            vault.audit.append("init", vault.clock(), [], {"format": FORMAT_VERSION})
            vault._refresh("init")
            # format.json last: a vault is only a vault once it is complete
            atomic_write(root / FORMAT_FILE, dumps_line({"format": FORMAT_NAME,
                                                         "version": FORMAT_VERSION}))  # fmt: skip
        return vault, True

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
            raise CorruptionError(f"{self.root}: no current index generation; run `vault index build`")
        manifest = read_manifest(self.objects, cur.generation)
        try:
            index = self.objects.get_json(manifest["symbolic"])
        except (InvalidInputError, NotFoundError) as exc:
            raise CorruptionError(f"generation {cur.generation}: symbolic index unreadable ({exc})") from None
        return Loaded(cur, manifest, index)

    def concept_card(self, concept: str, version: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
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
            index = self._catch_up().index
            new_cards, unchanged = self._plan_cards(index, norm_cards, fork)
            known = set(index["concepts"]) | set(new_cards)
            given = {repr_id(r): canonical_bytes(strip_provenance(r)) for r in reprs}
            new_ev, new_reprs, unchanged_ev = self._plan_evidence(index, known, norm_ev, given)
            added = list(new_cards) + list(new_ev)
            if not added:
                return WriteResult(op, [], unchanged + unchanged_ev)
            digests = self.objects.put_many(
                list(new_reprs.values()) + [d for _, d in new_cards.values()] + list(new_ev.values())
            )
            info = detail or ({"concepts": list(new_cards)} if new_cards else {})
            if new_ev:
                info = {**info, "evidence": len(new_ev)}
            return self._commit(op, digests, added, unchanged + unchanged_ev, info)

    def _plan_cards(self, index: dict[str, Any], cards: list[tuple[dict[str, Any], str]],
                    fork: bool) -> tuple[dict[str, tuple[dict[str, Any], bytes]], list[str]]:  # fmt: skip
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

    def _forked(self, index: dict[str, Any], card: dict[str, Any], src: str,
                pending: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        versions = [parse_version(v) for v in symbolic.versions_of(index, card["id"])]
        versions += [parse_version(c["version"]) for c, _ in pending.values() if c["id"] == card["id"]]
        if not versions:
            raise NotFoundError(f"{src}: cannot fork {card['id']!r}: no stored version (use add)")
        top = max(versions)
        forked = dict(card)
        forked["version"] = version_text((top[0], top[1] + 1, 0))
        forked["provenance"] = {**card["provenance"], "forked_from": ref(card["id"], version_text(top))}
        return normalize_card(forked, src)

    def _plan_evidence(self, index: dict[str, Any], known: set[str], items: list[tuple[Any, str]],
                       given: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, bytes], list[str]]:  # fmt: skip
        new: dict[str, bytes] = {}
        reprs: dict[str, bytes] = {}
        unchanged = []
        for ev, src in items:
            name = ref(ev.record["concept"], ev.record["version"])
            if name not in known:
                raise NotFoundError(f"{src}: evidence for unknown concept version {name}")
            for rep in ev.reprs:
                reprs[repr_id(rep)] = canonical_bytes(rep)
            for rid in _repr_refs(ev.record):
                if rid in given:
                    reprs[rid] = given[rid]
                elif rid not in reprs and not self.objects.has(rid):
                    raise NotFoundError(f"{src}: unknown repr id {rid}")
            data = canonical_bytes(ev.record)
            digest = sha256_hex(data)
            stored = index["concepts"].get(name, {}).get("evidence", ())
            if digest in stored or digest in new:
                unchanged.append(digest)
                continue
            new[digest] = data
        return new, reprs, unchanged

    def set_status(self, concept: str, version: str, status: str, reason: str | None = None) -> WriteResult:
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
            return self._commit("status", [digest], [name], [], {"concept": name, "status": status})

    def _commit(self, op: str, digests: list[str], added: list[str], unchanged: list[str],
                detail: dict[str, Any]) -> WriteResult:  # fmt: skip
        entry = self.audit.append(op, self.clock(), digests, detail)
        build = self._refresh(op)
        return WriteResult(op, added, unchanged, entry.seq, build.generation)

    # ----------------------------------------------------------------- index
    def _catch_up(self) -> Loaded:
        """Under the lock: the current generation, first brought up to the audit log."""
        if self.stale():
            self._refresh("catch-up")
        return self.load_current()

    def build_index(self, progress: Progress | None = None) -> BuildResult:
        """``vault index build``: the whole index from scratch, as a new generation."""
        with self.lock:
            result = self._refresh("build", full=True, progress=progress)
            self.audit.append("index_build", self.clock(), [],
                              {"generation": result.generation, "changed": result.changed})  # fmt: skip
            return result

    def full_index(self, progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, tuple[str, str, list[int]]], int]:
        """(symbolic index, vectors, audit seq) built from scratch, without writing anything."""
        entries = self.audit.entries()
        index = symbolic.build(entries, self.objects)
        vectors = {}
        total = len(index["concepts"])
        for i, (name, entry) in enumerate(sorted(index["concepts"].items()), start=1):
            vectors[name] = (entry["id"], entry["version"], concept_vector(entry, self.objects, self.cache))
            if progress:
                progress(i, total)
        return index, vectors, entries[-1].seq if entries else 0

    def _refresh(self, op: str, *, full: bool = False, progress: Progress | None = None) -> BuildResult:
        """Bring the index up to the audit log (under the lock) and make it current."""
        cur = self.generations.current() if self.generations.current_path.exists() else None
        plan = None if full or cur is None else self._incremental_plan(cur)
        if plan is None:
            index, vectors, seq = self.full_index(progress)
        else:
            index, vectors, seq = plan
        gen, manifest = write_generation(self.objects, index, vectors)
        self.files.write(self.objects, manifest["embedder"], manifest["vectors"], manifest["ann_hash_file"])
        history = self.generations.history()
        if cur is not None and cur.generation == gen:
            number, changed = cur.number, False
        elif history and history[-1].generation == gen:
            number, changed = history[-1].number, cur is None or cur.generation != gen
        else:
            number, changed = len(history) + 1, True
            self.generations.append(IndexGeneration(number, gen, self.clock(), seq, op,
                                                    manifest["counts"], embedder.identity()))  # fmt: skip
        self.generations.set_current(CurrentRef(gen, number, seq))
        return BuildResult(gen, number, len(index["concepts"]), changed, manifest["counts"])

    def _incremental_plan(self, cur: CurrentRef) -> tuple[dict[str, Any], dict[str, tuple[str, str, list[int]]], int] | None:
        """Index and vectors of ``cur`` with the newer audit entries applied; None means
        a full build is needed (other embedder, unreadable generation)."""
        try:
            manifest = read_manifest(self.objects, cur.generation)
            if manifest.get("embedder_id") != embedder.identity():
                return None
            index = self.objects.get_json(manifest["symbolic"], check=True)
            refs, matrix = parse_vectors(self.objects.get(manifest["vectors"], check=True), "vectors")
        except VaultError:
            return None
        vectors = {}
        for name, row in zip(refs, matrix.tolist(), strict=True):
            cid, ver = name.rsplit("@", 1)
            vectors[name] = (cid, ver, row)
        entries = [e for e in self._entries_after(cur.audit_seq)]
        touched: set[str] = set()
        for entry in entries:
            touched |= symbolic.apply(index, entry, self.objects)
        for name in sorted(touched):
            entry_ = index["concepts"][name]
            vectors[name] = (entry_["id"], entry_["version"], concept_vector(entry_, self.objects, self.cache))
        seq = entries[-1].seq if entries else cur.audit_seq
        return index, vectors, seq

    def _entries_after(self, seq: int) -> list[AuditEntry]:
        return [e for e in self.audit.entries() if e.seq > seq]

    def stale(self) -> bool:
        """True when state-changing audit entries are not in the current generation."""
        cur = self.generations.current()
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


def _repr_refs(ev: dict[str, Any]) -> list[str]:
    out = [ev["repr_id"]] if "repr_id" in ev else []
    if "pair" in ev:
        out += [ev["pair"]["input"], ev["pair"]["output"]]
    return out

