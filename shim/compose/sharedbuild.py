"""Compose service builds on the host's shared BuildKit, each as a `docker build` of its own.

Given BUILDX_BUILDER, compose loads every image it builds into the engine in full
(docker/buildx#626: ~8 s for a 320 MB service here, changed or not). Instead, for
`compose build` and `compose up|run|create --build`, dockcache runs one `docker build`
per service through its own launcher, with the options compose would give that build
(docker/compose pkg/compose/build.go `toBuildOptions`: tags, args, target, labels with
compose's three, cache entries, secrets, ssh, …). Each is then an ordinary routed build:
BuildKit's own cache, an OCI layout, a load of only the layers the engine lacks, none
when the image is unchanged. Compose itself then runs with `--no-build` (`build` needs
no compose run at all). A service whose build uses what a `docker build` cannot say the
same way (inline Dockerfiles, privileged builds, several platforms, `service:` contexts,
an unknown key) sends the whole command the store path (compose/plan.py), as does a
shared builder that is off or unreachable.

Pure: the compose config in, argv out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from shim.core.records import dataclass

from shim.compose.files import GLOBAL_VALUE, ComposeCall
from shim.compose.services import BUILD_VALUE, sub_values
from shim.core.grammar import scan_options

# build keys translated below; any other key keeps compose's own build
KNOWN = frozenset("context dockerfile args target labels tags cache_from cache_to no_cache pull network "
                  "extra_hosts shm_size platforms secrets ssh additional_contexts".split())
# `compose build` options a per-service docker build takes as they are, and those it cannot
PASSED = frozenset("--build-arg --ssh --no-cache --pull".split())
PROGRESS = frozenset("auto tty plain quiet".split())  # compose's values docker build also takes
BUILD_FAILED = 17  # compose's exit code for any failed build (pkg/compose/metrics.go BuildFailure)
CANCELED = 130  # compose's exit code when a SIGINT or SIGTERM cancelled it
_CORE = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")
LABELS = ("com.docker.compose.project", "com.docker.compose.service", "com.docker.compose.version")


@dataclass(frozen=True)
class ServiceBuild:
    service: str
    argv: tuple[str, ...]  # after docker's globals: ("build", …, context)
    after: frozenset[str] = frozenset()  # services built first: compose builds in dependency order


def image_name(project: str, service: str, spec: Mapping) -> str:
    """Compose's name for a service's image (api.GetImageNameOrDefault)."""
    return str(spec.get("image") or f"{project}-{service}")


def plan_builds(call: ComposeCall, builds: Mapping[str, Mapping], cfg: Mapping, project: str,
                version: str) -> tuple[list[ServiceBuild], str | None]:
    """(one docker build per service, None) or ([], why compose keeps its own build)."""
    cli, why = _cli_options(call)
    if why:
        return [], why
    out = []
    for svc, spec in builds.items():
        argv = service_argv(svc, spec, cfg, project, version, cli)
        if isinstance(argv, str):
            return [], f"service {svc}: {argv}"
        out.append(ServiceBuild(svc, tuple(argv), built_before(svc, cfg.get("services") or {}, builds)))
    return out, None


def built_before(svc: str, services: Mapping[str, Mapping], builds: Mapping) -> frozenset[str]:
    """The built services `svc` depends on, through services that build nothing too:
    compose (2.2x) builds in the order of its dependency graph."""
    seen, todo = set(), list(depends_on(services.get(svc) or {}))
    while todo:
        dep = todo.pop()
        if dep not in seen and dep != svc:
            seen.add(dep)
            todo += depends_on(services.get(dep) or {})
    return frozenset(seen & set(builds))


def depends_on(spec: Mapping) -> list[str]:
    """A service's edges in compose's graph: depends_on, links, volumes_from and the
    `service:NAME` network, ipc and pid modes."""
    deps = spec.get("depends_on") or {}
    out = [str(d) for d in deps]  # a mapping or, unnormalized, a list
    out += [str(link).split(":", 1)[0] for link in spec.get("links") or []]
    for v in spec.get("volumes_from") or []:
        v = str(v)
        if not v.startswith("container:"):
            out.append(v.removeprefix("service:").split(":", 1)[0])
    out += [str(spec[k])[8:] for k in ("network_mode", "ipc", "pid") if str(spec.get(k) or "").startswith("service:")]
    return out


def build_limit(call: ComposeCall, environ: Mapping[str, str]) -> int:
    """How many service builds run at once, as compose decides it: `--parallel N`, else
    COMPOSE_PARALLEL_LIMIT; 0 (or -1) is no limit. A terminal progress display the user asked
    for needs the terminal to itself: one at a time."""
    glob = dict(scan_options(call.globals, 0, GLOBAL_VALUE, interspersed=True)[0])
    if glob.get("--progress", environ.get("BUILDKIT_PROGRESS")) == "tty":
        return 1
    for raw in (glob.get("--parallel"), environ.get("COMPOSE_PARALLEL_LIMIT")):
        try:
            return max(int(str(raw)), 0)
        except ValueError:
            continue
    return 0


def order_note(builds: Sequence[ServiceBuild], limit: int) -> str:
    """How the builds run, for `explain`: "side by side (web after api)", "one at a time"."""
    if len(builds) < 2:
        return "alone"
    after = "; ".join(f"{b.service} after {', '.join(sorted(b.after))}" for b in builds if b.after)
    how = "one at a time" if limit == 1 else f"side by side, at most {limit} at once" if limit else "side by side"
    return f"{how} ({after})" if after else how


def _cli_options(call: ComposeCall) -> tuple[list[str], str | None]:
    """What of compose's options each docker build gets: its global `--progress`, and
    `compose build`'s own (up/run/create have none for builds)."""
    glob, _pos = scan_options(call.globals, 0, GLOBAL_VALUE, interspersed=True)
    progress = [v for k, v in glob if k == "--progress" and v in PROGRESS]
    if progress[-1:] == ["quiet"]:  # docker build's quiet prints the image id on stdout; compose's prints nothing
        return [], "compose --progress quiet: left to compose"
    out = ["--progress", progress[-1]] if progress else []
    if call.sub != "build":
        return out, None
    opts, _pos = scan_options(call.rest, 1, BUILD_VALUE, interspersed=True)
    for flag, value in opts:
        if flag not in PASSED:
            return [], f"compose build {flag}: left to compose"
        out += [flag] if value is None else [flag, value]
    return out, None


def service_argv(svc: str, spec: Mapping, cfg: Mapping, project: str, version: str,
                 cli: Sequence[str]) -> list[str] | str:
    """`build …` for one service, or why it cannot be said as a docker build."""
    from shim.build.mounts.sync import section_args

    b = spec.get("build") or {}
    unknown = sorted(set(b) - KNOWN)
    if unknown:
        return f"build key {unknown[0]} is left to compose"
    context = str(b.get("context") or ".")
    argv = ["build"]
    if b.get("dockerfile"):
        df = str(b["dockerfile"])
        local = "://" not in context and not context.startswith("git@")
        argv += ["-f", df if os.path.isabs(df) or not local else os.path.join(context, df)]
    for tag in [image_name(project, svc, spec), *(b.get("tags") or [])]:
        argv += ["-t", str(tag)]
    for k, v in section_args(b).items():
        argv += ["--build-arg", f"{k}={v}"]
    labels = {**(b.get("labels") or {}), LABELS[0]: project, LABELS[1]: svc, LABELS[2]: label_version(version)}
    for k, v in labels.items():
        argv += ["--label", f"{k}={v}"]
    simple = _simple(b, spec)
    if isinstance(simple, str):
        return simple
    argv += simple
    extra = _secrets_and_contexts(b, cfg)
    if isinstance(extra, str):
        return extra
    return [*argv, *extra, *cli, context]


def _simple(b: Mapping, spec: Mapping) -> list[str] | str:
    out = []
    if b.get("target"):
        out += ["--target", str(b["target"])]
    for key, flag in (("cache_from", "--cache-from"), ("cache_to", "--cache-to"), ("ssh", "--ssh")):
        for v in b.get(key) or []:
            out += [flag, str(v)]
    out += ["--no-cache"] if b.get("no_cache") else []
    out += ["--pull"] if b.get("pull") else []
    if b.get("network"):
        out += ["--network", str(b["network"])]
    hosts = b.get("extra_hosts") or []
    for h in (hosts.items() if isinstance(hosts, Mapping) else ((x, None) for x in hosts)):
        out += ["--add-host", f"{h[0]}:{h[1]}" if h[1] is not None else str(h[0])]
    if b.get("shm_size"):
        out += ["--shm-size", str(b["shm_size"])]
    platforms = list(b.get("platforms") or [])
    if len(platforms) > 1:
        return "several platforms: left to compose"
    platform = spec.get("platform") or (platforms[0] if platforms else None)
    out += ["--platform", str(platform)] if platform else []
    return out


def _secrets_and_contexts(b: Mapping, cfg: Mapping) -> list[str] | str:
    out = []
    for s in b.get("secrets") or []:
        source = s.get("source") if isinstance(s, Mapping) else s
        target = s.get("target") if isinstance(s, Mapping) else None
        if target and target != source:
            return f"secret {source} under another id ({target}) is left to compose"
        known = (cfg.get("secrets") or {}).get(source) or {}
        if known.get("file"):
            out += ["--secret", f"id={source},src={known['file']}"]
        elif known.get("environment"):
            out += ["--secret", f"id={source},env={known['environment']}"]
        else:
            return f"secret {source} is neither a file nor a variable"
    for name, where in (b.get("additional_contexts") or {}).items():
        if str(where).startswith("service:"):
            return f"context {name} is another service's image: left to compose"
        out += ["--build-context", f"{name}={where}"]
    return out


def builds_on_another(builds: Mapping[str, Mapping], project: str, dockerfiles: Mapping[str, str]) -> str | None:
    """A service whose Dockerfile starts FROM another service's image: that image lives in
    this session's engine (the shared builder pulls FROM images from registries), so the
    command keeps the store path. `dockerfiles`: service -> Dockerfile text (when readable)."""
    from shim.build.shared.route import from_images, tag_forms

    names = {form for svc, spec in builds.items() for form in tag_forms(image_name(project, svc, spec))}
    for svc, text in dockerfiles.items():
        for image in from_images(text):
            if any(form in names for form in tag_forms(image)):
                return f"service {svc} builds FROM {image}, another service's image"
    for svc, spec in builds.items():
        for where in ((spec.get("build") or {}).get("additional_contexts") or {}).values():
            image = str(where).removeprefix("docker-image://")
            if image != str(where) and any(form in names for form in tag_forms(image)):
                return f"service {svc} takes {image}, another service's image, as a build context"
    return None


def label_version(version: str) -> str:
    """The version compose writes in its `com.docker.compose.version` label: the core
    major.minor.patch of its own (`v.Core()` in pkg/api/labels.go), so a distribution's
    `2.26.1-4` or Docker Desktop's `2.27.0-desktop.1` labels as `2.26.1` / `2.27.0`."""
    m = _CORE.match(version.strip().lstrip("v"))
    if not m:
        return version
    return ".".join(part or "0" for part in m.groups())


def compose_code(rc: int, interrupted: int | None = None) -> int:
    """What compose itself would exit with after the failed docker build that exited rc:
    its build failure code; a signal's code stays; and 130 when a SIGINT or SIGTERM reached
    us (`interrupted`): compose cancels on either and exits 130, while the cancelled
    docker build itself says 1."""
    if rc != 0 and interrupted is not None:
        return CANCELED
    return rc if rc == 0 or rc >= 128 else BUILD_FAILED


def compose_after(call: ComposeCall) -> list[str] | None:
    """The compose command to run once the images are built: `--build` dropped (and
    `--no-build` for up/create, so a `pull_policy: build` service is not built again);
    None for `compose build` (nothing left to do)."""
    if call.sub == "build":
        return None
    _opts, pos = scan_options(call.rest, 1, sub_values(call.sub), interspersed=call.sub != "run")
    end = pos[0] if pos else len(call.rest)
    head = [a for a in call.rest[:end] if a != "--build"]
    if call.sub in ("up", "create"):
        head.insert(1, "--no-build")
    return [*call.base, *call.globals, *head, *call.rest[end:]]

