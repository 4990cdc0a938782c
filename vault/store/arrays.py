"""Binary arrays as ``.npy`` bytes: one fixed writer, one safe reader.

The writer emits NPY format 1.0 with a header this module spells out itself (not
``np.save``'s), so the same array gives the same bytes with any numpy version — objects are
content-addressed, and a generation must be byte-identical on every machine. The reader
accepts only the plain little-endian integer dtypes the index uses (never pickles, never
object arrays) and checks that the data length matches the header.
"""

from __future__ import annotations

import ast
import struct

import numpy as np

from vault.errors import CorruptionError

MAGIC = b"\x93NUMPY\x01\x00"
ALLOWED = frozenset({"|i1", "|u1", "<i4", "<u4", "<i8", "<u8"})


def _descr(array: np.ndarray) -> str:
    dt = array.dtype
    descr = dt.str if dt.itemsize > 1 else f"|{dt.kind}1"
    if descr not in ALLOWED:
        raise ValueError(f"dtype {dt} is not stored by the index")
    return descr


def npy_bytes(array: np.ndarray) -> bytes:
    """NPY 1.0 bytes of a C-ordered array with one of the allowed dtypes."""
    descr = _descr(array)
    shape = "(" + "".join(f"{n}, " for n in array.shape).rstrip(" ")
    shape = shape[:-1] + ",)" if len(array.shape) == 1 else shape.rstrip(",") + ")"
    if not array.shape:
        shape = "()"
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    pad = 64 - (len(MAGIC) + 2 + len(header) + 1) % 64
    header += " " * (pad % 64) + "\n"
    data = np.ascontiguousarray(array).tobytes()
    return MAGIC + struct.pack("<H", len(header)) + header.encode("latin-1") + data


def load_npy(data: bytes, source: str) -> np.ndarray:
    """A read-only array viewing ``data`` (NPY 1.0 written by ``npy_bytes``)."""
    try:
        if data[:8] != MAGIC:
            raise ValueError("not an NPY 1.0 file")
        (length,) = struct.unpack("<H", data[8:10])
        header = ast.literal_eval(data[10 : 10 + length].decode("latin-1"))
        if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
            raise ValueError("malformed header")
        descr, shape = header["descr"], header["shape"]
        if descr not in ALLOWED or header["fortran_order"] is not False:
            raise ValueError(f"dtype {descr!r} is not allowed")
        if not isinstance(shape, tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise ValueError("malformed shape")
        dtype = np.dtype(descr)
        count = int(np.prod(shape)) if shape else 1
        offset = 10 + length
        if len(data) - offset != count * dtype.itemsize:
            raise ValueError("data length does not match the header")
        array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
    except (ValueError, SyntaxError, MemoryError, struct.error, RecursionError) as exc:
        raise CorruptionError(f"{source}: unreadable array ({exc})") from None
    return array
