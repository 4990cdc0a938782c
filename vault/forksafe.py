"""Locks that a forked child can take.

A lock held by another thread of the parent at the moment of a ``fork`` stays held in the
child for ever: the thread that would release it does not exist there, so the child's first
use of it waits for ever — a solver that retrieves on one thread while another starts
``multiprocessing`` workers (fork is its default start method on Linux) would hang them.
Every lock of the library's process-wide caches is made by ``lock`` here and made anew in a
forked child.

What such a lock guards is left by the parent's other threads between two bytecodes (the
forking thread holds the GIL): each critical section it guards keeps its data usable at
every such point — single dict operations; at worst a memo's byte estimate is off by the
one entry a thread was putting.
"""

from __future__ import annotations

import os
import threading
import weakref

# holder -> the names of its attributes that hold such locks, and whether each is re-entrant
_HOLDERS: weakref.WeakKeyDictionary[object, dict[str, bool]] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()  # (itself made anew in the child, before the holders' locks)


def lock(holder: object, name: str) -> threading.Lock:
    """A new lock for ``holder.<name>`` (an object, or a module: ``sys.modules[__name__]``)
    that a forked child gets anew, as long as ``holder`` lives."""
    _hold(holder, name, False)
    return threading.Lock()


def rlock(holder: object, name: str) -> threading.RLock:
    """``lock``, re-entrant."""
    _hold(holder, name, True)
    return threading.RLock()


def _hold(holder: object, name: str, reentrant: bool) -> None:
    with _GUARD:
        _HOLDERS.setdefault(holder, {})[name] = reentrant


def _renew_in_child() -> None:
    global _GUARD
    _GUARD = threading.Lock()
    for holder, names in list(_HOLDERS.items()):
        for name, reentrant in names.items():
            setattr(holder, name, threading.RLock() if reentrant else threading.Lock())


os.register_at_fork(after_in_child=_renew_in_child)
