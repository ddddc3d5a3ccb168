"""Where the compose override file lives: in the state dir, named by its content, because
compose records it in the project's `config_files` label (`docker compose ls`)."""

from __future__ import annotations

import json
import os
import tempfile
import time

from shim.core.state import state_dir


OVERRIDE_DAYS = 7  # compose records the file in the project's labels (`compose ls`): keep it a while


def write_override(override: dict, environ, *, dry_run: bool) -> tuple[str | None, str]:
    """(dir to remove afterwards, override path). The real thing lives in the state dir,
    named by its content, so the project's config_files label names a file that exists;
    files not used for OVERRIDE_DAYS go. A dry run (explain) writes a throwaway copy."""
    text = json.dumps(override, indent=2, sort_keys=True) + "\n"  # JSON is valid YAML
    if dry_run:
        tmpdir = tempfile.mkdtemp(prefix="dockcache-compose-")
        base = tmpdir
    else:
        import hashlib

        tmpdir, base = None, str(state_dir(environ) / "compose-overrides")
        try:
            os.makedirs(base, exist_ok=True)
            _forget_old(base)
        except OSError:  # no state dir to write: a temp file, removed after compose (as before)
            tmpdir = base = tempfile.mkdtemp(prefix="dockcache-compose-")
    name = "dockcache.override.json" if dry_run else \
        f"override-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    path = os.path.join(base, name)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)  # a concurrent compose run reading the same name sees it whole
    return tmpdir, path


def _forget_old(base: str) -> None:
    cutoff = time.time() - OVERRIDE_DAYS * 86400
    for entry in os.scandir(base):
        try:
            if entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
        except OSError:
            pass
