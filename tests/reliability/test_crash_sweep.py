"""Item 1 — crash sweep: each kind of write-back aborted (``os._exit``) at each of its
file-system points in turn (every write, fsync, rename/replace, link, unlink, mkdir, create;
a write also torn in half). After every abort: the vault opens, ``verify`` passes without
changing a byte, every file and the served state are wholly old or wholly new, and the next
write-back completes whatever was acknowledged (its audit line) — the state is then exactly
the clean run's plus the next write, and equals a full build."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .harness import STRESS, copy_vault, figure, fork_cli, temporaries
from .inject import Injector
from .sweep import CORE, baseline, sweep
from .workloads import Seed

KINDS = [
    "add",
    "fork",
    "evidence",
    "status",
    "import",
    "import-batch",
    "build",
    "rollback",
    "rollback-to",
    "gc",
    "mode",
]


@pytest.mark.parametrize("op", KINDS)
def test_crash_sweep(seed: Seed, fast: Path, op: str) -> None:
    b, outcomes = sweep(seed, op, fast)
    failures = {
        check: [(o.where(), getattr(o, check)) for o in outcomes if getattr(o, check)]
        for check in ("opens", "verify", "old_or_new", "completes")
    }
    figure(
        "crash_sweep",
        op=op,
        points=len(b.trace),
        aborts=len(outcomes),
        acknowledged=sum(o.acked for o in outcomes),
        left_temporaries=sum(bool(o.temporaries) for o in outcomes),
        not_swept=sum(bool(o.swept) for o in outcomes) if STRESS else None,
        failed={k: len(v) for k, v in failures.items()},
        full=STRESS or op in CORE,
    )
    for check, items in failures.items():
        assert not items, f"{check}: {len(items)} of {len(outcomes)} aborts: {items[:3]}"


def _first(trace: list[tuple[str, str]], op: str, prefix: str) -> int:
    return next(n for n, (o, p) in enumerate(trace, 1) if o == op and p.startswith(prefix))


def test_leftover_temporaries_are_swept_by_the_next_writer_or_gc(seed: Seed, fast: Path) -> None:
    """A writer killed right after creating each kind of temporary; then one more write-back
    and ``gc``: no temporary remains."""
    b = baseline(seed, "add", fast)
    points = [
        _first(b.trace, "write", "objects/"),  # objects/ab/.tmp-*
        _first(b.trace, "replace", "index/CURRENT"),  # index/.CURRENT.*.tmp
        _first(b.trace, "replace", "embeddings/concept_vectors"),  # embeddings/.*.link
    ]
    left: dict[int, list[str]] = {}
    for n in points:
        w = copy_vault(b.pre, fast / "w")
        assert fork_cli(w, b.args, Injector(w, "exit", n)).code == 137
        made = temporaries(w)
        assert made, f"point {n} {b.trace[n - 1]} left no temporary"
        assert fork_cli(w, ["add", str(seed.inputs / "next-card.json"), "--json"]).code == 0
        assert fork_cli(w, ["gc", "--keep", "100", "--json"]).code == 0
        if temporaries(w):
            left[n] = temporaries(w)
    assert not left, left


def test_crash_at_every_point_of_init(fast: Path) -> None:
    """``vault init`` killed at each point: the path is no vault or a whole one, and ``vault
    init`` run again makes a vault that verifies."""
    from .harness import verify_report

    target = fast / "new"
    count = fork_cli(target, ["init", "--json"], Injector(fast, "count"))
    assert count.code == 0
    problems = []
    points = range(1, len(count.trace) + 1)
    points = points if STRESS else points[::4]
    staging = 0
    for n in points:
        for p in fast.iterdir():
            shutil.rmtree(p)
        child = fork_cli(target, ["init", "--json"], Injector(fast, "exit", n))
        assert child.code == 137
        if (target / "format.json").exists():
            ok, report, _ = verify_report(target)
            if not ok:
                problems.append((n, "half-made vault", report["problems"]))
        again = fork_cli(target, ["init", "--json"])
        if again.code != 0:
            problems.append((n, "init again failed", again.stderr))
            continue
        ok, report, _ = verify_report(target)
        if not ok:
            problems.append((n, "re-made vault does not verify", report["problems"]))
        staging += sum(1 for p in fast.iterdir() if p.name.startswith(".new.init-"))
    figure(
        "crash_sweep",
        op="init",
        points=len(count.trace),
        aborts=len(points),
        failed={"init": len(problems)},
        staging_left=staging,
        full=STRESS,
    )
    assert not problems, problems[:3]
