"""`dockcache cache verify [--npm …] [--repair]`: each tool's integrity check, in a throwaway
container (`--rm --network none --pull never`), with the cache mounted where the run flow
mounts it; the checks are data (shim/core/managers.py VERIFY).

The check mounts the cache read-only, so looking never changes it. `--repair` runs the
tool's own repair (npm: `npm cache verify`) or removes exactly the broken entries, fetches
back what the tool can name (npm: the tarball URL, Go: module@version; the one step with
`--network host`), checks again, and clears the one cache only if entries are still broken:
so an offline install works again. A cache a running container uses is checked, never
repaired. The image is one that has the tool: the one the cache was last mounted into,
`verify.image_<manager>`, or its default, and only if the daemon already has it: dockcache
never pulls.
"""

from __future__ import annotations

import posixpath
import re
from shim.core.records import dataclass, field

from shim.core.managers import VERIFY, Refetch, Verify

from .context import Ctx
from .inventory import CacheRow, all_rows
from .output import CliError, emit, human_size

LABEL = "dockcache.verify=true"
OWNER_PREFIX = 'stat -c "OWNER\t%u:%g" "$CACHE" 2>/dev/null; exec "$@"'  # who repairs (the cache's owner)
AGAIN_ONLINE = "removed; the next online install fetches it again"
NEEDS_NETWORK = "the next install needs the network once"


@dataclass
class Outcome:
    name: str
    manager: str
    kind: str
    status: str = "ok"  # ok | broken | repaired | cleared | unchecked
    image: str | None = None
    checked: int | None = None
    broken: list[dict] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    refetched: list[str] = field(default_factory=list)
    tool_output: list[str] = field(default_factory=list)
    reason: str = ""
    owner: str = "0:0"
    fetchable: list[str] = field(default_factory=list)  # what the check says the tool can fetch again

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d.pop("owner")
        d.pop("fetchable")
        return d


def cache_verify(ctx: Ctx, managers: list[str], *, repair: bool, as_json: bool, refetch: bool = True) -> int:
    try:
        rows = [r for r in all_rows(ctx, include_missing=False) if r.kind in ("volume", "bind") and r.exists]
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    rows = [r for r in rows if not managers or r.manager in managers]
    results = [verify_one(ctx, r, repair=repair, refetch=refetch) for r in rows]
    healthy = not any(o.status == "broken" for o in results)
    emit({"caches": [o.to_json() for o in results], "healthy": healthy, "repair": repair},
         as_json=as_json, human=_human(results, rows))
    return 0 if healthy else 1


def verify_one(ctx: Ctx, row: CacheRow, *, repair: bool, refetch: bool = True) -> Outcome:
    out = Outcome(row.name, row.manager, row.kind)
    spec = VERIFY.get(row.manager)
    if spec is None:
        out.status, out.reason = "unchecked", f"no integrity check known for {row.manager}"
        return out
    found = _check_with_some_image(ctx, row, spec, out)
    if not found or not out.broken or not repair:
        return out
    if row.in_use_by:
        out.reason = f"not repaired: in use by {', '.join(row.in_use_by)}"
        return out
    _repair(ctx, row, spec, out, refetch=refetch)
    return out


def images_for(ctx: Ctx, row: CacheRow) -> list[str]:
    """Candidates, best first: the image this cache was last mounted into (it ran the tool),
    verify.image_<m> (yours, else its default), then images other caches of this manager
    were mounted into. Each is used only if the daemon has it and it has the tool."""
    key = f"verify.image_{row.manager}"
    configured = ctx.config[key] if key in ctx.config.settings else ""
    mine = (ctx.state.get("cacheimage", "run", row.name) or {}).get("image", "")
    others = [r.get("image", "") for r in ctx.state.all("cacheimage") if r.get("manager") == row.manager]
    return [i for i in dict.fromkeys([mine, configured, *others]) if i]


def _check_with_some_image(ctx: Ctx, row: CacheRow, spec: Verify, out: Outcome) -> bool:
    tried = []
    for image in images_for(ctx, row):
        if ctx.docker("image", "inspect", "--format", "{{.Id}}", image, timeout=30).returncode != 0:
            tried.append(f"{image} (not on this daemon)")
            continue
        res = _run(ctx, row, image, spec.check, readonly=True)
        if res.returncode in (126, 127) or "UNAVAILABLE\t" in res.stdout:
            tried.append(f"{image} (no {spec.tool})")
            continue
        out.image = image
        _parse(res, out)
        return True
    out.status = "unchecked"
    out.reason = (f"no image with {spec.tool} on this daemon (tried {', '.join(tried) or 'none'}); set "
                  f"verify.image_{row.manager} to a local image that has it (dockcache never pulls)")
    return False


def _parse(res, out: Outcome) -> None:
    out.broken, out.checked, out.fetchable = [], None, []
    for line in res.stdout.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "BAD":
            path, _, why = rest.partition("\t")
            out.broken.append({"path": path, "why": why})
        elif kind == "FETCH" and rest.partition("\t")[2] not in out.fetchable:
            out.fetchable.append(rest.partition("\t")[2])
        elif kind == "CHECKED" and rest.strip().isdigit():
            out.checked = int(rest)
        elif kind == "OWNER" and rest.strip():
            out.owner = rest.strip()
    if res.returncode != 0 and out.checked is None:
        out.status, out.reason = "unchecked", f"the check failed: {_last_line(res.stderr)}"
    else:
        out.status = "broken" if out.broken else "ok"


def _repair(ctx: Ctx, row: CacheRow, spec: Verify, out: Outcome, *, refetch: bool) -> None:
    """Remove, fetch back, check again: the check after the re-fetch also vouches for what came back."""
    before, wanted = [b["path"] for b in out.broken], list(out.fetchable)
    _drop_broken(ctx, row, spec, out, before)
    if not refetch:
        note = f"{AGAIN_ONLINE} (--no-refetch)"
    elif spec.refetch is None or not wanted:
        note = AGAIN_ONLINE
    else:
        note = _fetch_back(ctx, row, spec.refetch, out, wanted)
    _parse(_run(ctx, row, out.image, spec.check, readonly=True), out)
    out.repaired = [p for p in before if p not in {b["path"] for b in out.broken}]
    if out.status == "ok":
        out.status, out.reason = "repaired", note
        ctx.audit("verify-repair", row.name, removed=out.repaired, refetched=out.refetched)
    elif _clear(ctx, row):
        out.status, out.reason, out.broken = "cleared", "entries still broken after repair: cache cleared", []
        out.refetched = []


def _drop_broken(ctx: Ctx, row: CacheRow, spec: Verify, out: Outcome, before: list[str]) -> None:
    if spec.repair:
        res = _run(ctx, row, out.image, spec.repair, readonly=False, user=out.owner)
        out.tool_output = [ln for ln in (res.stdout + res.stderr).splitlines()
                           if ln.strip() and not ln.startswith("OWNER\t")][-12:]
    else:
        paths = _safe_paths(before, spec.companions)
        script = 'cd "$CACHE" && for p in "$@"; do rm -rf -- "./$p"; done'
        _run(ctx, row, out.image, ("sh", "-c", script, "sh", *paths), readonly=False, user=out.owner)


def _fetch_back(ctx: Ctx, row: CacheRow, recipe: Refetch, out: Outcome, wanted: list[str]) -> str:
    """The tool fetches what was removed, with the network (the check never has it); returns
    the reason line: empty when everything came back. A failure leaves the repair standing
    (the broken bytes are gone either way), so it only says the network is needed once."""
    argv, rejected = refetch_argv(recipe, wanted)
    accepted = list(argv[4:])
    if accepted:
        res = _run(ctx, row, out.image, argv, readonly=False, user=out.owner, network="host", env=recipe.env)
        out.refetched = [i for i in fetched_items(res.stdout) if i in accepted]
        missed = [i for i in accepted if i not in out.refetched]
        if missed:
            return f"re-fetch failed for {_some(missed)} ({_last_line(res.stderr)}): {NEEDS_NETWORK}"
    if rejected:  # counted, not echoed: a name that fails the pattern is no text for a terminal
        return f"not re-fetched: {len(rejected)} entries named in a form dockcache does not pass on: {NEEDS_NETWORK}"
    return ""


def refetch_argv(recipe: Refetch, items: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """(argv, rejected): the recipe's script with the accepted items as its arguments (a check's
    output never becomes script text; nothing starting with "-" can pass as an option)."""
    ok = [i for i in dict.fromkeys(items) if re.fullmatch(recipe.accepts, i) and not i.startswith("-")]
    return ("sh", "-c", recipe.script, "sh", *ok), [i for i in items if i not in ok]


def fetched_items(stdout: str) -> list[str]:
    return [rest for kind, _, rest in (ln.partition("\t") for ln in stdout.splitlines()) if kind == "FETCHED"]


def _some(items: list[str]) -> str:
    return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def _clear(ctx: Ctx, row: CacheRow) -> bool:
    from .removal import remove

    try:
        return remove(ctx, row)
    except CliError:
        return False


def _safe_paths(paths: list[str], companions: tuple[str, ...]) -> list[str]:
    """Relative paths inside the cache only (a check's output is never trusted to leave it)."""
    out = []
    for p in paths:
        norm = posixpath.normpath(p)
        if norm.startswith(("/", "..")) or norm == ".":
            continue
        out += [norm, *(norm + c for c in companions if not norm.endswith(c))]
        out += [norm[: -len(c)] for c in companions if norm.endswith(c)]
    return list(dict.fromkeys(out))


def _run(ctx: Ctx, row: CacheRow, image: str, argv: tuple[str, ...], *, readonly: bool, user: str = "0:0",
         network: str = "none", env: tuple[tuple[str, str], ...] = ()):
    """One throwaway container; only the re-fetch passes network="host" (never a bridge)."""
    mgr = ctx.config.manager(row.manager)
    target = mgr.cache_path if mgr else f"/dockcache/{row.manager}"
    kind = "bind" if row.kind == "bind" else "volume"
    mount = f"type={kind},source={row.name},target={target}" + (",readonly" if readonly else "")
    pairs = [(var, tmpl.replace("{cache}", target)) for var, tmpl in (mgr.env if mgr else ())] + list(env)
    flags = [x for var, value in pairs for x in ("-e", f"{var}={value}")]
    return ctx.docker("run", "--rm", "--network", network, "--pull", "never", "--label", LABEL,
                      "--user", user, "--mount", mount, "-e", f"CACHE={target}", *flags,
                      "--entrypoint", "sh", image, "-c", OWNER_PREFIX, "sh", *argv, timeout=3600)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def _human(results: list[Outcome], rows: list[CacheRow]) -> str:
    if not results:
        return "no run caches to verify"
    sizes = {r.name: r.size for r in rows}
    lines = []
    for o in results:
        head = f"{o.status.upper():9} {o.name} ({o.manager}, {human_size(sizes.get(o.name))})"
        head += f": {o.checked} entries checked with {o.image}" if o.checked is not None else ""
        lines.append(head)
        lines += [f"    broken: {b['path']}: {b['why']}" for b in o.broken[:20]]
        lines += [f"    … and {len(o.broken) - 20} more"] if len(o.broken) > 20 else []
        lines += [f"    removed: {p}" for p in o.repaired[:20]]
        lines += [f"    re-fetched: {i}" for i in o.refetched[:20]]
        lines += [f"    {o.manager}: {ln}" for ln in o.tool_output]
        lines += [f"    {o.reason}"] if o.reason else []
    if any(o.status == "broken" for o in results):
        lines.append("run `dockcache cache verify --repair` to remove the broken entries")
    return "\n".join(lines)
