"""Reading the CLI's input files (a path or ``-`` for stdin) into located JSON values."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from vault.canonical import iter_json_lines, loads
from vault.errors import InvalidInputError


def read_text(path: str) -> tuple[str, str]:
    """(text, source name) of a file or of stdin for ``-``."""
    if path == "-":
        data = sys.stdin.buffer.read()
        source = "<stdin>"
    else:
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise InvalidInputError("no such file", source=path) from None
        except IsADirectoryError:
            raise InvalidInputError("is a directory, expected a JSON file", source=path) from None
        except OSError as exc:
            raise InvalidInputError(f"cannot read ({exc.strerror})", source=path) from None
        source = path
    try:
        return data.decode("utf-8"), source
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"not UTF-8 (byte {exc.start})", source=source) from None


def read_json(path: str) -> tuple[Any, str]:
    text, source = read_text(path)
    return loads(text, source=source), source


def _is_grid(doc: list[Any]) -> bool:
    """A list of rows of numbers is one grid, not a list of records."""
    return bool(doc) and all(
        isinstance(row, list) and all(isinstance(c, int | float) for c in row) for row in doc
    )


def read_records(path: str) -> list[tuple[Any, str]]:
    """Records from one JSON document (an object or a list of objects) or from JSON lines.

    Each record comes with its location (``file`` or ``file:line``) for error messages.
    """
    text, source = read_text(path)
    if not text.strip():
        raise InvalidInputError("empty input, expected JSON", source=source)
    try:
        doc = loads(text, source=source)
    except InvalidInputError as whole:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) < 2:
            raise
        try:
            loads(lines[0])
        except InvalidInputError:
            raise whole from None
        return [(value, f"{source}:{n}") for n, value in iter_json_lines(text, source)]
    if isinstance(doc, list) and not _is_grid(doc):
        return [(value, f"{source}[{i}]") for i, value in enumerate(doc)]
    return [(doc, source)]
