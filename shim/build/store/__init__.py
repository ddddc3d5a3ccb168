"""The local store path: the shared cache store, its layout and lock, the daemon's own builds, the publish hand-off, the registry backend."""
