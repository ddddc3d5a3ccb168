"""Typer wiring for `dockcache`; the work lives in one module per command."""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

from shim.core.config import ConfigError, parse_duration, parse_size
from shim.core.managers import BY_NAME

from .about import version_line
from .context import Ctx
from .output import CliError, UsageError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Warm, shared caches for docker. Something odd? `dockcache doctor` first: each problem with its fix.")
cache_app = typer.Typer(no_args_is_help=True, help="See, size, clear and prune caches.")
config_app = typer.Typer(no_args_is_help=True, help="Write or show configuration.")
metrics_app = typer.Typer(no_args_is_help=True, help="What dockcache did.")
builder_app = typer.Typer(no_args_is_help=True, help="The host's one shared BuildKit, for every session.")
images_app = typer.Typer(no_args_is_help=True, help="The host's pull-through image caches, for every session.")
app.add_typer(cache_app, name="cache")
app.add_typer(config_app, name="config")
app.add_typer(metrics_app, name="metrics")
app.add_typer(builder_app, name="builder")
app.add_typer(images_app, name="images")
JSON = typer.Option(False, "--json", help="One JSON document instead of a table.")
EVERYONE = typer.Option(False, "--all-installations",
                        help="Also other installations' caches on this daemon (other prefixes or host users).")


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration like 30d, 12h, 90m") from None


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(version_line() + "\n")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print dockcache's version and exit.")):
    """The options before any command."""


HOST = typer.Option(None, "-H", "--host", help="Daemon socket to check, as docker's -H.")
CONTEXT = typer.Option(None, "-c", "--context", help="Docker context to check, as docker's --context.")


def engine_ctx(host: Optional[str], context: Optional[str]) -> Ctx:
    """A Ctx whose docker calls go where `docker -H/--context` would send them."""
    environ = dict(os.environ)
    if host:
        environ["DOCKER_HOST"] = host
        environ.pop("DOCKER_CONTEXT", None)
    elif context:
        environ["DOCKER_CONTEXT"] = context
        environ.pop("DOCKER_HOST", None)
    return Ctx(environ)


@app.command()
def doctor(json: bool = JSON, host: Optional[str] = HOST, context: Optional[str] = CONTEXT):
    """Check the shim, the engine and the caches; exit 1 when something needs a fix."""
    from .doctor import run_doctor
    raise typer.Exit(run_doctor(engine_ctx(host, context), as_json=json))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def explain(ctx: typer.Context, json: bool = JSON):
    """dockcache explain -- docker run …: what would be added and why (runs nothing)."""
    from .explain import run_explain
    run_explain(Ctx(), list(ctx.args), as_json=json)


@cache_app.command("list")
def cache_list(json: bool = JSON, everyone: bool = EVERYONE):
    """One row per cache: package volumes and build keys."""
    from .cachecmd import cache_list as run
    run(Ctx(everyone=everyone), as_json=json)


@cache_app.command("stats")
def cache_stats(json: bool = JSON, everyone: bool = EVERYONE):
    """Sizes, dates, recorded uses and totals."""
    from .cachecmd import cache_stats as run
    run(Ctx(everyone=everyone), as_json=json)


@cache_app.command("clear", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def cache_clear(ctx: typer.Context,
                build: bool = typer.Option(False, "--build", help="Clear the build cache store (every key)."),
                all_: bool = typer.Option(False, "--all", help="Clear every package cache and the build store."),
                force: bool = typer.Option(False, "--force", help="Also clear caches a running container uses."),
                dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be cleared; change nothing."),
                json: bool = JSON, everyone: bool = EVERYONE):
    """Clear caches: one or more managers (--npm, --pip, …), --build, or --all.

    Manager flags: MANAGERS."""
    from .cachecmd import cache_clear as run
    managers = []
    known = [*BY_NAME, *_custom_names()] if ctx.args else []
    for arg in ctx.args:
        name = arg.removeprefix("--")
        if not arg.startswith("--") or name not in known:
            raise UsageError(f"unknown option {arg}; managers: {', '.join('--' + n for n in known)}")
        managers.append(name)
    raise typer.Exit(run(Ctx(everyone=everyone), managers, build=build, everything=all_, force=force,
                         dry_run=dry_run, as_json=json))


def _custom_names() -> list[str]:
    """Your [caches.NAME] are managers too; a broken config is reported by the command itself."""
    from .output import CliError
    try:
        return [c.name for c in Ctx().config.caches]
    except CliError:
        return []


cache_clear.__doc__ = cache_clear.__doc__.replace("MANAGERS", ", ".join("--" + n for n in BY_NAME))


@cache_app.command("verify", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def cache_verify(ctx: typer.Context,
                 repair: bool = typer.Option(False, "--repair", help="Remove the broken entries (or the one cache)."),
                 refetch: bool = typer.Option(True, "--refetch/--no-refetch",
                                              help="With --repair: fetch back what was removed (npm, Go)."),
                 json: bool = JSON, everyone: bool = EVERYONE):
    """Run each tool's integrity check on its caches (--npm, --pnpm, --pip, --go, --cargo; default all)
    in a throwaway container; exit 1 while something is broken."""
    from .verify import cache_verify as run
    raise typer.Exit(run(Ctx(everyone=everyone), _manager_flags(ctx.args), repair=repair, as_json=json,
                         refetch=refetch))


def _manager_flags(args: list[str]) -> list[str]:
    known = [*BY_NAME, *_custom_names()] if args else []
    for arg in args:
        if not arg.startswith("--") or arg[2:] not in known:
            raise UsageError(f"unknown option {arg}; managers: {', '.join('--' + n for n in known)}")
    return [a[2:] for a in args]


@cache_app.command("prune")
def cache_prune(older_than: Optional[str] = typer.Option(
                    None, "--older-than", help="Remove caches last used longer ago than this (30d, 12h, 90m)."),
                max_size: Optional[str] = typer.Option(
                    None, "--max-size", help="Remove least recently used build keys until the store fits (20GiB)."),
                backend: str = typer.Option("local", "--backend", help="local, registry or all"),
                dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed; change nothing."),
                json: bool = JSON, everyone: bool = EVERYONE):
    """Garbage-collect the build store (LRU beyond --max-size) and unused old volumes;
    --backend registry deletes old key tags from the build cache registry."""
    from .cachecmd import cache_prune as run
    if backend not in ("local", "registry", "all"):
        raise UsageError(f"--backend must be local, registry or all, not {backend!r}")
    size = None
    if max_size:
        try:
            size = parse_size(max_size)
        except ValueError:
            raise typer.BadParameter(f"{max_size!r} is not a size like 20GiB") from None
    run(Ctx(everyone=everyone), older_than=duration(older_than) if older_than else None, max_size=size,
        backend=backend, dry_run=dry_run, as_json=json)


@config_app.command("init")
def config_init(force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
                path: Optional[str] = typer.Option(None, "--path", help="Write here instead of the user config path.")):
    """Write a commented default user config."""
    from .configcmd import config_init as run
    run(Ctx(), force=force, path=path)


@config_app.command("show")
def config_show(json: bool = JSON):
    """The merged configuration and where each value came from."""
    from .configcmd import config_show as run
    run(Ctx(), as_json=json)


@metrics_app.command("show")
def metrics_show(since: Optional[str] = typer.Option(None, "--since", help="Only what happened in this window (7d, 12h)."),
                 json: bool = JSON):
    """Intercepted commands, caches mounted, time spent, build evidence."""
    from .metricscmd import metrics_show as run
    run(Ctx(), since=duration(since) if since else None, as_json=json)


SOCKET = typer.Option(None, "--socket", help="The builder's unix socket (default: build.builder's, "
                      "else /run/dockcache/buildkitd.sock).")


@builder_app.command("up")
def builder_up(buildkitd: Optional[str] = typer.Option(None, "--buildkitd", help="buildkitd to run (default: PATH)."),
               socket: Optional[str] = SOCKET,
               root: Optional[str] = typer.Option(None, "--root", help="BuildKit's state (default /var/lib/dockcache/buildkit)."),
               mirror: List[str] = typer.Option([], "--mirror", help="REGISTRY=MIRROR, e.g. docker.io=127.0.0.1:5000 (repeatable)."),
               json: bool = JSON):
    """Start the shared buildkitd (or attach to the one answering on the socket)."""
    from .buildercmd import up
    raise typer.Exit(up(Ctx(), buildkitd=buildkitd, socket=socket, root=root, mirrors=mirror, as_json=json))


@builder_app.command("down")
def builder_down(socket: Optional[str] = SOCKET, json: bool = JSON):
    """Stop the buildkitd that `builder up` started (nothing else)."""
    from .buildercmd import down
    raise typer.Exit(down(Ctx(), socket=socket, as_json=json))


@builder_app.command("status")
def builder_status(json: bool = JSON):
    """Which builder builds go to, and whether it answers (exit 1 when it is down)."""
    from .buildercmd import status
    raise typer.Exit(status(Ctx(), as_json=json))


@builder_app.command("use")
def builder_use(value: str = typer.Argument(..., help="auto, off, unix:///PATH, tcp://HOST:PORT or a buildx builder name")):
    """Set build.builder in the user config."""
    from .buildercmd import use
    raise typer.Exit(use(Ctx(), value))


IMAGES_ROOT = typer.Option(None, "--root", help="Where the caches live (default: images.root, /var/lib/dockcache/images).")
UPSTREAM = typer.Option([], "--upstream", help="A registry to cache (repeatable; default: images.upstreams).")


@images_app.command("up")
def images_up(upstream: List[str] = UPSTREAM, root: Optional[str] = IMAGES_ROOT,
              registry: Optional[str] = typer.Option(None, "--registry", help="The Distribution registry binary "
                                                     "(default: docker-registry or registry on PATH)."),
              json: bool = JSON):
    """Start one pull-through cache per upstream (or attach to those already up)."""
    from .imagescmd import up
    raise typer.Exit(up(Ctx(), upstreams=upstream, root=root, registry=registry, as_json=json))


@images_app.command("down")
def images_down(upstream: List[str] = UPSTREAM, root: Optional[str] = IMAGES_ROOT, json: bool = JSON):
    """Stop the caches that `images up` started (nothing else)."""
    from .imagescmd import down
    raise typer.Exit(down(Ctx(), upstreams=upstream, root=root, as_json=json))


@images_app.command("status")
def images_status(root: Optional[str] = IMAGES_ROOT, json: bool = JSON):
    """Each cache: up or down, its size, hits and misses (exit 1 when none is up or one is down)."""
    from .imagestatus import status
    raise typer.Exit(status(Ctx(), root=root, as_json=json))


@images_app.command("prune")
def images_prune(root: Optional[str] = IMAGES_ROOT,
                 max_size: Optional[str] = typer.Option(None, "--max-size", help="Default: images.max_size."),
                 dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; delete nothing."), json: bool = JSON):
    """Delete the least recently used blobs until the caches fit in images.max_size."""
    from .imagestatus import prune
    raise typer.Exit(prune(Ctx(), root=root, max_size=max_size, dry_run=dry_run, as_json=json))


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: one error type, one line. Usage errors exit 2 as docker's do, other
    errors 1, ^C 130, a dockcache bug 3 (still one line, never a traceback); with --json
    the error is a JSON document on stdout too."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rc = app(args=args, standalone_mode=False)  # Exit codes are returned in this mode
    except CliError as exc:
        _fail(args, str(exc), exc.exit_code)
    except ConfigError as exc:
        _fail(args, str(exc), 1)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the edge: every error is one line
        if _is_usage_error(exc):
            _fail(args, f"{exc.format_message()}\nSee 'dockcache {_command_path(exc)}--help'.", 2)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # other click-style errors
            _fail(args, exc.format_message(), exc.exit_code)
        _fail(args, f"unexpected error: {type(exc).__name__}: {exc}", 3)
    sys.exit(rc if isinstance(rc, int) else 0)


def _is_usage_error(exc: BaseException) -> bool:
    """click's UsageError family, from click or from typer's own copy of it (typer >= 0.29
    no longer depends on click), recognised by class name rather than by import."""
    return any(k.__name__ == "UsageError" for k in type(exc).__mro__)


def _command_path(exc: BaseException) -> str:
    """`cache prune ` for an error in `dockcache cache prune`: the words after the program
    name in the failing command's own path (click records it on the error)."""
    path = getattr(getattr(exc, "ctx", None), "command_path", "") or ""
    words = path.split()[1:]
    if words[:1] == ["-m"]:  # `python -m shim ...`
        words = words[2:]
    return "".join(w + " " for w in words)


def _fail(args: list[str], message: str, code: int) -> None:
    if "--json" in args:
        import json
        json.dump({"error": message.splitlines()[0], "exit_code": code}, sys.stdout)
        sys.stdout.write("\n")
    sys.stderr.write(f"dockcache: {message}\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
