"""Typer wiring for `dockcache`; the work lives in one module per command."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from shim.config import parse_duration, parse_size
from shim.managers import BY_NAME

from .context import Ctx
from .output import CliError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Warm, shared caches for docker.")
cache_app = typer.Typer(no_args_is_help=True, help="See, size, clear and prune caches.")
config_app = typer.Typer(no_args_is_help=True, help="Write or show configuration.")
metrics_app = typer.Typer(no_args_is_help=True, help="What dockcache did.")
app.add_typer(cache_app, name="cache")
app.add_typer(config_app, name="config")
app.add_typer(metrics_app, name="metrics")
JSON = typer.Option(False, "--json", help="One JSON document instead of a table.")


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration like 30d, 12h, 90m") from None


@app.command()
def doctor(json: bool = JSON):
    """Check the shim, the engine and the caches; exit 1 when something needs a fix."""
    from .doctor import run_doctor
    raise typer.Exit(run_doctor(Ctx(), as_json=json))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def explain(ctx: typer.Context, json: bool = JSON):
    """dockcache explain -- docker run …: what would be added and why (runs nothing)."""
    from .explain import run_explain
    run_explain(Ctx(), list(ctx.args), as_json=json)


@cache_app.command("list")
def cache_list(json: bool = JSON):
    """One row per cache: package volumes and build keys."""
    from .cachecmd import cache_list as run
    run(Ctx(), as_json=json)


@cache_app.command("stats")
def cache_stats(json: bool = JSON):
    """Sizes, dates, recorded uses and totals."""
    from .cachecmd import cache_stats as run
    run(Ctx(), as_json=json)


@cache_app.command("clear", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def cache_clear(ctx: typer.Context, build: bool = typer.Option(False, "--build"),
                all_: bool = typer.Option(False, "--all"), force: bool = typer.Option(False, "--force"),
                dry_run: bool = typer.Option(False, "--dry-run"), json: bool = JSON):
    """Clear caches: --npm --pip … (any manager), --build, or --all."""
    from .cachecmd import cache_clear as run
    managers = []
    for arg in ctx.args:
        name = arg.removeprefix("--")
        if not arg.startswith("--") or name not in BY_NAME:
            raise CliError(f"unknown option {arg}; managers: {', '.join('--' + n for n in BY_NAME)}")
        managers.append(name)
    raise typer.Exit(run(Ctx(), managers, build=build, everything=all_, force=force, dry_run=dry_run, as_json=json))


@cache_app.command("prune")
def cache_prune(older_than: Optional[str] = typer.Option(None, "--older-than"),
                max_size: Optional[str] = typer.Option(None, "--max-size"),
                backend: str = typer.Option("local", "--backend", help="local, registry or all"),
                dry_run: bool = typer.Option(False, "--dry-run"), json: bool = JSON):
    """Garbage-collect the build store (LRU beyond --max-size) and unused old volumes;
    --backend registry deletes old key tags from the build cache registry."""
    from .cachecmd import cache_prune as run
    if backend not in ("local", "registry", "all"):
        raise CliError(f"--backend must be local, registry or all, not {backend!r}")
    size = None
    if max_size:
        try:
            size = parse_size(max_size)
        except ValueError:
            raise typer.BadParameter(f"{max_size!r} is not a size like 20GiB") from None
    run(Ctx(), older_than=duration(older_than) if older_than else None, max_size=size,
        backend=backend, dry_run=dry_run, as_json=json)


@config_app.command("init")
def config_init(force: bool = typer.Option(False, "--force"), path: Optional[str] = typer.Option(None, "--path")):
    """Write a commented default user config."""
    from .configcmd import config_init as run
    run(Ctx(), force=force, path=path)


@config_app.command("show")
def config_show(json: bool = JSON):
    """The merged configuration and where each value came from."""
    from .configcmd import config_show as run
    run(Ctx(), as_json=json)


@metrics_app.command("show")
def metrics_show(since: Optional[str] = typer.Option(None, "--since"), json: bool = JSON):
    """Intercepted commands, caches mounted, time spent, build evidence."""
    from .metricscmd import metrics_show as run
    run(Ctx(), since=duration(since) if since else None, as_json=json)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: one error type, one line, exit 1 (130 on ^C)."""
    try:
        rc = app(args=argv, standalone_mode=False)  # click returns Exit codes in this mode
    except CliError as exc:
        sys.stderr.write(f"dockcache: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors and the like
        import click
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        sys.stderr.write(f"dockcache: unexpected error: {type(exc).__name__}: {exc}\n")
        sys.exit(3)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
