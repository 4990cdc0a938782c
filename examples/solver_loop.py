"""A solver's loop over the vault, using only the public API.

Opens a vault's snapshot once, asks it which concepts to try for each task, reads each
hit's template, "runs" it (here: the top concept is taken to work), writes everything
learned back in one transaction — positive evidence for what worked, negative evidence
for what did not, and a new concept for an idea of its own — then refreshes to see it.

    python examples/solver_loop.py /tmp/vault-demo     # a vault made by `make demo`
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from vault import Vault

HERE = Path(__file__).resolve().parent


def evidence(hit_id: str, version: str, task: str, pair: dict, worked: bool) -> dict:
    """An evidence record as the solver writes it: the pair it was checked on, inline."""
    record = {
        "concept": hit_id,
        "version": version,
        "polarity": "positive" if worked else "negative",
        "task": task,
        "pair": {"input": pair["input"], "output": pair["output"]},
    }
    if not worked:
        record |= {"tier": "train", "reason": "wrong_output"}
    return record


def main(root: str) -> None:
    vault = Vault.open(root)
    tasks = sorted((HERE / "tasks").glob("*.json"))
    with vault.retriever() as r, vault.transaction() as t:
        for path in tasks:
            task = json.loads(path.read_text())
            result = r.retrieve(task, k=3)
            print(f"{path.stem}: try {', '.join(h.ref for h in result.results)}")
            for rank, hit in enumerate(result.results):
                program = hit.card()["template"]["template_dsl"]  # what the solver would run
                worked = rank == 0  # stand-in for running `program` on the train pairs
                print(f"    {hit.ref:28} {program:40} {'ok' if worked else 'no'}")
                t.add_evidence(
                    evidence(hit.id, hit.version, f"example:{path.stem}", task["train"][0], worked)
                )
        t.add(
            {
                "id": "solver-idea-1",
                "version": "1.0.0",
                "domain": "grid_2d",
                "signature": {"keys": ["transform:rotate_90", "invariant:same_dims"]},
                "template": {"template_dsl": "(rotate_90 grid)"},
            }
        )
    print(f"wrote back {len(t)} records as one generation ({t.result.op}, audit seq "
          f"{t.result.audit_seq})" if t.result else "nothing to write back")
    with vault.retriever() as r:
        print("newest concept:", vault.concept("solver-idea-1").ref)
        print("like rotate-90:", ", ".join(h.ref for h in r.like("rotate-90", k=3).results))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/vault-demo")
