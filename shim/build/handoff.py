"""Publishing a finished build's export without keeping the user waiting on the store lock.

The publish runs after docker has finished, inside the user's command. Another process
may hold the store's lock for a while (a prune of many keys, a stuck process): waiting
`build.lock_timeout` (30 s) there made a 0.5 s build return after 30.6 s. So the user's
command waits at most WAIT for the lock; then a detached worker, in its own session,
waits the full timeout and publishes (and prunes to `build.max_size`), leaving the
export dir behind only if it fails.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from shim.build.layout import LockTimeout
from shim.build.store import CacheStore, Published

WAIT = 1.0  # seconds the user's command waits for the store's lock after the build
SNAPSHOT_WAIT = 2.0  # ... and before it, for the import snapshot (then it builds without)


def publish(store: CacheStore, export_dir: Path, key: str, *, max_size: int) -> Published | None:
    """Publish here when the lock comes within WAIT; else hand the export to a worker (None)."""
    try:
        with store.waiting_at_most(WAIT):
            done = store.publish(export_dir, key, keep_if_locked=True)
    except LockTimeout:
        if not export_dir.exists():
            raise
        later(store.root, export_dir, key, lock_timeout=store.lock_timeout, history=store.history, max_size=max_size)
        return None
    if done.changed and store.size() > max_size:
        store.prune(max_size=max_size)
    return done


def later(root: Path, export_dir: Path, key: str, *, lock_timeout: float, history: int, max_size: int) -> None:
    from shim.core import proc

    payload = {"root": str(root), "export": str(export_dir), "key": key, "lock_timeout": lock_timeout,
               "history": history, "max_size": max_size}
    here = str(Path(__file__).resolve().parents[2])
    proc.spawn_job([sys.executable, "-S", "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); "
                    "from shim.build.handoff import main; main()", here, json.dumps(payload)])


def main() -> None:
    """The detached worker: `python -S -c … ROOT PAYLOAD`; nobody waits for it."""
    p = json.loads(sys.argv[1])
    store = CacheStore(Path(p["root"]), lock_timeout=p["lock_timeout"], history=p["history"])
    export = Path(p["export"])
    try:
        done = store.publish(export, p["key"])
        if done.changed and store.size() > p["max_size"]:
            store.prune(max_size=p["max_size"])
    except Exception:  # noqa: BLE001 - only this build's cache is lost; the next build exports again
        shutil.rmtree(export, ignore_errors=True)
