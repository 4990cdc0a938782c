"""Shared test helpers: the whole-tree snapshot, the "incremental == full build" check and a
forked child's answer."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vault.index.build import plan_full
from vault.index.state import State
from vault.ops.verify import verify
from vault.vault import Vault

Tree = dict[str, tuple[str, int, bytes]]


def tree(root: Path) -> Tree:
    """Every entry under ``root`` — files (the cache, the lock and temporaries included),
    directories and symlinks — with its type, permission bits and bytes."""
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(p).encode())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


def full_build_id(v: Vault) -> str:
    """The generation id a from-scratch build of the audit log (up to the current position)
    gives, computed in memory without the cache."""
    cur = v.generations.current()
    assert cur is not None
    entries = [e for e in v.audit.entries() if e.seq <= cur.audit_seq]
    return plan_full(entries, State(v.objects), v.records, None).generation


def assert_sound(v: Vault) -> None:
    """The current generation equals a full build, and verify passes without changing a byte."""
    cur = v.generations.current()
    assert cur is not None
    assert full_build_id(v) == cur.generation
    before = tree(v.root)
    report = verify(v)
    assert report.ok, report.to_json()
    assert tree(v.root) == before


def concepts(v: Vault) -> dict[str, dict[str, object]]:
    """ref -> state entry of every concept version in the current generation."""
    return dict(v.snapshot().state.concepts())


def record_durability(m: pytest.MonkeyPatch, syncfs: bool) -> list[tuple[str, str]]:
    """Record, in order, each object file staged, each fsync and each syncfs (by the path of
    its descriptor: /proc); without ``syncfs``, as where the kernel would not report its
    errors (a fsync of each staged file and directory instead)."""
    from vault.store import fs
    from vault.store.objects import ObjectStore

    events: list[tuple[str, str]] = []
    real_fsync, real_stage = os.fsync, ObjectStore.stage

    def stage(self: Any, items: Any) -> Any:
        out = real_stage(self, items)
        events.extend(("stage", str(f)) for f in out)
        return out

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def syncfs_call(fd: int) -> int:
        events.append(("syncfs", os.readlink(f"/proc/self/fd/{fd}")))
        return 0

    m.setattr(ObjectStore, "stage", stage)
    m.setattr(os, "fsync", fsync)
    m.setattr(fs, "_syncfs", lambda: syncfs_call if syncfs else None)
    return events


def durable_once_before(
    events: list[tuple[str, str]], root: Path, names: tuple[str, ...], syncfs: bool
) -> list[str]:
    """Check that every staged object was made durable by the one sync (or a fsync of each
    staged file and directory) after the last was staged and before the first fsync of a
    file under ``names`` (what names them); returns the staged files."""
    staged = [f for kind, f in events if kind == "stage"]
    last_stage = max(i for i, (kind, _) in enumerate(events) if kind == "stage")
    first_name = min(i for i, (_, f) in enumerate(events) if f.startswith(names))
    fsynced = {f for kind, f in events if kind == "fsync"}
    if syncfs:
        synced = [i for i, (kind, _) in enumerate(events) if kind == "syncfs"]
        assert len(synced) == 1 and last_stage < synced[0] < first_name
        assert events[synced[0]][1] == str(root)
        assert not fsynced & set(staged)  # no object file fsynced one by one
    else:
        after = {f for kind, f in events[last_stage:first_name] if kind == "fsync"}
        assert set(staged) <= after and str(root / "objects") in after
        assert {str(Path(f).parent) for f in staged} <= after
    return staged


def answer_in_child(action: Callable[[], bytes], alarm: int = 30) -> bytes:
    """What ``action()`` returns in a forked child, read back through a pipe; the test
    fails unless the child returned (one that would wait for ever is killed by SIGALRM
    after ``alarm`` seconds). The child never returns into pytest."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            signal.alarm(alarm)
            os.write(w, action())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    return data
