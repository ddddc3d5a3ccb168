"""The package managers dockcache knows, as data.

Each entry says where its cache goes in the container, which variables point the tool
there (a mount the tool is not told about is never read: ../shared/MANAGERS.md), how a
project reveals it, how to use it offline and whether sharing it needs care. Code never
branches on a manager's name; adding one means adding a row here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

    @property
    def cache_path(self) -> str:
        return f"{MOUNT_ROOT}/{self.name}"

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


@dataclass(frozen=True)
class CustomCache:
    """A user-defined cache from config: [caches.NAME] path = "...", env = {...}."""

    name: str
    path: str
    env: tuple[tuple[str, str], ...] = field(default=())
