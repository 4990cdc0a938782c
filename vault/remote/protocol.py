"""What a remote holds, byte for byte (FORMAT.md §14), and the checks every byte fetched
from one passes before anything local changes.

```
<remote>/format.json                {"format":"concept-vault-remote","version":1}\\n
<remote>/config.toml                the first pusher's [retrieval]/[embedder] tables
<remote>/log/<first seq, 12 digits>.jsonl   a segment: consecutive audit lines first..last,
                                    exactly as in audit/commits.jsonl; created create-only
<remote>/packs/<sha256>.pack        objects concatenated
<remote>/packs/<sha256>.idx         {"objects":[[digest,offset,length]…],"pack":sha256,
                                    "size":bytes}\\n — written after its pack
```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vault.canonical import CHECK, dumps_line, loads, sha256_hex, verify_check
from vault.errors import CorruptionError, InvalidInputError, json_value
from vault.store.audit import AuditEntry
from vault.store.objects import is_digest

FORMAT_KEY = "format.json"
CONFIG_KEY = "config.toml"
LOG_PREFIX = "log/"
PACK_PREFIX = "packs/"
REMOTE_FORMAT = {"format": "concept-vault-remote", "version": 1}
SEQ_DIGITS = 12
PACK_BYTES = 64 << 20  # a pack holds at most this much (one object may exceed it alone)
KNOWN_OPS = frozenset(
    {
        "init", "add", "fork", "evidence", "import", "status", "embedder", "embedder_fit",
        "index_build", "rollback", "mode", "gc", "upgrade", "repair",
    }
)  # fmt: skip


class RemoteCorruptionError(CorruptionError):
    """The remote served bytes that fail a check (nothing local was changed)."""


def format_bytes() -> bytes:
    return dumps_line(REMOTE_FORMAT)


def log_key(first: int) -> str:
    return f"{LOG_PREFIX}{first:0{SEQ_DIGITS}d}.jsonl"


def key_seq(key: str) -> int:
    """The first seq of a log segment's key; corruption for a key of another shape."""
    name = key[len(LOG_PREFIX) :]
    digits = name[: -len(".jsonl")] if name.endswith(".jsonl") else ""
    if len(digits) != SEQ_DIGITS or not digits.isdigit() or int(digits) < 1:
        raise RemoteCorruptionError(f"remote log: unexpected key {key!r}")
    return int(digits)


def line_bytes(entry: AuditEntry) -> bytes:
    """An entry's line as ``audit/commits.jsonl`` holds it (with its checksum)."""
    return dumps_line(entry.to_json())


def segment_bytes(entries: list[AuditEntry]) -> bytes:
    return b"".join(line_bytes(e) for e in entries)


def parse_entry(line: bytes, where: str, number: int = 1) -> AuditEntry:
    """One remote audit line (line ``number`` of its segment), checked: canonical,
    checksummed, known op, well-formed."""
    try:
        obj = loads(line, source=where, line=number)
    except InvalidInputError as exc:
        raise RemoteCorruptionError(f"{where}: {exc}") from None
    if not isinstance(obj, dict) or set(obj) != {"check", "detail", "op", "records", "seq", "time"}:
        raise RemoteCorruptionError(f"{where}: not an audit line (fields)")
    try:
        verify_check(obj)
    except InvalidInputError:
        raise RemoteCorruptionError(f"{where}: bad checksum (the line was changed)") from None
    seq, op, records = obj["seq"], obj["op"], obj["records"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise RemoteCorruptionError(f"{where}: bad seq {json_value(seq)}")
    if op not in KNOWN_OPS:
        raise RemoteCorruptionError(f"{where}: unknown op {json_value(op)}")
    if not isinstance(records, list) or not all(
        isinstance(r, str) and is_digest(r) for r in records
    ):
        raise RemoteCorruptionError(f"{where}: records are not object addresses")
    if not isinstance(obj["detail"], dict) or not isinstance(obj["time"], str):
        raise RemoteCorruptionError(f"{where}: malformed detail or time")
    if dumps_line(obj) != line + b"\n":
        raise RemoteCorruptionError(f"{where}: not canonical JSON")
    return AuditEntry(seq, op, obj["time"], tuple(records), obj["detail"], obj[CHECK])


def parse_segment(data: bytes, key: str, expect_first: int) -> list[AuditEntry]:
    """A segment's entries; its first seq must be ``expect_first`` (no gap, no overlap)."""
    first = key_seq(key)
    if first != expect_first:
        raise RemoteCorruptionError(
            f"remote {key}: seq gap (expected the segment starting at {expect_first})"
        )
    if not data.endswith(b"\n"):
        raise RemoteCorruptionError(f"remote {key}: truncated (no final newline)")
    out = []
    for i, line in enumerate(data[:-1].split(b"\n")):
        entry = parse_entry(line, f"remote {key}:{i + 1}", i + 1)
        if entry.seq != first + i:
            raise RemoteCorruptionError(
                f"remote {key}:{i + 1}: seq gap (expected {first + i}, found {entry.seq})"
            )
        out.append(entry)
    return out


def referenced(entry: AuditEntry) -> list[str]:
    """The objects an audit entry needs: its records, and the weights objects its detail
    names (``embedder`` choices, ``embedder_fit`` results)."""
    out = list(entry.records)
    d = entry.detail
    for field in ("embedder", "weights"):
        value = d.get(field)
        if isinstance(value, str) and is_digest(value):
            out.append(value)
    return out


@dataclass(frozen=True)
class PackIndex:
    pack: str
    size: int
    objects: tuple[tuple[str, int, int], ...]  # (digest, offset, length)

    def to_bytes(self) -> bytes:
        return dumps_line(
            {"objects": [list(o) for o in self.objects], "pack": self.pack, "size": self.size}
        )


def make_pack(items: list[tuple[str, bytes]]) -> tuple[bytes, PackIndex]:
    """(pack bytes, its index) for ``(digest, bytes)`` items."""
    offset = 0
    where = []
    for digest, data in items:
        where.append((digest, offset, len(data)))
        offset += len(data)
    blob = b"".join(data for _, data in items)
    return blob, PackIndex(sha256_hex(blob), len(blob), tuple(where))


def parse_index(data: bytes, key: str) -> PackIndex:
    try:
        obj: Any = loads(data, source=key)
        pack, size, objects = obj["pack"], obj["size"], obj["objects"]
        if not (is_digest(pack) and key == f"{PACK_PREFIX}{pack}.idx"):
            raise ValueError("names another pack")
        if not isinstance(size, int) or size < 0:
            raise ValueError("bad size")
        rows = []
        for digest, offset, length in objects:
            if not (is_digest(digest) and isinstance(offset, int) and isinstance(length, int)):
                raise ValueError("bad row")
            if offset < 0 or length < 0 or offset + length > size:
                raise ValueError("row outside the pack")
            rows.append((digest, offset, length))
    except (InvalidInputError, KeyError, TypeError, ValueError) as exc:
        raise RemoteCorruptionError(f"remote {key}: malformed pack index ({exc})") from None
    return PackIndex(pack, size, tuple(rows))


def check_object(digest: str, data: bytes, where: str) -> None:
    if sha256_hex(data) != digest:
        raise RemoteCorruptionError(
            f"remote {where}: object {digest[:16]}… does not match its address (tampered or "
            "damaged); nothing was changed locally"
        )
