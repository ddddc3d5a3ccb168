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
import os
import shutil
import sys
import time
from pathlib import Path

from shim.build.store.layout import LockTimeout
from shim.build.store.cachestore import CacheStore, Published

WAIT = 1.0  # seconds the user's command waits for the store's lock after the build
SNAPSHOT_WAIT = 2.0  # ... and before it, for the import snapshot (then it builds without)
RENAME_WAIT = 10.0  # seconds the worker waits for its export dir (later() renames it)


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
        try:
            with store.waiting_at_most(WAIT):  # the user's command still waits: as short as the publish
                store.prune(max_size=max_size)
        except LockTimeout:
            pass  # published; another process holds the store now: the next publish prunes
    return done


def later(root: Path, export_dir: Path, key: str, *, lock_timeout: float, history: int, max_size: int) -> None:
    """Start the worker, then give it the export dir under a name with its pid: every prune
    ends by removing export dirs whose process is gone (store._clean_stale), and the
    build's own process exits now, while the prune holding the lock is likely still on."""
    from shim.core import proc

    tag = os.urandom(4).hex()
    payload = {"root": str(root), "dir": str(export_dir.parent), "tag": tag, "key": key,
               "lock_timeout": lock_timeout, "history": history, "max_size": max_size}
    here = str(Path(__file__).resolve().parents[3])
    pid = proc.spawn_job([sys.executable, "-S", "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); "
                          "from shim.build.store.handoff import main; main()", here, json.dumps(payload)])
    try:
        export_dir.rename(_owned(export_dir.parent, pid, tag))
    except OSError:  # the worker finds nothing and ends; nothing is left behind
        shutil.rmtree(export_dir, ignore_errors=True)


def _owned(parent: Path, pid: int, tag: str) -> Path:
    """An export dir named as store._private_dir names one of process `pid`."""
    return parent / f"dockcache-export-{pid}-{tag}"


def main() -> None:
    """The detached worker: `python -S -c … ROOT PAYLOAD`; nobody waits for it."""
    p = json.loads(sys.argv[1])
    store = CacheStore(Path(p["root"]), lock_timeout=p["lock_timeout"], history=p["history"])
    export = _owned(Path(p["dir"]), os.getpid(), p["tag"])
    deadline = time.monotonic() + RENAME_WAIT
    while not export.exists():  # renamed by the command that started us, right after the start
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)
    try:
        done = store.publish(export, p["key"])
        if done.changed and store.size() > p["max_size"]:
            store.prune(max_size=p["max_size"])
    except Exception:  # noqa: BLE001 - only this build's cache is lost; the next build exports again
        shutil.rmtree(export, ignore_errors=True)
