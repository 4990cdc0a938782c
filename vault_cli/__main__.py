"""``python -m vault_cli``: the command line (the same as ``vault`` and ``python -m vault``)."""

from vault_cli.app import main

if __name__ == "__main__":
    main()
