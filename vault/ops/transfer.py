"""``vault import``: the records of an export (``vault.catalog``) — or any JSON lines of
concept cards, evidence, status events and reprs, each with its ``kind`` — written as one
transaction: one audit entry, one generation, all checked before anything is written.
Records the vault already holds are left as they are, so importing twice changes nothing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vault.errors import InvalidInputError, json_value
from vault.handle import Handle
from vault.ops.write import Transaction, WriteResult
from vault.records.schema import a_kind, record_kind

KINDS = ("concept", "evidence", "status", "repr")


def _got(obj: Any) -> str:
    """What an import record without a known kind holds, in JSON's words."""
    if not isinstance(obj, dict):
        return json_value(obj)
    return json_value(obj["kind"]) if "kind" in obj else "no 'kind'"


def import_records(vault: Handle, items: Iterable[tuple[Any, str]]) -> WriteResult:
    """Write ``(record, source)`` items (``source``: e.g. ``file:line``) as one transaction
    (audit op ``import``)."""
    t = Transaction(vault, op="import")
    for obj, src in items:
        kind = obj.get("kind") if isinstance(obj, dict) else None
        if kind == "concept":
            t.add(obj, src)
        elif kind == "evidence":
            t.add_evidence(obj, src)
        elif kind == "status":
            t.add_status_event(obj, src)
        elif kind == "repr":
            t.add_repr(obj, src)
        else:
            looks = record_kind(obj) if kind is None else None  # no 'kind': what it looks like
            hint = ""
            if looks is not None and looks in KINDS:
                hint = f' (it looks like {a_kind(looks)}: add "kind": "{looks}")'
            raise InvalidInputError(
                f"expected a record with 'kind' one of {', '.join(KINDS)}, got " + _got(obj) + hint,
                source=src,
                field="kind" if isinstance(obj, dict) else None,
            )
    return t.commit()
