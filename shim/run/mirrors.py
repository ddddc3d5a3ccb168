"""Package mirrors: point each detected tool at the team's pull-through proxy.

`[mirrors]` in config names one URL per ecosystem; the managers table says which
variables (or which config file) make each tool use it. A tool that reads its mirror
only from a file (cargo's source replacement, Maven's settings.xml) gets a generated,
read-only file; so does the private CA bundle. Files are bind mounts from the state
dir, so they are only added when the engine runs on this host. Pure: no I/O here.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from shim.core.records import dataclass

from shim.core.managers import BY_NAME, Manager
from shim.core.state import short_hash

MIRROR_ROOT = "/dockcache/mirrors"  # generated files, read-only
CARGO_TARGET = "/.cargo/config.toml"  # cargo reads /.cargo/ for any working dir, below the project's own
CA_NAME = "ca.pem"


@dataclass(frozen=True)
class MirrorPlan:
    env: tuple[tuple[str, str, str], ...] = ()  # (manager, VAR, value)
    files: tuple[tuple[str, bytes], ...] = ()  # (name in host_dir, content)
    host_dir: str | None = None
    binds: tuple[tuple[str, str], ...] = ()  # (host path, container path), read-only
    reasons: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    def tokens(self) -> tuple[str, ...]:
        out: list[str] = []
        for src, dst in self.binds:
            out += ["-v", f"{src}:{dst}:ro"]
        for _mgr, var, value in self.env:
            out += ["-e", f"{var}={value}"]
        return tuple(out)


def plan_mirrors(managers: Sequence[str], urls: dict[str, str], *, user_env: set[str],
                 image_env: dict[str, str], taken: Sequence[str], local_engine: bool,
                 state_root: str, ca_pem: bytes | None) -> MirrorPlan:
    """Variables and files for the detected `managers`; nothing the user or image set."""
    env, files, skipped, reasons = [], {}, [], []
    for name in dict.fromkeys(managers):
        mgr = BY_NAME.get(name)
        url = urls.get(mgr.mirror, "") if mgr else ""
        if not url:
            continue
        why = _blocker(mgr, user_env, image_env)
        if why:
            skipped.append((f"{name} mirror", why))
            continue
        taken_vars = {v for _m, v, _x in env} | set(user_env) | set(image_env)
        env += [(name, var, value) for var, value in _env_for(mgr, url) if var not in taken_vars]
        if mgr.mirror_file:
            files.update(_file_for(mgr, url))
        reasons.append(f"{name} downloads through the {mgr.mirror} mirror {url}")
    if ca_pem and env:
        files[CA_NAME] = ca_pem
        env += _ca_env(managers, user_env, image_env)
    return _with_files(MirrorPlan(tuple(env), reasons=tuple(reasons), skipped=tuple(skipped)),
                       files, taken, local_engine, state_root)


def _blocker(mgr: Manager, user_env: set[str], image_env: dict[str, str]) -> str | None:
    fold = (lambda s: s.lower()) if mgr.case_insensitive_vars else (lambda s: s)
    # Only the variables that name the registry decide; a helper like PIP_TRUSTED_HOST
    # set for another host must not turn the mirror off (it is just not overridden).
    mine = {fold(v) for v, t in mgr.mirror_env if "{url}" in t}
    mine |= {"MAVEN_ARGS"} if mgr.mirror_file == "maven" else set()
    for where, names in (("you set", user_env), ("the image sets", set(image_env))):
        hit = sorted(n for n in names if fold(n) in mine)
        if hit:
            return f"{where} {hit[0]}: that registry wins"
    return None


def _env_for(mgr: Manager, url: str) -> list[tuple[str, str]]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    insecure = parts.netloc if parts.scheme == "http" else ""
    out = [(var, tmpl.replace("{url}", url).replace("{insecure_host}", insecure))
           for var, tmpl in mgr.mirror_env]
    if mgr.mirror_file == "maven":
        out.append(("MAVEN_ARGS", f"--global-settings {MIRROR_ROOT}/maven-settings.xml"))
    return [(var, value) for var, value in out if value]


def _file_for(mgr: Manager, url: str) -> dict[str, bytes]:
    if mgr.mirror_file == "cargo":
        text = ('[source.crates-io]\nreplace-with = "dockcache-mirror"\n\n'
                f'[source.dockcache-mirror]\nregistry = "{url}"\n')
        return {"cargo-config.toml": text.encode()}
    from xml.sax.saxutils import escape  # pulls in urllib.request: only when Maven needs it

    text = ('<settings xmlns="http://maven.apache.org/SETTINGS/1.0.0">\n  <mirrors>\n    <mirror>\n'
            '      <id>dockcache-mirror</id>\n      <mirrorOf>*</mirrorOf>\n'
            f'      <url>{escape(url)}</url>\n    </mirror>\n  </mirrors>\n</settings>\n')
    return {"maven-settings.xml": text.encode()}


def _ca_env(managers: Sequence[str], user_env: set[str], image_env: dict[str, str]) -> list:
    out, seen = [], set()
    for name in managers:
        mgr = BY_NAME.get(name)
        for var in (mgr.ca_env if mgr else ()):
            if var not in seen and var not in user_env and var not in image_env:
                seen.add(var)
                out.append((name, var, f"{MIRROR_ROOT}/{CA_NAME}"))
    return out


def _with_files(plan: MirrorPlan, files: dict[str, bytes], taken: Sequence[str],
                local_engine: bool, state_root: str) -> MirrorPlan:
    """Add the read-only mounts for generated files, or drop what needs them."""
    if not files:
        return plan
    targets = [MIRROR_ROOT] + ([CARGO_TARGET] if "cargo-config.toml" in files else [])
    clash = next((t for t in targets for u in taken if _overlaps(u, t)), None)
    why = ("the engine is not on this host: generated files cannot be mounted" if not local_engine
           else f"your mount overlaps {clash}" if clash else None)
    if why:
        env = tuple(e for e in plan.env if MIRROR_ROOT + "/" not in e[2])
        lost = sorted({n for n in files})
        return MirrorPlan(env, (), None, (), plan.reasons,
                          plan.skipped + tuple((f"mirror file {n}", why) for n in lost))
    digest = short_hash("\0".join(f"{n}={short_hash(c.decode('latin-1'), 16)}" for n, c in sorted(files.items())), 16)
    host_dir = posixpath.join(state_root, "mirrors", digest)
    binds = [(host_dir, MIRROR_ROOT)]
    if "cargo-config.toml" in files:
        binds.append((posixpath.join(host_dir, "cargo-config.toml"), CARGO_TARGET))
    return MirrorPlan(plan.env, tuple(sorted(files.items())), host_dir, tuple(binds),
                      plan.reasons + (f"mirror files in {host_dir}",), plan.skipped)


def _overlaps(a: str, b: str) -> bool:
    a, b = posixpath.normpath(a), posixpath.normpath(b)
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")
