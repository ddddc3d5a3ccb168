"""The package managers dockcache knows, as data.

Each entry says where its cache goes in the container, which variables point the tool
there (a mount the tool is not told about is never read: ../shared/MANAGERS.md), how a
project reveals it, how to use it offline and whether sharing it needs care. Code never
branches on a manager's name; adding one means adding a row here.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from shim.core.records import dataclass, field

MOUNT_ROOT = "/dockcache"  # where our volumes land unless the image configured a location


@dataclass(frozen=True)
class Marker:
    """A file in a project root that reveals a manager (glob, optional content test)."""

    glob: str
    contains: str | None = None
    lacks: str | None = None
    strong: bool = True  # a weak marker (package.json) yields to more specific tools


@dataclass(frozen=True)
class Manager:
    name: str
    title: str
    env: tuple[tuple[str, str], ...]  # VAR -> value; "{cache}" is the mount path
    markers: tuple[Marker, ...] = ()
    commands: tuple[str, ...] = ()  # executables that reveal it in a container command
    offline: str = ""
    sharing: str = "safe"  # "safe" | "care": concurrent containers may conflict (see note)
    note: str = ""
    abi_sensitive: bool = False  # holds compiled artefacts tied to the image's platform
    user_vars: tuple[str, ...] = ()  # any of these set by the user = user manages the cache
    disable_vars: tuple[str, ...] = ()  # image/user turned the cache off: respect it
    image_home: str | None = None  # var whose image value already hosts the cache dirs
    home_subdirs: tuple[str, ...] = ()  # dirs under image_home to mount when it is set
    yields_to: tuple[str, ...] = ()  # drop a weak detection when one of these is found
    case_insensitive_vars: bool = False  # npm reads npm_config_* in any case
    ro_env: tuple[tuple[str, str], ...] = ()  # variables for using a read-only cache, if the tool can
    mirror: str = ""  # which [mirrors] entry this tool downloads through
    mirror_env: tuple[tuple[str, str], ...] = ()  # VAR -> value; "{url}" is the mirror URL
    mirror_file: str = ""  # a config file the tool reads its mirror from (see shim/run/mirrors.py)
    ca_env: tuple[str, ...] = ()  # variables naming a CA bundle file the tool trusts
    default_dirs: tuple[str, ...] = ()  # where the tool caches unless told: relative to ~, or absolute
    option_vars: tuple[str, ...] = ()  # env vars holding an option list: ours is appended to the image's
    path: str = ""  # the cache's place in the container, when not MOUNT_ROOT/name ([caches.NAME] path)
    always: bool = False  # a [caches.NAME] with no markers or commands: every container gets it

    @property
    def cache_path(self) -> str:
        return self.path or f"{MOUNT_ROOT}/{self.name}"

    def all_user_vars(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.user_vars + tuple(v for v, _ in self.env)))


def _m(*globs: str, strong: bool = True) -> tuple[Marker, ...]:
    return tuple(Marker(g, strong=strong) for g in globs)


MANAGERS: tuple[Manager, ...] = (
    Manager(
        "npm", "npm", (("npm_config_cache", "{cache}"),),
        markers=_m("package-lock.json", "npm-shrinkwrap.json") + _m("package.json", strong=False),
        commands=("npm", "npx"), offline="--offline / --prefer-offline",
        sharing="care", note="concurrent writers can race (npm/cli#1484); content is verified",
        yields_to=("yarn", "yarn-berry", "pnpm", "bun"), case_insensitive_vars=True,
        mirror="npm", mirror_env=(("npm_config_registry", "{url}"),), ca_env=("NODE_EXTRA_CA_CERTS",),
        default_dirs=('.npm',)
    ),
    Manager(
        "yarn", "Yarn 1", (("YARN_CACHE_FOLDER", "{cache}"),),
        markers=(Marker("yarn.lock", lacks="__metadata"),), commands=("yarn",),
        offline="--offline (with an offline mirror)", sharing="care",
        note="not safe for concurrent installs; use --mutex file (yarnpkg/yarn#683)",
        mirror="npm", mirror_env=(("YARN_REGISTRY", "{url}"), ("npm_config_registry", "{url}")),
        ca_env=("NODE_EXTRA_CA_CERTS",),
        default_dirs=('.cache/yarn', '/usr/local/share/.cache/yarn')
    ),
    Manager(
        "yarn-berry", "Yarn 2+",
        (("YARN_ENABLE_GLOBAL_CACHE", "true"), ("YARN_GLOBAL_FOLDER", "{cache}")),
        markers=(Marker("yarn.lock", contains="__metadata"), Marker(".yarnrc.yml")),
        offline="none needed with yarn.lock (enableOfflineMode)", note="YARN_CACHE_FOLDER is ignored by 4.x (yarnpkg/berry#6302)",
        mirror="npm", mirror_env=(("YARN_NPM_REGISTRY_SERVER", "{url}"),), ca_env=("NODE_EXTRA_CA_CERTS",),
        default_dirs=('.yarn/berry',)
    ),
    Manager(
        "pnpm", "pnpm",
        (("npm_config_store_dir", "{cache}/store"), ("npm_config_cache_dir", "{cache}/metadata")),
        markers=_m("pnpm-lock.yaml", "pnpm-workspace.yaml"), commands=("pnpm", "pnpx"),
        offline="--offline / --prefer-offline", case_insensitive_vars=True,
        note="copies instead of hard-linking across the volume boundary (pnpm/pnpm.io#250)",
        mirror="npm", mirror_env=(("npm_config_registry", "{url}"),), ca_env=("NODE_EXTRA_CA_CERTS",),
        default_dirs=('.local/share/pnpm/store', '.pnpm-store')
    ),
    Manager(
        "pip", "pip", (("PIP_CACHE_DIR", "{cache}"),),
        markers=_m("requirements*.txt", "setup.py", "setup.cfg", "Pipfile", "Pipfile.lock")
        + _m("pyproject.toml", strong=False),
        commands=("pip", "pip3"), offline="--no-index --find-links",
        note="pip disables a cache dir its user does not own (pypa/pip#3596)",
        abi_sensitive=True, disable_vars=("PIP_NO_CACHE_DIR",), yields_to=("uv", "poetry"),
        mirror="pypi", mirror_env=(("PIP_INDEX_URL", "{url}"), ("PIP_TRUSTED_HOST", "{insecure_host}")),
        ca_env=("PIP_CERT",),
        default_dirs=('.cache/pip',)
    ),
    Manager(
        "uv", "uv", (("UV_CACHE_DIR", "{cache}"), ("UV_LINK_MODE", "copy")),
        markers=_m("uv.lock"), commands=("uv", "uvx"), offline="--offline / UV_OFFLINE=1",
        abi_sensitive=True, disable_vars=("UV_NO_CACHE",), user_vars=("UV_CACHE_DIR",),
        mirror="pypi", mirror_env=(("UV_DEFAULT_INDEX", "{url}"),), ca_env=("SSL_CERT_FILE",),
        default_dirs=('.cache/uv',)
    ),
    Manager(
        # Poetry keeps virtualenvs under its cache dir, named by project name and path
        # (/app in every container): in a shared cache one project would get another's
        # venv, and an image's prebuilt venv would vanish. They stay at Poetry's default.
        "poetry", "Poetry",
        (("POETRY_CACHE_DIR", "{cache}"), ("POETRY_VIRTUALENVS_PATH", "~/.cache/pypoetry/virtualenvs")),
        markers=(Marker("poetry.lock"), Marker("pyproject.toml", contains="[tool.poetry]")),
        commands=("poetry",), abi_sensitive=True,
        default_dirs=('.cache/pypoetry',)
    ),
    Manager(
        "cargo", "Cargo", (("CARGO_HOME", "{cache}"),),
        markers=_m("Cargo.toml", "Cargo.lock"), commands=("cargo",),
        offline="--offline / CARGO_NET_OFFLINE=true", sharing="care",
        note="the package lock lives in CARGO_HOME; sharing only registry/ races (rust-lang/cargo#11376)",
        image_home="CARGO_HOME", home_subdirs=("registry", "git"),
        mirror="cargo", mirror_file="cargo", ca_env=("CARGO_HTTP_CAINFO",),
        default_dirs=('.cargo', '.cargo/registry', '/usr/local/cargo', '/usr/local/cargo/registry')
    ),
    Manager(
        "go", "Go", (("GOMODCACHE", "{cache}/mod"), ("GOCACHE", "{cache}/build")),
        markers=_m("go.mod", "go.sum", "go.work"), commands=("go",),
        offline="GOPROXY=off GOFLAGS=-mod=mod", abi_sensitive=True,
        mirror="go", mirror_env=(("GOPROXY", "{url}"),), ca_env=("SSL_CERT_FILE",),
        default_dirs=('go/pkg/mod', '.cache/go-build', '/go/pkg/mod')
    ),
    Manager(
        "maven", "Maven", (("MAVEN_OPTS", "-Dmaven.repo.local={cache}/repository"),),
        markers=_m("pom.xml", "mvnw", ".mvn"), commands=("mvn", "mvnw"), offline="-o",
        sharing="care", note="use -Daether.syncContext.named.factory=file-lock for concurrent builds",
        mirror="maven", mirror_file="maven", option_vars=("MAVEN_OPTS",),
        default_dirs=('.m2', '.m2/repository')
    ),
    Manager(
        "gradle", "Gradle", (("GRADLE_USER_HOME", "{cache}"),),
        markers=_m("build.gradle", "build.gradle.kts", "settings.gradle", "settings.gradle.kts", "gradlew"),
        commands=("gradle", "gradlew"), offline="--offline", sharing="care",
        note="not safe across concurrent containers (gradle/gradle#851); GRADLE_RO_DEP_CACHE is",
        ro_env=(("GRADLE_RO_DEP_CACHE", "{cache}/caches"),),
        default_dirs=('.gradle',)
    ),
    Manager(
        "nuget", "NuGet",
        # NuGet 3+ (dotnet) reads the first two; NuGet 2 (nuget.exe on mono) only its
        # machine cache's NuGetCachePath (seen on the engine)
        (("NUGET_PACKAGES", "{cache}/packages"), ("NUGET_HTTP_CACHE_PATH", "{cache}/http"),
         ("NuGetCachePath", "{cache}/v2")),
        markers=_m("*.csproj", "*.fsproj", "*.sln", "packages.lock.json", "NuGet.config", "nuget.config"),
        commands=("dotnet", "nuget"), offline="NuGet 2: the machine cache answers when the feed is unreachable",
        default_dirs=('.nuget/packages',)
    ),
    Manager(
        # BUNDLE_USER_CACHE alone holds only index metadata: downloaded gems go to the
        # container's GEM_HOME unless the global gem cache is on (seen on the engine).
        "bundler", "Bundler", (("BUNDLE_USER_CACHE", "{cache}"), ("BUNDLE_GLOBAL_GEM_CACHE", "true")),
        markers=_m("Gemfile", "Gemfile.lock"), commands=("bundle", "bundler"),
        offline="none: Bundler 2.3 reads the source's index even with --local", abi_sensitive=True,
        default_dirs=('/usr/local/bundle', '.bundle')
    ),
    Manager(
        "composer", "Composer", (("COMPOSER_CACHE_DIR", "{cache}"),),
        markers=_m("composer.json", "composer.lock"), commands=("composer",),
        offline="none needed with composer.lock",
        default_dirs=('.composer', '.cache/composer', '/tmp/cache')
    ),
    Manager(
        "ccache", "ccache", (("CCACHE_DIR", "{cache}"),), commands=("ccache",),
        abi_sensitive=True,
        default_dirs=('.cache/ccache', '.ccache')
    ),
    Manager(
        "sccache", "sccache", (("SCCACHE_DIR", "{cache}"),),
        markers=(Marker(".cargo/config.toml", contains="sccache"),), commands=("sccache",),
        sharing="care", note="one local server at a time (sccache docs)", abi_sensitive=True,
        default_dirs=('.cache/sccache',)
    ),
    Manager(
        "deno", "Deno", (("DENO_DIR", "{cache}"),),
        markers=_m("deno.json", "deno.jsonc", "deno.lock"), commands=("deno",), offline="--cached-only",
        default_dirs=('.cache/deno',)
    ),
    Manager(
        "bun", "Bun", (("BUN_INSTALL_CACHE_DIR", "{cache}"),),
        markers=_m("bun.lock", "bun.lockb", "bunfig.toml"), commands=("bun", "bunx"),
        offline="none needed with bun.lock",
        mirror="npm", mirror_env=(("BUN_CONFIG_REGISTRY", "{url}"),), ca_env=("NODE_EXTRA_CA_CERTS",),
        default_dirs=('.bun/install/cache',)
    ),
)

BY_NAME: dict[str, Manager] = {m.name: m for m in MANAGERS}

# Where each tool keeps its cache on the host (for run.host_caches): (dir under the
# container's cache path, candidates). The first candidate whose variables are all set wins:
# the host's own settings (npm_config_cache, PIP_CACHE_DIR, CARGO_HOME, GOMODCACHE, ...)
# before the tool's defaults on Linux.
HOST_DIRS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "npm": (("", ("$npm_config_cache", "$NPM_CONFIG_CACHE", "~/.npm")),),
    "yarn": (("", ("$YARN_CACHE_FOLDER", "$XDG_CACHE_HOME/yarn", "~/.cache/yarn")),),
    "yarn-berry": (("", ("$YARN_GLOBAL_FOLDER", "~/.yarn/berry")),),
    "pnpm": (("store", ("$npm_config_store_dir", "$PNPM_HOME/store", "$XDG_DATA_HOME/pnpm/store",
                        "~/.local/share/pnpm/store")),
             ("metadata", ("$npm_config_cache_dir", "$XDG_CACHE_HOME/pnpm", "~/.cache/pnpm"))),
    "pip": (("", ("$PIP_CACHE_DIR", "$XDG_CACHE_HOME/pip", "~/.cache/pip")),),
    "uv": (("", ("$UV_CACHE_DIR", "$XDG_CACHE_HOME/uv", "~/.cache/uv")),),
    "poetry": (("", ("$POETRY_CACHE_DIR", "$XDG_CACHE_HOME/pypoetry", "~/.cache/pypoetry")),),
    "cargo": (("registry", ("$CARGO_HOME/registry", "~/.cargo/registry")),
              ("git", ("$CARGO_HOME/git", "~/.cargo/git"))),
    "go": (("mod", ("$GOMODCACHE", "$GOPATH/pkg/mod", "~/go/pkg/mod")),
           ("build", ("$GOCACHE", "$XDG_CACHE_HOME/go-build", "~/.cache/go-build"))),
    "maven": (("repository", ("~/.m2/repository",)),),
    "gradle": (("", ("$GRADLE_USER_HOME", "~/.gradle")),),
    "nuget": (("packages", ("$NUGET_PACKAGES", "~/.nuget/packages")),
              ("http", ("$NUGET_HTTP_CACHE_PATH", "~/.local/share/NuGet/http-cache"))),
    "bundler": (("", ("$BUNDLE_USER_CACHE", "$BUNDLE_USER_HOME/cache", "~/.bundle/cache")),),
    "composer": (("", ("$COMPOSER_CACHE_DIR", "$XDG_CACHE_HOME/composer", "~/.cache/composer")),),
    "ccache": (("", ("$CCACHE_DIR", "$XDG_CACHE_HOME/ccache", "~/.cache/ccache")),),
    "sccache": (("", ("$SCCACHE_DIR", "$XDG_CACHE_HOME/sccache", "~/.cache/sccache")),),
    "deno": (("", ("$DENO_DIR", "$XDG_CACHE_HOME/deno", "~/.cache/deno")),),
    "bun": (("", ("$BUN_INSTALL_CACHE_DIR", "$BUN_INSTALL/install/cache", "~/.bun/install/cache")),),
}


# How a cache's contents are counted the tool's way (`cache stats`): globs relative to the
# cache dir (a manager's sub-volumes, e.g. cargo's registry/ and git/, match their own
# patterns), and the files whose creation is a download and whose reading is a hit; None:
# the counted files themselves. npm's index entries are its requests; its content files are
# what `npm ci` reads from the cache (the index is not consulted when the lockfile has integrity).
ENTRIES: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "npm": (("_cacache/index-v5/*/*/*",), ("_cacache/content-v2/*/*/*/*",)),
    "yarn": (("v*/npm-*",), ("v*/npm-*/node_modules/*/package.json",)),
    "yarn-berry": (("cache/*.zip",), None),
    "pnpm": (("store/v*/files/*/*-index.json", "store/v*/index/*/*"), None),
    "pip": (("wheels/**/*.whl", "http-v2/**/*.body", "http/**/*"), None),
    "uv": (("archive-v0/*", "sdists-v*/*/*"), None),
    "poetry": (("artifacts/**/*.whl", "artifacts/**/*.tar.gz"), None),
    "cargo": (("registry/cache/*/*.crate", "cache/*/*.crate", "git/db/*", "db/*"), None),
    "go": (("mod/cache/download/**/*.zip", "cache/download/**/*.zip"), None),
    "maven": (("repository/**/*.pom", "**/*.pom"), None),
    "gradle": (("caches/modules-2/files-2.1/*/*/*",), None),
    "nuget": (("packages/*/*",), None),
    "bundler": (("**/*.gem",), None),
    "composer": (("files/**/*.zip", "repo/**/*.json"), None),
    "ccache": (("**/*R",), None),
    "sccache": (("*/*/*",), None),
    "deno": (("remote/**/*", "deps/**/*", "npm/*/*/*"), None),
    "bun": (("*@*",), None),
}


# Tools that count their own hits on disk: the command that prints them (run in a throwaway
# container with the cache mounted read-only) and which of its counters are hits / misses.
# sccache keeps its counters in its server's memory, so it has none to read afterwards.
TOOL_COUNTERS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "ccache": (("ccache", "--print-stats"), ("direct_cache_hit", "preprocessed_cache_hit"), ("cache_miss",)),
}


def host_dirs(name: str, environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """(dir under the cache path, absolute host dir) for each of the tool's host caches."""
    out = []
    for sub, candidates in HOST_DIRS.get(name, ()):
        path = next((p for p in map(lambda c: _expand(c, environ), candidates) if p), None)
        if path:
            out.append((sub, path))
    return tuple(out)


def _expand(candidate: str, environ: Mapping[str, str]) -> str | None:
    """'$VAR/rest' or '~/rest' with the host's values; None when a variable is unset or the
    result is not absolute (a relative setting is the tool's business, not a place to mount)."""
    head, _, rest = candidate.partition("/")
    if head == "~":
        base = environ.get("HOME", "")
    elif head.startswith("$"):
        base = environ.get(head[1:], "")
    else:
        return None
    path = posixpath.normpath(posixpath.join(base, rest)) if rest else base
    return path if base.startswith("/") else None


@dataclass(frozen=True)
class CustomCache:
    """A user-defined cache from config: [caches.NAME] path = "...", env = {...}."""

    name: str
    path: str
    env: tuple[tuple[str, str], ...] = field(default=())


# --- Health and size limits (issue #20): data read by shim/cli/verify.py, shim/cli/health.py
# and the run plan. Kept beside the rows rather than in them, so the rows stay one shape.

@dataclass(frozen=True)
class Refetch:
    """How `cache verify --repair` puts back what it removed, so an offline install works again.

    The check names what the tool can fetch a broken entry by: `FETCH<TAB>path<TAB>item`.
    `script` runs with `sh -c SCRIPT sh ITEM...` (the items as arguments, never in the script
    text), the cache writable, as its owner, with the network; it prints `FETCHED<TAB>item`
    per item fetched. Only items matching `accepts` in full ever reach it."""

    script: str
    accepts: str  # a regex; anything else the check says is left alone
    env: tuple[tuple[str, str], ...] = ()  # besides the row's variables


@dataclass(frozen=True)
class Verify:
    """How `dockcache cache verify` checks one manager's cache in a throwaway container.

    `check` runs with the cache mounted read-only at the run flow's path ($CACHE, and the
    row's variables set); it prints `BAD<TAB>path<TAB>why` per broken entry (path relative
    to the cache), `CHECKED<TAB>n`, and `UNAVAILABLE<TAB>what` when the image lacks a tool.
    `repair` is the tool's own repair command (cache writable); empty means dockcache removes
    the BAD paths (with their `companions`: the same path plus each suffix). With `refetch`,
    the check also prints `FETCH<TAB>path<TAB>item` for a broken entry the tool can fetch again."""

    check: tuple[str, ...]  # entrypoint and arguments; exit 126/127 = the image lacks it
    tool: str  # what the image must have, for the message when it does not
    repair: tuple[str, ...] = ()
    companions: tuple[str, ...] = ()
    store_globs: tuple[str, ...] = ()  # content-addressed files: zero length = broken (doctor)
    image: str = ""  # default for verify.image_<name>; used only if the daemon already has it
    refetch: Refetch | None = None  # none: a removed entry comes back with the next online install


# npm: cacache stores content under content-v2/<algo>/<hex digest>; the index names the
# integrity each key needs. This is the checksum `npm cache verify` checks, computed without
# writing: `npm cache verify` itself removes corrupted content and rebuilds the index, so it
# is the repair (it reports "Corrupted content removed: N", exit 0 either way).
_NPM_CHECK = r"""
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const cache = process.env.CACHE, root = path.join(cache, '_cacache'), content = path.join(root, 'content-v2');
const out = (...a) => console.log(a.join('\t'));
function walk(dir, acc) {
  let ents; try { ents = fs.readdirSync(dir, { withFileTypes: true }); } catch (e) { return acc; }
  for (const e of ents) { const p = path.join(dir, e.name); e.isDirectory() ? walk(p, acc) : acc.push(p); }
  return acc;
}
const good = new Set(), broken = new Map(); let n = 0;
for (const f of walk(content, [])) {
  n++;
  const parts = path.relative(content, f).split(path.sep), algo = parts[0], want = parts.slice(1).join('');
  const sri = algo + '-' + Buffer.from(want, 'hex').toString('base64');
  let got = null;
  try { got = crypto.createHash(algo).update(fs.readFileSync(f)).digest('hex'); }
  catch (e) { out('BAD', path.relative(cache, f), 'unreadable (' + e.code + ')'); broken.set(sri, f); continue; }
  if (got !== want) {
    out('BAD', path.relative(cache, f), 'checksum mismatch (' + fs.statSync(f).size + ' bytes)');
    broken.set(sri, f);
  } else good.add(sri);
}
const KEY = 'make-fetch-happen:request-cache:';  // what npm fetched: the key is its URL
for (const f of walk(path.join(root, 'index-v5'), [])) {
  const latest = new Map();
  for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
    try { const e = JSON.parse(line.slice(line.indexOf('\t') + 1)); latest.set(e.key, e); } catch (e) {}
  }
  for (const e of latest.values()) {
    n++;
    const sris = String(e.integrity || '').split(/\s+/).map(i => i.split('?')[0]).filter(Boolean);
    if (sris.length && !sris.some(i => good.has(i)))
      out('BAD', path.relative(cache, f), 'index entry ' + e.key + ' has no intact content');
    for (const i of sris.filter(i => broken.has(i) && String(e.key).startsWith(KEY)))
      out('FETCH', path.relative(cache, broken.get(i)), String(e.key).slice(KEY.length));
  }
}
out('CHECKED', n);
"""

# `npm cache add URL` fetches a tarball into the cache under the same key and integrity;
# its chatter goes to stderr so only our FETCHED lines are on stdout.
_NPM_REFETCH = Refetch(
    """for u; do npm cache add "$u" >&2 && printf 'FETCHED\\t%s\\n' "$u"; done""",
    r"https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9_~%@+-][A-Za-z0-9._~%@+-]*)+\.tgz",
)

# pip has no checksum of its own: wheels (built or downloaded) must be valid zips, http
# cache entries must parse as pip wrote them ("cc=4," + msgpack, via pip's own msgpack).
_PIP_CHECK = r"""
import os, sys, zipfile
root = os.environ["CACHE"]
try:
    from pip._vendor import msgpack
except Exception:
    msgpack = None
n = 0
def bad(p, why): print("BAD", os.path.relpath(p, root), why, sep="\t")
def zip_ok(p):
    try:
        with zipfile.ZipFile(p) as z:
            return z.testzip() is None
    except Exception:
        return False
for d, _, files in os.walk(root):
    for name in files:
        p, n = os.path.join(d, name), n + 1
        try:
            with open(p, "rb") as fh:
                head = fh.read(5)
        except OSError as e:
            bad(p, f"unreadable ({e.strerror})"); continue
        rel = os.path.relpath(p, root).split(os.sep)
        if name.endswith(".whl") and not zip_ok(p):
            bad(p, "not a valid zip (wheel)")
        elif rel[0] in ("http", "http-v2") and name.endswith(".body"):
            if head[:2] == b"PK" and not zip_ok(p):
                bad(p, "downloaded archive is not a valid zip")
        elif rel[0] in ("http", "http-v2"):
            if not head.startswith(b"cc="):
                bad(p, "cache entry pip cannot parse")
            elif msgpack is not None:
                try:
                    with open(p, "rb") as fh:
                        msgpack.loads(fh.read().split(b",", 1)[1], raw=False)
                except Exception:
                    bad(p, "cache entry pip cannot parse")
print("CHECKED", n, sep="\t")
"""

# Go: each module zip in the download cache has its dirhash ("h1:") in a .ziphash beside it;
# the hash is golang.org/x/mod/sumdb/dirhash.Hash1 (`go mod verify` checks the same, but
# needs a module that requires them). A broken zip's path names its module and version
# (cache/download/<module>/@v/<version>.zip, upper case escaped as "!" + lower case).
_GO_CHECK = r"""
import base64, hashlib, os, re, zipfile
root = os.environ["CACHE"]
def unescape(s):
    if re.search(r"![^a-z]|!$|[A-Z]", s):
        return None  # not a path go wrote
    return re.sub(r"!([a-z])", lambda m: m.group(1).upper(), s)
def module_version(rel):
    parts = rel.split(os.sep)
    for i in range(len(parts) - 3, 0, -1):
        if parts[i - 1:i + 1] == ["cache", "download"] and parts[-2] == "@v":
            mod, ver = unescape("/".join(parts[i + 1:-2])), unescape(parts[-1][:-4])
            return f"{mod}@{ver}" if mod and ver else None
    return None
def why_bad(p):
    try:
        with zipfile.ZipFile(p) as z:
            lines = [f"{hashlib.sha256(z.read(i)).hexdigest()}  {i.filename}\n"
                     for i in sorted(z.infolist(), key=lambda i: i.filename)]
    except Exception as e:
        return f"not a valid zip ({type(e).__name__})"
    got = "h1:" + base64.b64encode(hashlib.sha256("".join(lines).encode()).digest()).decode()
    try:
        want = open(p[:-4] + ".ziphash").read().strip()
    except OSError:
        return None  # go writes the hash after the zip; a zip without one is not complete yet
    return None if want == got else f"content hash {got} differs from its .ziphash {want}"
n = 0
for d, _, files in os.walk(root):
    for name in files:
        if not (name.endswith(".zip") and os.sep + "cache" + os.sep + "download" + os.sep in d + os.sep):
            continue
        p, n = os.path.join(d, name), n + 1
        rel, why = os.path.relpath(p, root), why_bad(p)
        if why:
            print("BAD", rel, why, sep="\t")
            fetch = module_version(rel)
            if fetch:
                print("FETCH", rel, fetch, sep="\t")
print("CHECKED", n, sep="\t")
"""

# `go mod download MODULE@VERSION` outside any module (a fresh dir) puts the zip and its
# .ziphash back into GOMODCACHE; -mod=mod overrides an image's GOFLAGS=-mod=vendor, which
# would refuse. HOME: go wants one, and the owner may have none in the image.
_GO_REFETCH = Refetch(
    """cd "$(mktemp -d)" && for m; do go mod download "$m" >&2 && printf 'FETCHED\\t%s\\n' "$m"; done""",
    r"[a-z0-9][A-Za-z0-9._~-]*(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*@v[0-9][0-9A-Za-z.+-]*",
    env=(("GOFLAGS", "-mod=mod"), ("HOME", "/tmp")),
)

# cargo: downloaded .crate files are gzip'd tars (their checksums live in the registry index).
_CARGO_CHECK = r"""
command -v gzip >/dev/null || { printf 'UNAVAILABLE\tgzip\n'; exit 0; }
n=0
for f in $(find "$CACHE" -name '*.crate' -type f); do
  n=$((n+1)); gzip -t "$f" 2>/dev/null || printf 'BAD\t%s\tnot a valid gzip archive\n' "${f#$CACHE/}"
done
printf 'CHECKED\t%s\n' "$n"
"""

# pnpm: its store keeps every file under files/<2 hex>/<rest of the sha512 hex>[-exec], and
# per package an -index.json naming the integrity of each of its files.
_PNPM_CHECK = r"""
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const cache = process.env.CACHE, out = (...a) => console.log(a.join('\t'));
const CONTENT = /[\\/]v\d+[\\/]files[\\/]([0-9a-f]{2})[\\/]([0-9a-f]{126})(-exec)?$/;
function walk(dir, acc) {
  let ents; try { ents = fs.readdirSync(dir, { withFileTypes: true }); } catch (e) { return acc; }
  for (const e of ents) { const p = path.join(dir, e.name); e.isDirectory() ? walk(p, acc) : acc.push(p); }
  return acc;
}
const all = walk(cache, []), good = new Set(); let n = 0;
for (const f of all) {
  const m = CONTENT.exec(f); if (!m) continue; n++;
  let got = null;
  try { got = crypto.createHash('sha512').update(fs.readFileSync(f)).digest('hex'); }
  catch (e) { out('BAD', path.relative(cache, f), 'unreadable (' + e.code + ')'); continue; }
  if (got !== m[1] + m[2]) out('BAD', path.relative(cache, f), 'checksum mismatch (' + fs.statSync(f).size + ' bytes)');
  else good.add(got);
}
for (const f of all.filter(f => f.endsWith('-index.json'))) {
  n++;
  let idx; try { idx = JSON.parse(fs.readFileSync(f, 'utf8')); } catch (e) { out('BAD', path.relative(cache, f), 'index does not parse'); continue; }
  for (const [name, info] of Object.entries(idx.files || {})) {
    const hex = Buffer.from(String(info.integrity || '').replace(/^sha512-/, ''), 'base64').toString('hex');
    if (!good.has(hex)) { out('BAD', path.relative(cache, f), 'file ' + name + ' has no intact content'); break; }
  }
}
out('CHECKED', n);
"""

VERIFY: dict[str, Verify] = {
    "npm": Verify(("node", "-e", _NPM_CHECK), "node", repair=("npm", "cache", "verify"),
                  store_globs=("_cacache/content-v2/**/*",), image="node:lts", refetch=_NPM_REFETCH),
    "pnpm": Verify(("node", "-e", _PNPM_CHECK), "node", store_globs=("**/files/*/*",), image="node:lts"),
    "pip": Verify(("python3", "-c", _PIP_CHECK), "python3", companions=(".body",),
                  store_globs=("wheels/**/*.whl",), image="python:3"),
    "go": Verify(("python3", "-c", _GO_CHECK), "python3", companions=(".ziphash",),
                 store_globs=("mod/cache/download/**/*.zip",), image="golang:latest", refetch=_GO_REFETCH),
    "cargo": Verify(("sh", "-c", _CARGO_CHECK), "sh and gzip",
                    store_globs=("registry/cache/**/*.crate", "cache/**/*.crate"), image="rust:latest"),
}

# Tools with a size limit of their own: managers.<name>.max_size becomes this variable in
# the container (ccache evicts by itself; sccache sizes its local disk cache).
SIZE_ENV: dict[str, str] = {"ccache": "CCACHE_MAXSIZE", "sccache": "SCCACHE_CACHE_SIZE"}


def size_env_value(name: str, limit: int) -> str:
    """The tool's spelling of a byte limit: ccache reads M as 10^6 (its default unit is G),
    sccache reads M as 2^20; rounded down, at least 1."""
    if name == "ccache":
        return f"{max(1, limit // 1000**2)}M"
    return f"{max(1, limit // 1024**2)}M"
