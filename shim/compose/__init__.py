"""The compose flow: which files compose loads, the override that gives services caches, execution.
Imports shim.core and the public functions of shim.run and shim.build.
"""
