"""File-system fault injection for the reliability suite (installed in a forked child only).

``Injector.install()`` wraps the calls through which vault changes files — ``os.open``
(creating or opening for writing), ``open()``/``io.open``/``os.fdopen`` in a write mode and
the file's ``write``/``truncate``, ``os.write``, ``os.fsync``/``fdatasync``, ``os.sync``,
``os.replace``, ``os.rename``, ``os.link``, ``os.unlink``/``remove``, ``os.mkdir``,
``os.rmdir``, ``os.truncate``/``ftruncate`` — and numbers each call whose path lies under
``root`` (a *point*). At point ``at`` it acts:

* ``count`` — nothing (the trace of a clean run tells how many points there are);
* ``exit`` — ``os._exit(137)`` *before* the call (a crash between two points); with
  ``torn`` a ``write`` first writes and flushes half its bytes (a crash inside a write);
* ``raise`` — ``OSError(err)`` instead of the call (ENOSPC, EIO, ...), naming the path
  as Python would: calls on a path carry it, calls on a descriptor or file object do not.

Points are counted in Python, not in the kernel: a buffered file's bytes reach the kernel
at ``flush``/``close``, which follow its ``write`` point with no other point between them,
so a crash "before the next point" is one after those bytes were handed to the kernel.
``strace -e inject=`` (``test_faults.py``, under ``make stress``) covers the system calls.
"""

from __future__ import annotations

import builtins
import io
import os
import threading
from typing import Any

ACTIONS = ("count", "exit", "raise")
EXIT_CODE = 137

_FD_OPS = frozenset({"write", "fsync", "fdatasync", "ftruncate", "truncate", "sync"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"<fd {fd}>"


def _path(p: Any, dir_fd: int | None = None) -> str:
    if isinstance(p, int):
        return _fd_path(p)
    text = os.fsdecode(p)
    if dir_fd is not None and not os.path.isabs(text):
        return os.path.join(_fd_path(dir_fd), text)
    return os.path.abspath(text)


class _File:
    """A file object opened for writing whose ``write`` and ``truncate`` are points."""

    def __init__(self, inj: Injector, f: Any, path: str):
        self._inj = inj
        self._f = f
        self._path = path

    def write(self, data: Any) -> Any:
        self._inj.point("write", self._path, data=data, file=self._f)
        return self._f.write(data)

    def truncate(self, *args: Any) -> Any:
        self._inj.point("truncate", self._path)
        return self._f.truncate(*args)

    def __enter__(self) -> _File:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()

    def __iter__(self) -> Any:
        return iter(self._f)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


class Injector:
    def __init__(
        self,
        root: str | os.PathLike[str],
        action: str = "count",
        at: int = 0,
        err: int = 0,
        *,
        torn: bool = False,
    ):
        if action not in ACTIONS:
            raise ValueError(action)
        self.root = os.path.realpath(root)
        self.action = action
        self.at = at
        self.err = err
        self.torn = torn
        self.n = 0
        self.trace: list[tuple[str, str]] = []
        self.fired: tuple[str, str] | None = None
        self._saved: list[tuple[Any, str, Any]] = []
        # the batch path writes objects from a pool of threads: the count is taken under a
        # lock, or two threads can both read n == at - 1 and two faults fire (seen in make
        # stress: a second, unplanned fault on a temporary's unlink left it behind)
        self._count = threading.Lock()

    # ------------------------------------------------------------------ the point
    def inside(self, path: str) -> bool:
        real = os.path.realpath(path) if not path.startswith("<") else path
        return (
            real == self.root
            or real.startswith(self.root + os.sep)
            or (path.startswith(self.root + os.sep))
        )

    def point(self, op: str, path: str, *, data: Any = None, file: Any = None) -> None:
        if not self.inside(path):
            return
        rel = os.path.relpath(path, self.root) if path.startswith("/") else path
        with self._count:
            self.n += 1
            n = self.n
            self.trace.append((op, rel))
        if n != self.at or self.action == "count":
            return
        self.fired = (op, rel)
        if self.action == "exit":
            if self.torn and op == "write" and file is not None and data:
                file.write(data[: max(1, len(data) // 2)])
                file.flush()
            os._exit(EXIT_CODE)
        # as Python raises them: calls on a path name it; calls on a descriptor or a file
        # object (write, flush, fsync, truncate) carry no file name
        if op in _FD_OPS:
            raise OSError(self.err, os.strerror(self.err))
        raise OSError(self.err, os.strerror(self.err), path)

    # ------------------------------------------------------------------ install
    def _patch(self, owner: Any, name: str, new: Any) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, new)

    def install(self) -> Injector:
        real = {
            name: getattr(os, name)
            for name in (
                "open",
                "write",
                "fsync",
                "fdatasync",
                "sync",
                "replace",
                "rename",
                "link",
                "unlink",
                "remove",
                "mkdir",
                "rmdir",
                "truncate",
                "ftruncate",
            )
        }
        real_open = io.open

        def os_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
            if flags & _WRITE_FLAGS:
                p = _path(path, dir_fd)
                creates = flags & os.O_CREAT and not os.path.lexists(p)
                self.point("create" if creates else "open", p)
            if dir_fd is None:
                return int(real["open"](path, flags, mode))
            return int(real["open"](path, flags, mode, dir_fd=dir_fd))

        def io_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            writing = any(c in mode for c in "wax+")
            if writing and not isinstance(file, int):
                self.point("open", _path(file))
            f = real_open(file, mode, *args, **kwargs)
            if writing:
                return _File(self, f, _path(file))
            return f

        def fd_op(name: str) -> Any:
            def call(fd: int, *args: Any) -> Any:
                self.point(name, _fd_path(fd))
                return real[name](fd, *args)

            return call

        def path_op(name: str, op: str | None = None) -> Any:
            def call(path: Any, *args: Any, **kwargs: Any) -> Any:
                p = _path(path, kwargs.get("dir_fd"))
                # mkdir of an existing directory and unlink of a missing file change nothing
                # (the kernel answers EEXIST / ENOENT before any write): not a point
                if os.path.lexists(p) == (name == "mkdir"):
                    return real[name](path, *args, **kwargs)
                self.point(op or name, p)
                return real[name](path, *args, **kwargs)

            return call

        def two_path_op(name: str) -> Any:
            def call(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
                self.point(name, _path(dst, kwargs.get("dst_dir_fd")))
                return real[name](src, dst, *args, **kwargs)

            return call

        def sync() -> None:
            self.point("sync", self.root)
            real["sync"]()

        def truncate(path: Any, length: int) -> None:
            self.point("truncate", _path(path))
            real["truncate"](path, length)

        self._patch(os, "open", os_open)
        self._patch(io, "open", io_open)
        self._patch(builtins, "open", io_open)
        self._patch(os, "write", fd_op("write"))
        self._patch(os, "fsync", fd_op("fsync"))
        self._patch(os, "fdatasync", fd_op("fdatasync"))
        self._patch(os, "ftruncate", fd_op("ftruncate"))
        self._patch(os, "sync", sync)
        self._patch(os, "truncate", truncate)
        self._patch(os, "replace", two_path_op("replace"))
        self._patch(os, "rename", two_path_op("rename"))
        self._patch(os, "link", two_path_op("link"))
        self._patch(os, "unlink", path_op("unlink"))
        self._patch(os, "remove", path_op("remove", "unlink"))
        self._patch(os, "mkdir", path_op("mkdir"))
        self._patch(os, "rmdir", path_op("rmdir"))
        return self

    def uninstall(self) -> None:
        while self._saved:
            owner, name, value = self._saved.pop()
            setattr(owner, name, value)
