"""A process that forks while another of its threads holds one of the library's locks
(a solver retrieving on one thread while another starts ``multiprocessing`` workers, fork
being the default start method on Linux): the child must still use every cache. Each test
holds a real lock on a helper thread, forks, and has the child call the public entry point
that takes that lock; a child that would wait for the lock for ever is killed by an alarm."""

from __future__ import annotations

import gc
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from vault import forksafe
from vault.embedding import similarity as S
from vault.embedding import summary as SM
from vault.embedding import topk as T
from vault.embedding.topk import threads as TT
from vault.grid import objects as OB
from vault.grid import reprs as RP
from vault.index import snapshot as SN
from vault.memo import BoundedMemo

from .helpers import answer_in_child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")

ALARM = 20  # seconds a child may take before it counts as hung


def in_child_while_held(lock: Any, action: Callable[[], bytes]) -> bytes:
    """``action()`` in a child forked while a helper thread of this process holds
    ``lock``; the child's answer (it exits 0 only if the action returned)."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    try:
        return answer_in_child(action, ALARM)
    finally:
        release.set()
        t.join()


def test_a_memo_held_at_the_fork_is_usable_in_the_child() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo(1 << 20)
    memo.put("a", 1, 100)

    def child() -> bytes:
        memo.put("b", 2, 100)
        return repr((memo.get("a"), memo.get("b"), memo.has("c"))).encode()

    assert in_child_while_held(memo._lock, child) == b"(1, 2, False)"
    assert memo.get("b") is None  # (the child's put stayed in the child)


def test_the_grid_memos_held_at_the_fork_are_usable_in_the_child() -> None:
    grid = [[0, 1, 1], [2, 0, 1], [2, 2, 0]]
    want = RP.repr_id(RP.grid_to_repr(grid))
    found = [sorted(o.cells) for o in OB.objects(RP.parse_grid(grid))]

    def child() -> bytes:
        return RP.repr_id(RP.grid_to_repr(grid)).encode()

    assert in_child_while_held(RP._memo._lock, child) == want.encode()

    def child_objects() -> bytes:
        return repr([sorted(o.cells) for o in OB.objects(RP.parse_grid(grid))]).encode()

    assert in_child_while_held(OB._memo._lock, child_objects) == repr(found).encode()


def test_the_summary_registry_held_at_the_fork_is_usable_in_the_child() -> None:
    matrix = SM.seal(np.zeros((4, 64), dtype=np.int8))

    def child() -> bytes:
        other = SM.seal(np.ones((4, 64), dtype=np.int8))
        return repr((SM.immutable(matrix), SM.immutable(other))).encode()

    assert in_child_while_held(SM._LOCK, child) == b"(True, True)"


def test_the_loaded_generations_held_at_the_fork_are_usable_in_the_child() -> None:
    def child() -> bytes:
        SN.clear_cache()
        return b"cleared"

    assert in_child_while_held(SN._lock, child) == b"cleared"


@pytest.mark.parametrize("which", ["pool", "blas", "measured"])
def test_the_scan_locks_held_at_the_fork_are_usable_in_the_child(
    monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    """A two-thread scan in the child takes the pool's, BLAS's and the thread choice's
    locks (small blocks, so that a small matrix is a large one; two cores and no fixed
    thread count, so that the default's choice takes its lock)."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.delenv(TT.THREADS_ENV, raising=False)
    for name, value in (("BLOCK", 16), ("SUPER", 48)):
        for module in (T, T._common, T.single, T.batch, TT):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, value)
    rng = np.random.default_rng(3)
    m = rng.integers(-128, 128, (400, 64), dtype=np.int8)
    na = S.squared_norms(m, S.APPEARANCE_DIMS).astype(np.uint32)
    nb = S.squared_norms(m, S.BEHAVIOUR_DIMS).astype(np.uint32)
    q = rng.integers(-128, 128, 64, dtype=np.int8)
    want = T.topk(m, na, nb, q, 10, "cosine", threads=2)
    lock = {"pool": TT._POOL_LOCK, "blas": TT._BLAS_LOCK, "measured": TT.MEASURED._lock}

    def child() -> bytes:
        got = T.topk(m, na, nb, q, 10, "cosine")  # (the measured choice: its lock)
        got2 = T.topk(m, na, nb, q, 10, "cosine", threads=2)
        return b"".join(a.tobytes() for a in (*got, *got2))

    data = in_child_while_held(lock[which], child)
    assert data == b"".join(a.tobytes() for a in (*want, *want))


def test_a_scan_running_at_the_fork_leaves_blas_as_it_was_in_the_child() -> None:
    """A scan runs BLAS single-threaded while it lasts; a child forked meanwhile runs no
    scan, so its BLAS gets the thread count back (and its own scans restore it too)."""
    blas = TT._openblas()
    if blas is None:
        pytest.skip("numpy's BLAS is not scipy-openblas")
    before = blas[0]()
    blas[1](2)
    inside, leave = threading.Event(), threading.Event()

    def scan() -> None:
        with TT._single_threaded_blas():
            inside.set()
            leave.wait(60)

    t = threading.Thread(target=scan)
    t.start()
    try:
        assert inside.wait(10) and blas[0]() == 1

        def child() -> bytes:
            answer = (TT._BLAS_USERS, blas[0]())
            with TT._single_threaded_blas():  # a scan of its own
                pass
            return repr((*answer, blas[0]())).encode()

        assert answer_in_child(child, ALARM) == b"(0, 2, 2)"
    finally:
        leave.set()
        t.join()
        blas[1](before)


def test_a_holder_is_not_kept_alive_by_its_lock() -> None:
    memo: BoundedMemo[str, int] = BoundedMemo(1 << 10)
    assert memo in forksafe._HOLDERS
    ref = weakref.ref(memo)
    del memo
    gc.collect()
    assert ref() is None  # (the registry holds it weakly: a dead memo leaves it)
