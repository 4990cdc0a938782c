"""Content-addressed, write-once objects under ``objects/``.

Layout (see FORMAT.md): ``objects/ab/cdef...`` holds the bytes whose sha256 is
``abcdef...``; an object is written once (temp file, fsync, hard link into place, fsync
the directory) and never overwritten. Mutable files (refs, logs) are replaced atomically
with ``atomic_write`` under the vault's write lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vault.canonical import canonical_bytes, loads, loads_trusted, sha256_hex
from vault.errors import CorruptionError, NotFoundError
from vault.store.fs import fsync_dir, naming

HEX = frozenset("0123456789abcdef")
READ_MORE = 1 << 20  # (a file that grows while read: never an object)
SYNC_BATCH = 64  # above this many new objects, one sync() replaces per-file fsyncs
MEMO_BYTES = 64 << 20  # parsed records remembered per store (estimated bytes)
PARSED_BYTES = 8  # a parsed JSON record weighs up to ~7x its bytes (tracemalloc, a 30x30 repr)


def is_digest(text: str) -> bool:
    return len(text) == 64 and set(text) <= HEX


def read_file(path: str) -> bytes:
    """A whole file, by plain system calls: a build reads 10^5 small records, and
    ``open()``'s buffered file object cost twice the reading itself."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        want = os.fstat(fd).st_size + 1  # one read for the whole file; +1 sees it end
        chunks = []
        while chunk := os.read(fd, want):
            chunks.append(chunk)
            want = READ_MORE
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ObjectStore:
    """Content-addressed, write-once object files under ``root/objects``."""

    def __init__(self, root: Path, *, memo_bytes: int = MEMO_BYTES, readonly: bool = False):
        self.root = root
        self._prefix = f"{root}/"
        self.readonly = readonly
        # Parsed objects are immutable, so a small memo saves re-reading them within one
        # process (a build reads each repr once per concept that cites it). verify reads
        # with check=True, which bypasses the memo.
        self._memo: dict[str, Any] = {}
        self._memo_max = memo_bytes  # bounded in bytes (estimated), not entries
        self._memo_bytes = 0

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return is_digest(digest) and self.path(digest).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; return its sha256. Existing objects are left untouched."""
        digest = sha256_hex(data)
        new_dir = self._put(data, digest)
        if new_dir is not None:
            fsync_dir(new_dir)
        return digest

    def put_many(self, datas: list[bytes]) -> list[str]:
        """Store several objects durably; return their digests."""
        items = [(sha256_hex(d), d) for d in datas]
        self.put_digested(items)
        return [digest for digest, _ in items]

    def put_digested(self, items: list[tuple[str, bytes]]) -> None:
        """Store ``(sha256, bytes)`` pairs durably (the caller computed each digest from its
        bytes). Small batches fsync each file; large ones write all files and then make them
        durable with one ``sync()`` (much cheaper than one fsync per file). Each new fan-out
        directory is fsynced once."""
        batch = len(items) > SYNC_BATCH
        dirs: set[Path] = set()
        wrote = False
        for digest, data in items:
            new_dir = self._put(data, digest, durable=not batch)
            if new_dir is not None:
                dirs.add(new_dir)
                wrote = True
        if batch and wrote:
            with naming(self.root):
                os.sync()
        for d in sorted(dirs):
            fsync_dir(d)

    def _put(self, data: bytes, digest: str | None = None, durable: bool = True) -> Path | None:
        if self.readonly:
            raise PermissionError(f"{self.root}: opened read-only")
        digest = digest or sha256_hex(data)
        final = self.path(digest)
        if final.exists():
            return None
        if not final.parent.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True)
            fsync_dir(final.parent.parent)
        # the temporary lives in objects/ itself, so the next writer finds a killed one's
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        os.fchmod(fd, 0o444)  # objects are read-only: embeddings/ files are links to them
        try:
            with naming(final), os.fdopen(fd, "wb") as f:
                f.write(data)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            try:
                os.link(tmp, final)  # fails if present: an object is never overwritten
            except FileExistsError:
                pass
            except OSError as exc:  # filesystems without hard links
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                if not final.exists():
                    os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return final.parent

    def put_json(self, obj: Any) -> str:
        return self.put(canonical_bytes(obj))

    def get(self, digest: str, *, check: bool = False) -> bytes:
        if not is_digest(digest):
            raise NotFoundError(f"not an object address: {digest!r}")
        try:
            data = read_file(f"{self._prefix}{digest[:2]}/{digest[2:]}")  # (hot: no Path)
        except FileNotFoundError:
            raise NotFoundError(f"object {digest} is missing") from None
        except OSError as exc:
            raise CorruptionError(
                f"object {self.path(digest)} cannot be read ({exc.strerror or exc})"
            ) from None
        if check and sha256_hex(data) != digest:
            raise CorruptionError(f"object {self.path(digest)} does not match its address")
        return data

    def get_json(self, digest: str, *, check: bool = False) -> Any:
        return loads(self.get(digest, check=check), source=str(self.path(digest)))

    def get_record(self, digest: str) -> Any:
        """A parsed record, memoized (records are immutable: callers must not mutate it).
        Its bytes are checked against the address first, so a damaged record can never be
        folded into an index generation."""
        value = self._memo.get(digest)
        if value is None:
            data = self.get(digest, check=True)
            try:
                value = loads_trusted(data)
            except ValueError:
                value = loads(data, source=str(self.path(digest)))  # raises the located error
            cost = PARSED_BYTES * len(data)
            if self._memo_bytes + cost > self._memo_max:
                self._memo.clear()
                self._memo_bytes = 0
            if cost <= self._memo_max:
                self._memo[digest] = value
                self._memo_bytes += cost
        return value

    def __iter__(self) -> Iterator[str]:
        """Every object address, sorted."""
        if not self.root.is_dir():
            return
        for fan in sorted(self.root.iterdir()):
            if len(fan.name) == 2 and fan.is_dir():
                for f in sorted(fan.iterdir()):
                    if not f.name.startswith("."):
                        yield fan.name + f.name
