"""Reading everything a process wrote to a pseudo-terminal (tests that need a real terminal)."""

from __future__ import annotations

import os


def drain(master: int, size: int = 65536) -> bytes:
    """All output until every writer closed the pty (EIO or EOF); closes `master`."""
    out = b""
    while True:
        try:
            chunk = os.read(master, size)
        except OSError:  # EIO: every writer closed the pty
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return out
