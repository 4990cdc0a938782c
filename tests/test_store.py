"""The store under concurrency and crashes: serialized writers, nothing lost, nothing torn."""

from __future__ import annotations

import multiprocessing as mp
import re
from pathlib import Path
from typing import Any

import pytest

from vault.canonical import sha256_hex
from vault.errors import CorruptionError
from vault.ops import write as writeback
from vault.ops.verify import verify
from vault.store.audit import AuditLog
from vault.store.objects import ObjectStore
from vault.vault import Vault

from .conftest import card
from .helpers import concepts


def _writer(root: str, worker: int, n: int) -> None:
    v = Vault.open(root)
    for i in range(n):
        v.add([(card(f"w{worker}-{i}", ["transform:rotate_90", f"feature:w{worker}"]), "mp")])


def test_concurrent_writers_lose_nothing(vault: Vault) -> None:
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(vault.root), w, 5)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    stored = concepts(vault)
    assert len(stored) == 20
    seqs = [e.seq for e in vault.audit.entries()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert verify(vault).ok


def test_objects_are_write_once_and_named_by_their_hash(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects")
    digest = store.put(b"hello")
    path = store.path(digest)
    assert path.parent.name == digest[:2] and path.name == digest[2:]
    assert sha256_hex(path.read_bytes()) == digest
    mtime = path.stat().st_mtime_ns
    assert store.put(b"hello") == digest
    assert path.stat().st_mtime_ns == mtime
    assert not store.has("../../etc/passwd") and not store.has("ab" * 32)


def test_crash_after_acknowledgement_is_caught_up(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between the audit line and the new generation: the write is not lost, the
    previous generation stays current and readable, and the next writer catches up."""
    vault.add([(card("a", ["transform:flip_h"]), "a")])
    before = vault.generations.current()

    def die(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(writeback, "publish", die)
    with pytest.raises(KeyboardInterrupt):
        vault.add([(card("b", ["transform:flip_h"]), "b")])
    monkeypatch.undo()
    assert vault.generations.current() == before
    assert vault.stale()
    assert "b@1.0.0" not in concepts(vault)
    vault.add([(card("c", ["transform:flip_h"]), "c")])
    stored = concepts(vault)
    assert {"a@1.0.0", "b@1.0.0", "c@1.0.0"} <= set(stored)
    assert verify(vault).ok


def test_bad_record_fails_before_acknowledgement(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the index cannot be computed, nothing is acknowledged and the vault stays usable."""
    import importlib

    core = importlib.import_module("vault.index.build")
    seq = vault.audit.last_seq()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("cannot embed")

    monkeypatch.setattr(core, "concept_vector", broken)
    with pytest.raises(CorruptionError, match="cannot embed"):
        vault.add([(card("x", ["transform:crop"]), "x")])
    monkeypatch.undo()
    assert vault.audit.last_seq() == seq
    vault.add([(card("y", ["transform:crop"]), "y")])
    assert set(concepts(vault)) == {"y@1.0.0"}
    assert verify(vault).ok


def test_torn_audit_tail_is_repaired_on_append(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "commits.jsonl")
    log.append("add", "t", [], {})
    with open(log.path, "ab") as f:
        f.write(b'{"seq":2,"op":"ad')
    assert [e.seq for e in log.entries()] == [1]
    log.append("status", "t", [], {})
    assert [e.op for e in log.entries()] == ["add", "status"]
    assert log.path.read_bytes().endswith(b"\n")


def test_entries_after_reads_the_tail(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "commits.jsonl")
    for i in range(300):
        log.append("add", "t", [], {"pad": "x" * (i % 700)})  # lines straddle read chunks
    with open(log.path, "ab") as f:
        f.write(b'{"torn')
    assert [e.seq for e in log.entries_after(295)] == [296, 297, 298, 299, 300]
    assert [e.seq for e in log.entries_after(0)] == list(range(1, 301))
    assert log.entries_after(300) == []
    assert [e.to_json() for e in log.entries_after(0)] == [e.to_json() for e in log.entries()]


def _damage_line(path: Path, number: int) -> None:
    """Line ``number`` made malformed JSON (its first byte: `{` to `x`)."""
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = b"x" + lines[number - 1][1:]
    path.write_bytes(b"\n".join(lines))


def test_reads_from_the_audit_logs_end_name_the_damaged_lines_number(tmp_path: Path) -> None:
    """``last_seq`` and ``entries_after`` read the log from its end: a damaged line is
    still named by its line of the file (7, 5), in the place and in the JSON error."""
    log = AuditLog(tmp_path / "commits.jsonl")
    for i in range(7):
        log.append("add", "2026-01-01T00:00:00Z", [], {"pad": "x" * (i * 30_000)})
    _damage_line(log.path, 7)
    with pytest.raises(CorruptionError) as last:
        log.last_seq()
    assert str(last.value) == (
        f"{log.path}:7: malformed last audit line (malformed JSON: Expecting value "
        "(line 7, column 1))"
    )
    with pytest.raises(CorruptionError) as after:
        log.entries_after(2)
    assert str(after.value) == str(last.value).replace("last audit line", "audit line")
    log.path.write_bytes(log.path.read_bytes().replace(b"\nx", b"\n{"))  # line 7 repaired
    _flip_time(log.path, 5)
    assert [e.seq for e in log.entries_after(6)] == [7]
    with pytest.raises(CorruptionError, match=rf"^{re.escape(str(log.path))}:5: malformed "):
        log.entries_after(4)


def test_the_generation_logs_last_record_damaged_is_named_by_its_line(vault: Vault) -> None:
    """``Generations.last`` reads the log's end: a damaged last record is named by its line
    of the file, in the place and in the JSON error."""
    for name in ("x", "y", "z"):
        vault.add([(card(name, ["feature:square"]), name)])
    log = vault.generations.log_path
    n = len(log.read_bytes().splitlines())
    assert n >= 4
    _damage_line(log, n)
    with pytest.raises(CorruptionError) as error:
        vault.generations.last()
    assert str(error.value) == (
        f"{log}:{n}: malformed generation record (malformed JSON: Expecting value "
        f"(line {n}, column 1))"
    )


def _flip_time(path: Path, line: int) -> None:
    """Change one digit of a line's time: the line still parses as the same shape."""
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = lines[line - 1].replace(b'"time":"20', b'"time":"21', 1)
    path.write_bytes(b"\n".join(lines))


def test_a_changed_audit_line_is_caught_by_its_checksum(vault: Vault) -> None:
    vault.add([(card("x", ["feature:square"]), "x")])
    log = AuditLog(vault.audit.path)
    assert all(e.check is not None for e in log.entries())
    _flip_time(vault.audit.path, 2)
    with pytest.raises(CorruptionError, match=r"commits.jsonl:2: .*checksum mismatch"):
        log.entries()
    report = verify(Vault.open(vault.root))
    assert any(
        p.kind == "audit_malformed" and p.path.endswith("commits.jsonl:2") for p in report.problems
    )


def test_a_write_after_a_damaged_earlier_audit_line_is_kept(vault: Vault) -> None:
    """FORMAT §6: writers read the log's end only, so they append after a line damaged
    earlier; readers of the whole log and verify name that line; restoring its bytes makes
    the log whole again with the later write in place."""
    vault.add([(card("x", ["feature:square"]), "x")])
    vault.add([(card("y", ["feature:square"]), "y")])
    path = vault.audit.path
    kept = path.read_bytes()
    _flip_time(path, 2)
    vault.add([(card("z", ["feature:square"]), "z")])  # acknowledged
    with pytest.raises(CorruptionError, match=r"commits.jsonl:2: .*checksum mismatch"):
        AuditLog(path).entries()
    report = verify(Vault.open(vault.root))
    assert [p.path.rsplit("/", 1)[-1] for p in report.problems if p.kind == "audit_malformed"] == [
        "commits.jsonl:2"
    ]
    # the damaged line restored: every entry reads, z's write among them, verify clean
    lines = path.read_bytes().split(b"\n")
    lines[1] = kept.split(b"\n")[1]
    path.write_bytes(b"\n".join(lines))
    reopened = Vault.open(vault.root)
    assert [e.seq for e in reopened.audit.entries()] == list(range(1, len(lines)))
    assert {"x", "y", "z"} <= {c.split("@")[0] for c in concepts(reopened)}
    assert verify(reopened).ok


def test_a_changed_generation_record_is_caught_by_its_checksum(vault: Vault) -> None:
    vault.add([(card("x", ["feature:square"]), "x")])
    _flip_time(vault.generations.log_path, 2)
    with pytest.raises(CorruptionError, match="checksum mismatch"):
        vault.generations.history()
    assert not verify(Vault.open(vault.root)).ok


def test_a_log_line_written_before_checksums_is_accepted(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "commits.jsonl")
    log.path.write_bytes(
        b'{"detail":{},"op":"init","records":[],"seq":1,"time":"2020-01-01T00:00:00Z"}\n'
    )
    entry = log.append("mode", "2020-01-02T00:00:00Z", [], {"mode": None})
    assert [e.seq for e in log.entries()] == [1, 2] and entry.seq == 2
    assert [e.check is None for e in log.entries()] == [True, False]


@pytest.mark.parametrize("seed", range(8))
def test_lines_from_end_gives_every_complete_line_last_first(tmp_path: Path, seed: int) -> None:
    """Against a plain split of the whole file: lines shorter and longer than the 64 KiB
    chunk (a write-back's audit line holds megabytes), empty lines skipped, a torn tail
    (no newline after it) left out."""
    import random

    from vault.store.jsonl import last_line, line_number, lines_from_end, lines_from_end_at

    rng = random.Random(seed)
    sizes = [0, 1, 57, (1 << 16) - 1, 1 << 16, (1 << 16) + 1, 3 * (1 << 16) + 5, 200_003]
    sizes += [(1 << 17) + (1 << 16), 1_000_003]  # the chunks double along a long line
    lines = [
        rng.randbytes(rng.choice(sizes)).replace(b"\n", b"x") for _ in range(rng.randint(1, 9))
    ]
    torn = rng.randbytes(rng.choice(sizes)).replace(b"\n", b"y") if seed % 2 else b""
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"".join(x + b"\n" for x in lines) + torn)
    want = [x for x in reversed(lines) if x]
    assert list(lines_from_end(path)) == want
    assert last_line(path) == (want[0] if want else None)
    starts = [sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))]
    at = [(start, x) for start, x in reversed(list(zip(starts, lines, strict=True))) if x]
    assert list(lines_from_end_at(path)) == at  # each line's byte offset
    numbers = [i for i, x in reversed(list(enumerate(lines, start=1))) if x]
    assert [line_number(path, start) for start, _ in at] == numbers


@pytest.mark.parametrize("seed", range(6))
def test_tail_seq_is_the_last_lines_seq(tmp_path: Path, seed: int) -> None:
    """``tail_seq`` (the seq read from an intact line's bytes) against ``json.loads`` of the
    last complete line, over logs whose details hold nested "seq" keys, strings spelling
    ``,"seq":``, quotes and escapes, and megabyte record lists; times with quotes or
    backslashes (the parse path); a torn tail; a damaged or re-checksummed last line."""
    import json
    import random

    from vault.canonical import line_check

    rng = random.Random(seed)
    log = AuditLog(tmp_path / "commits.jsonl")
    assert log.tail_seq() == 0
    tricky = [',"seq":99,"time":"x"}', '"seq":5', 'a"b\\c', "\u00e9\n", "}"]
    for _ in range(rng.randint(1, 6)):
        detail = {"seq": rng.randint(0, 9), "note": rng.choice(tricky), "n": {"seq": 3}}
        records = [f"{rng.getrandbits(256):064x}" for _ in range(rng.choice([0, 2, 40_000]))]
        time = rng.choice(["2026-12-07T01:02:03Z", 't"q', "t\\", "", ',"seq":7'])
        log.append(rng.choice(["add", "status"]), time, records, detail)
        if rng.random() < 0.5:
            with open(log.path, "ab") as f:
                f.write(b'{"check":"0123456789abcdef","seq":77')  # torn: never acknowledged
        last = log.path.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        if last.startswith(b'{"check":"0123'):
            last = log.path.read_bytes().split(b"\n")[-2]
        want = json.loads(last)["seq"]
        assert log.tail_seq() == want == log.last_seq()
        if time.startswith("2026"):  # an intact canonical line: read without a parse
            fast = AuditLog(log.path)
            fast.last_seq = lambda: pytest.fail("parsed")  # type: ignore[method-assign]
            assert fast.tail_seq() == want
        log.append("mode", "t", [], {})  # cuts the torn tail off
    # a crafted line with a valid checksum whose "time" is an object holding a "seq": the
    # bytes do not end as a canonical line does, so it is parsed (top-level seq)
    crafted = {"seq": 40, "op": "add", "records": [], "detail": {}, "time": {"seq": 41}}
    text = json.dumps({**crafted, "check": line_check(crafted)}, sort_keys=True)
    with open(log.path, "ab") as f:
        f.write(text.replace(" ", "").encode() + b"\n")
    assert log.tail_seq() == 40 == log.last_seq()
    # a damaged last line: the checksum fails, the parse path reports it
    log.append("mode", "2026-01-01T00:00:00Z", [], {})
    data = log.path.read_bytes()
    at = data.rindex(b'"time":"2026')
    log.path.write_bytes(data[:at] + b'"time":"2027' + data[at + 12 :])
    for read in (log.tail_seq, log.last_seq):
        with pytest.raises(CorruptionError):
            read()


def test_a_log_line_is_intact_exactly_as_written() -> None:
    """``line_intact`` (the checksum read from the bytes, no parse) holds for a line as a
    writer writes it and for no line changed after: one byte anywhere, or the same entry
    written in another JSON form (``verify_check`` on the parse judges those)."""
    import json

    from vault.canonical import canonical_bytes, line_intact, with_check

    entry = {"seq": 7, "op": "add", "time": "t", "records": ["a" * 64], "detail": {"n": 1}}
    line = canonical_bytes(with_check(entry))
    assert line_intact(line)
    for i in range(len(line)):
        changed = line[:i] + bytes([line[i] ^ 1]) + line[i + 1 :]
        assert not line_intact(changed), i
    spaced = json.dumps(with_check(entry), sort_keys=True).encode()
    assert not line_intact(spaced)
    assert not line_intact(canonical_bytes(entry))  # no checksum
