"""The one error tree of the library.

Every failure a user can cause or meet is a ``VaultError``; the CLI catches it once,
prints ``error: <message>`` on stderr and exits with ``exit_code``::

    VaultError (1)
    ├── UsageError (2)             a bad option value or a conflicting combination
    ├── InvalidInputError (1)      a record, grid, query or file that breaks its schema
    ├── NotAVaultError (1)         the directory is not a vault (or is a Python package)
    ├── FormatError (1)            the vault's on-disk format is newer than this tool
    ├── ConflictError (1)          id+version already stored with different content
    ├── NotFoundError (1)          unknown concept, version or generation
    ├── CorruptionError (1)        an object, ref or index does not match its hash
    ├── ConfigError (1)            config.toml holds an invalid value
    ├── LockError (1)              the write lock could not be taken in time
    └── EmbeddingError (1)         the embedding path failed (retrieval falls back)
"""

from __future__ import annotations


class VaultError(Exception):
    """Root of every error the library raises on purpose."""

    exit_code = 1


class UsageError(VaultError):
    exit_code = 2


class InvalidInputError(VaultError):
    """Bad input; the message names the source (file, line), the field and what was expected."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        self.detail = message
        parts = []
        if source:
            parts.append(source)
        if field:
            parts.append(f"field '{field}'")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def at(self, source: str) -> InvalidInputError:
        """The same error, located in ``source`` (a file name, 'file:line', ...)."""
        where = f"{source}: {self.source}" if self.source else source
        return InvalidInputError(self.detail, source=where, field=self.field)


class NotAVaultError(VaultError):
    pass


class FormatError(VaultError):
    pass


class ConflictError(VaultError):
    pass


class NotFoundError(VaultError):
    pass


class CorruptionError(VaultError):
    pass


class ConfigError(VaultError):
    pass


class LockError(VaultError):
    pass


class EmbeddingError(VaultError):
    pass
