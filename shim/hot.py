"""The Python half of the hot path: commands bin/docker thinks dockcache may rewrite.

Imports only the standard library and dockcache's pure modules. Whatever goes wrong
here, the user's command still runs unchanged with its own exit code, after one
stderr line saying what dockcache skipped.
"""

from __future__ import annotations

import os
import sys
TYPE_CHECKING = False  # typing costs ~15 ms to import; the hot path avoids it
if TYPE_CHECKING:
    from typing import NoReturn

from shim.core import proc
from shim.core.realdocker import find_real
from shim.run import plancache

DISABLE_VALUES = {"1", "true", "yes", "on"}


def warn(message: str) -> None:
    sys.stderr.write(f"dockcache: {message}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> NoReturn:
    argv = list(sys.argv[1:] if argv is None else argv)
    name, args = (argv[0], argv[1:]) if argv else ("docker", [])
    real = os.environ.pop("DOCKCACHE_RESOLVED_REAL", "") or find_real(name, os.environ)
    _restore_lc_ctype()
    if not real:
        warn(f"no real '{name}' found on PATH (set DOCKCACHE_REAL_DOCKER to its path)")
        sys.exit(127)
    if os.environ.get("DOCKCACHE_DISABLE", "").lower() in DISABLE_VALUES:
        proc.exec_docker(real, args)
    _remembered(real, name, args)
    try:
        handler = _handler(name, args)
    except Exception as exc:  # noqa: BLE001 - fail open: never break the user's command
        _fallback(real, args, exc)
    if handler is None:
        proc.exec_docker(real, args)
    handler(real, args)
    proc.exec_docker(real, args)  # a handler that returns means "run unchanged"


def _restore_lc_ctype() -> None:
    """Undo Python's locale coercion (PEP 538) in what docker will see."""
    if os.environ.pop("DOCKCACHE_LC_CTYPE_UNSET", None):
        os.environ.pop("LC_CTYPE", None)
    elif "DOCKCACHE_LC_CTYPE" in os.environ:
        os.environ["LC_CTYPE"] = os.environ.pop("DOCKCACHE_LC_CTYPE")


def _remembered(real: str, name: str, args: list[str]) -> None:
    """Exec a stored plan whose inputs are unchanged (see plancache); else return."""
    try:
        argv = plancache.lookup(name, args, os.environ, os.getcwd())
    except Exception:  # noqa: BLE001 - a broken entry only means planning again
        return
    if argv is not None:
        proc.exec_docker(real, argv)


def _handler(name: str, args: list[str]):
    from shim.core.grammar import parse_invocation

    inv = parse_invocation(["compose", *args] if name == "docker-compose" else args)
    if inv.kind == "run":
        from shim.run import command as run
        return lambda real, a: (_images_first(inv), run.execute(real, a, inv, os.environ, on_error=_fallback))
    if inv.kind == "pull":
        from shim.images import command as images
        return lambda real, a: images.execute_pull(real, a, inv, os.environ)
    if inv.kind == "compose":
        from shim.compose import command as compose
        return lambda real, a: compose.execute(real, name, a, os.environ, on_error=_fallback)
    if inv.kind == "prune":
        from shim.build.store.local import forget_daemon
        return lambda real, a: forget_daemon(inv, os.environ)
    if inv.kind == "exec":
        from shim.run import execcmd
        return lambda real, a: execcmd.execute(real, a, inv, os.environ, on_error=_fallback)
    if inv.kind == "build":
        from shim.build import command as build
        return lambda real, a: build.execute(real, a, inv, os.environ, on_error=_fallback)
    if inv.kind == "bake":
        from shim.build.bake import command as bake
        return lambda real, a: bake.execute(real, a, inv, os.environ, on_error=_fallback)
    return None


def _images_first(inv) -> None:
    """An absent image through the host's image cache before the run flow asks about it."""
    from shim.images.command import before_run

    try:
        before_run(inv, os.environ)
    except Exception:  # noqa: BLE001 - the engine pulls as it always did
        pass


def _fallback(real: str, args: list[str], exc: BaseException) -> NoReturn:
    from shim.core.config import ConfigError

    if isinstance(exc, ConfigError):
        warn(f"{exc}; running docker unchanged")
    else:
        warn(f"internal error ({type(exc).__name__}: {exc}); running docker unchanged")
    proc.exec_docker(real, args)
