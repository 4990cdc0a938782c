"""``audit/commits.jsonl``: the append-only log of every change, and the order of events.

One canonical JSON line per write-back, fork, status change, evidence, index build,
rollback or mode switch, carrying its own checksum (``check``: any changed byte is caught
on read). A line is acknowledged once it is fsynced. A torn last line
(a crash mid-append, never acknowledged) is cut off on the next append.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault.canonical import CHECK, line_intact, loads, verify_check, with_check
from vault.errors import CorruptionError, InvalidInputError
from vault.store.fs import fsync_file
from vault.store.jsonl import (
    append_line,
    complete_lines,
    last_line,
    last_line_at,
    line_number,
    lines_from_end_at,
)

# the end of a canonical audit line: its top-level seq and time (a string without quotes or
# escapes), then the object's close
_TAIL_SEQ = re.compile(rb',"seq":(0|[1-9][0-9]{0,17}),"time":"[^"\\]*"\}\Z')

# Operations whose records change the vault's state (and so the index).
STATE_OPS = frozenset({"add", "fork", "evidence", "status", "import", "embedder", "transaction"})


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    op: str
    time: str
    records: tuple[str, ...]
    detail: dict[str, Any]
    check: str | None = field(default=None, compare=False)  # as read (None: not yet written)

    def to_json(self) -> dict[str, Any]:
        """The line's fields (with its checksum once it was read from the log)."""
        out = {
            "seq": self.seq,
            "op": self.op,
            "time": self.time,
            "records": list(self.records),
            "detail": self.detail,
        }
        if self.check is not None:
            out["check"] = self.check
        return out


class AuditLog:
    def __init__(self, path: Path):
        self.path = path

    def entries(self) -> list[AuditEntry]:
        """Every acknowledged entry in order (a torn last line is ignored)."""
        lines, _ = complete_lines(self.path)
        out = []
        for number, line in enumerate(lines, start=1):
            try:
                out.append(_entry(loads(line, source=f"{self.path}:{number}", line=number), line))
            except (InvalidInputError, KeyError, TypeError) as exc:
                raise CorruptionError(
                    f"malformed audit line ({_unlocated(exc)})", source=f"{self.path}:{number}"
                ) from None
            if out[-1].seq != number:
                raise CorruptionError(
                    f"expected seq {number}, found {out[-1].seq}", source=f"{self.path}:{number}"
                )
        return out

    def entries_after(self, seq: int) -> list[AuditEntry]:
        """The entries with a larger ``seq``, in order, reading only the end of the log."""
        out = []
        for at, line in lines_from_end_at(self.path):
            entry = self._entry_at(at, line, "audit line")
            if entry.seq <= seq:
                break
            out.append(entry)
        out.reverse()
        return out

    def last_seq(self) -> int:
        found = last_line_at(self.path)
        return 0 if found is None else self._entry_at(*found, "last audit line").seq

    def _entry_at(self, at: int, line: bytes, what: str) -> AuditEntry:
        """The entry of ``line``, read from the log's end at byte ``at``. A malformed one
        is refused naming its line of the file, counted only then (``line_number`` reads
        the log up to it: the healthy path never reads the log whole)."""
        try:
            return _entry(loads(line), line)
        except (InvalidInputError, KeyError, TypeError):
            pass
        number = line_number(self.path, at)
        where = f"{self.path}:{number}"
        try:  # (parsed again, to locate the error in the file)
            return _entry(loads(line, source=where, line=number), line)
        except (InvalidInputError, KeyError, TypeError) as exc:
            raise CorruptionError(f"malformed {what} ({_unlocated(exc)})", source=where) from None

    def tail_seq(self) -> int:
        """``last_seq`` for a reader asking whether the index is current: the last line's
        ``seq`` read from its bytes when its checksum matches them (``line_intact``: the
        canonical bytes its writer wrote, whose last key is ``time``, a plain string), so a
        write-back line naming 10^4 records is hashed, not parsed (about 10 ms of a cold
        query at 10^5 concepts). Any other line — damaged, hand-edited, of another form —
        is parsed by ``last_seq``, with its errors."""
        line = last_line(self.path)
        if line is None:
            return 0
        at = line.rfind(b',"seq":')
        if at > 0 and line_intact(line) and (m := _TAIL_SEQ.match(line, at)) is not None:
            return int(m[1])
        return self.last_seq()

    def append(self, op: str, time: str, records: list[str], detail: dict[str, Any]) -> AuditEntry:
        """Append one entry durably (call under the write lock); cuts off a torn tail first."""
        entry = AuditEntry(self.last_seq() + 1, op, time, tuple(records), detail)
        append_line(self.path, with_check(entry.to_json()))
        return entry

    def append_entry(self, entry: AuditEntry) -> None:
        """Append a prepared entry; its seq must follow the last one."""
        if entry.seq != self.last_seq() + 1:
            raise CorruptionError(f"{self.path}: audit seq {entry.seq} out of order")
        append_line(self.path, with_check(entry.to_json()))

    def sync(self) -> None:
        """fsync the log: the lines read from it are then durable, even one a writer killed
        between its write and its fsync left behind (call before acting on such a line)."""
        if self.path.exists():
            fsync_file(self.path)

    def __iter__(self) -> Iterator[AuditEntry]:
        return iter(self.entries())


def _unlocated(exc: Exception) -> str:
    """What ``exc`` says is wrong, without the place (the caller's message names it)."""
    return exc.unlocated() if isinstance(exc, InvalidInputError) else str(exc)


def _entry(obj: Any, line: bytes | None = None) -> AuditEntry:
    """The entry parsed from a log line (``line``: its bytes, when at hand: a line its
    checksum matches byte for byte is not serialised again to check it)."""
    if not isinstance(obj, dict):
        raise TypeError("not an object")
    if line is None or not line_intact(line):
        verify_check(obj)
    return AuditEntry(
        seq=obj["seq"],
        op=obj["op"],
        time=obj["time"],
        records=tuple(obj["records"]),
        detail=obj["detail"],
        check=obj.get(CHECK),
    )
