"""The `vault` command line: thin commands over the `vault` library."""
