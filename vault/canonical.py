"""Canonical JSON: the one byte form every record, index and hash is taken over.

Canonical = sorted keys, no insignificant whitespace, UTF-8, no NaN/Infinity.
Parsing is strict: duplicate keys, NaN/Infinity, integers beyond ±(2**53 - 1) (the range
every JSON reader agrees on), floats that overflow and nesting deeper than ``MAX_DEPTH``
are refused with the line and column of the token; a lone surrogate (``"\\ud800"``: no
Unicode character, so no UTF-8 can hold it) also with its field. The C parser does the
work; only when it (or a check after it) refuses is the text scanned again, by a small
tokenizer, to locate the refused token.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

from vault.errors import InvalidInputError

MAX_SAFE_INT = 2**53 - 1
MAX_DEPTH = 512  # nesting: arrays and objects inside one another (Python's parser: ~1,000)


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


# ------------------------------------------------------------------ nesting and locations
# Nesting, after a parse: a text of at most MAX_DEPTH openers cannot be deeper; a longer
# one is measured on its brackets alone, with C string operations (its escaped backslashes
# and quotes cut out, then every byte but brackets and quotes, then the strings).
_MARKS = bytes.maketrans(b"{}", b"[]")
_NOT_MARKS = bytes(b for b in range(256) if b not in b'[]{}"')


def _too_deep(text: str) -> bool:
    """Whether the (well-formed) JSON ``text`` nests deeper than ``MAX_DEPTH``."""
    if len(text) <= 2 * MAX_DEPTH:
        return False
    openers = text.count("[")
    if openers <= MAX_DEPTH and openers + text.count("{") <= MAX_DEPTH:
        return False
    if "\\\\" in text or '\\"' in text:  # an escaped quote delimits nothing
        text = text.replace("\\\\", "").replace('\\"', "")  # (escaped backslashes first)
    marks = text.encode("utf-8", "surrogatepass").translate(_MARKS, _NOT_MARKS)  # [ ] "
    brackets = marks.replace(b'""', b"")  # the strings, if none holds a bracket
    if b'"' in brackets:  # one does: cut each string out
        brackets = b"".join(marks.split(b'"')[::2])
    for _ in range(MAX_DEPTH):  # each pass removes the innermost containers
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)


# The locator: only on the error path, a small tokenizer finds the first refused token.
_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_SHORT = r"-?[0-9]{1,15}(?:\.[0-9]+)?"  # a number no bound can refuse
_SHORT_ARRAY = re.compile(rf"\[[ \t\n\r]*(?:{_SHORT}[ \t\n\r]*,[ \t\n\r]*)*{_SHORT}[ \t\n\r]*\]")
_CONSTANTS = ("NaN", "Infinity", "-Infinity")
# json's own string scanner (C): the decoded string, and the offset after its closing quote
_scanstring: Callable[[str, int], tuple[str, int]]
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]
_FINITE = "expected a finite number"


def _refused(text: str, end: int | None = None) -> tuple[int, str] | None:
    """(offset, what is wrong and what was expected) of the first token of ``text`` that
    strict parsing refuses — nesting deeper than ``MAX_DEPTH``, a duplicate key, NaN or
    Infinity, an integer beyond ±(2**53 - 1), a float that overflows, a lone surrogate —
    or None if there is none before offset ``end`` or where the text stops being JSON."""
    stack: list[set[str] | None] = []  # each open container: an object's keys, or None
    key_next = False
    pos, end = 0, len(text) if end is None else end
    while True:
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= end:
            return None
        c = text[pos]
        if c in "[{":
            if len(stack) >= MAX_DEPTH:
                return pos, f"nested deeper than {MAX_DEPTH} levels, expected at most {MAX_DEPTH}"
            short = _SHORT_ARRAY.match(text, pos) if c == "[" else None
            if short is not None:  # a grid row: one token
                pos = short.end()
                continue
            stack.append(set() if c == "{" else None)
            key_next = c == "{"
            pos += 1
        elif c in "]}":
            if not stack:
                return None
            stack.pop()
            key_next = False
            pos += 1
        elif c == ",":
            key_next = bool(stack) and stack[-1] is not None
            pos += 1
        elif c == ":":
            pos += 1
        elif c == '"':
            try:
                value, after = _scanstring(text, pos + 1)
            except ValueError:
                return None
            keys = stack[-1] if key_next and stack else None
            if keys is not None:
                if value in keys:
                    return pos, f"duplicate key '{value}', expected each key once in an object"
                keys.add(value)
                key_next = False
            lone = _SURROGATE.search(value)
            if lone is not None:
                return pos, (
                    f"\\u{ord(lone[0]):04x} is a lone surrogate, not a Unicode character, "
                    "expected a pair (\\ud800-\\udbff, then \\udc00-\\udfff)"
                )
            pos = after
        elif text.startswith(_CONSTANTS, pos):
            name = next(n for n in _CONSTANTS if text.startswith(n, pos))
            return pos, f"{name} is not allowed, {_FINITE}"
        elif (number := _NUMBER.match(text, pos)) is not None:
            token = number[0]
            if number[1] is None and number[2] is None:
                digits = len(token) - token.startswith("-")
                if digits > 16 or (digits == 16 and abs(int(token)) > MAX_SAFE_INT):
                    return pos, (
                        f"integer {token[:30]}{'...' if len(token) > 30 else ''} is too "
                        f"large, expected at most ±{MAX_SAFE_INT}"
                    )
            elif not math.isfinite(float(token)):
                return pos, f"number {token[:30]} is out of range, {_FINITE}"
            pos = number.end()
        elif text.startswith(("true", "null"), pos):
            pos += 4
        elif text.startswith("false", pos):
            pos += 5
        else:
            return None


def _at(text: str, pos: int, line: int, column: int) -> str:
    """``(line L, column C)`` of offset ``pos`` in ``text``, whose first character is at
    ``line``, ``column`` of its file (1-based; a column counts characters)."""
    newlines = text.count("\n", 0, pos)
    col = column + pos if newlines == 0 else pos - text.rfind("\n", 0, pos)
    return f"(line {line + newlines}, column {col})"


def _refusal(
    text: str, source: str, line: int, column: int, fallback: str, field: str | None = None
) -> InvalidInputError:
    found = _refused(text)
    if found is None:  # (not expected: each refusal of the parser is one of _refused's)
        return InvalidInputError(f"invalid JSON: {fallback}", source=source, field=field)
    pos, what = found
    return InvalidInputError(
        f"invalid JSON: {what} {_at(text, pos, line, column)}", source=source, field=field
    )


def loads_trusted(data: bytes) -> Any:
    """Parse bytes this library wrote (objects, logs): plain, fast JSON; integrity is the
    caller's business (addresses are checked by ``verify`` or ``get(check=True)``)."""
    return json.loads(data)


def _malformed(exc: json.JSONDecodeError, text: str, line: int, column: int, unit: str) -> str:
    """What is wrong with ``text`` where Python's parser stopped: a text cut short (the
    parser wants more where only whitespace is left) is named so, at the place just after
    its last character — not at the end of its trailing newline, the next line."""
    if exc.msg.startswith("Expecting") and not text[exc.pos :].strip(" \t\n\r"):
        end = len(text.rstrip(" \t\n\r"))
        if end == 0:
            return f"empty {unit}, expected a JSON value"
        expecting = exc.msg[0].lower() + exc.msg[1:]
        return f"unexpected end of {unit} {_at(text, end, line, column)}, {expecting}"
    return f"{exc.msg} {_at(text, exc.pos, line, column)}"


def loads(
    text: str | bytes, source: str = "<input>", *, line: int | None = None, column: int = 1
) -> Any:
    """Parse one JSON document strictly; errors name ``source``, the line and the column
    (of the file: ``text`` starts at ``line``, ``column`` of it, as a JSON line does) and
    what was expected. Errors are located by a second scan, only when there is one. A
    ``line`` given says ``text`` is a JSON line: one cut short is "unexpected end of line"
    (of a whole document, "of input")."""
    unit = "input" if line is None else "line"
    line = 1 if line is None else line
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
    except json.JSONDecodeError as exc:  # (a refusal before it comes first, as in reading)
        if _refused(text, exc.pos) is not None:
            raise _refusal(text, source, line, column, exc.msg) from None
        raise InvalidInputError(
            f"malformed JSON: {_malformed(exc, text, line, column, unit)}", source=source
        ) from None
    except (ValueError, RecursionError) as exc:  # a hook, the int digit limit, nesting
        raise _refusal(text, source, line, column, str(exc)) from None
    if _too_deep(text):
        raise _refusal(text, source, line, column, f"nested deeper than {MAX_DEPTH} levels")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        lone = _lone_surrogate(value)
        if lone is not None:
            raise _refusal(
                text,
                source,
                line,
                column,
                f"{lone[1]} is a lone surrogate, not a Unicode character",
                field=lone[0] or None,
            )
    return value


def iter_json_lines(text: str, source: str = "<input>") -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for each non-blank line of a JSON-lines text."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, loads(line, source=f"{source}:{number}", line=number)


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
