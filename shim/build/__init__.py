"""The build flow: cache keys, the pure plan, the local store and the registry backend.
Imports shim.core only.
"""
