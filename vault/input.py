"""The one input module: user files (a path, or ``-`` for stdin) read into located JSON
values, strictly — at most ``vault.limits.MAX_INPUT_BYTES`` (each JSON line at most
``MAX_LINE_BYTES``), UTF-8 only, vault's strict parser — for the CLI, the evaluation
study's task files and labels, ARC task files and ``retrieve --batch`` requests.

Every value comes with its location — ``file``, ``file[i]`` or ``file:line`` — so an error
names it. JSON lines are read with the ``jsonlines`` package (blank lines skipped, a BOM
tolerated) through vault's strict parser (no duplicate keys, NaN or out-of-range numbers):
``read_records`` for commands that check everything before writing, ``iter_json_lines`` for
streams (``vault retrieve --batch -``: one result per line as each line arrives).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, BinaryIO

from vault.canonical import loads
from vault.errors import InvalidInputError
from vault.limits import MAX_INPUT_BYTES, MAX_LINE_BYTES, read_limited

Located = tuple[Any, str]  # (value, where it came from)
_SKIP = 1 << 20  # the piece a line too long is skipped in


def _open_error(path: str, exc: OSError) -> InvalidInputError:
    if isinstance(exc, FileNotFoundError):
        return InvalidInputError("no such file", source=path)
    if isinstance(exc, IsADirectoryError):
        return InvalidInputError("is a directory, expected a JSON file", source=path)
    return InvalidInputError(f"cannot read ({exc.strerror})", source=path)


def source_name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _stdin() -> BinaryIO:
    """stdin's bytes; a closed stdin (``<&-``: Python's ``sys.stdin`` is None) is an input
    error, as an empty one is."""
    stdin = sys.stdin
    if stdin is None:
        raise InvalidInputError("stdin is closed, expected JSON", source="<stdin>")
    return stdin.buffer


def read_bytes(path: str) -> bytes:
    """The bytes of a file, or of stdin for ``-`` — at most ``vault.limits.MAX_INPUT_BYTES``
    (``/dev/zero`` or a huge sparse file is refused after that much, never read whole)."""
    if path == "-":
        return read_limited(_stdin(), "<stdin>")
    try:
        with open(path, "rb") as f:
            return read_limited(f, path)
    except OSError as exc:
        raise _open_error(path, exc) from None


def read_text(path: str) -> tuple[str, str]:
    """(text, source name) of a file or of stdin for ``-``; a leading byte-order mark (as
    some editors write) is dropped."""
    data, source = read_bytes(path), source_name(path)
    try:
        return data.decode("utf-8").removeprefix("\ufeff"), source
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"not UTF-8 (byte {exc.start})", source=source) from None


def read_json(path: str) -> tuple[Any, str]:
    """One JSON document and its source name."""
    text, source = read_text(path)
    return loads(text, source=source), source


# --------------------------------------------------------------------------- JSON lines
class _LineError(ValueError):
    """vault's strict-parser error, carried through ``jsonlines`` (which wants ValueError)."""

    def __init__(self, error: InvalidInputError):
        super().__init__(error.detail)
        self.error = error


def _strict(numbered: _Numbered) -> Callable[[str | bytes], Any]:
    """vault's strict parser for the lines of ``numbered``, an error located in its file:
    the line's number, and a column that counts a mark ``jsonlines`` dropped (a BOM or an
    RFC 7464 record separator starting the line)."""

    def parse(line: str | bytes) -> Any:
        try:
            return loads(line, line=numbered.number)
        except InvalidInputError as exc:
            error = exc
        raw = numbered.line
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if raw[:1] in ("\ufeff", "\x1e") and raw[1:] == line:
            try:
                loads(line, line=numbered.number, column=2)
            except InvalidInputError as shifted:
                error = shifted
        raise _LineError(error) from None

    return parse


class _Numbered:
    """Lines, remembering the number of the last one handed out. From a binary file, lines
    are read with ``vault.limits`` bounds: a line over ``MAX_LINE_BYTES`` or a stream over
    ``limit`` (default ``MAX_INPUT_BYTES``; None for a stream answered line by line, which
    holds one line at a time) is an error (``/dev/zero`` never exhausts memory). In a stream
    answered line by line (``limit`` None) a line too long is an error for that line alone:
    the rest of it is read in bounded pieces and dropped, and the next line comes next.
    ``None`` in ``lines`` stands for a line too long (``request_lines`` skipped it)."""

    def __init__(
        self,
        lines: Iterable[str | bytes | None],
        source: str = "<input>",
        limit: int | None = MAX_INPUT_BYTES,
    ):
        self._file = lines if hasattr(lines, "readline") else None
        self._lines = iter(lines) if self._file is None else None
        self.source = source
        self.limit = limit
        self.number = 0
        self.read = 0
        self.line: str | bytes = ""  # the last line handed out, as read

    def __iter__(self) -> _Numbered:
        return self

    def __next__(self) -> str | bytes:
        if self._file is None:
            assert self._lines is not None
            line = next(self._lines)
            if line is None:
                raise self._too_long()
        else:
            line = self._file.readline(MAX_LINE_BYTES + 1)
            if not line:
                raise StopIteration
            self.read += len(line)
            if len(line) > MAX_LINE_BYTES:
                if self.limit is None:  # skip the rest in bounded pieces, never held whole
                    while line and not line.endswith(b"\n"):
                        line = self._file.readline(_SKIP)
                raise self._too_long()
            if self.limit is not None and self.read > self.limit:
                raise InvalidInputError(
                    f"larger than {self.limit // (1024 * 1024)} MiB, the input limit "
                    "(vault.limits)",
                    source=self.source,
                )
        self.number += 1
        self.line = line
        return line

    def _too_long(self) -> InvalidInputError:
        self.number += 1
        return InvalidInputError(
            f"line {self.number} is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB "
            "(vault.limits)",
            source=self.source,
        )


def json_lines(lines: Iterable[str | bytes], source: str) -> Iterator[Located]:
    """``(value, "source:line")`` for each non-blank line; a bad line raises
    ``InvalidInputError`` naming its line number."""
    import jsonlines  # (imported on use: most commands never read JSON lines)

    numbered = _Numbered(lines, source, MAX_INPUT_BYTES)
    reader = jsonlines.Reader(numbered, loads=_strict(numbered))
    try:
        for value in reader.iter(allow_none=True, skip_empty=True):
            yield value, f"{source}:{numbered.number}"
    except jsonlines.InvalidLineError as exc:
        where = f"{source}:{exc.lineno}"
        cause = exc.__cause__
        if isinstance(cause, _LineError):
            raise InvalidInputError(
                cause.error.detail, source=where, field=cause.error.field
            ) from None
        if isinstance(cause, UnicodeDecodeError):
            raise InvalidInputError(f"not UTF-8 (byte {cause.start})", source=where) from None
        raise InvalidInputError(str(exc).split(" (line ")[0], source=where) from None


@contextlib.contextmanager
def _binary_stream(path: str) -> Iterator[IO[bytes]]:
    """The bytes of a file, or stdin for ``-`` (left open), closed on any exit."""
    if path == "-":
        yield _stdin()
        return
    try:
        fp: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed below, also on early exit
    except OSError as exc:
        raise _open_error(path, exc) from None
    with fp:
        yield fp


def iter_json_lines(path: str) -> Iterator[Located]:
    """Stream the JSON lines of a file, or of stdin for ``-``, one value at a time."""
    with _binary_stream(path) as fp:
        yield from json_lines(fp, source_name(path))


def iter_requests(path: str) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank JSON line of a file or stdin; a line that
    is not JSON yields its ``InvalidInputError`` as the value and the stream goes on (for
    ``retrieve --batch``: one bad request never ends the run). Each line is bounded
    (``MAX_LINE_BYTES``: a longer one is skipped, its value the error), the stream is not:
    it is answered line by line, so a co-process may send requests for as long as it
    likes."""
    with _binary_stream(path) as fp:
        yield from _requests(fp, source_name(path))


def request_lines(path: str) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, bytes)`` of every line of a requests file or stdin, blank ones too,
    each bounded as ``iter_requests`` bounds it (None for a line too long, skipped): what
    ``retrieve --batch --scheduler`` sends to the workers, which parse them with
    ``requests_of`` (the same values and errors)."""
    with _binary_stream(path) as fp:
        numbered = _Numbered(fp, source_name(path), limit=None)
        while True:
            try:
                line = next(numbered)
            except StopIteration:
                return
            except InvalidInputError:  # too long: ``requests_of`` answers the error
                line = None
            yield numbered.number, line  # type: ignore[misc]


def requests_of(
    lines: Iterable[bytes | None], source: str, start: int
) -> Iterator[tuple[int, Any]]:
    """``iter_requests`` of lines ``start + 1``, ``start + 2``, … of ``source``."""
    return _requests(lines, source, start)


def _requests(
    lines: Iterable[bytes | None], source: str, start: int = 0
) -> Iterator[tuple[int, Any]]:
    import jsonlines

    numbered = _Numbered(lines, source, limit=None)
    numbered.number = start
    reader = jsonlines.Reader(numbered, loads=_strict(numbered))
    while True:
        try:
            value = reader.read(allow_none=True, skip_empty=True)
        except EOFError:
            return
        except InvalidInputError as exc:  # a line too long, skipped (``_Numbered``)
            yield numbered.number, exc
            continue
        except jsonlines.InvalidLineError as exc:
            lineno = numbered.number  # (not exc.lineno: jsonlines did not count a line too long)
            where = f"{source}:{lineno}"
            cause = exc.__cause__
            detail = cause.error.detail if isinstance(cause, _LineError) else "not JSON"
            field = cause.error.field if isinstance(cause, _LineError) else None
            if isinstance(cause, UnicodeDecodeError):
                detail = f"not UTF-8 (byte {cause.start})"
            yield lineno, InvalidInputError(detail, source=where, field=field)
            continue
        yield numbered.number, value


def _is_grid(doc: list[Any]) -> bool:
    """A list of rows of numbers is one grid, not a list of records."""
    return bool(doc) and all(
        isinstance(row, list) and all(isinstance(c, int | float) for c in row) for row in doc
    )


def read_records(path: str, *, empty_list: bool = True) -> list[Located]:
    """Records from one JSON document (an object, or a list of objects) or from JSON lines,
    all read (and parsed) before the caller writes anything. A top-level ``[]`` is no
    records (``add``, ``import``: nothing to write), or with ``empty_list=False`` (``embed``,
    which reads grids too) an empty grid, refused as ``vault repr`` refuses it."""
    text, source = read_text(path)
    if not text.strip():
        raise InvalidInputError("empty input, expected JSON", source=source)
    try:
        doc = loads(text, source=source)
    except InvalidInputError as whole:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) < 2:
            raise
        try:  # JSON lines if the first line is a JSON value by itself (strict or not)
            json.loads(lines[0])
        except (ValueError, RecursionError):
            raise whole from None
        return list(json_lines(text.splitlines(), source))
    if doc == [] and not empty_list:
        raise InvalidInputError("expected a non-empty list of rows", source=source, field="grid")
    if isinstance(doc, list) and not _is_grid(doc):
        return [(value, f"{source}[{i}]") for i, value in enumerate(doc)]
    return [(doc, source)]
