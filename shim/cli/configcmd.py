"""`dockcache config init|show`."""

from __future__ import annotations

from pathlib import Path

import tomli_w

from shim.core.config import SCHEMA, user_config_path

from .context import Ctx
from .output import CliError, emit, table

HEADER = """# dockcache configuration (user file). A project can override any key in .dockcache.toml,
# and DOCKCACHE_* variables override both. `dockcache config show` prints the merged result
# and where each value came from.
# run.mode: where package caches live. "auto" (default): host dirs under run.bind_root when
#   the engine sees this host's files (probed once per daemon), so they outlive each session's
#   daemon; named volumes when it does not (remote engine, VM). "bind" or "volume" force one.
# run.bind_root: in a sandbox whose ~ is per session, point it at a directory every session
#   shares (DOCKCACHE_BIND_ROOT too); `dockcache doctor` warns when it looks session-local.
# run.host_caches = true mounts your host's own caches (~/.npm, ~/.cache/pip, ~/.cargo/registry,
#   ~/go/pkg/mod, ~/.m2/repository, ...); [managers.npm] host_cache = true for one tool only.
# run.scope: "shared", "user" or "project" (volume names get a short hash, never a path)
# managers.<name>.enabled = false turns one package manager off; [caches.NAME] adds your own:
#   [caches.mytool]
#   path = "/cache/mytool"
#   env = { MYTOOL_CACHE = "{cache}" }
# build.backend: "local", "registry" or "both"; build.registry = "HOST:PORT/REPO"
# run.max_size (all run caches) and [managers.NAME] max_size ("0" = no limit): ccache and sccache
#   get it as their own limit, other caches are trimmed least recently used first by
#   `dockcache cache prune` and a background prune after runs. run.min_free(_percent): below
#   this, no new caches. [verify] image_NAME: a local image with the tool for `cache verify`.
# build.builder: the host's shared BuildKit. "auto" (default): the one `dockcache builder up`
#   started, when its socket is there; "unix:///PATH", "tcp://HOST:PORT", a buildx builder
#   name, or "off". build.builder_tls: a tcp builder's client ca.pem, cert.pem, key.pem
#   directory. compose.shared_builder (default true): compose service builds go there too.
# [mirrors]: npm, pypi, go, cargo, maven = the mirror URL ("" = none); ca_bundle = a PEM file
#   on this host for a mirror behind a private CA (off by default). Every key: docs/configuration.md.
"""


def _defaults() -> dict:
    out: dict = {}
    for key, (_typ, default) in SCHEMA.items():
        if key.startswith("managers."):
            continue
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = default
    return out


def config_init(ctx: Ctx, *, force: bool, path: str | None) -> None:
    target = Path(path) if path else user_config_path(ctx.environ)
    if target.exists() and not force:
        raise CliError(f"{target} exists; use --force to overwrite")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(HEADER + "\n" + tomli_w.dumps(_defaults()))
    print(f"wrote {target}")


def config_show(ctx: Ctx, *, as_json: bool) -> None:
    cfg = ctx.config
    rows = [[k, repr(s.value), s.source] for k, s in sorted(cfg.settings.items())]
    data = {"files": list(cfg.files), "settings": {k: {"value": s.value, "source": s.source}
                                                    for k, s in cfg.settings.items()},
            "caches": [{"name": c.name, "path": c.path, "env": dict(c.env), "source": c.source} for c in cfg.caches]}
    emit(data, as_json=as_json, human=table(rows, ["KEY", "VALUE", "SOURCE"]))
