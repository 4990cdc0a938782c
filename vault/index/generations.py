"""Index generations: the history of what was current, and the ref to the current one.

A generation's *content* is a manifest object (``vault.index.build``); its id is the
manifest's sha256, so equal index content is the same generation. Its *history* is
``index/generations.jsonl``: one record per generation made, with the audit position and the
reverted set it stands for, and its ``parent`` — the record that was current when it was
made (git's reflog). ``index/CURRENT`` names the current record. Plain ``vault rollback``
moves to the current record's parent; ``--to`` names any record. Moving ``CURRENT`` is one
atomic file replace, so rollback is O(1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vault.canonical import CHECK, dumps_line, loads, verify_check, with_check
from vault.errors import CorruptionError, InvalidInputError, NotFoundError
from vault.store.fs import atomic_write, fsync_file
from vault.store.jsonl import append_line, complete_lines, last_line_at, line_number
from vault.store.objects import is_digest


@dataclass(frozen=True)
class IndexGeneration:
    """One record of ``index/generations.jsonl``."""

    number: int
    generation: str
    time: str
    audit_seq: int  # the last audit entry this generation accounts for
    op: str  # what made it: init, add, fork, evidence, status, import, build, catch-up
    counts: dict[str, int]
    embedder: dict[str, Any]
    reverted: tuple[int, ...] = ()  # state entries (audit seqs) a rollback left out
    parent: int | None = None  # the record that was current when this one was made

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "generation": self.generation,
            "time": self.time,
            "audit_seq": self.audit_seq,
            "op": self.op,
            "counts": self.counts,
            "embedder": self.embedder,
            "reverted": list(self.reverted),
            "parent": self.parent,
        }


@dataclass(frozen=True)
class CurrentRef:
    """``index/CURRENT``: the current record, and the audit position the index accounts for
    (after a rollback, the rollback's own entry, later than the record's ``audit_seq``)."""

    generation: str
    number: int
    audit_seq: int
    reverted: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "number": self.number,
            "audit_seq": self.audit_seq,
            "reverted": list(self.reverted),
        }


def _ints(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in value
    ):
        raise TypeError("expected a list of integers")
    return tuple(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError("expected a non-negative integer")
    return value


class Generations:
    """``index/CURRENT`` and ``index/generations.jsonl``."""

    def __init__(self, root: Path):
        self.root = root
        self.current_path = root / "CURRENT"
        self.log_path = root / "generations.jsonl"

    def current(self) -> CurrentRef | None:
        try:
            data = self.current_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            obj = loads(data, source=str(self.current_path))
            if not isinstance(obj, dict) or set(obj) != {
                "generation",
                "number",
                "audit_seq",
                "reverted",
            }:
                raise TypeError("unexpected fields")
            cur = CurrentRef(
                obj["generation"],
                _int(obj["number"]),
                _int(obj["audit_seq"]),
                _ints(obj["reverted"]),
            )
            if not isinstance(cur.generation, str) or not is_digest(cur.generation):
                raise TypeError("no generation id")
        except (InvalidInputError, KeyError, TypeError, ValueError):
            raise CorruptionError(
                f"{self.current_path} is corrupted; `vault rollback --to N` or "
                "`vault index build` writes a good one"
            ) from None
        if data != dumps_line(cur.to_json()):
            raise CorruptionError(f"{self.current_path} is not canonical (edited by hand?)")
        return cur

    def set_current(self, ref: CurrentRef) -> None:
        atomic_write(self.current_path, dumps_line(ref.to_json()))

    def last(self) -> IndexGeneration | None:
        """The newest record, reading only the end of the log."""
        found = last_line_at(self.log_path)
        if found is None:
            return None
        at, line = found
        try:
            return _generation(line, str(self.log_path))
        except CorruptionError:  # located in the file only now (``line_number`` reads the
            number = line_number(self.log_path, at)  # log up to it: never on the healthy path)
        return _generation(line, f"{self.log_path}:{number}", number)

    def check(self, cur: CurrentRef) -> None:
        """Raise ``CorruptionError`` when the log has lost the record ``cur`` (``CURRENT``)
        names, as far as its last record tells: every record ``CURRENT`` names was appended
        first, and records are only ever appended or dropped from the old end (``vault gc``
        keeps the newest), so the last one is ``cur``'s or a later one. A writer must not go
        on from such a log: it would number its record from the log's end (restarting at 1
        after a deleted log) with a parent no record has. Reads only the end of the log
        (writers call it on every write; ``vault verify`` checks the whole log)."""
        remedy = (
            f"Restore {self.log_path.name} from a backup, or start the generation history "
            f"afresh (earlier generations can then not be rolled back to): remove "
            f"{self.current_path} and run `vault index build`"
        )
        try:
            last = self.last()
        except CorruptionError as exc:  # a damaged last record: the same refusal
            raise CorruptionError(f"{exc}: nothing was written. {remedy}") from None
        if last is not None and (
            last.number > cur.number
            or (last.number == cur.number and last.generation == cur.generation)
        ):
            return
        if last is None:
            what = "is missing" if not self.log_path.exists() else "holds no generation record"
        elif last.number < cur.number:
            what = f"ends at generation {last.number}"
        else:
            what = f"records generation {last.number} as {last.generation[:12]}"
        raise CorruptionError(
            f"{self.log_path} {what} but {self.current_path} names generation {cur.number} "
            f"({cur.generation[:12]}): generation records were lost, so nothing was written. "
            + remedy
        )

    def history(self) -> list[IndexGeneration]:
        lines, _ = complete_lines(self.log_path)
        out = [_generation(line, f"{self.log_path}:{i}", i) for i, line in enumerate(lines, 1)]
        for a, b in zip(out, out[1:], strict=False):
            if b.number <= a.number:
                raise CorruptionError(f"{self.log_path}: generation numbers out of order")
        return out

    def append(self, gen: IndexGeneration) -> None:
        append_line(self.log_path, with_check(gen.to_json()))

    def sync(self) -> None:
        """fsync ``generations.jsonl`` (before ``CURRENT`` names a record read from it that
        a killed writer appended and may not have made durable)."""
        if self.log_path.exists():
            fsync_file(self.log_path)

    def rewrite(self, kept: list[IndexGeneration]) -> None:
        atomic_write(self.log_path, b"".join(dumps_line(with_check(g.to_json())) for g in kept))

    def record(self, number: int) -> IndexGeneration | None:
        for g in reversed(self.history()):
            if g.number == number:
                return g
        return None

    def find(self, spec: str) -> IndexGeneration:
        """A record by number (``3``) or by generation id or unique id prefix (≥ 6 hex digits;
        the newest record of that generation)."""
        history = self.history()
        if spec.isdigit():
            found = [g for g in history if g.number == int(spec)]
            if found:
                return found[0]
            have = ", ".join(str(g.number) for g in history) or "none"
            raise NotFoundError(
                f"unknown generation {spec} (have: {have}; `vault gc` removes old ones)"
            )
        spec = spec.lower()
        matches = {
            g.generation for g in history if len(spec) >= 6 and g.generation.startswith(spec)
        }
        if len(matches) == 1:
            return [g for g in history if g.generation in matches][-1]
        if len(matches) > 1:
            raise NotFoundError(f"generation prefix {spec!r} is ambiguous")
        raise NotFoundError(f"unknown generation {spec!r}; `vault rollback --list` shows them")


def _generation(line: bytes, source: str, number: int = 1) -> IndexGeneration:
    try:
        o = loads(line, source=source, line=number)
        if not isinstance(o, dict):
            raise TypeError("not an object")
        verify_check(o)
        parent = o["parent"]
        gen = IndexGeneration(
            _int(o["number"]),
            o["generation"],
            o["time"],
            _int(o["audit_seq"]),
            o["op"],
            o["counts"],
            o["embedder"],
            _ints(o["reverted"]),
            None if parent is None else _int(parent),
        )
        if not isinstance(gen.generation, str) or not is_digest(gen.generation):
            raise TypeError("no generation id")
        if not isinstance(gen.op, str) or not isinstance(gen.time, str):
            raise TypeError("malformed op or time")
        if not isinstance(gen.counts, dict) or not isinstance(gen.embedder, dict):
            raise TypeError("malformed counts or embedder")
    except (InvalidInputError, KeyError, TypeError) as exc:
        what = exc.unlocated() if isinstance(exc, InvalidInputError) else str(exc)
        raise CorruptionError(f"malformed generation record ({what})", source=source) from None
    canonical = with_check(gen.to_json()) if CHECK in o else gen.to_json()
    if line + b"\n" != dumps_line(canonical):
        raise CorruptionError("generation record is not canonical", source=source)
    return gen
