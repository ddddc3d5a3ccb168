"""Remembered run plans: the steady state of an intercepted `docker run` in a few stats.

Planning imports most of dockcache (~40 ms of module imports on these machines); the
same command in the same directory almost always plans the same way. So the final argv
is stored with every file it was derived from (project dirs, content-tested markers,
env-files, config files and the dirs a project file could appear in) and their mtimes;
a later identical command whose inputs are all unchanged execs the stored argv.
This module imports nothing beyond `os` and `marshal` (built in), on purpose.
"""

from __future__ import annotations

import marshal
import os
import time

VERSION = "1"
TTL = 24 * 3600.0  # the image facts a plan used are trusted this long (runcmd.IMAGE_TTL)
ENV_KEYS = ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "DOCKER_HOST", "DOCKER_CONTEXT",
            "DOCKER_CONFIG", "DOCKER_BUILDKIT")


def state_root(environ) -> str:
    if environ.get("DOCKCACHE_STATE_DIR"):
        return environ["DOCKCACHE_STATE_DIR"]
    base = environ.get("XDG_STATE_HOME") or os.path.join(environ.get("HOME", "/"), ".local", "state")
    return os.path.join(base, "dockcache")


def _key(name: str, args, environ, cwd: str) -> str:
    env = [f"{k}={environ.get(k, '')}" for k in ENV_KEYS]
    env += sorted(f"{k}={v}" for k, v in environ.items() if k.startswith("DOCKCACHE_")
                  and k not in ("DOCKCACHE_RESOLVED_REAL", "DOCKCACHE_DEBUG"))
    return "\0".join([VERSION, name, cwd, str(os.getuid()), *env, "\1", *args])


def _fnv(text: str) -> str:
    h = 0xcbf29ce484222325
    for b in text.encode("utf-8", "surrogateescape"):
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _path(environ, key: str) -> str:
    return os.path.join(state_root(environ), "plans", _fnv(key) + ".bin")


def _mtime(path: str):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _observe(dep):
    """A path's mtime (None if missing), or for ("DIR", "GLOB"...) the names that match."""
    if isinstance(dep, str):
        return _mtime(dep)
    directory, *globs = dep
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    return tuple(sorted(n for n in names if any(_match(n, g) for g in globs)))


def _match(name: str, glob: str) -> bool:
    """fnmatch for the one-star patterns of the marker table, without importing re."""
    head, star, tail = glob.partition("*")
    if not star:
        return name == glob
    return len(name) >= len(head) + len(tail) and name.startswith(head) and name.endswith(tail)


def lookup(name: str, args, environ, cwd: str):
    """The stored final argv, or None when anything it depends on changed."""
    key = _key(name, args, environ, cwd)
    try:
        with open(_path(environ, key), "rb") as fh:
            stored_key, created, argv, deps, metrics, *rest = marshal.load(fh)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if stored_key != key or time.time() - created > TTL:
        return None
    for path, recorded in deps:
        if _observe(path) != recorded:
            return None
    _log(environ, metrics)
    touch(rest[0] if rest else ())
    return list(argv)


def touch(dirs) -> None:
    """Mark host cache dirs used now: "last used" evidence any session (and state dir) can read."""
    for d in dirs:
        try:
            os.utime(d)
        except OSError:
            pass


def _log(environ, metrics: str) -> None:
    """Append the plan's metrics record, so uses and "last used" stay true on hits."""
    line = '{"ts":%.3f,%s\n' % (time.time(), metrics[1:])
    try:
        fd = os.open(os.path.join(state_root(environ), "metrics.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def store(name: str, args, environ, cwd: str, argv, deps, metrics: str, touched=(),
          ttl: float | None = None) -> None:
    """Remember a plan; `ttl` shorter than TTL makes it expire sooner (stored as an older
    plan, so lookup stays the same few stats). `touched`: bind cache dirs marked used on each hit."""
    key = _key(name, args, environ, cwd)
    path = _path(environ, key)
    created = time.time() - (TTL - ttl if ttl is not None and ttl < TTL else 0.0)
    entry = (key, created, tuple(argv), tuple((p, _observe(p)) for p in deps), metrics, tuple(touched))
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as fh:
            marshal.dump(entry, fh)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
