"""A solver's loop over the vault, using only the public API.

Opens the bundled example vault's snapshot once, asks it which concepts to try for each
task, writes back what "worked" (here: the top concept, as positive evidence on the task's
first pair), and refreshes to see its own write-back.

    python examples/solver_loop.py /tmp/vault-demo     # a vault made by `make demo`
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vault import Vault

HERE = Path(__file__).resolve().parent


def main(root: str) -> None:
    vault = Vault.open(root)
    tasks = sorted((HERE / "tasks").glob("*.json"))
    with vault.retriever(refresh_every=100) as r:
        for path in tasks:
            task = json.loads(path.read_text())
            result = r.retrieve(task, mode="hybrid", k=3)
            tried = [h.id for h in result.results]
            print(f"{path.stem}: try {', '.join(tried)} (mode {result.mode_used})")
            best = result.results[0]
            pair = task["train"][0]
            vault.add_evidence(
                [
                    (
                        {
                            "schema_version": 1,
                            "concept": best.id,
                            "version": best.version,
                            "polarity": "positive",
                            "task": f"example:{path.stem}",
                            "pair": {"input": pair["input"], "output": pair["output"]},
                        },
                        str(path),
                    )
                ]
            )
        print("picked up a newer generation:", r.refresh())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/vault-demo")
