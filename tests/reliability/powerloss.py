"""Power-loss states (issue 18): what a power cut can leave on disk, ALICE / CrashMonkey style.

A process crash (``test_crash_sweep.py``) keeps everything the kernel was given; a power cut
keeps only what was made durable. This module

1. **records** a mutating command's file-system operations (``Recorder``: installed in a
   forked child, it wraps the calls through which vault changes files — ``os.open``
   creating a file, ``os.write``, buffered ``write``/``truncate`` of files opened for
   writing, ``ftruncate``, ``fsync``/``fdatasync`` of a file or a directory, ``link``,
   ``rename``/``replace``, ``unlink``, ``mkdir``, ``rmdir``, ``sync`` (and vault's
   ``syncfs``, modelled as ``sync``), ``chmod`` — runs each
   for real and logs it with its arguments and data, files named by inode so hard links
   and renames are followed);
2. checks the recording is **complete**: replaying every operation over the initial tree
   gives, byte for byte, the tree the command left (``Trace.check_complete``);
3. builds, for each **prefix** of the operations (a cut at that point), the on-disk states
   a power cut could leave (``crash_images``). An operation is *durable* at the cut when
   a later operation of the prefix persisted it: ``fsync`` of the file (its data and size),
   ``fsync`` of the directory (its entries: a create, link, rename, unlink, mkdir in it;
   both directories of a rename), or ``sync``. Nothing else is assumed (no file-system
   specific ordering: an ext4 journal would persist more). Every other operation is
   *uncertain*, and the states are the combinations ALICE and CrashMonkey consider: all
   uncertain operations kept (a process crash), all dropped (only what was made durable),
   each one dropped alone (reordering), each one kept alone, the first j kept in order
   (an ordered journal), and each uncertain write torn — its first half only, or zeros in
   its place (the size grew, the data did not); under ``make stress`` also random subsets.
   States are deduplicated by content;
4. **checks** each state (``check_state``): it opens; ``verify`` exits 0 (or exits 1 naming
   only derived files: the index, which ``vault index build`` rebuilds, or the cache); the
   log holds the seed's acknowledged lines, unchanged; the next writer (``vault add``)
   exits 0; after it the served state is exactly the clean run's without the command or
   with it — with it whenever the command's audit line survived, and always when the cut
   is after the command's last operation (the command had reported success: the write was
   **acknowledged**) — and ``verify`` passes again;
5. the **double fault**: a process crash at the cut (everything kept), the next writer
   recorded on that state and run to completion, then a power cut with every operation of
   both not made durable dropped — the next writer's acknowledged write must be there.

Acknowledged, precisely: a command's write is acknowledged once the command exits 0
having printed its result, which it does after its last file-system operation; a cut
after that operation is a power cut after the acknowledgement.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import os
import pickle
import random
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------------- the model
#: operations that change the tree (the others persist it or change nothing on disk)
CHANGES = frozenset({"create", "write", "trunc", "link", "rename", "unlink", "mkdir", "rmdir"})
DATA = frozenset({"write", "trunc"})


@dataclass(frozen=True)
class Op:
    """One recorded operation. ``path``/``src`` are relative to the vault's root; ``ino``
    is a model inode number (a new one per created file)."""

    kind: str  # create write trunc fsync fsyncdir link rename unlink mkdir rmdir sync chmod
    path: str = ""
    src: str = ""
    ino: int = 0
    off: int = 0
    data: bytes = b""
    size: int = 0  # trunc: the length; create, chmod: the mode

    def dirs(self) -> tuple[str, ...]:
        """The directories whose entries this operation changes."""
        if self.kind in ("create", "link", "unlink", "mkdir", "rmdir"):
            return (parent(self.path),)
        if self.kind == "rename":
            return tuple(sorted({parent(self.path), parent(self.src)}))
        return ()

    def __str__(self) -> str:
        if self.kind == "write":
            return f"write #{self.ino} [{self.off}:{self.off + len(self.data)}]"
        if self.kind in ("link", "rename"):
            return f"{self.kind} {self.src} -> {self.path}"
        if self.kind in ("fsync", "trunc", "chmod"):
            return f"{self.kind} #{self.ino}" + (f" {self.size}" if self.kind == "trunc" else "")
        return f"{self.kind} {self.path}".rstrip()


def parent(rel: str) -> str:
    return os.path.dirname(rel)


@dataclass
class Image:
    """A tree: directories, names -> inode, inode -> bytes and mode."""

    dirs: set[str]
    entries: dict[str, int]
    files: dict[int, bytes]
    modes: dict[int, int]

    def copy(self) -> Image:
        return Image(set(self.dirs), dict(self.entries), dict(self.files), dict(self.modes))

    def pruned(self) -> Image:
        """Without the names whose directory is gone (a dropped mkdir loses its subtree)."""
        dirs = {d for d in self.dirs if _reachable(d, self.dirs)}
        entries = {p: i for p, i in self.entries.items() if parent(p) == "" or parent(p) in dirs}
        return Image(dirs, entries, self.files, self.modes)

    def key(self) -> tuple[Any, ...]:
        """Equal for equal trees (names, bytes, modes and which names share an inode)."""
        first: dict[int, str] = {}
        names = []
        for p in sorted(self.entries):
            ino = self.entries[p]
            data = self.files[ino]
            names.append((p, first.setdefault(ino, p), len(data), hash(data), self.modes.get(ino)))
        return tuple(sorted(self.dirs)), tuple(names)

    def read(self, rel: str) -> bytes | None:
        ino = self.entries.get(rel)
        return None if ino is None else self.files[ino]

    def write(self, dest: Path) -> dict[str, int]:
        """Create the tree at ``dest`` (a scratch directory: whatever is there is removed
        first); returns name -> model inode."""
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for d in sorted(self.dirs, key=lambda d: (d.count("/"), d)):
            (dest / d).mkdir()
        done: dict[int, Path] = {}
        for rel in sorted(self.entries):
            ino = self.entries[rel]
            target = dest / rel
            if ino in done:
                os.link(done[ino], target)
                continue
            target.write_bytes(self.files[ino])
            os.chmod(target, self.modes.get(ino, 0o644))
            done[ino] = target
        return dict(self.entries)


def _reachable(d: str, dirs: set[str]) -> bool:
    while True:
        d = parent(d)
        if d == "":
            return True
        if d not in dirs:
            return False


def scan(root: Path, names: dict[str, int] | None = None) -> tuple[Image, dict[int, int]]:
    """The tree at ``root`` as an image, and kernel inode -> model inode. ``names`` maps
    paths to the model inodes they had (a tree written by ``Image.write``); otherwise
    model inodes are numbered here."""
    dirs: set[str] = set()
    entries: dict[str, int] = {}
    files: dict[int, bytes] = {}
    modes: dict[int, int] = {}
    kmap: dict[int, int] = {}
    fresh = iter(range(1, 1 << 30))
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in dirnames:
            dirs.add(str((here / name).relative_to(root)))
        for name in filenames:
            p = here / name
            st = p.lstat()
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{p}: only directories and regular files are modelled")
            rel = str(p.relative_to(root))
            if st.st_ino not in kmap:
                kmap[st.st_ino] = names[rel] if names is not None else next(fresh)
                files[kmap[st.st_ino]] = p.read_bytes()
                modes[kmap[st.st_ino]] = stat.S_IMODE(st.st_mode)
            entries[rel] = kmap[st.st_ino]
    return Image(dirs, entries, files, modes), kmap


# ------------------------------------------------------------------------- recording
class Recorder:
    """Wraps the file-changing calls (see the module docstring) for paths under ``root``:
    each runs for real, then is logged as an ``Op``. Installed in a forked child only."""

    def __init__(self, root: Path, names: dict[str, int], next_ino: int):
        self.root = os.path.realpath(root)
        self.ops: list[Op] = []
        self._lock = threading.RLock()
        _, self.kmap = scan(Path(self.root), names)
        self._next = next_ino
        self._saved: list[tuple[Any, str, Any]] = []
        self.unsupported: list[str] = []

    # -------------------------------------------------------------- helpers
    def rel(self, path: str) -> str | None:
        """``path`` relative to the root, or None when it lies outside."""
        real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
        if real == self.root:
            return ""
        if real.startswith(self.root + os.sep):
            return real[len(self.root) + 1 :]
        return None

    def _abs(self, p: Any, dir_fd: int | None = None) -> str:
        text = os.fsdecode(p)
        if dir_fd is not None and not os.path.isabs(text):
            return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), text)
        return os.path.abspath(text)

    def _fd_rel(self, fd: int) -> str | None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        return self.rel(path.removesuffix(" (deleted)"))

    def _model(self, kernel_ino: int, what: str) -> int:
        try:
            return self.kmap[kernel_ino]
        except KeyError:
            raise AssertionError(f"powerloss recorder: unknown inode ({what})") from None

    def _new(self, kernel_ino: int) -> int:
        ino = self._next
        self._next += 1
        self.kmap[kernel_ino] = ino
        return ino

    def log(self, op: Op) -> None:
        self.ops.append(op)

    # -------------------------------------------------------------- install
    def _patch(self, owner: Any, name: str, new: Any) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, new)

    def install(self) -> Recorder:  # noqa: C901 - one wrapper per call, read top to bottom
        real = {
            n: getattr(os, n)
            for n in (
                "open",
                "write",
                "fsync",
                "fdatasync",
                "ftruncate",
                "truncate",
                "link",
                "rename",
                "replace",
                "unlink",
                "remove",
                "mkdir",
                "rmdir",
                "sync",
                "fchmod",
                "chmod",
                "pwrite",
                "writev",
                "symlink",
            )
        }
        real_open = io.open
        rec = self
        lock = self._lock

        def os_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
            with lock:
                p = rec._abs(path, dir_fd)
                rel = rec.rel(p)
                existed = rel is not None and os.path.lexists(p)
                kw = {} if dir_fd is None else {"dir_fd": dir_fd}
                fd = int(real["open"](path, flags, mode, **kw))
                if rel is None:
                    return fd
                st = os.fstat(fd)
                if flags & os.O_CREAT and not existed:
                    perm = stat.S_IMODE(st.st_mode)
                    rec.log(Op("create", rel, ino=rec._new(st.st_ino), size=perm))
                elif flags & os.O_TRUNC and stat.S_ISREG(st.st_mode):
                    rec.log(Op("trunc", ino=rec._model(st.st_ino, rel), size=0))
                return fd

        def os_write(fd: int, data: Any) -> int:
            with lock:
                n = int(real["write"](fd, data))
                rel = rec._fd_rel(fd)
                if rel is not None and n > 0:
                    end = os.lseek(fd, 0, os.SEEK_CUR)
                    ino = rec._model(os.fstat(fd).st_ino, rel)
                    rec.log(Op("write", rel, ino=ino, off=end - n, data=bytes(data)[:n]))
                return n

        def fsync_like(name: str) -> Callable[[int], None]:
            def call(fd: int) -> None:
                with lock:
                    real[name](fd)
                    rel = rec._fd_rel(fd)
                    if rel is None:
                        return
                    st = os.fstat(fd)
                    if stat.S_ISDIR(st.st_mode):
                        rec.log(Op("fsyncdir", rel))
                    else:
                        rec.log(Op("fsync", rel, ino=rec._model(st.st_ino, rel)))

            return call

        def ftruncate(fd: int, length: int) -> None:
            with lock:
                real["ftruncate"](fd, length)
                rel = rec._fd_rel(fd)
                if rel is not None:
                    rec.log(Op("trunc", rel, ino=rec._model(os.fstat(fd).st_ino, rel), size=length))

        def truncate(path: Any, length: int) -> None:
            with lock:
                if isinstance(path, int):
                    return ftruncate(path, length)
                p = rec._abs(path)
                real["truncate"](path, length)
                rel = rec.rel(p)
                if rel is not None:
                    rec.log(Op("trunc", rel, ino=rec._model(os.stat(p).st_ino, rel), size=length))

        def two(name: str, kind: str) -> Callable[..., None]:
            def call(src: Any, dst: Any, *args: Any, **kw: Any) -> None:
                with lock:
                    s = rec._abs(src, kw.get("src_dir_fd"))
                    d = rec._abs(dst, kw.get("dst_dir_fd"))
                    rs, rd = rec.rel(s), rec.rel(d)
                    if rs is None and rd is None:
                        return real[name](src, dst, *args, **kw)  # type: ignore[no-any-return]
                    if rs is None or rd is None:
                        rec.unsupported.append(f"{kind} across the vault's root: {s} -> {d}")
                        return real[name](src, dst, *args, **kw)  # type: ignore[no-any-return]
                    st = os.lstat(s)
                    real[name](src, dst, *args, **kw)
                    if stat.S_ISDIR(st.st_mode):
                        rec.unsupported.append(f"{kind} of a directory: {rs} -> {rd}")
                        return None
                    rec.log(Op(kind, rd, src=rs, ino=rec._model(st.st_ino, rs)))
                    return None

            return call

        def unlink(name: str) -> Callable[..., None]:
            def call(path: Any, *args: Any, **kw: Any) -> None:
                with lock:
                    p = rec._abs(path, kw.get("dir_fd"))
                    rel = rec.rel(p)
                    st = os.lstat(p) if rel is not None and os.path.lexists(p) else None
                    real[name](path, *args, **kw)
                    if rel is not None and st is not None:
                        rec.log(Op("unlink", rel, ino=rec.kmap.get(st.st_ino, 0)))

            return call

        def mkdir(path: Any, mode: int = 0o777, *, dir_fd: Any = None) -> None:
            with lock:
                p = rec._abs(path, dir_fd)
                kw = {} if dir_fd is None else {"dir_fd": dir_fd}
                real["mkdir"](path, mode, **kw)
                rel = rec.rel(p)
                if rel is not None:
                    rec.log(Op("mkdir", rel))

        def rmdir(path: Any, *, dir_fd: Any = None) -> None:
            with lock:
                p = rec._abs(path, dir_fd)
                kw = {} if dir_fd is None else {"dir_fd": dir_fd}
                real["rmdir"](path, **kw)
                rel = rec.rel(p)
                if rel is not None:
                    rec.log(Op("rmdir", rel))

        def sync() -> None:
            with lock:
                real["sync"]()
                rec.log(Op("sync"))

        def fchmod(fd: int, mode: int) -> None:
            with lock:
                real["fchmod"](fd, mode)
                rel = rec._fd_rel(fd)
                st = os.fstat(fd)
                if rel is not None and stat.S_ISREG(st.st_mode):
                    rec.log(Op("chmod", rel, ino=rec._model(st.st_ino, rel), size=mode & 0o7777))

        def chmod(path: Any, mode: int, *args: Any, **kw: Any) -> None:
            with lock:
                if isinstance(path, int):
                    return fchmod(path, mode)
                real["chmod"](path, mode, *args, **kw)
                p = rec._abs(path, kw.get("dir_fd"))
                rel = rec.rel(p)
                if rel is not None and os.path.isfile(p):
                    ino = rec._model(os.stat(p).st_ino, rel)
                    rec.log(Op("chmod", rel, ino=ino, size=mode & 0o7777))
                return None

        from vault.store import fs as vault_fs

        real_syncfs = vault_fs._syncfs

        def syncfs() -> Callable[[int], int] | None:
            """vault's ``syncfs(2)`` (a clone's or a pull's one sync, through ctypes): for
            the model, a ``sync`` (the recorded tree is on one file system)."""
            call = real_syncfs()
            if call is None:
                return None

            def run(fd: int) -> int:
                with lock:
                    err = call(fd)
                    if not err:
                        rec.log(Op("sync"))
                    return err

            return run

        def refuse(name: str) -> Callable[..., Any]:
            def call(*args: Any, **kw: Any) -> Any:
                rec.unsupported.append(f"os.{name}{args[:1]}")
                return real[name](*args, **kw)

            return call

        def io_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            writing = any(c in mode for c in "wax+")
            if not writing:
                return real_open(file, mode, *args, **kwargs)
            with lock:
                if isinstance(file, int):
                    f = real_open(file, mode, *args, **kwargs)
                    rel = rec._fd_rel(file)
                else:
                    p = rec._abs(file)
                    rel = rec.rel(p)
                    existed = rel is not None and os.path.lexists(p)
                    f = real_open(file, mode, *args, **kwargs)
                    if rel is not None:
                        st = os.fstat(f.fileno())
                        if not existed:
                            perm = stat.S_IMODE(st.st_mode)
                            rec.log(Op("create", rel, ino=rec._new(st.st_ino), size=perm))
                        elif "w" in mode:
                            rec.log(Op("trunc", rel, ino=rec._model(st.st_ino, rel), size=0))
                if rel is None:
                    return f
                if "b" not in mode:
                    rec.unsupported.append(f"text-mode write of {rel}")
                return _File(rec, f, rel)

        self._patch(os, "open", os_open)
        self._patch(os, "write", os_write)
        self._patch(os, "fsync", fsync_like("fsync"))
        self._patch(os, "fdatasync", fsync_like("fdatasync"))
        self._patch(os, "ftruncate", ftruncate)
        self._patch(os, "truncate", truncate)
        self._patch(os, "link", two("link", "link"))
        self._patch(os, "rename", two("rename", "rename"))
        self._patch(os, "replace", two("replace", "rename"))
        self._patch(os, "unlink", unlink("unlink"))
        self._patch(os, "remove", unlink("remove"))
        self._patch(os, "mkdir", mkdir)
        self._patch(os, "rmdir", rmdir)
        self._patch(os, "sync", sync)
        self._patch(vault_fs, "_syncfs", syncfs)
        self._patch(os, "fchmod", fchmod)
        self._patch(os, "chmod", chmod)
        for name in ("pwrite", "writev", "symlink"):
            self._patch(os, name, refuse(name))
        self._patch(io, "open", io_open)
        self._patch(builtins, "open", io_open)
        return self

    def uninstall(self) -> None:
        while self._saved:
            owner, name, value = self._saved.pop()
            setattr(owner, name, value)


class _File:
    """A file object opened for writing under the root: ``write`` and ``truncate`` are
    logged at the position they apply to (buffered bytes reach the kernel at the next
    ``flush``, before any ``fsync`` of the file: the same state for a power cut)."""

    def __init__(self, rec: Recorder, f: Any, rel: str):
        self._rec = rec
        self._f = f
        self._rel = rel

    def write(self, data: Any) -> int:
        with self._rec._lock:
            pos = self._f.tell()
            n = int(self._f.write(data))
            ino = self._rec._model(os.fstat(self._f.fileno()).st_ino, self._rel)
            self._rec.log(Op("write", self._rel, ino=ino, off=pos, data=bytes(data)[:n]))
            return n

    def truncate(self, size: int | None = None) -> int:
        with self._rec._lock:
            n = int(self._f.truncate(size))
            ino = self._rec._model(os.fstat(self._f.fileno()).st_ino, self._rel)
            self._rec.log(Op("trunc", self._rel, ino=ino, size=n))
            return n

    def __enter__(self) -> _File:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


# ------------------------------------------------------------------------- traces
@dataclass
class Run:
    """One recorded command: its exit code, output and operations."""

    code: int
    stdout: str
    stderr: str
    ops: list[Op]
    unsupported: list[str] = field(default_factory=list)


def record(
    image: Image, where: Path, main: Callable[[Path], int], next_ino: int | None = None
) -> tuple[Run, Image]:
    """Write ``image`` at ``where``, run ``main(where)`` in a forked child with a
    ``Recorder`` installed; returns the run and the tree it left (as an image whose inode
    numbers continue the recording's)."""
    names = image.write(where)
    start = next_ino if next_ino is not None else max(image.files, default=0) + 1
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with tempfile.NamedTemporaryFile(delete=False) as result:
            result_path = result.name
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
                sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8")
                rec = Recorder(where, names, start).install()
                try:
                    code = main(where)
                finally:
                    rec.uninstall()
                with open(result_path, "wb") as f:
                    pickle.dump((code, rec.ops, rec.unsupported, rec._next), f)
            except BaseException:  # noqa: BLE001 - reported by the parent
                import traceback

                with contextlib.suppress(BaseException):
                    traceback.print_exc()
            finally:
                with contextlib.suppress(BaseException):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    try:
        with open(result_path, "rb") as f:
            code, ops, unsupported, _ = pickle.load(f)
    except (EOFError, pickle.UnpicklingError):
        raise AssertionError(f"the recorded child failed (status {status}): {stderr}") from None
    finally:
        os.unlink(result_path)
    run = Run(code, stdout, stderr, ops, unsupported)
    after = replay(image, ops, len(ops), {})
    check_complete(after, where)
    return run, after


def check_complete(model: Image, root: Path) -> None:
    """The recording missed nothing: the model's tree equals the real one, byte for byte
    (names, contents, modes and shared inodes)."""
    real, _ = scan(root)
    if model.key() != real.key():
        a = {p: model.read(p) for p in model.entries}
        b = {p: real.read(p) for p in real.entries}
        diff = sorted(p for p in set(a) | set(b) if a.get(p) != b.get(p))
        modes = sorted(
            p
            for p in set(model.entries) & set(real.entries)
            if model.modes.get(model.entries[p]) != real.modes.get(real.entries[p])
        )
        dirs = sorted(model.dirs ^ real.dirs)
        raise AssertionError(
            f"powerloss recorder missed operations: content {diff[:5]}, modes {modes[:5]}, "
            f"directories {dirs[:5]}"
        )


def durable(ops: list[Op], k: int) -> list[bool]:
    """For each of the first ``k`` operations: did a later one among them persist it?"""
    out = [False] * k
    files: set[int] = set()
    dirs: set[str] = set()
    everything = False
    for i in range(k - 1, -1, -1):
        op = ops[i]
        if everything:
            out[i] = True
        elif op.kind in DATA:
            out[i] = op.ino in files
        elif op.kind in CHANGES:
            out[i] = all(d in dirs for d in op.dirs())
        else:
            out[i] = True  # fsync, chmod, ...: nothing to lose
        if op.kind == "fsync":
            files.add(op.ino)
        elif op.kind == "fsyncdir":
            dirs.add(op.path)
        elif op.kind == "sync":
            everything = True
    return out


Choice = str | tuple[str, int]  # "drop", "zeros", ("prefix", n)


def replay(initial: Image, ops: list[Op], k: int, choices: dict[int, Choice]) -> Image:
    """The tree after the first ``k`` operations, each applied unless ``choices`` drops or
    tears it."""
    img = initial.copy()
    for i in range(k):
        op = ops[i]
        how = choices.get(i, "keep")
        if op.kind == "create":  # the inode exists (in memory) either way
            img.files.setdefault(op.ino, b"")
            img.modes[op.ino] = op.size
        if how == "drop":
            continue
        if op.kind == "create":
            img.entries[op.path] = op.ino
        elif op.kind == "write":
            data = op.data
            if how == "zeros":
                data = bytes(len(data))
            elif isinstance(how, tuple):
                data = data[: how[1]]
            old = img.files.get(op.ino, b"")
            if op.off > len(old):
                old = old + bytes(op.off - len(old))
            img.files[op.ino] = old[: op.off] + data + old[op.off + len(data) :]
        elif op.kind == "trunc":
            old = img.files.get(op.ino, b"")
            img.files[op.ino] = old[: op.size] + bytes(max(0, op.size - len(old)))
        elif op.kind == "chmod":
            img.modes[op.ino] = op.size
        elif op.kind == "link":
            img.entries[op.path] = op.ino
        elif op.kind == "rename":
            if img.entries.get(op.src) == op.ino:
                del img.entries[op.src]
            img.entries[op.path] = op.ino
        elif op.kind == "unlink":
            img.entries.pop(op.path, None)
        elif op.kind == "mkdir":
            img.dirs.add(op.path)
        elif op.kind == "rmdir":
            img.dirs.discard(op.path)
    return img.pruned()


def choices(
    ops: list[Op],
    k: int,
    rng: random.Random | None = None,
    randoms: int = 0,
    cap: int | None = None,
) -> Iterator[tuple[str, dict[int, Choice]]]:
    """The crash states of a cut after ``k`` operations, as (label, choices). ``cap``: at
    most that many of each family (a random sample of the uncertain operations, drawn
    from ``rng``) — a batch leaves hundreds uncertain at once."""
    persisted = durable(ops, k)
    uncertain = [i for i in range(k) if ops[i].kind in CHANGES and not persisted[i]]
    yield "all kept", {}
    if not uncertain:
        return

    def some(xs: list[int]) -> list[int]:
        if cap is None or len(xs) <= cap:
            return xs
        assert rng is not None
        return sorted(rng.sample(xs, cap))

    yield "all dropped", {i: "drop" for i in uncertain}
    for i in some(uncertain):
        yield f"drop {ops[i]}", {i: "drop"}
    writes = [i for i in uncertain if ops[i].kind == "write" and ops[i].data]
    for i in some(writes):
        op = ops[i]
        yield f"torn {op}", {i: ("prefix", len(op.data) // 2)}
        yield f"zeros {op}", {i: "zeros"}
        if len(op.data) > 4096:
            yield f"first page {op}", {i: ("prefix", 4096 - op.off % 4096)}
    for j in some(list(range(1, len(uncertain)))):
        yield f"first {j} kept", {i: "drop" for i in uncertain[j:]}
    for i in some(uncertain):
        yield f"only {ops[i]}", {u: "drop" for u in uncertain if u != i}
    for n in range(randoms):
        assert rng is not None
        yield f"random {n}", {i: "drop" for i in uncertain if rng.random() < 0.5}


def crash_images(
    initial: Image,
    ops: list[Op],
    cuts: list[int],
    *,
    rng: random.Random | None = None,
    randoms: int = 0,
    cap: int | None = None,
    seen: set[tuple[Any, ...]] | None = None,
) -> Iterator[tuple[int, str, Image]]:
    """(cut, label, image) for every distinct power-loss state of the given cuts. The cut
    after the last operation comes first: a state it shares with an earlier cut is checked
    as acknowledged, the stricter check."""
    seen = set() if seen is None else seen
    for k in sorted(cuts, key=lambda k: (k != len(ops), k)):
        for label, chosen in choices(ops, k, rng, randoms, cap):
            img = replay(initial, ops, k, chosen)
            key = img.key()
            if key in seen:
                continue
            seen.add(key)
            yield k, label, img


def shifted(ops: list[Op], names: dict[int, int]) -> list[Op]:
    """``ops`` with model inodes renamed (``names``: old -> new)."""
    return [Op(o.kind, o.path, o.src, names.get(o.ino, o.ino), o.off, o.data, o.size) for o in ops]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def scratch(base: Path) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(dir=base, prefix="pl-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
