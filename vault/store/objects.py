"""Content-addressed, write-once objects under ``objects/``.

Layout (see FORMAT.md): ``objects/ab/cdef...`` holds the bytes whose sha256 is
``abcdef...``; an object is written once (temp file, fsync, hard link into place, fsync
the directory) and never overwritten — unless the file under its name is damaged (a power
cut can leave one empty or torn), which is checked, not assumed: it is then replaced by a
fresh file the same way (``rename(2)``) and the repair is logged. Mutable files (refs,
logs) are replaced atomically with ``atomic_write`` under the vault's write lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from vault.canonical import canonical_bytes, loads, loads_trusted, sha256_hex
from vault.errors import CorruptionError, NotFoundError, StorageError
from vault.store.fs import fsync_dir, make_dir, naming

HEX = frozenset("0123456789abcdef")
READ_MORE = 1 << 20  # (a file that grows while read: never an object)
MEMO_BYTES = 64 << 20  # parsed records remembered per store (estimated bytes)
PARSED_BYTES = 8  # a parsed JSON record weighs up to ~7x its bytes (tracemalloc, a 30x30 repr)
PARALLEL_MIN = 64  # above this many objects (or directories), a pool of threads fsyncs them
PUT_THREADS = 32
STAGE_CHUNK = 4096  # objects a thread stages per call (``stage``)
CREATED, SOUND, REPAIRED = "created", "sound", "repaired"
T = TypeVar("T")


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


def in_threads(fn: Callable[..., T], calls: list[tuple[Any, ...]]) -> list[T]:
    """``[fn(*args) for args in calls]`` on a pool of ``PUT_THREADS`` threads (for calls
    that wait on the disk); the first error is raised once the running calls are done."""
    from concurrent.futures import ThreadPoolExecutor  # (imported here: not a reader's need)

    with ThreadPoolExecutor(min(PUT_THREADS, len(calls))) as pool:
        futures = [pool.submit(fn, *args) for args in calls]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


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
        # Damaged object files rewritten by this store (their digests, in order); the vault
        # logs each repair (an audit line ``repair``) through ``on_repair``.
        self.repairs: list[str] = []
        self.on_repair: Callable[[list[str]], None] | None = None

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def file(self, digest: str) -> str:
        """``path(digest)`` as a string (cheaper, for many)."""
        return f"{self._prefix}{digest[:2]}/{digest[2:]}"

    def has(self, digest: str) -> bool:
        return is_digest(digest) and self.path(digest).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; return its sha256. A sound existing object is left
        untouched (and made durable); a damaged one is rewritten."""
        digest = sha256_hex(data)
        self.put_digested([(digest, data)])
        return digest

    def put_many(self, datas: list[bytes]) -> list[str]:
        """Store several objects durably; return their digests."""
        items = [(sha256_hex(d), d) for d in datas]
        self.put_digested(items)
        return [digest for digest, _ in items]

    def put_digested(self, items: list[tuple[str, bytes]]) -> None:
        """Store ``(sha256, bytes)`` pairs durably (the caller computed each digest from its
        bytes). When it returns, every object is durable under its name: each new file was
        written to a temporary, fsynced (its error checked), then linked to its name; an
        existing file was compared with the bytes — fsynced when sound, rewritten when
        damaged (``repairs``) — and every fan-out directory holding one of them, and
        ``objects/`` itself, was fsynced. Batches of more than ``PARALLEL_MIN`` objects
        are written and fsynced by a pool of threads (fsync waits on the disk, not on
        Python), never with ``sync(2)``, which reports no write-back error."""
        if self.readonly:
            raise StorageError(errno.EROFS, "opened read-only", str(self.root))
        try:
            self._put_digested(items)
        except OSError as exc:  # (a StorageError, naming the path, for library users)
            raise StorageError.of(exc, self.root) from None

    def _put_digested(self, items: list[tuple[str, bytes]]) -> None:
        items = list(dict(items).items())  # each object once (in the threads too)
        if not items:
            return
        make_dir(self.root)
        for fan in sorted({self.path(digest).parent for digest, _ in items}):
            if not fan.is_dir():  # here, not in the threads: one mkdir each, in order
                fan.mkdir(exist_ok=True)  # (``objects/`` is fsynced below)
        dirs: set[Path] = set()
        repaired: list[str] = []
        if len(items) > PARALLEL_MIN:
            results = in_threads(self._put, [(data, digest) for digest, data in items])
        else:
            results = [self._put(data, digest) for digest, data in items]
        for (digest, _), (fan, how) in zip(items, results, strict=True):
            dirs.add(fan)
            if how == REPAIRED:
                repaired.append(digest)
        if len(dirs) > PARALLEL_MIN:
            in_threads(fsync_dir, [(d,) for d in sorted(dirs)])
        else:
            for d in sorted(dirs):
                fsync_dir(d)
        fsync_dir(self.root)  # new fan-out directories, temporaries created and unlinked
        if repaired:
            self.repairs += repaired
            if self.on_repair is not None:
                self.on_repair(repaired)

    def stage(self, items: list[tuple[str, bytes]]) -> list[str]:
        """Write ``(sha256, bytes)`` pairs that are not here yet under their names, read-only,
        **without** fsync (a clone's objects: ``vault.store.fs.sync_staged`` makes them
        durable at once before the clone becomes a vault). Returns the files written; one
        whose writing fails or is interrupted (Ctrl-C) is removed, never left torn. A name
        already taken goes through ``put_digested`` (compared, made durable or repaired).
        Nothing may name a staged object durably before it is made durable."""
        if self.readonly:
            raise StorageError(errno.EROFS, "opened read-only", str(self.root))
        items = list(dict(items).items())
        try:
            make_dir(self.root, durable=False)
            for fan in sorted({digest[:2] for digest, _ in items}):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(f"{self._prefix}{fan}")
            chunks = [items[i : i + STAGE_CHUNK] for i in range(0, len(items), STAGE_CHUNK)]
            if len(chunks) > 1:
                done = in_threads(self._stage, [(c,) for c in chunks])
            else:
                done = [self._stage(c) for c in chunks]
        except OSError as exc:
            raise StorageError.of(exc, self.root) from None
        taken = [item for _, t in done for item in t]
        if taken:
            self.put_digested(taken)
        return [p for w, _ in done for p in w]

    def _stage(self, items: list[tuple[str, bytes]]) -> tuple[list[str], list[tuple[str, bytes]]]:
        written: list[str] = []
        taken: list[tuple[str, bytes]] = []
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        for digest, data in items:
            final = self.file(digest)
            with naming(final):
                try:
                    fd = os.open(final, flags, 0o444)
                except FileExistsError:
                    taken.append((digest, data))
                    continue
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                except BaseException:  # (a full disk, Ctrl-C): no torn file under its name
                    with contextlib.suppress(OSError):
                        os.unlink(final)
                    raise
                finally:
                    os.close(fd)
            written.append(final)
        return written, taken

    def sound(self, digest: str, data: bytes) -> bool:
        """Whether the object ``digest`` is there holding exactly ``data``; not made durable
        (``vault.store.staging.put_durably`` syncs the whole file system after)."""
        path = Path(self.file(digest))
        with naming(path):
            return bool(self._sound(path, data, sync=False))

    def _put(self, data: bytes, digest: str) -> tuple[Path, str]:
        """Make one object durable (its directory excepted: the caller fsyncs it); returns
        (its fan-out directory, what was done: ``CREATED``, ``SOUND`` or ``REPAIRED``)."""
        final = self.path(digest)
        fan = final.parent
        with naming(final):
            sound = self._sound(final, data)
            if sound is True:
                return fan, SOUND
            tmp = self._write_temporary(data)
            try:
                if sound is None:
                    try:
                        os.link(tmp, final)  # fails if present: a sound object is never replaced
                        return fan, CREATED
                    except FileExistsError:
                        sound = self._sound(final, data)
                        if sound is not False:  # (None: gone again — the replace names it)
                            if sound is None:
                                os.replace(tmp, final)
                                return fan, CREATED
                            return fan, SOUND
                    except OSError as exc:  # file systems without hard links
                        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                            raise
                        if not final.exists():
                            os.replace(tmp, final)
                            return fan, CREATED
                        if self._sound(final, data):
                            return fan, SOUND
                # damaged (a power cut left it empty or torn, or it was changed): replaced
                # all at once by a fresh file, never written in place
                os.replace(tmp, final)
                return fan, REPAIRED
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _write_temporary(self, data: bytes) -> str:
        """A read-only temporary in ``objects/`` holding ``data``, fsynced. (It lives in
        ``objects/`` itself, so the next writer's sweep finds a killed one's.)"""
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(fd, 0o444)  # read-only: embeddings/ files are links to objects
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return tmp

    @staticmethod
    def _sound(final: Path, data: bytes, sync: bool = True) -> bool | None:
        """None when ``final`` does not exist; whether it holds exactly ``data`` (compared
        byte for byte: ``data`` hashes to the address) — a sound one is fsynced, since the
        writer that named it may have died before making it durable (unless not ``sync``:
        the caller makes it durable another way)."""
        try:
            fd = os.open(final, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError:
            return False  # unreadable (a link, a directory, no permission): rewritten
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != len(data):
                return False
            chunks = []
            while chunk := os.read(fd, READ_MORE):
                chunks.append(chunk)
            if b"".join(chunks) != data:
                return False
            if sync:
                os.fsync(fd)
            return True
        except OSError as exc:
            if exc.errno == errno.EIO:
                return False  # a bad block: rewritten
            raise
        finally:
            os.close(fd)

    def put_json(self, obj: Any) -> str:
        return self.put(canonical_bytes(obj))

    def get(self, digest: str, *, check: bool = False) -> bytes:
        if not is_digest(digest):
            raise NotFoundError(f"not an object address: {digest!r}")
        try:
            data = read_file(self.file(digest))  # (hot: no Path)
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
        """Every object address, sorted: the regular files named as objects (FORMAT §3) —
        never a stray entry (a directory, a symlink, another name: ``vault verify``'s
        ``object_unexpected``), which vault does not own."""
        if not self.root.is_dir():
            return
        for fan in sorted(self.root.iterdir()):
            if len(fan.name) == 2 and fan.is_dir() and not fan.is_symlink():
                with os.scandir(fan) as it:
                    names = sorted(
                        fan.name + f.name for f in it if f.is_file(follow_symlinks=False)
                    )
                yield from (name for name in names if is_digest(name))
