"""Canonical JSON: the one byte form every record, index and hash is taken over.

Canonical = sorted keys, no insignificant whitespace, UTF-8, no NaN/Infinity.
Parsing is strict: duplicate keys, NaN/Infinity and integers beyond ±(2**53 - 1)
(the range every JSON reader agrees on) are refused with the line and column; a lone
surrogate (``"\\ud800"``: no Unicode character, so no UTF-8 can hold it) with its field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from typing import Any

from vault.errors import InvalidInputError

MAX_SAFE_INT = 2**53 - 1


def canonical_bytes(obj: Any) -> bytes:
    """Canonical JSON bytes of ``obj`` (no trailing newline).

    NaN/Infinity are refused here; integer range is enforced where values enter (``loads``
    and ``check_bounds`` on free-form user fields), not on every write (it is hot)."""
    try:
        text = json.dumps(
            obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
        return text.encode("utf-8")
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidInputError(f"cannot be written as canonical JSON ({exc})") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_id(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    return sha256_hex(canonical_bytes(obj))


def check_bounds(obj: Any) -> None:
    """Refuse NaN/Infinity and integers outside ±(2**53 - 1) anywhere inside ``obj``."""
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list | tuple):
            stack.extend(x)
        elif isinstance(x, float) and not math.isfinite(x):
            raise InvalidInputError("NaN and Infinity are not allowed")
        elif isinstance(x, int) and not isinstance(x, bool) and abs(x) > MAX_SAFE_INT:
            raise InvalidInputError(f"integer {x} is too large (limit ±{MAX_SAFE_INT})")


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Strict(f"duplicate key '{key}'")
        out[key] = value
    return out


class _Strict(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Strict(f"{name} is not allowed")


# No integer of at most 15 digits exceeds MAX_SAFE_INT (16 digits): a document without a
# run of 16 digits is parsed without a Python call per integer (grids hold millions).
_LONG_DIGITS = re.compile(r"[0-9]{16}")


def _parse_int(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_SAFE_INT:
        raise _Strict(f"integer {text[:30]} is too large (limit ±{MAX_SAFE_INT})")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Strict(f"number {text[:30]} is out of range")
    return value


# A lone surrogate can only come from a \u escape (UTF-8 text holds none): a document
# without one of D800-DFFF is not walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value: Any) -> tuple[str, str] | None:
    """(field, the surrogate as an escape) of the first string, key or value, in ``value``
    that holds a lone surrogate (the parser joins a well-formed pair into one character)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        x, path = stack.pop()
        if isinstance(x, str):
            found = _SURROGATE.search(x)
            if found is not None:
                field = path.encode("utf-8", "backslashreplace").decode("ascii")
                return field, f"\\u{ord(found[0]):04x}"
        elif isinstance(x, dict):
            for key, v in reversed(x.items()):
                where = f"{path}.{key}" if path else key
                stack += [(v, where), (key, where)]
        elif isinstance(x, list):
            stack.extend(
                (v, f"{path}[{i}]")
                for i, v in reversed(list(enumerate(x)))
                if isinstance(v, str | dict | list)
            )
    return None


def loads_trusted(data: bytes) -> Any:
    """Parse bytes this library wrote (objects, logs): plain, fast JSON; integrity is the
    caller's business (addresses are checked by ``verify`` or ``get(check=True)``)."""
    return json.loads(data)


def loads(text: str | bytes, source: str = "<input>") -> Any:
    """Parse one JSON document strictly; errors name ``source``, line and column."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(
                f"not UTF-8 ({exc.reason} at byte {exc.start})", source=source
            ) from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs_hook,
            parse_constant=_reject_constant,
            parse_int=_parse_int if _LONG_DIGITS.search(text) else None,
            parse_float=_parse_float,
        )
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", source=source
        ) from None
    except _Strict as exc:
        raise InvalidInputError(f"invalid JSON: {exc}", source=source) from None
    except (ValueError, RecursionError) as exc:  # e.g. int digit limit, absurd nesting
        raise InvalidInputError(f"invalid JSON: {exc}", source=source) from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        lone = _lone_surrogate(value)
        if lone is not None:
            raise InvalidInputError(
                f"invalid JSON: {lone[1]} is a lone surrogate, not a Unicode character",
                source=source,
                field=lone[0] or None,
            )
    return value


def iter_json_lines(text: str, source: str = "<input>") -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for each non-blank line of a JSON-lines text."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, loads(line, source=f"{source}:{number}")


def dumps_line(obj: Any) -> bytes:
    """One canonical JSON line, newline-terminated."""
    return canonical_bytes(obj) + b"\n"


CHECK = "check"  # the field a log line carries its own checksum in


def line_check(obj: dict[str, Any]) -> str:
    """The checksum of a log line (``audit/commits.jsonl``, ``index/generations.jsonl``):
    the first 16 hex digits of the sha256 of its canonical bytes without the field."""
    return sha256_hex(canonical_bytes({k: v for k, v in obj.items() if k != CHECK}))[:16]


def with_check(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with its checksum, as a log line is written."""
    return {**obj, CHECK: line_check(obj)}


_CHECKED_LINE = re.compile(rb'\{"check":"([0-9a-f]{16})",')


def line_intact(line: bytes) -> bool:
    """Whether a log line holds the bytes its writer checksummed — canonical JSON whose
    first key is ``check`` — from the bytes alone: the sha256 of the line without that
    field starts with it. (False says nothing: a line edited into another canonical form,
    or without a checksum, is judged by ``verify_check`` on its parse.)"""
    m = _CHECKED_LINE.match(line)
    return m is not None and sha256_hex(b"{" + line[m.end() :])[:16] == m[1].decode()


def verify_check(obj: dict[str, Any]) -> None:
    """Raise ``InvalidInputError`` if ``obj`` carries a checksum its content does not match
    (a line written before checksums, without the field, is accepted)."""
    if CHECK in obj and obj[CHECK] != line_check(obj):
        raise InvalidInputError("checksum mismatch: the line changed after it was written")
