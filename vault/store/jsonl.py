"""Append-only JSON-lines files (the audit log, the generations log).

A line is acknowledged once it is newline-terminated and fsynced. Readers ignore an
unterminated tail (a crash mid-append); the next append cuts it off first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vault.canonical import dumps_line
from vault.store.fs import fsync_dir


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


def append_line(path: Path, obj: Any) -> None:
    """Append one canonical line durably, first cutting off a torn tail."""
    good = tail_offset(path)
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        if f.tell() != good:
            f.truncate(good)
        f.write(dumps_line(obj))
        f.flush()
        os.fsync(f.fileno())
    if created:
        fsync_dir(path.parent)


def lines_from_end(path: Path) -> Iterator[bytes]:
    """Complete lines, last first, reading the file backwards in chunks (a torn tail is
    skipped): the cost is proportional to how many lines the caller consumes."""
    end = tail_offset(path)
    if end == 0:
        return
    with open(path, "rb") as f:
        pos = end
        rest = b""
        while pos > 0:
            start = max(0, pos - (1 << 16))
            f.seek(start)
            chunk = f.read(pos - start) + rest
            pos = start
            parts = chunk.split(b"\n")
            rest = parts[0] if pos > 0 else b""
            for line in reversed(parts[1:] if pos > 0 else parts):
                if line:
                    yield line


def last_line(path: Path) -> bytes | None:
    """The last complete line, reading only the end of the file."""
    return next(lines_from_end(path), None)
