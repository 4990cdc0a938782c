"""How many cases the differential tests compared with the reference, and how many
differed — printed at the end of a pytest run (tests/conftest.py) and recorded for
RELIABILITY.md under ``make stress``."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from typing import Any


class Tally:
    def __init__(self) -> None:
        self.cases: Counter[str] = Counter()  # entry point -> compared results
        self.mismatches: Counter[str] = Counter()
        self.vaults: Counter[str] = Counter()  # random vaults by what they exercise
        self.examples: list[str] = []

    def total(self) -> int:
        return sum(self.cases.values())

    def summary(self) -> str:
        per = ", ".join(
            f"{k} {v}" + (f" ({self.mismatches[k]} differ)" if self.mismatches[k] else "")
            for k, v in sorted(self.cases.items())
        )
        text = (
            f"reference ranking: {self.total()} cases compared, "
            f"{sum(self.mismatches.values())} mismatches — {per}"
        )
        from .rank import EVENTS

        if EVENTS:
            text += "; reference branches: " + ", ".join(
                f"{k} {v}" for k, v in sorted(EVENTS.items())
            )
        if self.vaults:
            text += "; random vaults: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.vaults.items())
            )
        return "\n".join([text, *self.examples[:8]])

    def record(self) -> None:
        """One figure line for RELIABILITY.md when the stress report asks for figures."""
        target = os.environ.get("VAULT_RELIABILITY_FIGURES")
        if not target:
            return
        line = {
            "figure": "reference",
            "stress": os.environ.get("VAULT_STRESS") == "1",
            "cases": dict(self.cases),
            "mismatches": dict(self.mismatches),
            "vaults": dict(self.vaults),
        }
        with open(target, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")


TALLY = Tally()


def difference(got: Any, want: Any, path: str = "") -> str | None:
    """Where ``got`` and ``want`` differ (None when equal): values *and* types (a float
    score is not an int one; 0.1 + 0.2 is not 0.3), recursively."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            have = sorted(got) if isinstance(got, dict) else got
            return f"{path or '.'}: keys {have!r} != {sorted(want)}"
        for key in sorted(want):
            found = difference(got[key], want[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{path}: {len(got) if isinstance(got, list) else got!r} items != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            found = difference(g, w, f"{path}[{i}]")
            if found:
                return found
        return None
    if type(got) is not type(want) or got != want:
        return f"{path}: {got!r} != {want!r}"
    if isinstance(want, float) and math.copysign(1.0, got) != math.copysign(1.0, want):
        return f"{path}: {got!r} != {want!r} (sign)"
    return None
