"""The build store's blocking lock, with a timeout.

fcntl.flock, the same lock filelock takes on Unix (so either can hold it); not filelock
itself because importing it (plus site-packages) costs ~40 ms on every build, a fifth
of what a warm build through dockcache may add.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from shim.build.store.layout import LockTimeout


class Held:
    def __init__(self, path: str, timeout: float, root: Path):
        import fcntl

        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    raise LockTimeout(f"build cache store {root} is locked by another process "
                                      f"for more than {timeout:g} s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing the descriptor releases the flock
