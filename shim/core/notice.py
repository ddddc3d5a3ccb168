"""dockcache's one stderr line, and the rule for steps that follow docker's own.

Every problem inside dockcache reaches the user as one `dockcache: ...` line; after
docker has run, its exit code is what matters, so no later step may raise past it.
"""

from __future__ import annotations

import os
import sys


def say(message: str) -> None:
    """One line on stderr; a stderr the reader closed (`2>&1 | head -1`) loses it, and only it."""
    try:
        sys.stderr.write(f"dockcache: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        _drop_stderr()


def _drop_stderr() -> None:
    """The line stays in the stream's buffer and Python's flush at exit would fail again,
    turning docker's exit code into 120: later lines go nowhere instead."""
    try:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    except OSError:
        pass


def after_docker(fn, *args) -> None:
    """Run a step that follows docker's own: whatever it raises is one line, never the exit code."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - after docker ran, its exit code is what matters
        say(f"after docker: {fn.__name__.strip('_').replace('_', ' ')} failed: {exc}")
