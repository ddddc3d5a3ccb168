"""The background prune an intercepted run starts when run caches may be over their size
limits (shim/run/upkeep.py). Detached from the user's command; runs without site-packages
(stdlib only, like the hot path); one at a time (a lock in the state dir); whatever goes
wrong is one line in the audit log, never on anyone's terminal.
"""

from __future__ import annotations

import os

GRACE = 600.0  # a cache used in the last 10 minutes is being used: never trimmed here


def main() -> None:
    from .context import Ctx

    ctx = Ctx()
    try:
        ctx.state.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(ctx.state.root / "autoprune.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another prune is running: it does the work
    try:
        _prune(ctx)
    except Exception as exc:  # noqa: BLE001 - fail open: the next run will try again
        ctx.audit("autoprune", "run-caches", error=f"{type(exc).__name__}: {exc}")
    finally:
        os.close(fd)


def _prune(ctx) -> None:
    from .inventory import all_rows
    from .limits import trim_run_caches

    rows = all_rows(ctx, include_missing=False)
    human: list[str] = []
    res = trim_run_caches(ctx, rows, human, grace=GRACE)
    ctx.audit("autoprune", "run-caches", removed=[r["name"] for r in res["removed"]],
              freed=res["freed_bytes"], size_after=res["size_after"], still_over=res["still_over"])


if __name__ == "__main__":
    main()
