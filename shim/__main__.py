"""`python -m shim`: the management CLI (shim.cli), for environments without the launcher."""
from shim.cli.app import main

main()
