"""Configuration: defaults < user file < project file < DOCKCACHE_* variables.

Every value remembers where it came from (`Setting.source`) so `config show`, `explain`
and `doctor` can say why dockcache did something. Validation is strict (unknown keys,
wrong types, bad names are errors) and every error is one line naming file and key;
the hot path turns it into "running docker unchanged".

About 300 lines: schema, the three sources, validation and the typed error stay together
because every value carries its source through all of them. Never runs docker.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from shim.core.records import dataclass
from pathlib import Path
TYPE_CHECKING = False  # typing costs ~15 ms to import; the hot path avoids it
if TYPE_CHECKING:
    from typing import Any

from shim.core.managers import BY_NAME, MANAGERS, VERIFY, Manager, Marker
from shim.core.safety import check_container_path, check_name, check_sensitive

PROJECT_FILE = ".dockcache.toml"
UPSTREAM_RE = re.compile(r"^(https?://)?([A-Za-z0-9.-]+(:\d+)?|\[[0-9A-Fa-f:]+\](:\d+)?)/?$")  # images.upstreams
REGISTRY_RE = re.compile(r"^[A-Za-z0-9.-]+(:\d+)?/[a-z0-9]+([._/-][a-z0-9]+)*$")
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)?\s*$", re.I)
CHOICES = {"run.mode": ("auto", "volume", "bind"), "run.scope": ("shared", "user", "project"),
           "build.backend": ("local", "registry", "both"),
           "build.cache_mounts_save": ("detached", "wait")}


class ConfigError(Exception):
    """A config problem, already phrased as one line for the user."""


@dataclass(frozen=True)
class Setting:
    value: Any
    source: str  # "default", a file path, or "env DOCKCACHE_X"


# key -> (type, default). Types: bool, str, int, float, list (of str), "size".
SCHEMA: dict[str, tuple[Any, Any]] = {
    "enabled": (bool, True),
    "run.enabled": (bool, True),
    "run.mode": (str, "auto"),  # auto: host dirs when the engine sees them, else volumes (run.placement)
    "run.scope": (str, "shared"),
    "run.volume_prefix": (str, "dockcache"),
    "run.bind_root": (str, "~/.cache/dockcache/run"),
    "run.readonly": (bool, False),
    "run.host_caches": (bool, False),  # mount the host's own tool caches (~/.npm, ~/.cache/pip, ...)
    "run.max_size": ("size", "0"),  # all run caches together; 0 = no limit (`cache prune`, shim/cli/limits.py)
    "run.min_free": ("size", "2GiB"),  # disk guard: below this free, no new caches (shim/run/diskguard.py)
    "run.min_free_percent": (float, 5.0),  # ... or below this share of the filesystem
    "build.enabled": (bool, True),
    "build.store": (str, "~/.cache/dockcache/build"),
    "build.max_size": ("size", "20GiB"),
    "build.fallback_keys": (list, ["{repo}-main"]),
    "build.key": (str, ""),
    "build.lock_timeout": (float, 30.0),
    "build.key_history": (int, 3),  # builds a key keeps (variants, edits); all are imported
    "build.backend": (str, "local"),
    "build.registry": (str, ""),
    "build.registry_max_age": ("duration", "30d"),  # `cache prune --backend registry`
    "build.registry_max_size": ("size", "50GiB"),
    # The host's shared BuildKit (build.shared): "auto" uses the one `dockcache builder up`
    # starts when its socket is there; "off"; "unix:///PATH" or "tcp://HOST:PORT"; or the
    # name of a buildx builder an operator made.
    "build.builder": (str, "auto"),
    # a tcp:// builder's TLS: a directory with ca.pem, cert.pem and key.pem (docker's
    # DOCKER_CERT_PATH layout); the buildx builder dockcache makes for it uses them
    "build.builder_tls": (str, ""),
    "build.cache_mounts": (bool, True),  # carry RUN --mount=type=cache contents across sessions
    "build.cache_mounts_save": (str, "detached"),  # "wait": save before the command returns
    "compose.enabled": (bool, True),
    # compose service builds on the shared builder (when build.builder finds one), one docker
    # build each with thin loads (compose/sharedbuild.py); off: the store path
    "compose.shared_builder": (bool, True),
    "mirrors.ca_bundle": (str, ""),
    # The host's pull-through image caches (`dockcache images up`, shim/images, docs/images.md)
    "images.enabled": (bool, True),  # route pulls through the caches that are up
    "images.root": (str, "/var/lib/dockcache/images"),  # every session's shim reads ROOT/caches.json
    "images.upstreams": (list, ["docker.io", "ghcr.io", "quay.io"]),  # one cache each (`images up`)
    "images.address": (str, "127.0.0.1"),  # where the caches listen; the engines must reach it
    "images.port": (int, 5100),  # the first port tried; each cache takes the next free two
    "images.max_size": ("size", "50GiB"),  # all caches together (`images prune`)
    "images.credentials": (list, []),  # upstreams whose login (the docker config of `images up`) the cache uses
}
for _kind in ("npm", "pypi", "go", "cargo", "maven"):  # shim.core.mirror_urls.KINDS (not imported: hot path)
    SCHEMA[f"mirrors.{_kind}"] = (str, "")
for _name in BY_NAME:
    SCHEMA[f"managers.{_name}.enabled"] = (bool, True)
    SCHEMA[f"managers.{_name}.volume"] = (str, "")
    SCHEMA[f"managers.{_name}.host_cache"] = (bool, False)
    SCHEMA[f"managers.{_name}.max_size"] = ("size", "0")  # 0 = no limit of its own
for _name, _verify in VERIFY.items():
    SCHEMA[f"verify.image_{_name}"] = (str, _verify.image)  # only if the daemon has it (never pulled)

ENV_KEYS = {
    "DOCKCACHE_MODE": "run.mode", "DOCKCACHE_SCOPE": "run.scope",
    "DOCKCACHE_VOLUME_PREFIX": "run.volume_prefix", "DOCKCACHE_BIND_ROOT": "run.bind_root",
    "DOCKCACHE_RUN": "run.enabled", "DOCKCACHE_READONLY": "run.readonly",
    "DOCKCACHE_HOST_CACHES": "run.host_caches", "DOCKCACHE_BUILD": "build.enabled",
    "DOCKCACHE_BUILD_STORE": "build.store", "DOCKCACHE_BUILD_MAX_SIZE": "build.max_size",
    "DOCKCACHE_BUILD_KEY": "build.key", "DOCKCACHE_BUILD_BACKEND": "build.backend",
    "DOCKCACHE_BUILD_LOCK_TIMEOUT": "build.lock_timeout", "DOCKCACHE_BUILD_KEY_HISTORY": "build.key_history",
    "DOCKCACHE_BUILD_REGISTRY": "build.registry", "DOCKCACHE_BUILD_BUILDER": "build.builder",
    "DOCKCACHE_BUILD_BUILDER_TLS": "build.builder_tls",
    "DOCKCACHE_BUILD_CACHE_MOUNTS": "build.cache_mounts", "DOCKCACHE_BUILD_CACHE_MOUNTS_SAVE": "build.cache_mounts_save",
    "DOCKCACHE_COMPOSE": "compose.enabled",
    "DOCKCACHE_COMPOSE_SHARED_BUILDER": "compose.shared_builder",
    "DOCKCACHE_MIRROR_NPM": "mirrors.npm", "DOCKCACHE_MIRROR_PYPI": "mirrors.pypi",
    "DOCKCACHE_MIRROR_GO": "mirrors.go", "DOCKCACHE_MIRROR_CARGO": "mirrors.cargo",
    "DOCKCACHE_MIRROR_MAVEN": "mirrors.maven", "DOCKCACHE_MIRROR_CA_BUNDLE": "mirrors.ca_bundle",
    "DOCKCACHE_MAX_SIZE": "run.max_size", "DOCKCACHE_MIN_FREE": "run.min_free",
    "DOCKCACHE_MIN_FREE_PERCENT": "run.min_free_percent",
    "DOCKCACHE_IMAGES": "images.enabled", "DOCKCACHE_IMAGES_ROOT": "images.root",
    "DOCKCACHE_IMAGES_UPSTREAMS": "images.upstreams", "DOCKCACHE_IMAGES_ADDRESS": "images.address",
    "DOCKCACHE_IMAGES_PORT": "images.port", "DOCKCACHE_IMAGES_MAX_SIZE": "images.max_size",
}


@dataclass(frozen=True)
class CustomCacheSpec:
    name: str
    path: str
    env: tuple[tuple[str, str], ...]
    source: str
    markers: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    host_dir: str = ""  # a host directory to mount instead of a dockcache cache

    def as_manager(self) -> Manager:
        """A row like the built-in ones: detected by its markers/commands (always on without)."""
        env = tuple((var, value.replace(self.path, "{cache}")) for var, value in self.env)
        return Manager(self.name, self.name, env, markers=tuple(Marker(g) for g in self.markers),
                       commands=self.commands, path=self.path, always=not (self.markers or self.commands))


@dataclass(frozen=True)
class Config:
    settings: Mapping[str, Setting]
    caches: tuple[CustomCacheSpec, ...]
    files: tuple[str, ...]

    def __getitem__(self, key: str) -> Any:
        return self.settings[key].value

    def source(self, key: str) -> str:
        return self.settings[key].source

    def host_cache(self, name: str) -> bool:
        """[managers.NAME] host_cache wins when set; else [run] host_caches."""
        if any(c.name == name for c in self.caches):
            return bool(self.custom_host_dir(name))
        key = f"managers.{name}.host_cache"
        if key in self.settings and self.settings[key].source != "default":
            return bool(self[key])
        return bool(self["run.host_caches"])

    def manager_enabled(self, name: str) -> bool:
        key = f"managers.{name}.enabled"  # [caches.NAME] have no such key: defining one enables it
        return bool(self["enabled"] and self["run.enabled"] and (key not in self.settings or self[key]))

    def table(self) -> tuple[Manager, ...]:
        """The built-in managers, then the [caches.NAME] of the config files."""
        return MANAGERS + tuple(c.as_manager() for c in self.caches)

    def manager(self, name: str) -> Manager | None:
        return BY_NAME.get(name) or next((c.as_manager() for c in self.caches if c.name == name), None)

    def custom_host_dir(self, name: str) -> str:
        return next((c.host_dir for c in self.caches if c.name == name), "")


def user_config_path(environ: Mapping[str, str]) -> Path:
    if environ.get("DOCKCACHE_CONFIG"):
        return Path(environ["DOCKCACHE_CONFIG"])
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME", "/"), ".config")
    return Path(base) / "dockcache" / "config.toml"


def find_project_file(start: str | None) -> Path | None:
    """The nearest .dockcache.toml at or above `start` (a host directory)."""
    if not start:
        return None
    here = Path(start).resolve()
    for d in (here, *here.parents):
        candidate = d / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


def load(environ: Mapping[str, str], project_dir: str | None = None) -> Config:
    """Merge every layer; raise ConfigError (one line) on the first problem."""
    settings = {k: Setting(_DEFAULT_PARSERS.get(t, lambda v: v)(d), "default") for k, (t, d) in SCHEMA.items()}
    caches: dict[str, CustomCacheSpec] = {}
    files = []
    for path in (user_config_path(environ), find_project_file(project_dir)):
        if path is None or not path.is_file():
            continue
        files.append(str(path))
        data = _read_toml(path)
        caches.update(_custom_caches(data.pop("caches", {}), str(path)))
        for key, value in _flatten(data).items():
            settings[key] = Setting(_coerce(key, value, str(path)), str(path))
    for var, key in ENV_KEYS.items():
        if environ.get(var, "") != "":
            settings[key] = Setting(_coerce(key, environ[var], f"env {var}"), f"env {var}")
    _env_manager_list(environ, settings)
    home = environ.get("HOME", "/")
    for key in ("run.bind_root", "build.store", "mirrors.ca_bundle", "images.root"):
        value = settings[key].value
        if value.startswith("~"):
            settings[key] = Setting(home + value[1:], settings[key].source)
    from shim.core.records import replace

    expanded = tuple(replace(c, host_dir=home + c.host_dir[1:]) if c.host_dir.startswith("~") else c
                     for c in caches.values())
    return Config(settings, expanded, tuple(files))


def _read_toml(path: Path) -> dict:
    import tomllib  # only when a config file exists

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _flatten(data: Mapping, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and full not in SCHEMA:
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _coerce(key: str, value: Any, where: str) -> Any:
    if key not in SCHEMA:
        raise ConfigError(f"{where}: unknown key '{key}'")
    typ = SCHEMA[key][0]
    try:
        value = _convert(typ, value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: key '{key}' must be {_type_name(typ)}, got {value!r}") from None
    _check_value(key, value, where)
    return value


def _convert(typ: Any, value: Any) -> Any:
    if isinstance(value, str) and typ is not str and typ is not list:
        return _from_text(typ, value)
    if typ in _DEFAULT_PARSERS:
        return _DEFAULT_PARSERS[typ](str(value)) if not isinstance(value, bool) else _fail()
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if typ is list and isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if typ is not list and isinstance(value, typ) and not (typ is not bool and isinstance(value, bool)):
        return value
    return _fail()


def _from_text(typ: Any, text: str) -> Any:
    if typ is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        return _fail()
    if typ in _DEFAULT_PARSERS:
        return _DEFAULT_PARSERS[typ](text)
    return typ(text)


def _fail() -> Any:
    raise TypeError


def _type_name(typ: Any) -> str:
    return {bool: "true/false", str: "a string", float: "a number", int: "an integer",
            list: "a list of strings", "size": "a size like 20GiB",
            "duration": "a duration like 30d, 12h or 90m"}.get(typ, str(typ))


def _check_value(key: str, value: Any, where: str) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{where}: key '{key}' must be one of {', '.join(CHOICES[key])}, got {value!r}")
    if (key.endswith(".volume") or key == "run.volume_prefix") and value and check_name(value):
        raise ConfigError(f"{where}: key '{key}': {check_name(value)}")
    if key in ("run.bind_root", "build.store", "images.root") and check_sensitive(value):
        raise ConfigError(f"{where}: key '{key}': {check_sensitive(value)}")
    if key == "build.registry" and value and not REGISTRY_RE.match(value):
        raise ConfigError(f"{where}: key '{key}': {value!r} is not HOST[:PORT]/REPOSITORY (lowercase repository path)")
    if key == "build.builder" and builder_problem(value):
        raise ConfigError(f"{where}: key '{key}': {builder_problem(value)}")
    if key in ("images.upstreams", "images.credentials") and value:
        _check_upstreams(key, value, where)
    if key.startswith("mirrors.") and value:
        _check_mirror(key, value, where)
    if key in ("build.key",) and value and not re.match(r"^[a-z0-9][a-z0-9._-]{0,127}$", _untemplated(value)):
        raise ConfigError(f"{where}: key '{key}': invalid cache key {value!r}")


BUILDER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def builder_problem(value: str) -> str | None:
    """What is wrong with a build.builder value, or None."""
    if value in ("auto", "off"):
        return None
    if value.startswith("unix://"):
        path = value[len("unix://"):]
        return None if path.startswith("/") and "\0" not in path else f"{value!r}: unix:// needs an absolute socket path"
    if value.startswith("tcp://"):
        m = re.fullmatch(r"tcp://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})", value)
        return None if m and 0 < int(m.group(2)) < 65536 else f"{value!r}: expected tcp://HOST:PORT"
    if "://" in value:
        return f"{value!r}: only unix:// and tcp:// builders are supported"
    return None if BUILDER_NAME_RE.match(value) else (
        f"{value!r}: not auto, off, unix:///PATH, tcp://HOST:PORT or a buildx builder name")


def _check_mirror(key: str, value: str, where: str) -> None:
    if key == "mirrors.ca_bundle":
        if not value.startswith(("/", "~")):
            raise ConfigError(f"{where}: key '{key}': {value!r} must be an absolute path to a PEM file")
        return
    from shim.core.mirror_urls import check_url  # only when a mirror is configured

    problem = check_url(key.split(".", 1)[1], value)
    if problem:
        raise ConfigError(f"{where}: key '{key}': {problem}")


def _check_upstreams(key: str, value: list, where: str) -> None:
    bad = [v for v in value if not UPSTREAM_RE.match(v)]
    if bad:
        raise ConfigError(f"{where}: key '{key}': {bad[0]!r} is not a registry host (docker.io, ghcr.io, HOST:PORT)")


def _untemplated(key: str) -> str:
    return key.replace("{repo}", "r").replace("{branch}", "b")


def parse_duration(text: str) -> float:
    """'30d', '12h', '90m', '45s', '3600' -> seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def parse_size(text: str) -> int:
    """'20G', '20GiB', '512MiB', '1024' -> bytes (binary units)."""
    m = SIZE_RE.match(text)
    if not m:
        raise ValueError(text)
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * (1024 ** power))


_DEFAULT_PARSERS = {"size": parse_size, "duration": parse_duration}


def _custom_caches(table: Any, where: str) -> dict[str, CustomCacheSpec]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: key 'caches' must be a table of [caches.NAME] sections")
    return {name: _custom_cache(name, spec, where) for name, spec in table.items()}


def _custom_cache(name: str, spec: Any, where: str) -> CustomCacheSpec:
    if check_name(name) or name in BY_NAME:
        raise ConfigError(f"{where}: caches.{name}: invalid or reserved cache name")
    allowed = {"path", "env", "markers", "commands", "host_dir"}
    if not isinstance(spec, dict) or set(spec) - allowed:
        raise ConfigError(f"{where}: caches.{name}: only {', '.join(sorted(allowed))} are allowed")
    path, env = spec.get("path"), spec.get("env", {})
    if not isinstance(path, str) or not isinstance(env, dict):
        raise ConfigError(f"{where}: caches.{name}: 'path' must be a string and 'env' a table")
    problem = check_container_path(path)
    if problem:
        raise ConfigError(f"{where}: caches.{name}.path: {problem}")
    lists = {}
    for key in ("markers", "commands"):
        value = spec.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v and "\0" not in v for v in value):
            raise ConfigError(f"{where}: caches.{name}.{key}: must be a list of names")
        lists[key] = tuple(value)
    host_dir = spec.get("host_dir", "")
    if not isinstance(host_dir, str) or (host_dir and not host_dir.startswith(("/", "~"))):
        raise ConfigError(f"{where}: caches.{name}.host_dir: must be an absolute path (or start with ~)")
    if host_dir and check_sensitive(host_dir):
        raise ConfigError(f"{where}: caches.{name}.host_dir: {check_sensitive(host_dir)}")
    pairs = tuple((str(k), str(v).replace("{cache}", path)) for k, v in env.items())
    return CustomCacheSpec(name, path, pairs, where, host_dir=host_dir, **lists)


def _env_manager_list(environ: Mapping[str, str], settings: dict[str, Setting]) -> None:
    """DOCKCACHE_MANAGERS=npm,pip enables only those (useful in CI and tests)."""
    raw = environ.get("DOCKCACHE_MANAGERS", "").strip()
    if not raw:
        return
    wanted = {w.strip() for w in raw.split(",") if w.strip()}
    unknown = wanted - set(BY_NAME)
    if unknown:
        raise ConfigError(f"env DOCKCACHE_MANAGERS: unknown manager(s) {', '.join(sorted(unknown))}")
    for name in BY_NAME:
        settings[f"managers.{name}.enabled"] = Setting(name in wanted, "env DOCKCACHE_MANAGERS")


# What each key does, for docs/configuration.md (scripts/config_table.py generates it; a unit
# test fails when a key has no line here or the page drifts). `<name>` stands for a manager
# (managers.*) or a tool (verify.*). Never read on the hot path.
HELP: dict[str, str] = {
    "enabled": "Everything on or off (`DOCKCACHE_DISABLE=1` is the kill switch: docker runs untouched).",
    "run.enabled": "Package caches for `docker run|create` and compose services.",
    "run.mode": "Where package caches live: `auto` (host dirs under `run.bind_root` when the engine sees "
                "this host's files, probed once per daemon; else named volumes), `bind` or `volume`.",
    "run.scope": "Who shares a cache: `shared` (everyone on the engine), `user` (per host user) or "
                 "`project` (per project dir; names get a short hash, never a path).",
    "run.volume_prefix": "Prefix of the volumes and bind dirs dockcache makes (`dockcache-npm`); management "
                         "commands touch only their own prefix's caches.",
    "run.bind_root": "Host directory of the bind-mode caches; in a sandbox whose `~` is per session, a "
                     "directory every session mounts.",
    "run.readonly": "Mount caches read-only: only tools made for a read-only cache (Gradle) get one.",
    "run.host_caches": "Mount your host's own tool caches (`~/.npm`, `~/.cache/pip`, ...) into containers "
                       "running as root or as you.",
    "run.max_size": "Cap on all run caches together (`0`: none); trimmed least recently used first by "
                    "`cache prune` and a background prune.",
    "run.min_free": "Disk guard: below this much free space, no new caches are made.",
    "run.min_free_percent": "... or below this share of the filesystem.",
    "build.enabled": "Shared BuildKit cache for `docker build` / `buildx build` and compose builds.",
    "build.store": "Host directory of the shared build cache (layers, cache mounts).",
    "build.max_size": "Cap on the build store; least recently used keys go first.",
    "build.fallback_keys": "Keys imported when the build's own key has nothing yet (`{repo}`, `{branch}` "
                           "templates): a new branch starts warm from main.",
    "build.key": "The build's cache key, templated (`{repo}-{branch}`); empty: from the first tag's "
                 "repository, else the context and Dockerfile.",
    "build.lock_timeout": "Seconds a detached publish waits for the store's lock.",
    "build.key_history": "Distinct builds a key keeps (variants, edits); all are imported.",
    "build.backend": "Where build cache goes: `local` (the store), `registry` or `both`.",
    "build.registry": "`HOST:PORT/REPO` of the registry backend.",
    "build.registry_max_age": "`cache prune --backend registry` removes keys older than this.",
    "build.registry_max_size": "... and keeps the registry backend under this size.",
    "build.builder": "The host's shared BuildKit: `auto` (the one `dockcache builder up` starts, when its "
                     "socket is there), `off`, `unix:///PATH`, `tcp://HOST:PORT` or a buildx builder's name.",
    "build.builder_tls": "A tcp builder's TLS: a directory with `ca.pem`, `cert.pem`, `key.pem`.",
    "build.cache_mounts": "Carry `RUN --mount=type=cache` contents across sessions through the store.",
    "build.cache_mounts_save": "`detached` (after the command returns) or `wait` (before it returns).",
    "compose.enabled": "Build caches and package caches for `docker compose build|up|run|create`.",
    "compose.shared_builder": "Compose service builds on the shared builder (one `docker build` each); "
                              "off: the store path.",
    "mirrors.ca_bundle": "PEM file on this host for mirrors behind a private CA (mounted, with each tool's "
                         "CA variable).",
    "mirrors.npm": "npm registry mirror URL given to npm, Yarn, pnpm (empty: none).",
    "mirrors.pypi": "PyPI mirror URL given to pip, uv, Poetry (empty: none).",
    "mirrors.go": "Go module proxy URL (`GOPROXY`; empty: none).",
    "mirrors.cargo": "crates.io sparse-index mirror URL (empty: none).",
    "mirrors.maven": "Maven repository mirror URL (empty: none).",
    "images.enabled": "Route pulls (`docker pull`, absent images of run, compose and builds) through the "
                      "host's image caches that are up (docs/images.md).",
    "images.root": "Where `dockcache images up` keeps each cache (config, pid, log, storage) and the index "
                   "`caches.json` every session reads.",
    "images.upstreams": "Registries `images up` starts a pull-through cache for (one Distribution registry each).",
    "images.address": "The address the caches listen on; the engines must reach it (loopback: engines on "
                      "this host's network).",
    "images.port": "The first port `images up` tries; each cache takes the next two free ones (API, metrics).",
    "images.max_size": "All image caches together; `images prune` deletes the least recently used blobs.",
    "images.credentials": "Upstreams whose docker login (of the user running `images up`) the cache uses; "
                          "anyone who reaches the cache can then pull what that login reads.",
    "managers.<name>.enabled": "One package manager on or off (`DOCKCACHE_MANAGERS=npm,pip` enables only those).",
    "managers.<name>.volume": "The volume name for this manager's cache (empty: `PREFIX-<name>`).",
    "managers.<name>.host_cache": "Mount the host's own cache of this tool (overrides `run.host_caches`).",
    "managers.<name>.max_size": "Cap on this manager's cache (`0`: none of its own).",
    "verify.image_<name>": "A local image with the tool, for `cache verify` (never pulled).",
}
