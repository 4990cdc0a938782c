"""``audit/commits.jsonl``: the append-only log of every change, and the order of events.

One canonical JSON line per write-back, fork, status change, evidence, index build,
rollback or mode switch. A line is acknowledged once it is fsynced. A torn last line
(a crash mid-append, never acknowledged) is cut off on the next append.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .canonical import dumps_line, loads
from .errors import CorruptionError, InvalidInputError

# Operations whose records change the vault's state (and so the index).
STATE_OPS = frozenset({"add", "fork", "evidence", "status", "import"})


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    op: str
    time: str
    records: tuple[str, ...]
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "op": self.op,
            "time": self.time,
            "records": list(self.records),
            "detail": self.detail,
        }


class AuditLog:
    def __init__(self, path: Path):
        self.path = path

    def _read_lines(self) -> tuple[list[bytes], bool]:
        """Complete lines, and whether a torn tail follows them."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], False
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        return lines, bool(tail)

    def entries(self) -> list[AuditEntry]:
        """Every acknowledged entry in order (a torn last line is ignored)."""
        lines, _ = self._read_lines()
        out = []
        for number, line in enumerate(lines, start=1):
            try:
                obj = loads(line, source=f"{self.path}:{number}")
                entry = AuditEntry(
                    seq=obj["seq"],
                    op=obj["op"],
                    time=obj["time"],
                    records=tuple(obj["records"]),
                    detail=obj["detail"],
                )
            except (InvalidInputError, KeyError, TypeError) as exc:
                if number == len(lines):  # a last line that a crash cut short
                    break
                raise CorruptionError(f"{self.path}:{number}: malformed audit line ({exc})") from None
            if entry.seq != number:
                raise CorruptionError(f"{self.path}:{number}: expected seq {number}, found {entry.seq}")
            out.append(entry)
        return out

    def _tail(self) -> tuple[int, int]:
        """(seq of the last complete line, byte offset just after it), reading only the end."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0, 0
        with open(self.path, "rb") as f:
            chunk = 1 << 16
            while True:
                start = max(0, size - chunk)
                f.seek(start)
                data = f.read(size - start)
                end = data.rfind(b"\n")
                if end < 0 and start > 0:
                    chunk *= 4
                    continue
                if end < 0:
                    return 0, 0
                prev = data.rfind(b"\n", 0, end)
                if prev < 0 and start > 0:
                    chunk *= 4
                    continue
                line = data[prev + 1 : end]
                try:
                    seq = int(loads(line, source=str(self.path))["seq"])
                except (InvalidInputError, KeyError, TypeError, ValueError):
                    raise CorruptionError(f"{self.path}: malformed last audit line") from None
                return seq, start + end + 1

    def last_seq(self) -> int:
        return self._tail()[0]

    def append(self, op: str, time: str, records: list[str], detail: dict[str, Any]) -> AuditEntry:
        """Append one entry durably (call under the write lock); cuts off a torn tail first."""
        seq, good = self._tail()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            if f.tell() != good:
                f.truncate(good)
            entry = AuditEntry(seq + 1, op, time, tuple(records), detail)
            f.write(dumps_line(entry.to_json()))
            f.flush()
            os.fsync(f.fileno())
        return entry

    def __iter__(self) -> Iterator[AuditEntry]:
        return iter(self.entries())
