"""Shared test helpers: the whole-tree snapshot and the "incremental == full build" check."""

from __future__ import annotations

import os
import stat
from pathlib import Path

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
