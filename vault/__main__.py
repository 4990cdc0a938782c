"""``python -m vault``: the command line (the same as ``vault`` and ``python -m vault_cli``)."""

from vault_cli.app import main

if __name__ == "__main__":
    main()
