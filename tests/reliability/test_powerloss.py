"""Issue 18, deliverable 2 — power-loss states: each mutating command recorded once, every
state a power cut could leave replayed and checked (``powerloss.py`` has the model,
``powerloss_check.py`` the commands and the checks). CI replays a sample of cuts;
``make stress`` (``VAULT_STRESS=1``) every cut, with random combinations besides."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vault.errors import VaultError

from .harness import STRESS, cli_command, figure, fork_cli
from .powerloss import Image, record, replay
from .powerloss_check import (
    Outcome,
    Scenario,
    all_dropped,
    bases,
    check_state,
    cli,
    commands,
    crash_images,
    cuts_of,
    prepare_inputs,
    problems_of,
    scenario,
    settle,
    summary,
)
from .workloads import Seed

State = tuple[int, str, Image]

NAMES = [
    "add",
    "add-batch",
    "import-batch",
    "evidence",
    "status",
    "rollback",
    "rollback-to",
    "mode",
    "mode-config",
    "embedder-use",
    "gc",
    "build",
    "pull",
]
# how much of each command is replayed: (most cuts, family cap, random combinations per cut,
# most states, double-fault cuts); of the last cut's states (after the acknowledgement) the
# first two (all kept, all dropped) always, the others within half the budget
PLAN = (150, 6, 3, 900, 25) if STRESS else (12, 3, 0, 8, 1)


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
    d = Path(tempfile.mkdtemp(dir=base, prefix="vault-powerloss-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def images(seed: Seed, work: Path) -> dict[str, Image]:
    prepare_inputs(seed)
    cli_command()  # built once: forked children start warm
    return bases(seed, work)


def select(sc: Scenario, rng: random.Random) -> tuple[list[int], list[State], list[int]]:
    """(cuts, states, double-fault cuts) replayed for ``sc`` (``PLAN``)."""
    most_cuts, cap, randoms, most_states, most_doubles = PLAN
    cuts = cuts_of(sc, most_cuts, rng)
    states = list(crash_images(sc.base, sc.ops, cuts, rng=rng, randoms=randoms, cap=cap))
    if len(states) > most_states:  # half the budget at most for the acknowledged cut
        last = [s for s in states if s[0] == len(sc.ops)]
        rest = [s for s in states if s[0] != len(sc.ops)]
        more = max(0, min(len(last) - 2, most_states // 2 - 2))
        last = last[:2] + rng.sample(last[2:], more)
        states = last + rng.sample(rest, max(0, min(len(rest), most_states - len(last))))
    doubles = sorted(rng.sample(cuts, min(most_doubles, len(cuts))))
    return cuts, states, doubles


def double_fault(sc: Scenario, cut: int, work: Path) -> list[str]:
    """A process crash after ``cut`` operations (everything kept), the next writer run to
    completion on that state, then a power cut: only what either made durable is left.
    The next writer reported success, so its card must be there; then a third writer."""
    crashed = replay(sc.base, sc.ops, cut, {})
    where = work / "double"
    run, _ = record(crashed, where, cli(sc.next_args), next_ino=max(crashed.files) + 1)
    if run.code != 0:
        shutil.rmtree(where)
        return [f"double fault at cut {cut}: the next writer failed: {run.stderr.strip()}"]
    all_dropped(sc.ops[:cut] + run.ops)(sc.base).write(where)
    try:
        return [f"double fault at cut {cut}: {p}" for p in _after_double(sc, where)]
    finally:
        shutil.rmtree(where)


def _after_double(sc: Scenario, where: Path) -> list[str]:
    bad = [f"verify: {p}" for p in problems_of(where, derived_ok=True)]
    child = fork_cli(where, sc.third_args)
    if child.code != 0 or child.crashed:
        return [*bad, f"the third writer failed: {child.stderr.strip()}"]
    try:
        got = summary(where)
    except VaultError as exc:
        return [*bad, f"after the third writer: {exc}"]
    left, _ = settle(where)
    bad += [f"verify after: {p}" for p in left]
    concepts = got["concepts"]
    if "next@1.0.0" not in concepts:
        bad.append("the next writer's acknowledged card is lost")
    concepts.pop("retry@1.0.0", None)
    if got not in (sc.old_next, sc.new_next):
        bad.append("neither the old nor the new state")
    return bad


@pytest.mark.parametrize("name", NAMES)
def test_power_loss(seed: Seed, images: dict[str, Image], work: Path, name: str) -> None:
    command = commands(seed.inputs)[name]
    here = work / name
    here.mkdir()
    sc = scenario(command, images[command.base], seed, here)
    rng = random.Random(f"powerloss {name}")
    cuts, states, doubles = select(sc, rng)
    outcomes: list[Outcome] = []
    for cut, label, img in states:
        outcomes.append(check_state(sc, img, cut, label, here / "state"))
    double: list[str] = []
    for cut in doubles:
        double += double_fault(sc, cut, here)
    failed = [o for o in outcomes if o.problems]
    figure(
        "powerloss",
        command=name,
        args=" ".join(a for a in command.args if not a.startswith("/")),
        ops=len(sc.ops),
        fsyncs=sum(op.kind in ("fsync", "fsyncdir") for op in sc.ops),
        cuts=len(cuts),
        states=len(outcomes),
        after_ack=sum(o.acknowledged for o in outcomes),
        in_log=sum(o.in_log for o in outcomes),
        needed_build=sum(o.needed_build for o in outcomes),
        cache_repaired=sum(o.cache_repaired for o in outcomes),
        derived=sum(o.derived for o in outcomes),
        failed=len(failed),
        doubles=len(doubles),
        double_failed=len(double),
        examples=[f"{o.where()}: {o.problems[0]}" for o in failed[:3]] + double[:2],
    )
    report: dict[str, Any] = {}
    for o in failed:
        for p in o.problems:
            report.setdefault(p.split(":")[0], []).append(o.where())
    assert not failed and not double, (
        f"{len(failed)} of {len(outcomes)} states fail: "
        + "; ".join(f"{o.where()}: {o.problems}" for o in failed[:4])
        + f" | double faults: {double[:3]}"
    )


# --------------------------------------------------------------------------- the model itself
def _tree(where: Path, write: Any) -> tuple[Image, list[Any]]:
    """Record ``write(root)`` on an empty tree with one directory ``d``."""
    empty = Image({"d"}, {}, {}, {})
    run, _ = record(empty, where, lambda root: write(root) or 0)
    assert run.code == 0, run.stderr
    return empty, run.ops


def _names(where: Path, write: Any) -> list[bytes | None]:
    """``d/f``'s bytes in every power-loss state of the whole trace."""
    empty, ops = _tree(where, write)
    return [img.read("d/f") for _, _, img in crash_images(empty, ops, [len(ops)])]


def test_the_model_loses_what_was_not_made_durable(tmp_path: Path) -> None:
    """A replace without fsyncs can leave the new name with no bytes, or no name at all;
    with the file and its directory fsynced, only the new bytes."""

    def careless(root: Path) -> None:
        (root / "d" / ".f.tmp").write_bytes(b"new")
        os.replace(root / "d" / ".f.tmp", root / "d" / "f")

    def careful(root: Path) -> None:
        fd = os.open(root / "d" / ".f.tmp", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"new")
        os.fsync(fd)
        os.close(fd)
        os.replace(root / "d" / ".f.tmp", root / "d" / "f")
        dfd = os.open(root / "d", os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)

    assert set(_names(tmp_path / "a", careless)) >= {b"new", b"", None, b"\0\0\0"}
    assert set(_names(tmp_path / "b", careful)) == {b"new"}


def test_the_recording_must_be_complete(tmp_path: Path) -> None:
    """A call the recorder does not model is reported, and a tree that differs from the
    replay of the recording fails the completeness check."""
    empty = Image({"d"}, {}, {}, {})

    def sneaky(root: Path) -> int:
        fd = os.open(root / "d" / "f", os.O_WRONLY | os.O_CREAT, 0o644)
        os.pwrite(fd, b"hidden", 0)
        os.close(fd)
        return 0

    with pytest.raises(AssertionError, match="missed operations"):
        record(empty, tmp_path / "w", sneaky)
