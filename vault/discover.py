"""Which vault a command means when none is named: the one that contains the current
directory, found by walking up from it — as git and dvc find their repository."""

from __future__ import annotations

from pathlib import Path


def find_vault(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding a concept vault's ``format.json``
    (of any format version, so that an old vault is found and `vault upgrade` suggested), or
    None. Paths are not resolved: a vault reached through a symlink is named as it was."""
    from vault.errors import NotAVaultError
    from vault.vault import FORMAT_FILE, read_format

    here = start if start.is_absolute() else Path.cwd() / start
    for directory in (here, *here.parents):
        fmt = directory / FORMAT_FILE
        if fmt.is_file():
            try:
                read_format(fmt)
            except NotAVaultError:
                continue
            return directory
    return None
