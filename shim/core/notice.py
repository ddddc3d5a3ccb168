"""dockcache's one stderr line, and the rule for steps that follow docker's own.

Every problem inside dockcache reaches the user as one `dockcache: ...` line; after
docker has run, its exit code is what matters, so no later step may raise past it.
"""

from __future__ import annotations

import sys


def say(message: str) -> None:
    sys.stderr.write(f"dockcache: {message}\n")
    sys.stderr.flush()


def after_docker(fn, *args) -> None:
    """Run a step that follows docker's own: whatever it raises is one line, never the exit code."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - after docker ran, its exit code is what matters
        say(f"after docker: {fn.__name__.strip('_').replace('_', ' ')} failed: {exc}")
