"""Documented limits on what vault reads from users, so no input can exhaust memory or
time: a file larger than ``MAX_INPUT_BYTES`` (or a stream that never ends, like
``/dev/zero``) is refused after reading at most that much — except a ``retrieve --batch``
stream, answered line by line, whose lines are each at most ``MAX_LINE_BYTES``; grids are
at most 30 x 30 (``vault.grid.grid.MAX_SIDE``, as ARC); a task has at most ``MAX_PAIRS``
train pairs and ``MAX_TESTS`` test inputs; a JSON document nests at most
``vault.canonical.MAX_DEPTH`` (512) levels deep — below the ~1,000 of Python's parser, so a
deeper one is always refused the same way, with its line and column — and an integer
beyond ±(2**53 - 1) is refused whatever its length. Input must be UTF-8; the first byte
that is not is named in the error."""

from __future__ import annotations

import codecs
from typing import BinaryIO

from vault.errors import InvalidInputError

MAX_INPUT_BYTES = 256 * 1024 * 1024  # one input file or stdin (JSON or JSON lines)
MAX_LINE_BYTES = 16 * 1024 * 1024  # one line of a JSON-lines stream (retrieve --batch)
MAX_PAIRS = 100  # train pairs per task (ARC tasks have at most 10)
MAX_TESTS = 100  # test inputs per task
_CHUNK = 4 * 1024 * 1024


def read_limited(f: BinaryIO, source: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """At most ``limit`` bytes of ``f``, which must be UTF-8 text: read in chunks and checked
    as they come, so binary input (``/dev/urandom``) is refused at its first bad byte, and
    more than ``limit`` bytes is an error naming the limit."""
    check = codecs.getincrementaldecoder("utf-8")()
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = f.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        try:
            check.decode(chunk)
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"not UTF-8 (byte {size + exc.start})", source=source) from None
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise InvalidInputError(
            f"larger than {limit // (1024 * 1024)} MiB, the input limit (vault.limits)",
            source=source,
        )
    return b"".join(chunks)
