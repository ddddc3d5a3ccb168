"""Every manager in the table, proven against its real registry on two daemons.

Each proof is the tool's own behaviour: a cold run on daemon A with the network (through
`--network host`), then a fresh container on daemon B (another "session": caches in bind
mode, host dirs under a private bind_root) that works offline only because dockcache gave
it the cache, or whose compile is a hit by the tool's own counters; and the same second
run with DOCKCACHE_DISABLE=1 as the control, which must fail (or miss). Registries these
machines can't reach (RubyGems, Packagist, NuGet) are replaced by a source the cold container
serves itself on its loopback, gone before the warm run. `pytest -m engine -k NAME` runs
one manager's proof; docs/run.md's managers table lists them (docs/manager_proofs.toml).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.helpers import GOTOOLS, ok, shim, write_json

pytestmark = pytest.mark.engine

JVM = "dockcache-test/jvmtools:latest"
CTOOLS = "dockcache-test/ctools:latest"
CARGONEW = "dockcache-test/cargonew:latest"
SCRIPT = "dockcache-test/scripttools:latest"
WEB = "dockcache-test/webtools:latest"
BERRY = "/opt/berry/node_modules/@yarnpkg/cli-dist/bin/yarn.js"
DISABLED = {"DOCKCACHE_DISABLE": "1"}


@dataclass
class Sessions:
    """bin/docker on daemon A (cold) and daemon B (warm), one bind_root between them."""

    a: dict
    b: dict
    user: tuple[str, ...] = ()  # ("--user", UID:GID, "-e", "HOME=…") for a non-root container

    def run(self, env, image, proj, script, network="none", extra=None):
        if self.user:  # the project is the test's: any container user may write it
            subprocess.run(["chmod", "-R", "a+rwX", str(proj)], check=True)
        argv = ["run", "--rm", "--network", network, *self.user, "-v", f"{proj}:/app", "-w", "/app",
                image, "sh", "-c", script]
        return shim(env, *argv, extra=extra, timeout=900)

    def cold(self, image, proj, script, network="host"):
        return ok(self.run(self.a, image, proj, script, network))

    def warm(self, image, proj, script, network="none"):
        return ok(self.run(self.b, image, proj, script, network))

    def control(self, image, proj, script, network="none"):
        return self.run(self.b, image, proj, script, network, extra=DISABLED)

    def offline_only_with_cache(self, image, proj, script, network="none"):
        """The warm run on B succeeds; the same run without dockcache fails."""
        warm = self.warm(image, proj, script, network)
        control = self.control(image, proj, script, network)
        assert control.returncode != 0, f"control passed without the cache:\n{control.stdout}{control.stderr}"
        return warm


@pytest.fixture
def two(shim_env, engines, tmp_path, request):
    env = {**shim_env, "DOCKCACHE_MODE": "bind", "DOCKCACHE_BIND_ROOT": str(tmp_path / "caches")}
    user = USERS[getattr(request, "param", "root")]
    return Sessions(env, {**env, "DOCKER_HOST": engines["b"].host}, user)


# A non-root container user (no passwd entry; HOME set, as without one it is "/" and the
# tools fail with or without dockcache) gets caches it can write, on both daemons.
USERS = {"root": (), "uid1000": ("--user", "1000:1000", "-e", "HOME=/tmp")}
AS_ROOT_AND_NON_ROOT = pytest.mark.parametrize("two", list(USERS), indirect=True)


def project(tmp_path, name="app", files=None):
    proj = tmp_path / name
    proj.mkdir()
    for rel, text in (files or {}).items():
        (proj / rel).parent.mkdir(parents=True, exist_ok=True)
        (proj / rel).write_text(text)
    proj.chmod(0o777)
    return proj


NODE_DEPS = {"name": "app", "version": "1.0.0", "private": True,
             "dependencies": {"is-number": "7.0.0", "left-pad": "1.3.0"}}


# ---------------------------------------------------------------- JavaScript

DEVTOOLS = "dockcache-test/devtools:latest"


def test_npm_ci_offline_on_another_daemon(two, tmp_path):
    proj = project(tmp_path)
    write_json(proj / "package.json", NODE_DEPS)
    two.cold(DEVTOOLS, proj, "npm install --no-audit --no-fund")
    warm = two.offline_only_with_cache(DEVTOOLS, proj, "rm -rf node_modules && npm ci --offline --no-audit --no-fund")
    assert "added 2 packages" in warm.stdout


def test_yarn1_offline_on_another_daemon(two, tmp_path):
    proj = project(tmp_path)
    write_json(proj / "package.json", NODE_DEPS)
    two.cold(DEVTOOLS, proj, "yarn install --non-interactive")
    assert "__metadata" not in (proj / "yarn.lock").read_text()
    two.offline_only_with_cache(DEVTOOLS, proj, "rm -rf node_modules && "
                                "yarn install --offline --frozen-lockfile --non-interactive")

def test_pnpm_store_offline_on_another_daemon(two, tmp_path):
    proj = project(tmp_path)
    write_json(proj / "package.json", NODE_DEPS)
    two.cold(DEVTOOLS, proj, "pnpm install")
    two.offline_only_with_cache(DEVTOOLS, proj,
                                "rm -rf node_modules && pnpm install --offline --frozen-lockfile")


def test_yarn_berry_global_cache_offline_on_another_daemon(two, tmp_path):
    proj = project(tmp_path, files={".yarnrc.yml": f"yarnPath: {BERRY}\nnodeLinker: node-modules\n"
                                    "enableTelemetry: false\n"})
    write_json(proj / "package.json", NODE_DEPS)
    two.cold(SCRIPT, proj, "yarn install")
    assert "__metadata" in (proj / "yarn.lock").read_text()
    assert not (proj / ".yarn" / "cache").exists()  # the global cache took the archives
    warm = two.offline_only_with_cache(SCRIPT, proj, "rm -rf node_modules && yarn install --immutable && "
                                       "node -e \"require('is-number')\" && yarn --version")
    assert warm.stdout.strip().splitlines()[-1].startswith("4.")


@AS_ROOT_AND_NON_ROOT
def test_bun_install_offline_on_another_daemon(two, tmp_path):
    proj = project(tmp_path)
    write_json(proj / "package.json", NODE_DEPS)
    two.cold(SCRIPT, proj, "bun install")
    two.offline_only_with_cache(SCRIPT, proj, "rm -rf node_modules && bun install --frozen-lockfile && "
                                "test -f node_modules/is-number/package.json")


@AS_ROOT_AND_NON_ROOT
def test_deno_npm_specifier_cached_only_on_another_daemon(two, tmp_path):
    proj = project(tmp_path, files={"main.ts": 'import isNumber from "npm:is-number@7.0.0";\n'
                                    'console.log("is-number", isNumber(5));\n'})
    two.cold(SCRIPT, proj, "deno run main.ts")
    warm = two.offline_only_with_cache(SCRIPT, proj, "deno run --cached-only main.ts")
    assert "is-number true" in warm.stdout


# ---------------------------------------------------------------- Python

def test_pip_wheel_built_on_one_daemon_is_used_on_another(two, tmp_path):
    """pip has no offline mode that reads its cache; the proof is the wheel it built."""
    proj = project(tmp_path, files={"requirements.txt": "docopt==0.6.2\n"})  # sdist only
    install = "pip install --break-system-packages --root-user-action=ignore -r requirements.txt 2>&1"
    assert "Building wheel for docopt" in two.cold(DEVTOOLS, proj, install).stdout
    warm = two.warm(DEVTOOLS, proj, install, network="host")
    assert "Using cached docopt-0.6.2-py2.py3-none-any.whl" in warm.stdout and "Building wheel" not in warm.stdout
    control = ok(two.control(DEVTOOLS, proj, install, network="host"))
    assert "Building wheel for docopt" in control.stdout


def test_uv_offline_on_another_daemon(two, tmp_path):
    proj = project(tmp_path, files={"requirements.txt": "six==1.16.0\n", "uv.lock": "version = 1\n"})
    install = ("export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt; uv venv -q /tmp/v && "
               "uv pip install -q --python /tmp/v/bin/python {offline} -r requirements.txt && /tmp/v/bin/python -c 'import six'")
    two.cold(DEVTOOLS, proj, install.format(offline=""))
    two.offline_only_with_cache(DEVTOOLS, proj, install.format(offline="--offline"))


POETRY_PROJECT = """[tool.poetry]
name = "app"
version = "0.1.0"
description = ""
authors = []
package-mode = false

[tool.poetry.dependencies]
python = "^3.11"
six = "1.16.0"

[build-system]
requires = ["poetry-core"]
build-backend = "poetry.core.masonry.api"
"""


@AS_ROOT_AND_NON_ROOT
def test_poetry_artifact_cache_on_another_daemon(two, tmp_path):
    """Poetry 2.1 asks the index for a release's files at install time even with a lock
    file (so no offline install); the proof is that a fresh container on B downloads no
    file: six's wheel comes from the artifact cache. The control downloads it."""
    proj = project(tmp_path, files={"pyproject.toml": POETRY_PROJECT})
    two.cold(SCRIPT, proj, "poetry install --no-interaction")
    install = ("poetry install --no-interaction -vvv 2>&1 && "
               "poetry run python -c 'import six; print(\"six\", six.__version__)'")
    warm = two.warm(SCRIPT, proj, install, network="host")
    assert "six 1.16.0" in warm.stdout and "Installing six (1.16.0)" in warm.stdout
    assert downloads(warm.stdout) == []
    control = ok(two.control(SCRIPT, proj, install, network="host"))
    assert [f for f in downloads(control.stdout) if f.endswith("six-1.16.0-py2.py3-none-any.whl")]


def downloads(verbose: str) -> list[str]:
    """Files Poetry fetched, from urllib3's debug lines ("GET /packages/…/NAME.whl")."""
    return re.findall(r'"GET /packages/\S+/(\S+) HTTP', verbose)


@AS_ROOT_AND_NON_ROOT
def test_poetry_virtualenvs_stay_out_of_the_shared_cache(two, tmp_path):
    """Poetry keeps venvs under its cache dir unless told: a shared cache would hand one
    project's venv (named by project name and its path in the container, /app in every
    container) to another project. dockcache keeps them at Poetry's own default place."""
    proj = project(tmp_path, files={"pyproject.toml": POETRY_PROJECT})
    cp = two.cold(SCRIPT, proj, 'poetry install --no-interaction -q && echo "$HOME" && poetry env info --path')
    home, venv = cp.stdout.strip().splitlines()[-2:]
    assert venv.startswith(f"{home.rstrip('/')}/.cache/pypoetry/virtualenvs/"), venv
    assert not list((tmp_path / "caches").glob("*poetry*/virtualenvs/*"))


# ---------------------------------------------------------------- Go, Rust, C

GO_DEP = "github.com/google/uuid"


@AS_ROOT_AND_NON_ROOT
def test_go_modules_from_the_proxy_offline_with_gocache_hits_on_another_daemon(two, tmp_path):
    proj = project(tmp_path, files={
        "go.mod": f"module app\n\ngo 1.19\n\nrequire {GO_DEP} v1.6.0\n",
        "main.go": f'package main\n\nimport (\n\t"fmt"\n\n\t"{GO_DEP}"\n)\n\n'
                   'func main() { fmt.Println("uuid", len(uuid.NewString())) }\n'})
    build = "export GOFLAGS=-mod=mod; go build -x -o /tmp/app . 2>&1 && /tmp/app"
    cold = two.cold(GOTOOLS, proj, build)
    assert "uuid 36" in cold.stdout and compiles(cold.stdout, GO_DEP)
    warm = two.offline_only_with_cache(GOTOOLS, proj, "export GOPROXY=off; " + build)
    assert "uuid 36" in warm.stdout
    assert not compiles(warm.stdout, GO_DEP)  # GOCACHE had the package: no compile


def compiles(build_log: str, package: str) -> bool:
    return any("/compile " in ln and f"-p {package} " in ln for ln in build_log.splitlines())


@AS_ROOT_AND_NON_ROOT
def test_cargo_crates_sparse_index_offline_on_another_daemon(two, tmp_path):
    proj = project(tmp_path, files={
        "Cargo.toml": '[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n\n'
                      '[dependencies]\nitoa = "=1.0.11"\n',
        "src/main.rs": 'fn main() { println!("itoa {}", itoa::Buffer::new().format(42)); }\n'})
    two.cold(CARGONEW, proj, "cargo --version && cargo build -q && ./target/debug/app")
    index = [p for p in (tmp_path / "caches").glob("*-cargo*/registry/index/*") if p.is_dir()]
    assert index and not [p for p in index if (p / ".git").exists()]  # sparse: no git index
    warm = two.offline_only_with_cache(CARGONEW, proj, "rm -rf target && cargo build -q --offline && ./target/debug/app")
    assert "itoa 42" in warm.stdout


C_SOURCE = '#include <stdio.h>\nint main(void) { printf("hello\\n"); return 0; }\n'


@AS_ROOT_AND_NON_ROOT
def test_ccache_second_compile_is_a_hit_on_another_daemon(two, tmp_path):
    proj = project(tmp_path, files={"hello.c": C_SOURCE})
    compile_ = "ccache -z >/dev/null && ccache gcc -c hello.c -o /tmp/hello.o && ccache --print-stats"
    cold = two.cold(CTOOLS, proj, compile_, network="none")
    assert ccache_hits(cold.stdout) == 0
    assert ccache_hits(two.warm(CTOOLS, proj, compile_).stdout) == 1
    assert ccache_hits(ok(two.control(CTOOLS, proj, compile_)).stdout) == 0


def ccache_hits(stats: str) -> int:
    counts = dict(re.findall(r"^(\w+)\t(\d+)$", stats, re.M))
    return int(counts.get("direct_cache_hit", 0)) + int(counts.get("preprocessed_cache_hit", 0))


@AS_ROOT_AND_NON_ROOT
def test_sccache_second_compile_is_a_hit_on_another_daemon(two, tmp_path):
    proj = project(tmp_path, files={"hello.c": C_SOURCE})
    compile_ = ("sccache gcc -c hello.c -o /tmp/hello.o && sccache --show-stats --stats-format json"
                " && sccache --stop-server >/dev/null")
    cold = two.cold(CTOOLS, proj, compile_, network="none")
    assert sccache_hits(cold.stdout) == 0
    assert sccache_hits(two.warm(CTOOLS, proj, compile_).stdout) == 1
    assert sccache_hits(ok(two.control(CTOOLS, proj, compile_)).stdout) == 0


def test_sccache_as_rustc_wrapper_hits_on_another_daemon(two, tmp_path):
    """The project's .cargo/config.toml names sccache (the table's marker): a crate compiled
    on A is a cache hit in a fresh container on B, by sccache's own stats; with Cargo's
    cache alone (DOCKCACHE_MANAGERS=cargo) the same build is a miss."""
    proj = project(tmp_path, files={
        ".cargo/config.toml": '[build]\nrustc-wrapper = "sccache"\n',
        "Cargo.toml": '[package]\nname = "app"\nversion = "0.1.0"\nedition = "2021"\n\n'
                      '[dependencies]\nitoa = "=1.0.11"\n',
        "src/main.rs": 'fn main() { println!("itoa {}", itoa::Buffer::new().format(7)); }\n'})
    stats = " && sccache --show-stats --stats-format json && sccache --stop-server >/dev/null"
    cold = two.cold(CARGONEW, proj, "cargo build -q && ./target/debug/app" + stats)
    assert sccache_hits(cold.stdout) == 0
    build = "rm -rf target && cargo build -q --offline && ./target/debug/app" + stats
    warm = two.warm(CARGONEW, proj, build)
    assert "itoa 7" in warm.stdout and sccache_hits(warm.stdout) >= 1
    # control: Cargo's cache only (the crate is there offline), sccache's left out: a miss
    control = ok(two.run(two.b, CARGONEW, proj, build, extra={"DOCKCACHE_MANAGERS": "cargo"}))
    assert sccache_hits(control.stdout) == 0


def sccache_hits(out: str) -> int:
    stats = json.loads(out[out.index("{"):out.rindex("}") + 1])
    return sum(stats["stats"]["cache_hits"]["counts"].values())


# ---------------------------------------------------------------- JVM

POM = """<project>
  <modelVersion>4.0.0</modelVersion>
  <groupId>app</groupId><artifactId>app</artifactId><version>1.0</version>
  <properties>
    <maven.compiler.source>17</maven.compiler.source><maven.compiler.target>17</maven.compiler.target>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
  <dependencies>
    <dependency><groupId>org.apache.commons</groupId><artifactId>commons-lang3</artifactId><version>3.17.0</version></dependency>
  </dependencies>
</project>
"""
JAVA_MAIN = ("package app;\npublic class Main { public static void main(String[] a) {"
             " System.out.println(org.apache.commons.lang3.StringUtils.capitalize(\"maven\")); } }\n")


@AS_ROOT_AND_NON_ROOT
def test_maven_offline_build_on_another_daemon(two, tmp_path):
    proj = project(tmp_path, files={"pom.xml": POM, "src/main/java/app/Main.java": JAVA_MAIN})
    two.cold(JVM, proj, "mvn -B -q compile")
    two.offline_only_with_cache(JVM, proj, "rm -rf target && mvn -B -o -q compile && test -f target/classes/app/Main.class")


def test_maven_image_with_its_own_maven_opts_still_uses_the_cache(two, engines, tmp_path):
    """An image's MAVEN_OPTS (-Xmx…) keeps its options and gets the repository appended;
    before, dockcache left it alone and mounted a cache Maven never read."""
    image = f"{engines['a'].prefix}/jvm-opts:1"
    ctx = project(tmp_path, "img", files={"Dockerfile": f"FROM {JVM}\nENV MAVEN_OPTS=-Xmx256m\n"})
    for eng in (engines["a"], engines["b"]):
        eng.images.append(image)
        eng.docker("build", "--network", "none", "-q", "-t", image, str(ctx))
    proj = project(tmp_path, files={"pom.xml": POM, "src/main/java/app/Main.java": JAVA_MAIN})
    two.cold(image, proj, "mvn -B -q compile")
    two.offline_only_with_cache(image, proj, 'echo "$MAVEN_OPTS" && rm -rf target && mvn -B -o -q compile')


GRADLE_BUILD = """apply plugin: 'java'
repositories { mavenCentral() }
dependencies { compile 'org.apache.commons:commons-lang3:3.17.0' }
"""


def test_gradle_offline_build_on_another_daemon(two, tmp_path):
    proj = project(tmp_path, files={"build.gradle": GRADLE_BUILD, "settings.gradle": "rootProject.name = 'app'\n",
                                    "src/main/java/app/Main.java": JAVA_MAIN})
    gradle = "gradle --no-daemon -q compileJava"
    two.cold(JVM, proj, gradle)
    two.offline_only_with_cache(JVM, proj, f"rm -rf build .gradle && {gradle} --offline && "
                                "test -f build/classes/java/main/app/Main.class")


# ---------------------------------------------------------------- registries not reachable here

SERVE = "python3 -m http.server --bind 127.0.0.1 {port} -d {dir} >/dev/null 2>&1 & sleep 1; "

GEMSPEC = """Gem::Specification.new do |s|
  s.name = "dcprobe"; s.version = "1.0.0"; s.summary = "probe"; s.authors = ["t"]
  s.files = ["lib/dcprobe.rb"]; s.license = "MIT"
end
"""


def test_bundler_gem_from_the_cache_on_another_daemon(two, tmp_path):
    """The cold container builds a gem, indexes it into the project and serves it on its own
    loopback. Bundler 2.3 must read the index from its source even with `--local` (which
    reads only GEM_HOME's and vendor/cache's gems), so the warm run on B serves the index
    alone, with the gem removed: only the global gem cache in BUNDLE_USER_CACHE has it."""
    proj = project(tmp_path, files={
        "gemsrc/dcprobe.gemspec": GEMSPEC, "gemsrc/lib/dcprobe.rb": 'module Dcprobe; HI = "hello gem"; end\n',
        "Gemfile": 'source "http://127.0.0.1:8808"\ngem "dcprobe", "1.0.0"\n'})
    make = ("mkdir -p repo/gems && cd gemsrc && gem build -q dcprobe.gemspec && mv dcprobe-1.0.0.gem ../repo/gems/"
            " && cd .. && gem generate_index -q -d repo && ")
    serve = SERVE.format(port=8808, dir="repo")
    two.cold(WEB, proj, make + serve + "bundle install", network="none")
    shutil.rmtree(proj / "repo" / "gems")  # the source keeps its index, not the gem
    warm = two.offline_only_with_cache(WEB, proj, serve + "bundle install && "
                                       "bundle exec ruby -e 'require \"dcprobe\"; puts Dcprobe::HI'")
    assert "hello gem" in warm.stdout


def composer_repo(root, port):
    """A Composer repository of one package (metadata + zip dist), served by the cold run."""
    root.mkdir()
    with zipfile.ZipFile(root / "probe-1.0.0.zip", "w") as z:
        z.writestr("probe/src/Probe.php", "<?php\nnamespace Dc;\nclass Probe { const HI = 'hello composer'; }\n")
        z.writestr("probe/composer.json", json.dumps({"name": "dc/probe", "autoload": {"psr-4": {"Dc\\": "src/"}}}))
    meta = {"name": "dc/probe", "version": "1.0.0", "autoload": {"psr-4": {"Dc\\": "src/"}},
            "dist": {"type": "zip", "url": f"http://127.0.0.1:{port}/probe-1.0.0.zip"}}
    write_json(root / "packages.json", {"packages": {"dc/probe": {"1.0.0": meta}}})


@AS_ROOT_AND_NON_ROOT
def test_composer_local_repository_then_offline_on_another_daemon(two, tmp_path):
    proj = project(tmp_path)
    composer_repo(proj / "repo", 8809)
    write_json(proj / "composer.json", {
        "require": {"dc/probe": "1.0.0"}, "config": {"secure-http": False},
        "repositories": [{"type": "composer", "url": "http://127.0.0.1:8809"}, {"packagist.org": False}]})
    two.cold(WEB, proj, SERVE.format(port=8809, dir="repo") + "composer install --no-interaction", network="none")
    shutil.rmtree(proj / "repo")  # the warm run has only the cache
    run = ("rm -rf vendor && composer install --no-interaction && "
           "php -r 'require \"vendor/autoload.php\"; echo Dc\\Probe::HI, PHP_EOL;'")
    assert "hello composer" in two.offline_only_with_cache(WEB, proj, run).stdout


NUSPEC = """<?xml version="1.0"?>
<package><metadata><id>DcProbe</id><version>1.0.0</version><authors>t</authors>
<description>probe</description></metadata>
<files><file src="probe.txt" target="content" /></files></package>
"""


@AS_ROOT_AND_NON_ROOT
def test_nuget_http_feed_then_offline_on_another_daemon(two, tmp_path):
    """Debian's NuGet 2.8 (mono; no dotnet SDK is installable here): a package packed and
    served as a v2 feed by the cold container on its loopback; offline on B from the
    machine cache (NuGetCachePath: NuGet 2 reads neither NUGET_PACKAGES nor the HTTP cache)."""
    proj = project(tmp_path, files={"app.csproj": "<Project />\n", "pkg/DcProbe.nuspec": NUSPEC,
                                    "pkg/probe.txt": "hello nuget\n"})
    shutil.copy(Path(__file__).with_name("nuget_feed.py"), proj / "nuget_feed.py")
    install = ("nuget install DcProbe -Version 1.0.0 -OutputDirectory /tmp/pk -NonInteractive "
               "-Source http://127.0.0.1:8810/api/v2/")
    serve = "(python3 nuget_feed.py feed 8810 &) ; sleep 1; "
    pack = "mkdir -p feed && nuget pack pkg/DcProbe.nuspec -OutputDirectory feed -NonInteractive && "
    two.cold(WEB, proj, pack + serve + install, network="none")
    shutil.rmtree(proj / "feed")
    warm = two.offline_only_with_cache(WEB, proj, install + " && cat /tmp/pk/DcProbe.1.0.0/content/probe.txt")
    assert "hello nuget" in warm.stdout
