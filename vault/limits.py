"""Documented limits on what vault reads from users, so no input can exhaust memory or
time: a file larger than ``MAX_INPUT_BYTES`` (or a stream that never ends, like
``/dev/zero``) is refused after reading at most that much; grids are at most 30 x 30
(``vault.grid.grid.MAX_SIDE``, as ARC); a task has at most ``MAX_PAIRS`` train pairs and
``MAX_TESTS`` test inputs; a JSON document nests at most as deep as Python's parser allows
(about 1,000 levels) and integers have at most 4,300 digits (both refused cleanly)."""

from __future__ import annotations

from typing import BinaryIO

from vault.errors import InvalidInputError

MAX_INPUT_BYTES = 256 * 1024 * 1024  # one input file or stdin (JSON or JSON lines)
MAX_LINE_BYTES = 16 * 1024 * 1024  # one line of a JSON-lines stream (retrieve --batch)
MAX_PAIRS = 100  # train pairs per task (ARC tasks have at most 10)
MAX_TESTS = 100  # test inputs per task


def read_limited(f: BinaryIO, source: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """At most ``limit`` bytes of ``f``; more is an error naming the limit."""
    data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidInputError(
            f"larger than {limit // (1024 * 1024)} MiB, the input limit (vault.limits)",
            source=source,
        )
    return data
