"""The embedding cache under ``embeddings/cache/``: standalone vectors of reprs and pairs.

Two kinds of file, both holding canonical entries ``{"key", "source", "vector"}``; the key
``content_id:embedder_version:weights_hash`` is checked on every read, so a hash collision
or a stale entry is a miss, never a wrong vector:

* ``cache/ab/<xxh3-128>.json`` — one entry (what ``retrieve`` and ``embed`` compute);
* ``cache/packs/<version>-<weights_hash[:16]>-<sha256[:32]>.jsonl`` — many entries, one
  canonical line each, sorted by key: a write-back, a build, a batch or a retriever's
  loop writes all it computed as one pack (one file instead of thousands). Packs are read
  by full builds and verify (``load_packs``); ``vault gc`` merges them and drops other
  embedders' ones.

The cache is rebuildable: writes are atomic but not fsynced, and any unreadable, torn or
mismatching entry is a miss — a pack whose bytes do not match its name is not read at all.
After a power cut, ``vault verify`` names each such file and ``vault gc --cache`` drops
it. A read-only cache (``vault verify``) never writes.
"""

from __future__ import annotations

import contextlib
import re
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import xxhash

from vault.canonical import canonical_bytes, loads, loads_trusted, sha256_hex
from vault.embedding import DIM, Embedder, builtin
from vault.errors import InvalidInputError
from vault.memo import BoundedMemo, MiB
from vault.store.fs import atomic_write

PACK_NAME = re.compile(
    r"^(?P<version>[0-9.]+)-(?P<weights>[0-9a-f]{16})-(?P<sha>[0-9a-f]{32})\.jsonl$"
)
# Bounded in bytes, so a long solver loop or a --batch over thousands of tasks stays flat:
MEMO_BYTES = 16 * MiB  # vectors remembered per cache (int8 bytes + key: ~350 B an entry)
PENDING_BYTES = 32 * MiB  # a bulk run's collected lines, written as a pack when above this

Pending = tuple[bytes, bytes]  # an entry on its way to a pack: (canonical line, int8 vector)


def pair_id(in_id: str, out_id: str) -> str:
    return sha256_hex(f"pair:{in_id}:{out_id}".encode())


def is_vector(v: Any) -> bool:
    return (
        isinstance(v, list)
        and len(v) == DIM
        and all(isinstance(x, int) and not isinstance(x, bool) and -127 <= x <= 127 for x in v)
    )


_is_vector = is_vector  # the name other modules imported


class EmbeddingCache:
    """Standalone vectors of reprs and pairs of one embedder, keyed by content id + that
    embedder's identity (default: the built-in one; ``bound`` gives another's)."""

    def __init__(self, root: Path, *, writable: bool = True, embedder: Embedder | None = None):
        self.root = root
        # a link planted where the cache lives is neither read nor written (verify says so)
        self.planted = root.is_symlink()
        self.writable = writable and not self.planted
        self.embedder: Embedder = embedder or builtin.EMBEDDER
        self._memo: BoundedMemo[str, bytes] = BoundedMemo(MEMO_BYTES)
        self._packed: dict[str, bytes] | None = None  # (a full build's: int8 vectors by key)
        self._pending: dict[str, Pending] | None = None  # (pack line, int8 vector) by key
        self._pending_bytes = 0
        self._bulk_depth = 0
        self._siblings: dict[str, EmbeddingCache] = {}
        self._family: list[EmbeddingCache] = [self]  # this and the caches bound from it

    def bound(self, embedder: Embedder) -> EmbeddingCache:
        """The cache of ``embedder`` over the same directory (this one if it is ours)."""
        if self._suffix(embedder) == self._suffix(self.embedder):
            return self
        suffix = self._suffix(embedder)
        sibling = self._siblings.get(suffix)
        if sibling is None:
            sibling = self._sibling(embedder)
            sibling._family = self._family
            self._family.append(sibling)
            self._siblings[suffix] = sibling
        return sibling

    def _sibling(self, embedder: Embedder) -> EmbeddingCache:
        return EmbeddingCache(self.root, writable=self.writable, embedder=embedder)

    @staticmethod
    def _suffix(embedder: Embedder) -> str:
        return f"{embedder.version}:{embedder.weights_hash}"

    def key(self, content: str) -> str:
        return f"{content}:{self.embedder.version}:{self.embedder.weights_hash}"

    def owns_key(self, key: str) -> bool:
        """True when ``key`` is one of this cache's embedder."""
        return key.endswith(f":{self._suffix(self.embedder)}")

    def owns(self, path: Path) -> bool:
        """True when the pack at ``path`` holds this cache's embedder's entries."""
        m = PACK_NAME.match(path.name)
        return bool(
            m
            and m["version"] == self.embedder.version
            and m["weights"] == self.embedder.weights_hash[:16]
        )

    def path(self, key: str) -> Path:
        h = xxhash.xxh3_128_hexdigest(key.encode())
        return self.root / h[:2] / f"{h[2:]}.json"

    @property
    def packs_dir(self) -> Path:
        return self.root / "packs"

    # -------------------------------------------------------------- reading
    def get(self, content: str) -> list[int] | None:
        key = self.key(content)
        packed = self._memo.get(key)
        if packed is None and self._packed is not None:
            packed = self._packed.get(key)
        if packed is not None:
            return _unpack(packed)
        hit = self._read_single(key)
        if hit is not None:
            self._remember(key, hit)
        return hit

    def _remember(self, key: str, vector: list[int]) -> None:
        self._memo.put(key, _pack(vector), 2 * len(key) + 300)

    def _read_single(self, key: str) -> list[int] | None:
        if self.planted:
            return None
        try:
            entry = loads(self.path(key).read_bytes())
        except (OSError, InvalidInputError):  # missing, unreadable or corrupt: a miss
            return None
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
        vector = entry.get("vector")
        return [int(x) for x in vector] if isinstance(vector, list) and is_vector(vector) else None

    def load_packs(self) -> None:
        """Read every pack of the running embedder (full builds call this once); a pack
        whose bytes do not match its name (torn by a power cut, edited) is not read."""
        if self._packed is not None:
            return
        packed: dict[str, bytes] = {}
        for path in [] if self.planted else self.packs():
            if self.owns(path):
                for key, (_, vector) in (read_pack(path) or {}).items():
                    packed[key] = _pack(vector)
        self._packed = packed

    # -------------------------------------------------------------- writing
    def put(self, content: str, source: dict[str, Any], vector: list[int]) -> None:
        key = self.key(content)
        entry = {"key": key, "source": source, "vector": vector}
        if self._pending is not None:  # (remembered there)
            self.add_pending({key: (canonical_bytes(entry) + b"\n", _pack(vector))})
            return
        self._remember(key, vector)
        if not self.writable:
            return
        path = self.path(key)
        if self.root.is_symlink() or path.parent.is_symlink():
            return  # never write through a link planted in the cache (verify reports it)
        # a cache is rebuildable: atomic, but no fsync on the hot path; a full disk is a miss
        with contextlib.suppress(OSError):
            atomic_write(path, canonical_bytes(entry), durable=False)

    @contextlib.contextmanager
    def bulk(self) -> Iterator[None]:
        """Collect the entries put meanwhile and write them as one pack at the end (or one
        pack each time ``PENDING_BYTES`` of them are collected). The packs a full build
        loaded are forgotten when it ends."""
        outer = self._bulk_depth == 0
        self._bulk_depth += 1
        try:
            if outer and self.writable:
                self._pending, self._pending_bytes = {}, 0
            yield
            if outer and self._pending is not None:
                self._write_lines(self._pending)
        finally:
            self._bulk_depth -= 1
            if outer:
                self._pending, self._pending_bytes = None, 0
                for cache in self._family:  # (load_packs read them for one build)
                    cache._packed = None

    def take_pending(self) -> dict[str, Pending]:
        """The entries collected by ``bulk`` since the last take, as (pack line, int8 vector)
        by key (a batch's worker process sends them to its parent, whose ``bulk`` writes
        them)."""
        if self._pending is None:
            return {}
        taken, self._pending, self._pending_bytes = self._pending, {}, 0
        return taken

    def add_pending(self, entries: dict[str, Pending]) -> None:
        """Entries (by key) computed here or by a worker process: remembered, and written
        with this ``bulk``'s packs — at once when ``PENDING_BYTES`` are collected."""
        for key, (line, vector) in entries.items():
            self._memo.put(key, vector, 2 * len(key) + 300)
            if self._pending is not None:
                old = self._pending.get(key)
                self._pending_bytes += len(line) - (len(old[0]) if old else 0)
                self._pending[key] = (line, vector)
        if self._pending is not None and self._pending_bytes > PENDING_BYTES:
            self._write_lines(self._pending)  # bounded: this much goes to disk now
            self._pending, self._pending_bytes = {}, 0

    def write_pack(self, entries: dict[str, tuple[Any, list[int]]]) -> Path | None:
        """Write ``entries`` (``(source, vector)`` by key) as one pack; its path, or None
        when nothing was written (no entries, a planted link, a full disk)."""
        return self._write_lines(
            {
                key: (
                    canonical_bytes({"key": key, "source": src, "vector": vec}) + b"\n",
                    _pack(vec),
                )
                for key, (src, vec) in entries.items()
            }
        )

    def _write_lines(self, lines: dict[str, Pending]) -> Path | None:
        if not lines:
            return None
        data = b"".join(line for _, (line, _) in sorted(lines.items()))
        emb = self.embedder
        name = f"{emb.version}-{emb.weights_hash[:16]}-{sha256_hex(data)[:32]}.jsonl"
        path = self.packs_dir / name
        if self.root.is_symlink() or self.packs_dir.is_symlink():
            return None
        if not self.root.parent.is_dir():  # the vault is gone (a retriever flushing at exit)
            return None
        with contextlib.suppress(OSError):
            if not path.exists():
                atomic_write(path, data, durable=False)
            if self._packed is not None:
                for key, (_, vector) in lines.items():
                    self._packed[key] = vector
            return path
        return None

    # -------------------------------------------------------------- listing
    def entries(self) -> Iterable[Path]:
        """Single-entry files, sorted."""
        if self.root.is_dir():
            yield from sorted(self.root.glob("*/*.json"))

    def packs(self) -> list[Path]:
        if not self.packs_dir.is_dir():
            return []
        return sorted(p for p in self.packs_dir.iterdir() if not p.name.startswith("."))


def _pack(vector: list[int]) -> bytes:
    """A vector as 64 int8 bytes (64 B in memory instead of ~1 KB as a list of ints)."""
    return array("b", vector).tobytes()


def _unpack(data: bytes) -> list[int]:
    return array("b", data).tolist()


def pack_name_ok(path: Path, data: bytes) -> bool:
    m = PACK_NAME.match(path.name)
    return bool(m and m["sha"] == sha256_hex(data)[:32])


def read_pack(path: Path) -> dict[str, tuple[Any, list[int]]] | None:
    """The entries of the pack at ``path`` by key — ``(source, vector)`` — or None when it
    cannot be read or its bytes do not match its name (torn or edited: nothing of it is
    trusted). A line that is not an entry is left out (``vault verify`` names it). The one
    pack parser: builds (``load_packs``) and ``vault gc`` (merging) read packs with it."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not pack_name_ok(path, data):
        return None
    out: dict[str, tuple[Any, list[int]]] = {}
    for line in data.splitlines():
        try:
            entry = loads_trusted(line)
            key, source, vector = entry["key"], entry["source"], entry["vector"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(key, str) and is_vector(vector):
            out[key] = (source, vector)
    return out


class FreshCache(EmbeddingCache):
    """An in-memory cache that never reads or writes disk: every item is computed once,
    afresh, and remembered with its source (what ``vault verify`` compares entries with;
    it lives for one verify and holds one vector per item of the vault)."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        super().__init__(Path("/nonexistent"), writable=False, embedder=embedder)
        self.vectors: dict[str, list[int]] = {}
        self.sources: dict[str, dict[str, Any]] = {}

    def _sibling(self, embedder: Embedder) -> EmbeddingCache:
        return FreshCache(embedder)

    def get(self, content: str) -> list[int] | None:
        return self.vectors.get(self.key(content))

    def put(self, content: str, source: dict[str, Any], vector: list[int]) -> None:
        key = self.key(content)
        self.vectors[key] = vector
        self.sources[key] = source

    def load_packs(self) -> None:
        self._packed = {}

    def fresh(self, key: str) -> tuple[list[int], dict[str, Any]] | None:
        vector = self.vectors.get(key)
        return None if vector is None else (vector, self.sources.get(key, {}))
