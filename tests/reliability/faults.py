"""Fault sweeps: one write-back in a forked child whose N-th file-system point fails with
ENOSPC or EIO (``inject.Injector`` action ``raise``), for every N; then the checks of item 3
and a retry (used by ``test_faults.py``)."""

from __future__ import annotations

import errno
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import full_build_id, tree
from vault.store.audit import STATE_OPS
from vault.vault import Vault

from .harness import (
    copy_vault,
    errors_of,
    fork_cli,
    state_files,
    temporaries,
    unchanged_but_objects,
    verify_report,
)
from .inject import Injector
from .sweep import Baseline, _concepts, _lines
from .workloads import AUDIT_OP

ERRNOS = {"ENOSPC": errno.ENOSPC, "EIO": errno.EIO}
#: how a message may say that the write took effect although the command failed
COMMITTED = re.compile(r"took effect|committed|acknowledged|was recorded|is recorded", re.I)


@dataclass
class Fault:
    op: str
    n: int
    point: tuple[str, str]
    err: str
    code: int
    message: str
    acked: bool = False
    handled: bool = False  # exit 0: the error was absorbed (e.g. a cache write, a view copy)
    checks: dict[str, str] = field(default_factory=dict)  # failed check -> detail

    def where(self) -> str:
        return f"{self.op} point {self.n} {self.point[0]} {self.point[1]} {self.err}"


def _acked(b: Baseline, root: Path) -> bool:
    log = _lines(state_files(root)["audit/commits.jsonl"])
    pre = _lines(b.pre_files["audit/commits.jsonl"])
    return len(log) > len(pre) and any(
        f'"op":"{AUDIT_OP[b.op]}"'.encode() in line for line in log[len(pre) :]
    )


def _state_lines(data: bytes | None) -> list[tuple[str, list[str], str]]:
    """The state-changing audit entries as (op, records, detail) — not their seq and check,
    which shift by one when a ``repair`` line (FORMAT §3) was written before them."""
    out = []
    for line in _lines(data):
        entry = json.loads(line)
        if entry["op"] in (*STATE_OPS, "rollback"):
            out.append((entry["op"], entry["records"], json.dumps(entry["detail"], sort_keys=True)))
    return out


def repaired(root: Path, name: str) -> bool:
    """Whether the command rewrote object ``name`` (``objects/ab/cdef…``) as damaged and said
    so with a ``repair`` audit line (FORMAT §3): an existing object whose fsync fails is
    replaced by a fresh, fsynced file — the failure was handled, not ignored."""
    parts = Path(name).parts
    if len(parts) != 3 or parts[0] != "objects":
        return False
    digest = parts[1] + parts[2]
    log = state_files(root)["audit/commits.jsonl"]
    return any(b'"op":"repair"' in line and digest.encode() in line for line in _lines(log))


def fault_at(b: Baseline, n: int, err: str, work: Path) -> Fault:
    w = copy_vault(b.pre, work / "w")
    before = b.pre_tree  # the copy is byte-identical to the pre-state
    inj = Injector(w, "raise", n, ERRNOS[err])
    child = fork_cli(w, b.args, inj)
    # the point that failed in this run (the batch path's threads may order the points
    # differently from the clean run's trace)
    point = child.fired if child.fired is not None else b.trace[n - 1]
    f = Fault(b.op, n, point, err, child.code, child.stderr.strip())
    f.acked = _acked(b, w)
    temp_unlink = point[0] == "unlink" and Path(point[1]).name.startswith(".")
    if child.crashed:
        f.checks["no_traceback"] = child.stderr[-300:]
    if child.code == 0:
        f.handled = True
        if point[0] in ("fsync", "sync") and not repaired(w, point[1]):
            f.checks["fails"] = f"exit 0 although {point[0]} of {point[1]} failed"
    else:
        if not child.one_line_error:
            f.checks["one_line"] = child.stderr[-300:]
        if str(w) not in child.stderr and not re.search(
            r"(objects|index|audit|embeddings)/", child.stderr
        ):
            f.checks["names_file"] = f.message
        if f.acked:
            if not COMMITTED.search(child.stderr):
                f.checks["says_committed"] = f.message
        else:
            changed = unchanged_but_objects(before, tree(w))
            if temp_unlink:  # the failed call was the temporary's own removal
                changed = [c for c in changed if not Path(c).name.startswith(".")]
            if changed:
                f.checks["unchanged"] = f"changed: {changed[:4]}"
        left = temporaries(w)
        if left and not temp_unlink:
            f.checks["no_temporaries"] = f"left {left[:3]}"
    if child.code == 0 and b.op in ("fork", "rollback"):
        return f  # it succeeded: running it again is a new request, not a retry
    # the retry: succeeds, and the write-back took effect exactly once
    retry = fork_cli(w, b.args)
    if retry.code != 0:
        f.checks["retry"] = f"retry failed: {retry.stderr.strip()[:200]}"
        return f
    try:
        files = state_files(w)
        if _concepts(w) != b.post_concepts:
            f.checks["retry"] = "state after the retry is not the clean run's"
        elif _state_lines(files["audit/commits.jsonl"]) != _state_lines(
            b.post_files["audit/commits.jsonl"]
        ):
            f.checks["retry"] = "the retry applied the write-back a second time"
        elif files["refs/mode.json"] != b.post_files["refs/mode.json"]:
            f.checks["retry"] = "kill switch differs from the clean run's"
        v = Vault.open(w)
        cur = v.generations.current()
        if cur is None or full_build_id(v) != cur.generation:
            f.checks["retry_sound"] = "current generation != a full build"
        ok, report, _ = verify_report(w)
        if not ok:
            f.checks["retry_sound"] = f"verify: {errors_of(report)[:3]}"
        if temporaries(w):
            f.checks["retry_sweeps"] = f"left {temporaries(w)[:3]}"
    except Exception as exc:  # noqa: BLE001
        f.checks["retry_sound"] = f"{type(exc).__name__}: {exc}"
    return f
