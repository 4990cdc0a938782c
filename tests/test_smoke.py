from vault import Vault, retrieve, task_query
from vault.canonical import loads

from .conftest import EXAMPLES


def test_example_vault_ranks_rotation_first_for_rotation_task(example_vault: Vault) -> None:
    task = loads((EXAMPLES / "tasks" / "rotate.json").read_bytes())
    for mode in ("symbolic", "hybrid", "soft"):
        result = retrieve(example_vault, task_query(task), example_vault.config(), mode)
        assert result.mode_used == mode
        assert result.results[0].id == "rotate-90"
