"""What an intercepted run leaves for later, never doing it during the user's command:
which image used each cache (for `dockcache cache verify`), and a detached background
prune when the run caches may be over their size limits.

The check is cheap: an estimate the background prune writes to the state dir (sizes per
manager, when measured). It is measured again at most hourly, and sooner only while over a
limit; the prune itself takes a lock, so two never run at once (shim/cli/autoprune.py).
"""

from __future__ import annotations

import os
import sys
import time

from shim.core.managers import SIZE_ENV

MEASURE_EVERY = 3600.0  # refresh the size estimate at most hourly
RETRY_OVER = 600.0  # while over a limit (caches in use), try again this often
PLAN_TTL = MEASURE_EVERY  # with limits set, a remembered plan is re-derived this often (plancache)


def limits_of(config) -> tuple[int, dict[str, int]]:
    """(run.max_size, {manager: max_size}) trimmed by dockcache; SIZE_ENV tools trim themselves."""
    per = {}
    for key, setting in config.settings.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "managers" and parts[2] == "max_size" and setting.value \
                and parts[1] not in SIZE_ENV:
            per[parts[1]] = int(setting.value)
    return int(config["run.max_size"] or 0), per


def remember_image(state, mount, image: str | None) -> None:
    """The image a cache was last mounted into: it has the tool, so verify can use it."""
    if not image:
        return
    known = state.get("cacheimage", "run", mount.source)
    if not known or known.get("image") != image:
        state.put("cacheimage", "run", mount.source, {"image": image, "manager": mount.manager})


def due(state, daemon: str, config, *, now: float | None = None) -> bool:
    """Whether to start a background prune now (and claim the window, so only one run does)."""
    total, per = limits_of(config)
    if not (total or per):
        return False
    now = time.time() if now is None else now
    est = state.get("limits", "run", daemon) or {}
    age = now - float(est.get("checked", 0.0))  # ("at" is the state record's own write time)
    if age < MEASURE_EVERY and not (est.get("over") and age >= RETRY_OVER):
        return False
    state.put("limits", "run", daemon, {**{k: v for k, v in est.items() if k not in ("key", "endpoint", "at")},
                                        "checked": now, "claimed": True})
    return True


def start_prune(environ, host: str | None, context: str | None) -> None:
    """A detached `cache prune` of run caches over their limits (shim/cli/autoprune.py)."""
    from shim.core.proc import spawn_background

    env = dict(environ)
    if host:
        env["DOCKER_HOST"], _ = host, env.pop("DOCKER_CONTEXT", None)
    elif context:
        env["DOCKER_CONTEXT"], _ = context, env.pop("DOCKER_HOST", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spawn_background([sys.executable, "-S", "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); "
                    "from shim.cli.autoprune import main; main()", os.path.dirname(root)], env)
