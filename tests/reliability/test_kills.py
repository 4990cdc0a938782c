"""Item 2 — random kills: every kind of write-back (add, fork, evidence, status, import,
index build, rollback, rollback --to, gc, the kill switch) started in a child process and
SIGKILLed at a random moment of its run (uniform over the time a clean run of that kind
takes), until ``runs(30, 220)`` kills have landed, on one vault on the real disk. A write-back is
*acknowledged* when the CLI exited 0 and printed its JSON. After every kill the vault must
verify; at the end (after one more write-back, which catches up, and ``gc``): every
acknowledged record is present (unless a later acknowledged rollback reverted it), every
acknowledged audit line is in the log, the index equals a full build, verify passes."""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import card
from tests.helpers import full_build_id
from vault.index.snapshot import clear_cache
from vault.vault import Vault

from .harness import (
    STRESS,
    copy_vault,
    errors_of,
    figure,
    fork_cli,
    runs,
    temporaries,
    verify_report,
)
from .inject import Injector
from .workloads import Seed, rot90, task, write_json

KINDS = ["add", "add", "fork", "evidence", "evidence", "status", "import", "build", "rollback",
         "rollback-to", "gc", "mode"]  # fmt: skip


@dataclass
class Campaign:
    root: Path
    kills: int = 0
    completed: int = 0
    refused: int = 0
    acks: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    verify_failures: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    temporaries_seen: int = 0
    killed_after_ack: int = 0  # killed after its audit line: completed by the next writer
    by_kind: Counter[str] = field(default_factory=Counter)


def _args(kind: str, i: int, rng: random.Random, root: Path, inputs: Path) -> list[str]:
    clear_cache()
    v = Vault.open(root)
    refs = sorted(dict(v.snapshot().state.concepts()))
    ref = rng.choice(refs) if refs else "rotate-90@1.0.0"
    cid, version = ref.split("@")
    if kind == "add":
        c = card(
            f"k{i}",
            rng.sample(
                ["transform:flip_h", "transform:crop", "feature:square", "invariant:same_dims"], 2
            ),
        )
        return ["add", str(write_json(inputs / f"add{i}.json", c)), "--json"]
    if kind == "fork":
        c = card(cid, ["transform:rotate_90"], dsl=f"(rotate_90 (v{i} grid))")
        return ["add", "--fork", str(write_json(inputs / f"fork{i}.json", c)), "--json"]
    if kind == "evidence":
        g = [[rng.randrange(5) for _ in range(3)] for _ in range(rng.randint(1, 3))]
        ev: dict[str, Any] = {
            "schema_version": 1,
            "concept": cid,
            "version": version,
            "polarity": rng.choice(["positive", "negative"]),
        }
        if ev["polarity"] == "negative":
            ev.update(tier="train", reason="wrong_output", note=f"n{i}")
        else:
            ev["pair"] = {"input": g, "output": rot90(g)}
        return ["evidence", "add", str(write_json(inputs / f"ev{i}.json", ev)), "--json"]
    if kind == "status":
        return [
            "status",
            cid,
            version,
            rng.choice(["active", "deprecated", "suppressed"]),
            "--json",
        ]
    if kind == "import":
        return ["arc", "import", str(write_json(inputs / f"t{i}.json", task(rng))), "--json"]
    if kind == "build":
        return ["index", "build", "--json"]
    if kind == "rollback":
        return ["rollback", "--json"]
    if kind == "rollback-to":
        numbers = [g.number for g in v.generations.history()]
        return ["rollback", "--to", str(rng.choice(numbers)), "--json"]
    if kind == "gc":
        return ["gc", "--keep", str(rng.randint(1, 4)), "--json"]
    return ["rollback", "--mode", rng.choice(["symbolic", "hybrid", "config"]), "--json"]


def run_campaign(seed: Seed, base: Path, kills: int) -> Campaign:
    """Runs until ``kills`` SIGKILLs landed (a run that finishes before its kill is a
    completed run), at most 6 × ``kills`` runs."""
    root = copy_vault(seed.root, base / "v", link_objects=False)
    inputs = base / "inputs"
    inputs.mkdir()
    rng = random.Random(20240601)
    c = Campaign(root)
    # how long each kind takes when not killed, at the fastest of 3 clean runs (1 in CI): the
    # kill is drawn from that window (a run that still finishes first counts as completed)
    took: dict[str, float] = {}
    for kind in sorted(set(KINDS)):
        times = []
        for _ in range(3 if STRESS else 1):
            probe = copy_vault(root, base / "probe", link_objects=False)
            start = time.monotonic()
            fork_cli(probe, _args(kind, 0, random.Random(0), probe, inputs))
            times.append(time.monotonic() - start)
        took[kind] = min(times)
    i = 0
    while c.kills < kills and i < 6 * kills:
        i += 1
        kind = rng.choice(KINDS)
        args = _args(kind, i, rng, root, inputs)
        seq = Vault.open(root).audit.last_seq()
        child = fork_cli(root, args, kill_after=rng.uniform(0, KILL_WINDOW * took[kind]))
        c.by_kind[kind] += 1
        if child.code == -9:
            c.kills += 1
            c.killed_after_ack += Vault.open(root).audit.last_seq() > seq
        elif child.code == 0:
            c.completed += 1
            c.acks.append((kind, child.json))
        else:
            c.refused += 1  # e.g. rollback past the first generation
        if child.crashed:
            c.tracebacks.append(f"{kind}: {child.stderr[-300:]}")
        c.temporaries_seen = max(c.temporaries_seen, len(temporaries(root)))
        ok, report, same = verify_report(root)
        if not ok or not same:
            c.verify_failures.append(f"after {kind} #{i}: {errors_of(report)[:3]}")
    return c


KILLS = runs(30, 220)
KILL_WINDOW = 1.5  # kills drawn over 1.5 x the fastest clean run: about a third complete


@pytest.fixture(scope="module")
def campaign(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    return run_campaign(seed, tmp_path_factory.mktemp("kills"), KILLS)


def test_random_kills_lose_nothing(campaign: Campaign, seed: Seed) -> None:
    c = campaign
    root = c.root
    nxt = fork_cli(root, ["add", str(seed.inputs / "retry-card.json"), "--json"])
    assert nxt.code == 0, nxt.stderr
    clear_cache()
    v = Vault.open(root)
    cur = v.generations.current()
    assert cur is not None
    reverted = set(cur.reverted)
    log = {e.seq: e for e in v.audit.entries()}
    state = dict(v.snapshot().state.concepts())
    lost, corrupt = [], []
    for kind, out in c.acks:
        seq = out.get("audit_seq")
        if seq is not None:
            entry = log.get(seq)
            if entry is None:
                lost.append(f"{kind}: audit line {seq} missing")
                continue
            if seq in reverted:
                continue
        if kind in ("add", "fork", "import"):
            lost += [f"{kind} {r}" for r in out["added"] if "@" in r and r not in state]
        elif kind == "evidence":
            have = {d for e in state.values() for d in e["evidence"]}
            lost += [f"evidence {d[:12]}" for d in out["added"] if d not in have]
    if full_build_id(v) != cur.generation:
        corrupt.append("current generation != a full build")
    ok, report, _ = verify_report(root)
    if not ok:
        corrupt += errors_of(report)
    ops = Counter(e.op for e in log.values())
    acked_ops = Counter(k for k, _ in c.acks)
    figure(
        "kills",
        runs=sum(c.by_kind.values()),
        sigkills=c.kills,
        completed=c.completed,
        killed_after_ack=c.killed_after_ack,
        refused=c.refused,
        acknowledged=len(c.acks),
        lost=len(lost),
        corrupt=len(corrupt),
        verify_failures=len(c.verify_failures),
        tracebacks=len(c.tracebacks),
        max_temporaries=c.temporaries_seen,
        by_kind=dict(c.by_kind),
        audit_ops=dict(ops),
    )
    assert c.kills >= KILLS
    assert not lost, lost[:5]
    assert not corrupt, corrupt[:5]
    assert not c.verify_failures, c.verify_failures[:3]
    assert not c.tracebacks, c.tracebacks[:2]
    assert acked_ops["build"] <= ops["index_build"] and acked_ops["gc"] <= ops["gc"]


def test_random_kills_leave_no_temporaries_after_gc(campaign: Campaign, seed: Seed) -> None:
    """After the campaign (plus one kill right after a temporary is created, so that there is
    one to sweep), the next write-back and ``gc`` leave no temporary behind."""
    root = campaign.root
    args = [
        "add",
        str(write_json(root.parent / "inputs" / "last.json", card("last", ["transform:crop"]))),
        "--json",
    ]
    probe = copy_vault(root, root.parent / "probe2", link_objects=False)
    trace = fork_cli(probe, args, Injector(probe, "count")).trace
    n = next(i for i, (op, path) in enumerate(trace, 1) if op == "write" and "/.tmp-" in path)
    assert fork_cli(root, args, Injector(root, "exit", n)).code == 137
    assert temporaries(root)
    assert fork_cli(root, ["add", str(seed.inputs / "next-card.json"), "--json"]).code == 0
    assert fork_cli(root, ["gc", "--keep", "2", "--json"]).code == 0
    left = temporaries(root)
    figure("kills_temporaries", left_after_gc=len(left))
    assert not left, left[:5]
