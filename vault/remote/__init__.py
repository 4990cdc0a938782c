"""Vaults on object storage: remotes, push / pull / clone, and the commit protocol of many
writers (FORMAT.md §14). Needs the ``remote`` extra (obstore); nothing here is imported
by the core library or a one-shot command that does not use a remote."""

from __future__ import annotations

from vault.remote.sync import SyncResult, clone, pull, push

__all__ = ["SyncResult", "clone", "pull", "push"]
