"""dockcache: warm, shared caches for every docker run and build."""

__version__ = "0.3.0"
