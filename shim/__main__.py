from shim.cli.app import main

main()
