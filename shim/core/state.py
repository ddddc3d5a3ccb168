"""A small state dir: what dockcache learned, so the steady state adds no docker calls.

One file per fact (volume created on an endpoint, an image's config), written
atomically, so concurrent docker commands never corrupt each other's state; a lost
race only means one repeated, idempotent docker call. An unwritable state dir is not
an error: dockcache just remembers nothing (and says so once per command).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
TYPE_CHECKING = False  # typing costs ~15 ms to import; the hot path avoids it
if TYPE_CHECKING:
    from typing import Any


def state_dir(environ: Mapping[str, str]) -> Path:
    if environ.get("DOCKCACHE_STATE_DIR"):
        return Path(environ["DOCKCACHE_STATE_DIR"])
    base = environ.get("XDG_STATE_HOME") or os.path.join(environ.get("HOME", "/"), ".local", "state")
    return Path(base) / "dockcache"


def endpoint_id(host: str | None, context: str | None, environ: Mapping[str, str]) -> str:
    """Which engine a command talks to, as docker itself decides (flag > env > context)."""
    if host:
        return host
    if context:
        return f"context:{context}"
    if environ.get("DOCKER_HOST"):
        return environ["DOCKER_HOST"]
    if environ.get("DOCKER_CONTEXT"):
        return f"context:{environ['DOCKER_CONTEXT']}"
    return f"context:{current_context(environ)}"


def docker_config_dir(environ: Mapping[str, str]) -> str:
    """Where the docker CLI keeps config.json and contexts ($DOCKER_CONFIG, else ~/.docker)."""
    return environ.get("DOCKER_CONFIG") or os.path.join(environ.get("HOME", "/"), ".docker")


def current_context(environ: Mapping[str, str]) -> str:
    try:
        with open(os.path.join(docker_config_dir(environ), "config.json"), encoding="utf-8") as fh:
            return json.load(fh).get("currentContext") or "default"
    except (OSError, ValueError, AttributeError):
        return "default"


def short_hash(text: str, n: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


class State:
    def __init__(self, root: Path):
        self.root = root
        self.write_errors: list[str] = []

    def _path(self, kind: str, endpoint: str, key: str) -> Path:
        return self.root / kind / short_hash(endpoint) / f"{short_hash(key, 24)}.json"

    def get(self, kind: str, endpoint: str, key: str, *, max_age: float | None = None) -> dict | None:
        path = self._path(kind, endpoint, key)
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        if max_age is not None and time.time() - data.get("at", 0) > max_age:
            return None
        return data

    def put(self, kind: str, endpoint: str, key: str, value: Mapping[str, Any]) -> None:
        path = self._path(kind, endpoint, key)
        data = {**value, "key": key, "endpoint": endpoint, "at": time.time()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(tmp, path)
        except OSError as exc:
            self.write_errors.append(f"state dir {self.root} not writable ({exc.strerror or exc}): "
                                     "nothing is remembered (DOCKCACHE_STATE_DIR)")
            _unlink_quietly(path.with_name(f".{path.name}.{os.getpid()}.tmp"))

    def forget(self, kind: str, endpoint: str, key: str) -> None:
        _unlink_quietly(self._path(kind, endpoint, key))

    def forget_all(self, kind: str, endpoint: str) -> None:
        """Every fact of one kind about one endpoint."""
        import shutil

        shutil.rmtree(self.root / kind / short_hash(endpoint), ignore_errors=True)

    def all(self, kind: str) -> list[dict]:
        out = []
        for path in sorted((self.root / kind).glob("*/*.json")):
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return out

    def append_log(self, name: str, record: Mapping[str, Any], *, max_bytes: int = 5_000_000) -> None:
        """Append one JSON line (O_APPEND keeps concurrent writers' lines whole); rotate once."""
        path = self.root / f"{name}.jsonl"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size > max_bytes:
                os.replace(path, path.with_suffix(".jsonl.1"))
            line = json.dumps({"ts": time.time(), **record}, separators=(",", ":")) + "\n"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            self.write_errors.append(f"{path}: {exc.strerror or exc}")


IMAGES = "images"  # kind: an image's config by the name a command gave it (run.command.config_of)


def image_names(name: str) -> tuple[str, ...]:
    """The spellings of one image reference a command may use (`app`, `app:latest`,
    `docker.io/library/app:latest`): a build of one must make every one of them stale."""
    if not name or "@" in name:
        return (name,) if name else ()
    tagged = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
    short = tagged
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if short.startswith(prefix):
            short = short[len(prefix):]
            break
    full = short if "/" in short and ("." in short.split("/")[0] or ":" in short.split("/")[0]
                                      or short.split("/")[0] == "localhost") \
        else f"docker.io/{'' if '/' in short else 'library/'}{short}"
    names = [name, tagged, short, full]
    names += [n[:-len(":latest")] for n in list(names) if n.endswith(":latest")]
    return tuple(dict.fromkeys(names))


def forget_images(state: "State", endpoint: str, names) -> None:
    """An image built (or about to be) under these names: what was remembered of it is
    stale, and so is every remembered run plan that used it (their inputs name the record)."""
    for name in names:
        for spelling in image_names(name):
            state.forget(IMAGES, endpoint, spelling)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def atomic_write(path: str, content: bytes, *, mode: int = 0o644) -> None:
    """Write via a temp file and rename: a concurrent reader sees old or new, never half."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.chmod(tmp, mode)  # the umask must not hide the file from a container user
        os.replace(tmp, path)
    except OSError:
        _unlink_quietly(Path(tmp))
        raise
