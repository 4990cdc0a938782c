"""Crash-point sweeps: run one write-back in a forked child that ``os._exit``\\ s at its N-th
file-system point, for every N, and check the vault after each abort (used by
``test_crash_sweep.py``; the fault sweep of ``test_faults.py`` shares the point selection)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import full_build_id, tree
from vault.index.snapshot import clear_cache
from vault.vault import Vault

from .harness import (
    STRESS,
    copy_vault,
    errors_of,
    fork_cli,
    state_files,
    temporaries,
    verify_report,
)
from .inject import Injector
from .workloads import AUDIT_OP, STATE_CHANGING, Seed, ops


def is_bulk(path: str) -> bool:
    """Object and cache-entry points: many, alike, and each written the same way."""
    return path.startswith("objects/") or path.startswith("embeddings/cache")


CORE = ("add",)  # swept point by point in CI too


def category(op: str, path: str) -> str:
    """What kind of point this is: the call and the kind of file (temporaries by their
    pattern, objects and cache entries as one kind each)."""
    parts = path.split("/")
    name = parts[-1]
    if parts[0] == "objects":
        kind = (
            "objects/.tmp"
            if name.startswith(".tmp-")
            else ("objects/ab" if len(parts) == 2 else "objects/ab/obj")
        )
        kind = "objects" if len(parts) == 1 else kind
    elif parts[:2] == ["embeddings", "cache"]:
        kind = "cache" + ("/.tmp" if name.startswith(".") else "")
    elif name.startswith("."):
        kind = "/".join(parts[:-1]) + "/." + name.split(".")[1] + "-temporary"
    else:
        kind = path
    return f"{op} {kind}"


def ci_points(trace: list[tuple[str, str]], *, compact: bool = False) -> list[int]:
    """One point of each kind, split by the acknowledgement (the audit line's fsync): before
    it, the first point of each category; after it, the first of each non-bulk category and
    the first bulk one; and every audit-log point. ``compact``: before the acknowledgement
    only the first bulk point and the first removal of a temporary."""
    ack = next(
        (n for n, (o, p) in enumerate(trace, 1) if o == "fsync" and p.startswith("audit/")),
        len(trace),
    )
    seen: set[str] = set()
    out = []
    for n, (o, p) in enumerate(trace, 1):
        after = n > ack
        if after:
            key = "after " + ("bulk" if is_bulk(p) else category(o, p))
        elif compact:
            temp = o == "unlink" and "/.tmp-" in p
            key = "before " + ("temp-unlink" if temp else "bulk" if is_bulk(p) else category(o, p))
            if not temp and not is_bulk(p) and not p.startswith("audit/"):
                continue
        else:
            key = "before " + category(o, p)
        if key not in seen or p.startswith("audit/"):
            seen.add(key)
            out.append(n)
    return out


#: write-backs whose every kind of point is swept in CI (the others: ``compact``); the fault
#: sweep needs these to meet each failure it knows of in CI as under stress
CI_FULL = ("rollback", "mode")


def select(trace: list[tuple[str, str]], op: str) -> list[int]:
    """The points to sweep. Under ``make stress``: every point (of the 1,300 of the batch
    import, every non-bulk point and a tenth of the bulk ones). In CI: every non-bulk point
    of ``add``, every kind of point of ``rollback`` (``ci_points``), and for the others the
    ``compact`` selection."""
    bulk = [n for n, (_, path) in enumerate(trace, 1) if is_bulk(path)]
    other = [n for n, (_, path) in enumerate(trace, 1) if not is_bulk(path)]
    if STRESS:
        return sorted(set(other) | set(bulk[:: 10 if len(bulk) > 300 else 1]))
    if op in CORE:
        return sorted(set(other) | set(bulk[len(bulk) // 2 : len(bulk) // 2 + 1]))
    return ci_points(trace, compact=op != "rollback")


@dataclass
class Baseline:
    """One write-back on the seeded vault, run cleanly: its points and its effect."""

    op: str
    args: list[str]
    pre: Path
    trace: list[tuple[str, str]]
    pre_files: dict[str, bytes | None]
    post_files: dict[str, bytes | None]
    pre_concepts: dict[str, Any]
    post_concepts: dict[str, Any]
    pre_tree: dict[str, Any]
    post_json: Any
    followed: dict[bool, dict[str, Any]] = field(default_factory=dict)  # acked -> concepts


def baseline(seed: Seed, op: str, work: Path) -> Baseline:
    args = ops(seed)[op]
    pre = copy_vault(seed.root, work / f"{op}-pre")
    post = copy_vault(seed.root, work / f"{op}-post")
    child = fork_cli(post, args, Injector(post, "count"))
    assert child.code == 0, child.stderr
    b = Baseline(
        op,
        args,
        pre,
        child.trace,
        state_files(pre),
        state_files(post),
        _concepts(pre),
        _concepts(post),
        tree(pre),
        child.json,
    )
    nxt = ["add", str(seed.inputs / "next-card.json"), "--json"]
    for acked, src in ((False, pre), (True, post)):
        w = copy_vault(src, work / f"{op}-follow")
        assert fork_cli(w, nxt).code == 0
        b.followed[acked] = _concepts(w)
    return b


def _concepts(root: Path) -> dict[str, Any]:
    clear_cache()
    return dict(Vault.open(root).snapshot().state.concepts())


def _lines(data: bytes | None) -> list[bytes]:
    return [] if not data else data.split(b"\n")[:-1]


@dataclass
class Outcome:
    """What one abort left behind, check by check (an empty list is a pass)."""

    op: str
    n: int
    point: tuple[str, str]
    torn: bool
    code: int
    acked: bool = False
    opens: list[str] = field(default_factory=list)
    verify: list[str] = field(default_factory=list)
    old_or_new: list[str] = field(default_factory=list)
    completes: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    temporaries: list[str] = field(default_factory=list)

    def where(self) -> str:
        torn = "torn " if self.torn else ""
        return f"{self.op} point {self.n} {torn}{self.point[0]} {self.point[1]}"


def crash_at(
    seed: Seed, b: Baseline, n: int, work: Path, *, torn: bool = False, sweep_check: bool = False
) -> Outcome:
    w = copy_vault(b.pre, work / "w")
    child = fork_cli(w, b.args, Injector(w, "exit", n, torn=torn))
    out = Outcome(b.op, n, b.trace[n - 1], torn, child.code)
    if child.code != 137:
        out.opens.append(f"child did not stop at the point (exit {child.code}): {child.stderr}")
        return out
    out.temporaries = temporaries(w)
    # 1. the vault opens and serves a snapshot
    try:
        clear_cache()
        Vault.open(w).snapshot()
    except Exception as exc:  # noqa: BLE001
        out.opens.append(f"{type(exc).__name__}: {exc}")
    # 2. verify exits 0 and changes nothing
    try:
        ok, report, same = verify_report(w)
        if not ok:
            out.verify += errors_of(report)
        if not same:
            out.verify.append("verify changed the vault")
    except Exception as exc:  # noqa: BLE001
        out.verify.append(f"verify raised {type(exc).__name__}: {exc}")
    # 3. every record wholly old or wholly new
    files = state_files(w)
    log = _lines(files["audit/commits.jsonl"])
    pre_log = _lines(b.pre_files["audit/commits.jsonl"])
    post_log = _lines(b.post_files["audit/commits.jsonl"])
    out.acked = (
        len(log) > len(pre_log)
        and log[-1].startswith((b'{"check"', b'{"detail"'))
        and (f'"op":"{AUDIT_OP[b.op]}"'.encode() in log[-1])
    )
    for name in ("audit/commits.jsonl", "index/generations.jsonl"):
        cur, old, new = files[name] or b"", b.pre_files[name] or b"", b.post_files[name] or b""
        if cur in (old, new):
            continue
        if name == "index/generations.jsonl" and b.op == "gc":
            out.old_or_new.append(f"{name}: neither the old nor the new bytes")
        elif not (cur.startswith(old) and new.startswith(cur)):
            out.old_or_new.append(f"{name}: not between the old and the new log")
    for name in ("index/CURRENT", "refs/mode.json", "config.toml", "format.json"):
        if files[name] not in (b.pre_files[name], b.post_files[name]):
            out.old_or_new.append(f"{name}: neither the old nor the new bytes")
    try:
        now = _concepts(w)
        if now not in (b.pre_concepts, b.post_concepts):
            out.old_or_new.append("the served state is neither the old nor the new one")
    except Exception as exc:  # noqa: BLE001
        out.old_or_new.append(f"state unreadable: {type(exc).__name__}: {exc}")
    del post_log
    # 4. the next write-back completes the acknowledged work
    nxt = fork_cli(w, ["add", str(seed.inputs / "next-card.json"), "--json"])
    if nxt.code != 0:
        out.completes.append(f"next write-back failed: {nxt.stderr.strip()}")
    else:
        try:
            expected = b.followed[out.acked and b.op in STATE_CHANGING]
            got = _concepts(w)
            if got != expected:
                missing = sorted(set(expected) - set(got))
                extra = sorted(set(got) - set(expected))
                out.completes.append(
                    f"state after the next write: missing {missing}, extra {extra}"
                    if missing or extra
                    else "state after the next write differs (same refs)"
                )
            v = Vault.open(w)
            cur = v.generations.current()
            if cur is None or full_build_id(v) != cur.generation:
                out.completes.append("current generation != a full build of the audit log")
            ok, report, _ = verify_report(w)
            if not ok:
                out.completes += [f"verify after the next write: {e}" for e in errors_of(report)]
        except Exception as exc:  # noqa: BLE001
            out.completes.append(f"{type(exc).__name__}: {exc}")
    # 5. (optional) leftovers swept by the next writer or gc
    if sweep_check:
        fork_cli(w, ["gc", "--keep", "100", "--json"])
        out.swept = temporaries(w)
    return out


def sweep(seed: Seed, op: str, work: Path) -> tuple[Baseline, list[Outcome]]:
    b = baseline(seed, op, work)
    points = select(b.trace, op)
    outcomes = [crash_at(seed, b, n, work, sweep_check=STRESS) for n in points]
    torn = [
        n
        for n, (kind, path) in enumerate(b.trace, 1)
        if kind == "write" and not is_bulk(path) and (STRESS or op in CORE)
    ]
    outcomes += [crash_at(seed, b, n, work, torn=True) for n in torn]
    return b, outcomes
