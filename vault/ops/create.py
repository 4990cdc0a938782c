"""Creating a vault (``vault init``) and bringing an older one to this tool's format
(``vault upgrade``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from vault.config import default_text as default_config_text
from vault.embedding import shipped
from vault.errors import FormatError, NotAVaultError
from vault.handle import (
    FORMAT_FILE,
    FORMAT_VERSION,
    Clock,
    Handle,
    format_bytes,
    read_format,
)
from vault.index.build import build_all
from vault.store.fs import atomic_write, fsync_dir


def init(
    root: Path | str, *, clock: Clock | None = None, embedder: str = "shipped"
) -> tuple[Handle, bool]:
    """Create a vault (or open the existing one); returns (handle, created).

    A new vault starts with the shipped fitted embedder (``vault.embedding.shipped``:
    its weights object stored in ``objects/`` and chosen by an ``embedder`` audit entry
    after ``init``); ``embedder="builtin"`` keeps the hand-set one. The vault is built
    in a temporary sibling directory and renamed into place, so a crash never leaves a
    half-made vault behind."""
    root = Path(root)
    if (root / FORMAT_FILE).exists():
        return Handle.open(root, clock=clock), False
    if root.exists():
        if not root.is_dir():
            raise NotAVaultError(f"{root} exists and is not a directory")
        Handle.refuse_package(root)
        if any(root.iterdir()):
            raise NotAVaultError(f"{root} is not empty and not a vault; choose another path")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.init-"))
    try:
        os.chmod(tmp, 0o755)
        staged = Handle(tmp, clock=clock)
        for sub in ("objects", "audit", "index", "refs", "embeddings/cache"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        (tmp / "lock").touch()
        atomic_write(staged.config_path, default_config_text().encode())
        staged.audit.append("init", staged.clock(), [], {"format": FORMAT_VERSION})
        if embedder != "builtin":
            if embedder != "shipped":
                raise ValueError(f"embedder must be shipped or builtin, not {embedder!r}")
            digest = staged.objects.put(shipped.weights_bytes())
            staged.audit.append("embedder", staged.clock(), [], {"embedder": digest})
        build_all(staged, "init", parent=None)
        atomic_write(tmp / FORMAT_FILE, format_bytes())
        try:
            os.rename(tmp, root)  # replaces an empty directory, fails on a non-empty one
        except OSError:
            if (root / FORMAT_FILE).exists():  # another process made it meanwhile
                return Handle.open(root, clock=clock), False
            raise
        fsync_dir(root.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Handle(root, clock=clock), True


def upgrade(root: Path | str, *, clock: Clock | None = None) -> tuple[int, int]:
    """Bring a vault of an older format to this tool's: records, the audit log, the
    config and the cache are kept; the index is rebuilt from the audit log as a new
    first generation (the old generation list is kept aside in ``index/``). Returns
    (old format, new format); a vault already current is left untouched."""
    root = Path(root)
    Handle.refuse_package(root)
    fmt = root / FORMAT_FILE
    if not fmt.is_file():
        raise NotAVaultError(f"{root} is not a vault (no {FORMAT_FILE})")
    version = read_format(fmt)
    if version > FORMAT_VERSION:
        raise FormatError(
            f"{fmt} says vault format {version}; this tool knows {FORMAT_VERSION}: upgrade the tool"
        )
    if version == FORMAT_VERSION:
        return version, version
    vault = Handle(root, clock=clock)
    with vault.lock:
        index = root / "index"
        for name in ("generations.jsonl", "CURRENT"):
            old = index / name
            if old.exists():
                os.replace(old, index / f"format{version}.{name}")
        build_all(vault, "upgrade", parent=None)
        vault.audit.append("upgrade", vault.clock(), [], {"from": version, "to": FORMAT_VERSION})
        atomic_write(fmt, format_bytes())
    return version, FORMAT_VERSION
