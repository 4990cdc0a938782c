"""Unexpected exceptions (bugs) that vault absorbs instead of crashing, made visible.

Two places turn an exception nobody planned for into something a user can live with: the
CLI (``error: internal error: …``, exit 1) and retrieval (a fallback to symbolic whose
``fallback_reason`` starts with ``internal error:``). Both call ``note``, so a bug is never
mistaken for a designed refusal or fallback: with ``VAULT_INTERNAL_ERRORS=FILE`` in the
environment each one is appended to FILE as one JSON line (what, where, the traceback).
The test suite sets it for every test (``tests/conftest.py``) and fails a test whose
commands — in the test's process, a forked child or a subprocess — noted any. Unset (a
user's run), ``note`` only formats the message.
"""

from __future__ import annotations

import json
import os
import traceback

ENV = "VAULT_INTERNAL_ERRORS"


def describe(exc: BaseException) -> str:
    """``internal error: <Type>: <message>`` on one line."""
    text = " ".join(str(exc).split())
    kind = f"internal error: {type(exc).__name__}"
    return f"{kind}: {text}" if text else kind


def note(exc: BaseException, where: str) -> str:
    """Record ``exc`` (caught at ``where``) for the test suite when ``VAULT_INTERNAL_ERRORS``
    names a file; return ``describe(exc)``. Never raises."""
    message = describe(exc)
    target = os.environ.get(ENV)
    if target:
        line = json.dumps(
            {
                "where": where,
                "error": message,
                "pid": os.getpid(),
                "traceback": "".join(traceback.format_exception(exc)),
            },
            sort_keys=True,
        )
        try:  # one write of one line in append mode: whole lines from concurrent processes
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError:
            pass
    return message


def fallback_reason(exc: Exception) -> str:
    """Why retrieval fell back to symbolic after ``exc`` in the embedding path: a vault
    error (a corrupt or missing object: ``CorruptionError``, ...), an I/O error or memory
    running out is ``embedding error: <Type>: <message>``; anything else is a bug,
    ``internal error: <Type>: <message>``, and is noted (``note``)."""
    from vault.errors import VaultError

    if isinstance(exc, (VaultError, OSError, MemoryError)):
        return f"embedding error: {type(exc).__name__}: {exc}"
    return note(exc, "retrieval")
