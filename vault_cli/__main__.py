from vault_cli.app import main

main()
