"""The `docker run|create` flow: detect projects and managers, plan mounts and variables, run.
Imports shim.core only.
"""
