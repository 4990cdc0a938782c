"""File-system primitives: directory fsync, atomic replace, and the writers' lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from vault.errors import CorruptionError, LockError


@contextlib.contextmanager
def naming(path: Path | str) -> Iterator[None]:
    """Give an ``OSError`` raised inside (from a write, flush or fsync on a descriptor,
    which knows no path) the file it was about, so every message names one."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def fsync_dir(path: Path) -> None:
    with naming(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_file(path: Path) -> None:
    """Make ``path``'s bytes durable (a file another process may have written and not
    fsynced: a writer killed between its write and its fsync)."""
    with naming(path):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


SYNCFS_KERNEL = (5, 8)  # Linux reports write-back errors to syncfs(2) from this version on


def _syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs`` where it reports write-back errors (Linux >= 5.8), else None."""
    import platform

    if platform.system() != "Linux":
        return None
    try:
        version = tuple(int(x) for x in platform.release().split("-")[0].split(".")[:2])
    except ValueError:
        return None
    if version < SYNCFS_KERNEL:
        return None
    import ctypes  # (only a clone needs it: the cold start stays as it is)

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None

    def call(fd: int) -> int:
        if fn(fd) != 0:
            return ctypes.get_errno() or errno.EIO
        return 0

    return call


def sync_staged(root_fd: int, root: Path, files: list[str], dirs: list[str]) -> str:
    """Make files written without fsync durable at once, their errors checked: ``syncfs(2)``
    on ``root_fd`` (opened before the first of them was written, so that a write-back error
    of any of them since is reported) where the kernel reports such errors; else an fsync of
    each file and each directory, a pool of threads at a time. Never ``sync(2)``, which
    reports no error. Returns which was used (``syncfs`` or ``fsync``)."""
    call = _syncfs()
    if call is not None:
        err = call(root_fd)
        if err:
            raise OSError(err, os.strerror(err), str(root))
        return "syncfs"
    fsync_all(files, dirs)
    return "fsync"


def fsync_all(files: list[str], dirs: list[str]) -> None:
    """fsync each of ``files`` and ``dirs`` (above 64 of them, a pool of threads at a time:
    fsync waits on the disk, not on Python); the first error is raised."""
    from concurrent.futures import ThreadPoolExecutor

    def each(paths: list[str]) -> None:
        for p in paths:
            (fsync_dir if p in dirs_set else fsync_file)(Path(p))

    dirs_set = set(dirs)
    todo = [*files, *dirs]
    if len(todo) <= 64:
        each(todo)
        return
    chunks = [todo[i : i + 512] for i in range(0, len(todo), 512)]
    with ThreadPoolExecutor(16) as pool:
        for f in [pool.submit(each, c) for c in chunks]:
            f.result()


def refuse_symlinks(*paths: Path) -> None:
    """Raise unless none of ``paths`` is a symbolic link (vault never writes through one:
    a link planted inside a vault must not make it write outside)."""
    for p in paths:
        if p.is_symlink():
            raise CorruptionError(
                f"{p} is a symbolic link; vault does not write through links (remove it)"
            )


def is_temporary(name: str) -> bool:
    """A leftover of an interrupted write: an object's ``.tmp-*``, an ``atomic_write``
    ``.<name>.<random>.tmp`` or a view's ``.<name>.link``."""
    return name.startswith(".") and (
        name.startswith(".tmp-") or name.endswith(".tmp") or name.endswith(".link")
    )


def sweep_temporaries(*dirs: Path) -> int:
    """Remove the temporaries directly inside ``dirs`` (not below); returns how many.
    Only under the write lock: no writer can be using one then."""
    found: list[Path] = []
    for d in dirs:
        try:
            with os.scandir(d) as it:
                found += [Path(e.path) for e in it if is_temporary(e.name) and not e.is_dir()]
        except (FileNotFoundError, NotADirectoryError):
            continue
    return unlink_durably(found)


def unlink_durably(paths: Iterable[Path]) -> int:
    """Unlink ``paths`` (those already gone are skipped), then fsync each directory that
    lost an entry, so the removals survive a power cut; returns how many were removed."""
    removed = 0
    dirs: set[Path] = set()
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
            removed += 1
            dirs.add(Path(p).parent)
    for d in sorted(dirs):
        fsync_dir(d)
    return removed


def make_dir(path: Path, *, durable: bool = True) -> None:
    """Create ``path`` (and its missing parents); when ``durable``, fsync the directory
    above each one created, so that the new entries survive a power cut."""
    if path.is_dir():
        return
    make_dir(path.parent, durable=durable)
    try:
        path.mkdir()
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    if durable:
        fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` all at once: a reader sees the old or the new bytes."""
    refuse_symlinks(path.parent)
    make_dir(path.parent, durable=durable)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with naming(path):
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def _holder(fd: int) -> str:
    """ " (pid N)" of the process holding the flock on ``fd``'s file, from /proc/locks
    (Linux; nothing elsewhere) — the lock file itself is never written."""
    try:
        st = os.fstat(fd)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return ""
    ino = f":{st.st_ino}"
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5].endswith(ino):
            return f" (pid {parts[4]})"
    return ""


# What a directory in place of the lock file means, and what to do: said alike by a writer
# (which cannot run) and by ``vault verify`` (``lock_unusable``, FORMAT.md §12).
LOCK_IS_DIRECTORY = (
    "is a directory, not the empty file writers lock: every write fails until it is moved "
    "away or removed (nothing in it is vault data; the next write creates the file)"
)


class WriteLock:
    """An exclusive advisory lock (flock) serializing writers across processes."""

    def __init__(
        self, path: Path, timeout: float = 30.0, on_acquire: Callable[[], None] | None = None
    ):
        self.path = path
        self.timeout = timeout
        self.on_acquire = on_acquire  # checks run under the lock (e.g. the vault's layout)
        self._fd: int | None = None
        self._depth = 0

    def __enter__(self) -> WriteLock:
        if self._depth == 0:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise CorruptionError(
                        f"{self.path} is a symbolic link; vault does not write through links"
                    ) from None
                if exc.errno == errno.EISDIR:
                    raise CorruptionError(
                        f"{LOCK_IS_DIRECTORY}; nothing was written", source=str(self.path)
                    ) from None
                raise
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        holder = _holder(fd)
                        os.close(fd)
                        raise LockError(
                            f"another vault process{holder} holds {self.path} (waited "
                            f"{self.timeout:g}s)"
                        ) from None
                    time.sleep(0.01)
            self._fd = fd
            if self.on_acquire is not None:
                try:
                    self.on_acquire()
                except BaseException:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                    self._fd = None
                    raise
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._depth > 0
