"""Append-only JSON-lines files (the audit log, the generations log).

A line is acknowledged once it is newline-terminated and fsynced. Readers ignore an
unterminated tail (a crash mid-append); the next append cuts it off first.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vault.canonical import dumps_line
from vault.store.fs import fsync_dir, make_dir


def complete_lines(path: Path) -> tuple[list[bytes], bool]:
    """The newline-terminated lines of ``path`` (without newlines), and whether a torn tail
    follows them."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], False
    lines = data.split(b"\n")
    tail = lines.pop()
    return lines, bool(tail)


def tail_offset(path: Path) -> int:
    """Byte offset just after the last newline (the end of the acknowledged part)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    with open(path, "rb") as f:
        pos = size
        while pos > 0:
            start = max(0, pos - (1 << 16))
            f.seek(start)
            chunk = f.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                return start + i + 1
            pos = start
    return 0


class UncertainAppend(OSError):
    """An append failed and could not be undone: the line may or may not be durable."""


def append_line(path: Path, obj: Any) -> None:
    """Append one canonical line durably, first cutting off a torn tail. If the line cannot
    be made durable (write or fsync fails), it is cut off again before the error is raised,
    so a failed append is never mistaken for an acknowledged one. Never follows a symlink."""
    good = tail_offset(path)
    created = not path.exists()
    make_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size != good:
            os.ftruncate(fd, good)
        data = dumps_line(obj)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write", str(path))
            os.fsync(fd)
        except OSError as exc:
            try:  # undo: the line must not stay half-acknowledged
                os.ftruncate(fd, good)
                os.fsync(fd)
            except OSError:
                raise UncertainAppend(
                    exc.errno or errno.EIO,
                    f"{exc.strerror or exc}; the line could not be cut off again either, so "
                    "whether it took effect is unknown (run `vault verify`)",
                    str(path),
                ) from None
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, str(path)) from None
            raise
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def lines_from_end(path: Path) -> Iterator[bytes]:
    """Complete lines, last first, reading the file backwards in chunks (a torn tail is
    skipped): the cost is proportional to the bytes of the lines the caller consumes (a
    line longer than a chunk is gathered piece by piece, never re-split, in chunks that
    double while no line starts in them: a 3 MB line takes 6 reads, not 46)."""
    for _, line in lines_from_end_at(path):
        yield line


def lines_from_end_at(path: Path) -> Iterator[tuple[int, bytes]]:
    """``lines_from_end`` with each line's byte offset in the file (``line_number`` turns
    one into its line's number)."""
    end = tail_offset(path)
    if end == 0:
        return
    with open(path, "rb") as f:
        pos, step = end, 1 << 16
        pieces: list[bytes] = []  # the line being gathered, its last piece first
        while pos > 0:
            start = max(0, pos - step)
            f.seek(start)
            chunk = f.read(pos - start)
            pos = start
            if b"\n" not in chunk:  # no line starts in this chunk
                pieces.append(chunk)
                step = min(2 * step, 1 << 24)
                continue
            step = 1 << 16
            parts = chunk.split(b"\n")
            at = start + len(chunk) - len(parts[-1])  # where the last part starts
            line = parts[-1] + b"".join(reversed(pieces))
            if line:
                yield at, line
            for line in reversed(parts[1:-1]):
                at -= len(line) + 1
                if line:
                    yield at, line
            pieces = [parts[0]]
        line = b"".join(reversed(pieces))  # the file's first line
        if line:
            yield 0, line


def last_line(path: Path) -> bytes | None:
    """The last complete line, reading only the end of the file."""
    return next(lines_from_end(path), None)


def last_line_at(path: Path) -> tuple[int, bytes] | None:
    """``last_line`` with its byte offset in the file."""
    return next(lines_from_end_at(path), None)


def line_number(path: Path, offset: int) -> int:
    """The number (1-based) of the line starting at byte ``offset`` of ``path``: the
    newlines before it are counted, reading the file up to there in bounded chunks. For an
    error message only (a reader of the log's end refusing a damaged line): the healthy
    path never reads the log whole."""
    count = 0
    with open(path, "rb") as f:
        left = offset
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count + 1
