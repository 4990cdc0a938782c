"""Item 5 — torn tails. A crash inside the append of an audit line (or of a generation
record) leaves a prefix of that line at the end of the log. For every byte length of the
prefix: the next read serves the last complete state (the same log entries, the same
snapshot, the same retrieval, ``verify`` ok with a warning), and the next append repairs the
log (the torn bytes are cut, the new line follows the last complete one) with nothing
acknowledged lost. Also: an *acknowledged* last line cut by the file system."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import full_build_id
from vault.index.snapshot import clear_cache
from vault.records.query import task_query
from vault.retrieval import retrieve
from vault.vault import Vault

from .harness import STRESS, copy_vault, errors_of, figure, fork_cli, verify_report
from .workloads import Seed

LOGS = {"audit": "audit/commits.jsonl", "generations": "index/generations.jsonl"}


def _answer(root: Path, task: Path) -> list[tuple[str, str, float]]:
    clear_cache()
    v = Vault.open(root)
    r = retrieve(v, task_query(json.loads(task.read_text())), v.config(), "hybrid")
    assert r.mode_used == "hybrid", r.fallback_reason
    return [(h.id, h.version, h.score) for h in r.results]


def _cuts(length: int) -> list[int]:
    """Every prefix length of a line of ``length`` bytes (its newline excluded) under stress;
    in CI the first and last three and every 29th."""
    every = range(1, length)
    if STRESS:
        return list(every)
    return sorted({*every[:3], *every[-3:], *every[::29]})


@pytest.mark.parametrize("log", list(LOGS))
def test_torn_append_serves_the_last_complete_state_and_is_repaired(
    seed: Seed, fast: Path, log: str
) -> None:
    rel = LOGS[log]
    pre = copy_vault(seed.root, fast / "pre")
    nxt = ["add", str(seed.inputs / "next-card.json"), "--json"]
    after = copy_vault(pre, fast / "after")
    assert fork_cli(after, nxt).code == 0
    old = (pre / rel).read_bytes()
    line = (after / rel).read_bytes()[len(old) :].split(b"\n")[0] + b"\n"
    clear_cache()
    v = Vault.open(pre)
    entries, concepts = v.audit.entries(), dict(v.snapshot().state.concepts())
    history = v.generations.history()
    answer = _answer(pre, seed.query_task)
    retry = ["add", str(seed.inputs / "retry-card.json"), "--json"]
    expected = copy_vault(pre, fast / "expected")
    assert fork_cli(expected, retry).code == 0
    want_log = (expected / rel).read_bytes()
    problems: list[str] = []
    cuts = _cuts(len(line) - 1)
    for k in cuts:
        w = copy_vault(pre, fast / "w")
        with open(w / rel, "ab") as f:
            f.write(line[:k])
        clear_cache()
        v = Vault.open(w)
        # the next read: the last complete state
        if v.audit.entries() != entries or v.generations.history() != history:
            problems.append(f"{k}: the log reads differently")
        if dict(v.snapshot().state.concepts()) != concepts:
            problems.append(f"{k}: another state is served")
        if _answer(w, seed.query_task) != answer:
            problems.append(f"{k}: another retrieval")
        ok, report, same = verify_report(w)
        if not ok or not same:
            problems.append(f"{k}: verify {errors_of(report)} changed={not same}")
        # the next append repairs it
        child = fork_cli(w, retry)
        if child.code != 0:
            problems.append(f"{k}: next write-back failed: {child.stderr.strip()}")
            continue
        if (w / rel).read_bytes() != want_log:
            problems.append(f"{k}: the log after the next append is not the repaired one")
        clear_cache()
        v = Vault.open(w)
        cur = v.generations.current()
        if cur is None or full_build_id(v) != cur.generation:
            problems.append(f"{k}: current generation != a full build")
        if not set(concepts) < set(dict(v.snapshot().state.concepts())):
            problems.append(f"{k}: an acknowledged concept was lost")
    figure("torn_tail", log=rel, line_bytes=len(line) - 1, cuts=len(cuts), failed=len(problems))
    assert not problems, problems[:5]


def _cut_last_line(root: Path, keep: int) -> None:
    data = (root / LOGS["audit"]).read_bytes()
    start = data[:-1].rfind(b"\n") + 1
    (root / LOGS["audit"]).write_bytes(data[: start + keep])


def test_cut_acknowledged_line_is_reported_by_verify(seed: Seed, fast: Path) -> None:
    """The file system lost the tail of an acknowledged, indexed audit line: ``CURRENT`` is
    now ahead of the log. verify must say so (exit 1, naming CURRENT or the audit log)."""
    problems = []
    for keep in (0, 1, 40, 120):
        w = copy_vault(seed.root, fast / "w")
        _cut_last_line(w, keep)
        ok, report, same = verify_report(w)
        named = [e for e in errors_of(report) if "CURRENT" in e or "commits.jsonl" in e]
        if ok or not named or not same:
            problems.append((keep, report["problems"]))
    assert not problems, problems


def test_next_write_after_a_cut_acknowledged_line_refuses_or_repairs(
    seed: Seed, fast: Path
) -> None:
    """After the cut, the next write-back either refuses with one error line (the vault
    unchanged), or leaves a vault whose index is the fold of its log and that verifies."""
    problems = []
    for keep in (0, 1, 40, 120):
        w = copy_vault(seed.root, fast / "w")
        _cut_last_line(w, keep)
        before = (w / LOGS["audit"]).read_bytes()
        child = fork_cli(w, ["add", str(seed.inputs / "next-card.json"), "--json"])
        if child.code != 0:
            if (
                child.crashed
                or not child.one_line_error
                or (w / LOGS["audit"]).read_bytes() != before
            ):
                problems.append((keep, "refused, but not cleanly", child.stderr))
            continue
        ok, report, _ = verify_report(w)
        v = Vault.open(w)
        cur = v.generations.current()
        if not ok or cur is None or full_build_id(v) != cur.generation:
            problems.append((keep, "accepted into an inconsistent vault", errors_of(report)[:3]))
    assert not problems, problems
