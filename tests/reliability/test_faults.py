"""Item 3 — disk full and I/O errors. Each kind of write-back with ENOSPC or EIO injected at
its N-th file-system point, for every N (the Python wrapper of ``inject.py``; under ``make
stress`` also ``strace -e inject=`` at the N-th system call), and on a real full file system
(a small tmpfs, when the test may mount one). Criteria, each its own test per kind:

* ``no_traceback``, ``one_line``: the failure is one ``error:`` line, and not a crash (a
  traceback or ``error: internal error``);
* ``names_file``: the message names the file that failed;
* ``fails``: exit ≠ 0 — unless the error was absorbed on a path that may absorb it (a view
  file falling back to a copy, a cache write), never when an fsync failed;
* ``unchanged``: a failure *before* the acknowledgement leaves the vault as it was (new
  complete objects and cache entries aside — unreferenced, FORMAT §12);
* ``says_committed``: a failure *after* the acknowledgement (its audit line) says the write
  took effect — the message matches ``faults.COMMITTED``;
* ``no_temporaries``: no temporary left (unless the failing call was its own removal);
* ``retry``: the same command run again succeeds, and the write-back took effect exactly once
  (the state and the state-changing audit lines of one clean run — no second fork, no second
  rollback); ``retry_sound``: then a full build equals the index and verify passes;
  ``retry_sweeps``: and no temporary is left.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import tree

from .faults import COMMITTED, ERRNOS, Fault, fault_at, repaired
from .harness import (
    CLI_ENV,
    STRESS,
    copy_vault,
    crashed_in,
    figure,
    fork_cli,
    state_files,
    temporaries,
    unchanged_but_objects,
)
from .inject import Injector
from .sweep import CI_FULL, _concepts, baseline, ci_points, is_bulk
from .workloads import Seed

KINDS = ["add", "fork", "evidence", "status", "import", "import-batch", "build", "rollback",
         "rollback-to", "gc", "mode"]  # fmt: skip
CHECKS = ["no_traceback", "one_line", "names_file", "fails", "unchanged", "says_committed",
          "no_temporaries", "retry", "retry_sound", "retry_sweeps"]  # fmt: skip


def points(trace: list[tuple[str, str]], op: str) -> list[tuple[int, str]]:
    """(point, errno name) pairs. Stress: every point with both errors (the bulk points of the
    batch import: every tenth, one error each). CI: one point of each kind before and one
    after the acknowledgement (``sweep.ci_points``), alternating ENOSPC and EIO."""
    bulk = [n for n, (_, p) in enumerate(trace, 1) if is_bulk(p)]
    other = [n for n, (_, p) in enumerate(trace, 1) if not is_bulk(p)]
    if STRESS:
        if len(trace) <= 1000:
            return [(n, e) for n in sorted(other + bulk) for e in ERRNOS]
        out = [(n, e) for n in other for e in ERRNOS]
        out += [(n, "ENOSPC" if i % 2 == 0 else "EIO") for i, n in enumerate(bulk[::10])]
        return sorted(out)
    chosen = ci_points(trace, compact=op not in CI_FULL)
    return [(n, "ENOSPC" if i % 2 == 0 else "EIO") for i, n in enumerate(chosen)]


Results = dict[str, list[Fault]]


@pytest.fixture(scope="module")
def faults(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Results:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path_factory.mktemp("faults")
    work = Path(tempfile.mkdtemp(dir=base, prefix="vault-faults-"))
    out: Results = {}
    try:
        for op in KINDS:
            b = baseline(seed, op, work)
            out[op] = [fault_at(b, n, e, work) for n, e in points(b.trace, op)]
            fs = out[op]
            figure(
                "faults",
                op=op,
                points=len(b.trace),
                injected=len(fs),
                after_ack=sum(f.acked for f in fs),
                absorbed=sum(f.handled for f in fs),
                failed={c: sum(c in f.checks for f in fs) for c in CHECKS},
                no_file_named=sum("names_file" in f.checks for f in fs),
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


#: (check, kind) -> reason, for what fails today
FAILING: dict[tuple[str, str], str] = {}


def _params() -> list[Any]:
    out = []
    for check in CHECKS:
        for op in KINDS:
            reason = FAILING.get((check, op))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(check, op, id=f"{check}-{op}", marks=marks))
    return out


@pytest.mark.parametrize(("check", "op"), _params())
def test_fault(faults: Results, check: str, op: str) -> None:
    failed = [f for f in faults[op] if check in f.checks]
    assert not failed, [f"{f.where()}: {f.checks[check][:200]}" for f in failed[:4]]


# --------------------------------------------------------------------------- the audit fsync
def test_failed_audit_fsync_is_made_durable_by_the_retry(seed: Seed, fast: Path) -> None:
    b = baseline(seed, "add", fast)
    n = next(
        i for i, (o, p) in enumerate(b.trace, 1) if o == "fsync" and p == "audit/commits.jsonl"
    )
    w = copy_vault(b.pre, fast / "w")
    first = fork_cli(w, b.args, Injector(w, "raise", n, errno.EIO))
    assert first.code == 1
    line_kept = len(state_files(w)["audit/commits.jsonl"] or b"") > len(
        b.pre_files["audit/commits.jsonl"] or b""
    )
    retry = fork_cli(w, b.args, Injector(w, "count"))
    assert retry.code == 0
    synced = ("fsync", "audit/commits.jsonl") in retry.trace
    figure(
        "faults_audit_fsync",
        line_kept=line_kept,
        retry_fsynced_log=synced,
        retry_said=retry.json.get("unchanged"),
    )
    assert not line_kept or synced


# --------------------------------------------------------------------------- a real full disk
def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture(scope="module")
def small_fs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    where = tmp_path_factory.mktemp("full") / "fs"
    if os.geteuid() != 0 or not shutil.which("mount") or not _mount_tmpfs(where, "4m"):
        pytest.skip("cannot mount a small tmpfs here (needs root and mount(8)): no real full disk")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(fs: Path, leave: int) -> Path:
    """Fill ``fs`` until ``leave`` bytes remain free."""
    filler = fs / "filler"
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 16)
        todo = max(0, free - leave)
        while todo > 0:
            try:
                f.write(chunk[: min(len(chunk), todo)])
                f.flush()
            except OSError:
                break
            todo -= min(len(chunk), todo)
    return filler


REAL = ["add", "evidence", "import", "rollback"]


@pytest.fixture(scope="module")
def full_disk(
    seed: Seed, small_fs: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    """Each of ``REAL`` on a tmpfs filled to 0, 4, 8, … KiB short of what it needs (every
    4 KiB under stress, every 12 KiB in CI), then retried once the space is freed."""
    work = tmp_path_factory.mktemp("full-work")
    results: list[dict[str, Any]] = []
    for op in REAL:
        b = baseline(seed, op, work)
        for leave in range(0, 160 * 1024, 4096 if STRESS else 24576):
            for p in small_fs.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            w = copy_vault(b.pre, small_fs / "v", link_objects=False)
            filler = _fill(small_fs, leave)
            before = tree(w)
            child = fork_cli(w, b.args)
            r: dict[str, Any] = {
                "op": op,
                "free": leave,
                "code": child.code,
                "message": child.stderr.strip(),
            }
            r["checks"] = checks = {}
            if child.code != 0:
                r["acked"] = acked = len(state_files(w)["audit/commits.jsonl"] or b"") > len(
                    b.pre_files["audit/commits.jsonl"] or b""
                )
                if child.crashed or not child.one_line_error:
                    checks["one_line"] = child.stderr[-200:]
                if str(w) not in child.stderr:
                    checks["names_file"] = child.stderr.strip()
                if acked and not COMMITTED.search(child.stderr):
                    checks["says_committed"] = child.stderr.strip()
                changed = unchanged_but_objects(before, tree(w))
                if not acked and changed:
                    checks["unchanged"] = f"changed: {changed[:3]}"
                if temporaries(w):
                    checks["no_temporaries"] = f"{temporaries(w)[:3]}"
            filler.unlink()
            retry = fork_cli(w, b.args) if child.code != 0 else child
            if retry.code != 0:
                checks["retry"] = f"retry failed: {retry.stderr.strip()}"
            elif _concepts(w) != b.post_concepts:
                checks["retry"] = "not the clean run's state" + (
                    " after the retry" if retry is not child else ""
                )
            results.append(r)
    figure(
        "faults_full_disk",
        runs=len(results),
        failed_runs=sum(r["code"] != 0 for r in results),
        after_ack=sum(bool(r.get("acked")) for r in results),
        failed={c: sum(c in r["checks"] for r in results) for c in FULL_CHECKS},
    )
    return results


FULL_CHECKS = ["one_line", "names_file", "unchanged", "says_committed", "no_temporaries", "retry"]
FULL_FAILING: dict[str, str] = {}


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(
            c,
            marks=[pytest.mark.xfail(strict=True, reason=FULL_FAILING[c])]
            if c in FULL_FAILING
            else [],
        )
        for c in FULL_CHECKS
    ],
)
def test_real_full_disk(full_disk: list[dict[str, Any]], check: str) -> None:
    """A real ENOSPC (a full tmpfs): one error line naming the file, the vault unchanged
    unless the audit line was written (then the message says so), no temporary, and once
    space is freed the retry succeeds with the clean run's state."""
    assert any(r["code"] != 0 for r in full_disk), "the disk was never full enough"
    failed = [r for r in full_disk if check in r["checks"]]
    assert not failed, [(r["op"], r["free"], r["checks"][check][:150]) for r in failed[:4]]


# --------------------------------------------------------------------------- strace
def _strace_ok() -> bool:
    if not shutil.which("strace"):
        return False
    probe = subprocess.run(
        [
            "strace",
            "-f",
            "-e",
            "trace=fsync",
            "-e",
            "inject=fsync:error=EIO:when=1",
            sys.executable,
            "-c",
            "import os; os.fsync(1)",
        ],
        capture_output=True,
    )
    return b"Input/output error" in probe.stderr


SYSCALLS = ["fsync", "write", "rename", "link", "unlink", "mkdir"]


@pytest.mark.skipif(not STRESS, reason="strace injection runs under make stress")
def test_strace_injected_errors(seed: Seed, fast: Path) -> None:
    """``strace -f -e inject=SYSCALL:error=E:when=N`` on a real ``python -m vault_cli``, for
    every N of every syscall vault writes with: never a traceback, never exit 0 after an
    fsync failed, a retry succeeds."""
    if not _strace_ok():
        pytest.skip("strace cannot inject here (no ptrace permission?)")
    b = baseline(seed, "add", fast)
    env = {**os.environ, **CLI_ENV}
    cmd = [sys.executable, "-m", "vault_cli", "--vault"]
    problems, runs_done = [], 0
    for sc in SYSCALLS:
        w = copy_vault(b.pre, fast / "w")
        log = fast / "strace.log"
        strace = ["strace", "-f", "-qq", "-y", "-o", str(log), "-e", f"trace={sc}"]
        subprocess.run(
            [*strace, *cmd, str(w), *b.args],
            env=env,
            capture_output=True,
            check=True,
        )
        calls = [  # the file of each call (-y prints a descriptor's path: fsync(3</p/x>))
            line
            for line in log.read_text().splitlines()
            if f" {sc}(" in line or line.split(" ", 1)[-1].startswith(f"{sc}(")
        ]
        for n in range(1, len(calls) + 1):
            target = re.search(r"<([^>]*)>", calls[n - 1])
            rel = os.path.relpath(target[1], w) if target else ""
            for err in ("ENOSPC", "EIO"):
                w = copy_vault(b.pre, fast / "w")
                done = subprocess.run(
                    [
                        "strace",
                        "-f",
                        "-qq",
                        "-o",
                        "/dev/null",
                        "-e",
                        f"trace={sc}",
                        "-e",
                        f"inject={sc}:error={err}:when={n}",
                        *cmd,
                        str(w),
                        *b.args,
                    ],
                    env=env,
                    capture_output=True,
                )
                runs_done += 1
                stderr = done.stderr.decode("utf-8", "replace")
                if crashed_in("", stderr):
                    problems.append(f"{sc}#{n} {err}: crashed {stderr[-200:]}")
                # exit 0 only when the failed fsync was of an existing object that the
                # command then rewrote and logged (audit op repair, FORMAT §3)
                if done.returncode == 0 and sc == "fsync" and not repaired(w, rel):
                    problems.append(f"{sc}#{n} {err}: exit 0 although fsync of {rel} failed")
                retry = subprocess.run([*cmd, str(w), *b.args], env=env, capture_output=True)
                if retry.returncode != 0:
                    problems.append(f"{sc}#{n} {err}: retry failed {retry.stderr[-200:]!r}")
    figure(
        "faults_strace",
        op="add",
        runs=runs_done,
        problems=len(problems),
        kinds=sorted({p.split(":")[1].split()[0] for p in problems}),
    )
    assert not problems, problems[:5]


def test_unreadable_cache_entry_does_not_fail_index_build(seed: Seed, fast: Path) -> None:
    """EIO on opening one cache entry (``strace -P entry -e inject=openat:error=EIO``): the cache
    is rebuildable, so ``index build`` succeeds; verify reports the entry (exit 1), no
    traceback."""
    if not _strace_ok():
        pytest.skip("strace cannot inject here (no ptrace permission?)")
    w = copy_vault(seed.root, fast / "w", link_objects=False)
    entry = sorted((w / "embeddings" / "cache").glob("*/*.json"))[0]
    env = {**os.environ, **CLI_ENV}
    inject = ["strace", "-f", "-qq", "-o", "/dev/null", "-P", str(entry), "-e", "trace=openat",
              "-e", "inject=openat:error=EIO"]  # fmt: skip
    cli = [sys.executable, "-m", "vault_cli", "--vault", str(w)]
    build = subprocess.run(
        [*inject, *cli, "index", "build", "--json"], env=env, capture_output=True
    )
    assert build.returncode == 0, build.stderr
    verify = subprocess.run([*inject, *cli, "verify", "--json"], env=env, capture_output=True)
    assert not crashed_in("", verify.stderr.decode("utf-8", "replace")), verify.stderr
    assert verify.returncode == 1 and entry.name.encode() in verify.stdout, verify.stdout[-300:]
