"""The commands the power-loss harness replays, and the checks of every replayed state
(see ``powerloss.py`` for the model; ``test_powerloss.py`` runs them)."""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import card
from vault.canonical import canonical_bytes
from vault.errors import VaultError
from vault.index.snapshot import clear_cache
from vault.ops.verify import verify
from vault.vault import Vault

from .harness import cli_main, fork_cli
from .powerloss import Image, Op, crash_images, durable, record, replay, scan
from .workloads import Seed, write_lines

#: verify problems about derived files, and the command that rebuilds them
INDEX_KINDS = frozenset(
    {
        "ref_corrupt",
        "ref_missing",
        "ref_inconsistent",
        "generations_corrupt",
        "generation_unreadable",
        "generation_incomplete",
        "state_mismatch",
        "table_mismatch",
        "vector_mismatch",
        "manifest_mismatch",
        "vectors_binary_mismatch",
        "view_file_mismatch",
    }
)
CACHE_KINDS = frozenset({"cache_entry_bad", "cache_pack_bad"})
OBJECT_KINDS = frozenset({"object_hash_mismatch", "object_unreadable"})

NEXT = "next-card.json"  # the next writer adds this card
THIRD = "retry-card.json"  # and the one after it (double fault) this one


@dataclass(frozen=True)
class Command:
    name: str
    base: str  # which base vault it runs on (see ``bases``)
    args: tuple[str, ...]
    ack_op: str  # the audit op of its acknowledgement


def commands(inputs: Path) -> dict[str, Command]:
    d = inputs
    batch = tuple(sorted(str(p) for p in d.glob("batch*.json")))
    out = [
        Command("add", "seed", ("add", str(d / "new-cards.jsonl"), "--json"), "add"),
        Command("add-batch", "seed", ("add", str(d / "batch-cards.jsonl"), "--json"), "add"),
        Command("import-batch", "seed", ("arc", "import", *batch, "--json"), "import"),
        Command(
            "evidence", "seed", ("evidence", "add", str(d / "evidence.jsonl"), "--json"), "evidence"
        ),
        Command(
            "status", "seed", ("status", "rotate-90", "1.0.0", "suppressed", "--json"), "status"
        ),
        Command("rollback", "seed", ("rollback", "--yes", "--json"), "rollback"),
        Command("rollback-to", "seed", ("rollback", "--to", "5", "--yes", "--json"), "rollback"),
        Command("mode", "seed", ("rollback", "--mode", "symbolic", "--yes", "--json"), "mode"),
        Command("mode-config", "mode", ("rollback", "--mode", "config", "--yes", "--json"), "mode"),
        Command("embedder-use", "fitted", ("embedder", "use", "fitted", "--json"), "embedder"),
        Command("gc", "seed", ("gc", "--keep", "1", "--json"), "gc"),
        Command("build", "seed", ("index", "build", "--json"), "index_build"),
        # a clone of the seed pulls one write-back of 80 cards (staged, one syncfs)
        Command("pull", "pull", ("pull", "--json"), "add"),
    ]
    return {c.name: c for c in out}


def prepare_inputs(seed: Seed) -> None:
    """The inputs the seed lacks: 80 cards in one file (> 64 objects: the batch path)."""
    cards = [
        card(f"pl-batch-{i:03d}", ["transform:rotate_90", f"feature:b{i % 7}"]) for i in range(80)
    ]
    write_lines(seed.inputs / "batch-cards.jsonl", cards)


def cli(args: tuple[str, ...] | list[str]) -> Callable[[Path], int]:
    def main(root: Path) -> int:
        clear_cache()
        return cli_main(root, list(args))

    return main


def run_plain(image: Image, where: Path, args: list[str]) -> Image:
    """Run a command on ``image`` (recorded; the recording is discarded) and return the tree
    it left. Raises unless it exits 0."""
    run, after = record(image, where, cli(args))
    if run.code != 0:
        raise AssertionError(f"{' '.join(args)} failed: {run.stderr}")
    shutil.rmtree(where)
    return after


def bases(seed: Seed, work: Path) -> dict[str, Image]:
    """The vaults the commands start from, as images (each is taken as wholly durable)."""
    seed_image, _ = scan(seed.root)
    out = {"seed": seed_image}
    out["mode"] = run_plain(
        seed_image, work / "b-mode", ["rollback", "--mode", "symbolic", "--yes"]
    )
    out["fitted"] = run_plain(seed_image, work / "b-fit", ["embedder", "fit", "--from-vault"])
    out["pull"] = pull_base(seed_image, seed, work)
    return out


def pull_base(seed_image: Image, seed: Seed, work: Path) -> Image:
    """A clone of the seed, pushed to a ``file://`` remote under ``work``, whose remote has
    since taken one more write-back (80 cards: more objects than a thread pool's minimum)
    from the origin. Every remote call runs in a forked child (as the commands do), so this
    process never starts the object store's runtime before it forks."""
    url = (work / "pull-remote").as_uri()
    origin = run_plain(seed_image, work / "b-origin", ["remote", "add", "origin", url])
    origin = run_plain(origin, work / "b-origin", ["push"])
    child = fork_cli(work / "b-pull", ["clone", url, str(work / "b-pull")])
    assert child.code == 0, child.stderr
    base, _ = scan(work / "b-pull")
    shutil.rmtree(work / "b-pull")
    origin = run_plain(origin, work / "b-origin", ["add", str(seed.inputs / "batch-cards.jsonl")])
    run_plain(origin, work / "b-origin", ["push"])
    return base


# --------------------------------------------------------------------------- summaries
def summary(root: Path) -> dict[str, Any]:
    """What a reader is served: every concept's state entry, the embedder, the kill switch."""
    clear_cache()
    v = Vault.open(root)
    snap = v.snapshot()
    return {
        "concepts": json.loads(canonical_bytes(dict(snap.state.concepts()))),
        "embedder": snap.state.embedder,
        "mode": v.mode_override(),
    }


def lines_of(data: bytes | None) -> list[bytes]:
    """The complete lines of a log (a torn tail left out)."""
    if not data:
        return []
    parts = data.split(b"\n")
    return parts[:-1]


def history_numbers(img: Image) -> list[int]:
    return [json.loads(line)["number"] for line in lines_of(img.read("index/generations.jsonl"))]


@dataclass
class Scenario:
    """One command on its base, recorded once, with what the checks compare against."""

    command: Command
    base: Image
    ops: list[Op]
    after: Image
    old_lines: list[bytes]  # the audit log before the command (acknowledged)
    ack_line: bytes  # the command's own audit line
    old_next: dict[str, Any]  # summary of base + next writer
    new_next: dict[str, Any]  # summary of base + command + next writer
    kept_numbers: list[int]  # generation numbers the clean run leaves
    next_args: list[str] = field(default_factory=list)
    third_args: list[str] = field(default_factory=list)


def scenario(command: Command, base: Image, seed: Seed, work: Path) -> Scenario:
    next_args = ["add", str(seed.inputs / NEXT), "--json"]
    run, after = record(base, work / "rec", cli(command.args))
    if run.code != 0:
        raise AssertionError(f"{command.name}: the clean run failed: {run.stderr}")
    if run.unsupported:
        raise AssertionError(f"{command.name}: unrecorded calls {run.unsupported}")
    shutil.rmtree(work / "rec")
    old_lines = lines_of(base.read("audit/commits.jsonl"))
    new_lines = lines_of(after.read("audit/commits.jsonl"))
    assert new_lines[: len(old_lines)] == old_lines
    mine = [
        line for line in new_lines[len(old_lines) :] if json.loads(line)["op"] == command.ack_op
    ]
    assert len(mine) == 1, (command.name, new_lines[len(old_lines) :])
    out = {}
    for label, img in (("old", base), ("new", after)):
        where = work / f"clean-{label}"
        nxt, _ = record(img, where, cli(next_args))
        assert nxt.code == 0, nxt.stderr
        out[label] = summary(where)
        shutil.rmtree(where)
    assert out["old"] != out["new"] or command.name in ("gc", "build"), command.name
    return Scenario(
        command,
        base,
        run.ops,
        after,
        old_lines,
        mine[0],
        out["old"],
        out["new"],
        history_numbers(after),
        next_args,
        ["add", str(seed.inputs / THIRD), "--json"],
    )


# --------------------------------------------------------------------------- checks
def verify_errors(root: Path) -> list[tuple[str, str, str]]:
    """``verify``'s errors: (kind, path inside the vault, detail)."""
    clear_cache()
    try:
        report = verify(Vault.open(root))
    except VaultError as exc:
        return [("verify_failed", "", str(exc))]
    return [
        (p.kind, p.path.replace(str(root) + "/", ""), p.detail)
        for p in report.problems
        if p.severity == "error"
    ]


def classify(
    errors: list[tuple[str, str, str]], log: bytes | None, *, derived_ok: bool
) -> tuple[list[str], list[str]]:
    """(allowed, not allowed) among ``verify``'s errors (``log``: the audit log's bytes).
    Errors about the cache are always allowed (it is derived: ``settle`` repairs it); with
    ``derived_ok`` also those about the index (``vault index build`` rebuilds it) and about
    objects no audit line names (the leftovers of a write-back never acknowledged)."""
    records = {d for line in lines_of(log) for d in json.loads(line)["records"]}
    allowed, bad = [], []
    for kind, path, detail in errors:
        unnamed = kind in OBJECT_KINDS and "".join(Path(path).parts[-2:]) not in records
        derived = kind in INDEX_KINDS or unnamed
        (allowed if kind in CACHE_KINDS or (derived_ok and derived) else bad).append(
            f"{kind}:{path}: {detail}"
        )
    return allowed, bad


def problems_of(root: Path, *, derived_ok: bool) -> list[str]:
    """``verify``'s errors that are not allowed (``classify``) for the vault at ``root``."""
    log = _read(root / "audit" / "commits.jsonl")
    return classify(verify_errors(root), log, derived_ok=derived_ok)[1]


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


REPAIR = re.compile(r"`(vault [^`]+)`")


def settle(root: Path) -> tuple[list[str], bool]:
    """(verify's errors, whether the cache needed its repair) of the vault at ``root``,
    after the repair of a damaged cache (the cache is never made durable, FORMAT §8.4):
    the command ``verify`` names for it, or else what FORMAT documents — the cache can be
    deleted at any time."""
    errors = verify_errors(root)
    bad = classify(errors, _read(root / "audit" / "commits.jsonl"), derived_ok=False)[1]
    cache = [e for e in errors if e[0] in CACHE_KINDS]
    if not cache:
        return bad, False
    named = sorted({m for e in cache for m in REPAIR.findall(e[2])})
    for command in named:
        child = fork_cli(root, command.split()[1:])
        if child.code != 0:
            return [*bad, f"the cache repair `{command}` failed: {child.stderr.strip()}"], True
    if not named:
        shutil.rmtree(root / "embeddings" / "cache")
    left = [f"{k}:{p}: {d}" for k, p, d in verify_errors(root)]
    return bad + [f"after the cache repair: {x}" for x in left], True


@dataclass
class Outcome:
    cut: int
    label: str
    acknowledged: bool  # the cut is after the command's last operation
    in_log: bool  # the command's audit line survived
    problems: list[str]
    needed_build: bool = False  # the next writer failed until `vault index build`
    cache_repaired: bool = False  # the cache needed its repair after the next writer
    derived: bool = False  # verify (before the next writer) named derived files only

    def where(self) -> str:
        return f"cut {self.cut} ({self.label})"


def check_state(sc: Scenario, img: Image, cut: int, label: str, where: Path) -> Outcome:
    """The checks of one power-loss state (module docstring of ``powerloss.py``, item 4),
    on the tree written at ``where`` (removed after)."""
    lines = lines_of(img.read("audit/commits.jsonl"))
    acknowledged = cut == len(sc.ops)
    in_log = sc.ack_line in lines
    out = Outcome(cut, label, acknowledged, in_log, [])
    bad = out.problems
    if lines[: len(sc.old_lines)] != sc.old_lines:
        bad.append("acknowledged audit lines lost or changed")
    if acknowledged and not in_log:
        bad.append("acknowledged write lost: its audit line is gone")
    if sc.command.name == "gc" and acknowledged and history_numbers(img) != sc.kept_numbers:
        bad.append(f"gc acknowledged, generations {history_numbers(img)} != {sc.kept_numbers}")
    img.write(where)
    try:
        _check_tree(sc, where, out)
    finally:
        shutil.rmtree(where)
    return out


def _check_tree(sc: Scenario, where: Path, out: Outcome) -> None:
    bad = out.problems
    try:
        Vault.open(where)
    except VaultError as exc:
        bad.append(f"does not open: {exc}")
        return
    log = _read(where / "audit" / "commits.jsonl")
    allowed, now = classify(verify_errors(where), log, derived_ok=True)
    out.derived = bool(allowed)
    bad += [f"verify: {p}" for p in now]
    child = fork_cli(where, sc.next_args)
    if child.code != 0 and "vault index build" in child.stderr and not child.crashed:
        out.needed_build = True  # a clean refusal naming the repair: run it, then again
        if fork_cli(where, ["index", "build", "--json"]).code == 0:
            child = fork_cli(where, sc.next_args)
    if child.code != 0 or child.crashed:
        bad.append(f"next writer failed ({child.code}): {child.stderr.strip()[-300:]}")
        return
    try:
        got = summary(where)
    except VaultError as exc:
        bad.append(f"after the next writer: {exc}")
        return
    if out.in_log and got != sc.new_next:
        bad.append(
            "the command's audit line is there but its effect is not: " + _diff(got, sc.new_next)
        )
    elif not out.in_log and got not in (sc.old_next, sc.new_next):
        bad.append("neither the old nor the new state: " + _diff(got, sc.old_next))
    left, out.cache_repaired = settle(where)
    bad += [f"verify after the next writer: {p}" for p in left]


def _diff(got: dict[str, Any], want: dict[str, Any]) -> str:
    if got.get("mode") != want.get("mode"):
        return f"mode {got.get('mode')} != {want.get('mode')}"
    if got.get("embedder") != want.get("embedder"):
        return "embedder differs"
    a, b = got["concepts"], want["concepts"]
    missing = sorted(set(b) - set(a))
    extra = sorted(set(a) - set(b))
    changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    return f"missing {missing[:3]}, extra {extra[:3]}, changed {changed[:3]}"


def cuts_of(sc: Scenario, most: int | None, rng: random.Random) -> list[int]:
    """Every prefix length, or (more than ``most``) a sample: the empty and the whole
    prefix, the points around the acknowledgement (the audit log's fsync) and the last
    operation, each point just before a durability barrier, and the rest at random."""
    n = len(sc.ops)
    if most is None or n + 1 <= most:
        return list(range(n + 1))
    picks = {0, n, n - 1}
    for i, op in enumerate(sc.ops):
        if op.kind == "fsync" and op.path == "audit/commits.jsonl":
            picks |= {i, i + 1}
    barriers = [i for i, op in enumerate(sc.ops) if op.kind in ("fsyncdir", "sync")]
    picks |= set(rng.sample(barriers, min(len(barriers), max(0, most // 3))))
    rest = sorted(set(range(n + 1)) - picks)
    picks |= set(rng.sample(rest, min(len(rest), max(0, most - len(picks)))))
    return sorted(picks)


def all_dropped(ops: list[Op]) -> Callable[[Image], Image]:
    """The state after all of ``ops`` with every operation not made durable dropped."""

    def build(initial: Image) -> Image:
        persisted = durable(ops, len(ops))
        chosen = {i: "drop" for i in range(len(ops)) if not persisted[i]}
        return replay(initial, ops, len(ops), chosen)  # type: ignore[arg-type]

    return build


__all__ = [
    "Command",
    "Outcome",
    "Scenario",
    "all_dropped",
    "bases",
    "check_state",
    "commands",
    "crash_images",
    "cuts_of",
    "prepare_inputs",
    "scenario",
]
