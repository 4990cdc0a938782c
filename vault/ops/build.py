"""``vault index build``: the whole index from the audit log, as a new generation (the
planning and publishing are ``vault.index.build``'s)."""

from __future__ import annotations

from vault.handle import Handle
from vault.index.build import BuildResult, Progress, build_all, catch_up


def build_index(vault: Handle, progress: Progress | None = None) -> BuildResult:
    """Catch up, rebuild every row, publish, and record ``index_build`` in the audit log."""
    with vault.lock:
        parent = catch_up(vault, repair=True).number
        result = build_all(vault, "build", parent, progress)
        vault.audit.append(
            "index_build",
            vault.clock(),
            [],
            {"generation": result.generation, "changed": result.changed},
        )
        return result
