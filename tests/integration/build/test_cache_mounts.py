"""Through bin/docker: `RUN --mount=type=cache` contents follow the build to a new session.

Every mount id carries a fresh token, so no daemon holds it before the test; each case
has a control, the same build on daemon B without dockcache (another token), which finds
the mount cold. Saves run detached (the default): tests wait for their metrics record.
"""

import json
import re
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shim.build.mounts.store import read_index, unpack
from tests.integration.helpers import GOTOOLS, DEVTOOLS, REPO, keep_previous, shim

pytestmark = pytest.mark.engine
REAL = "/usr/local/bin/docker"

# Expensive only while the mount is empty (the 8 s step, shortened).
WARM_STEP = ("RUN --mount=type=cache,id=m-${TOKEN},target=/cache,uid=1000,gid=1000,mode=0770 "
             "if [ -f /cache/warm ]; then echo MOUNT-WARM; else echo MOUNT-COLD; sleep 4; "
             "echo done > /cache/warm; fi; cat /app.txt")


def project(tmp_path, name="p", step=WARM_STEP, base="dockcache-test/busybox:latest"):
    d = tmp_path / name
    d.mkdir()
    d.joinpath("Dockerfile").write_text(f"FROM {base}\nARG TOKEN\nCOPY app.txt /app.txt\n{step}\n")
    d.joinpath("app.txt").write_text(uuid.uuid4().hex)
    return d, uuid.uuid4().hex[:12]


def edit(ctx: Path, name="app.txt") -> None:
    ctx.joinpath(name).write_text(ctx.joinpath(name).read_text() + "\n// edited " + uuid.uuid4().hex)


def build(env, engine, ctx, tag, token, *extra, network="none"):
    keep_previous(engine, tag)
    engine.images.append(tag)
    return shim(env, "build", "--network", network, "--progress", "plain", "-t", tag,
                "--build-arg", f"TOKEN={token}", *extra, str(ctx), extra={"DOCKER_HOST": engine.host})


def control(engine, ctx, tag, *extra, network="none"):
    """The same build on this daemon without dockcache, with a mount id no daemon has."""
    keep_previous(engine, tag)
    engine.images.append(tag)
    return subprocess.run([REAL, "-H", engine.host, "build", "--network", network, "--progress", "plain",
                           "-t", tag, "--build-arg", f"TOKEN={uuid.uuid4().hex[:12]}", *extra, str(ctx)],
                          capture_output=True, text=True, timeout=900)


def metrics(env) -> list[dict]:
    path = Path(env["DOCKCACHE_STATE_DIR"]) / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def wait_saved(env, count=1, timeout=240.0) -> list[dict]:
    """The detached saves' records, once `count` of them are there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        saves = [m for m in metrics(env) if m.get("kind") == "mount-save"]
        if len(saves) >= count:
            assert all(s["ok"] for s in saves), saves
            return saves
        time.sleep(0.5)
    raise AssertionError(f"no mount save after {timeout} s: {metrics(env)}")


def ok(cp):
    assert cp.returncode == 0, cp.stderr[-3000:]
    return cp.stdout + cp.stderr


def test_a_mount_filled_on_a_is_warm_for_an_edited_build_on_b(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    ctx, token = project(tmp_path)
    tag = f"{a.prefix}/mnt:1"
    assert "MOUNT-COLD" in ok(build(shim_env, a, ctx, tag, token))
    wait_saved(shim_env)
    edit(ctx)
    out = ok(build(shim_env, b, ctx, tag, token))
    assert "MOUNT-WARM" in out and out.count("dockcache:") == 0, out[-2000:]
    assert [m for m in metrics(shim_env) if m.get("kind") == "build"][-1]["mounts_seeded"] == 1
    assert "MOUNT-COLD" in ok(control(b, ctx, f"{a.prefix}/mnt:ctl"))
    # the steady state: B holds it now, the next build seeds nothing
    wait_saved(shim_env, 2)
    edit(ctx)
    assert "MOUNT-WARM" in ok(build(shim_env, b, ctx, tag, token))
    assert [m for m in metrics(shim_env) if m.get("kind") == "build"][-1]["mounts_seeded"] == 0
    # nothing changed: no step ran, so the detached save copies nothing
    wait_saved(shim_env, 3)
    ok(build(shim_env, b, ctx, tag, token))
    assert wait_saved(shim_env, 4)[-1].get("skipped") == "layers unchanged"


def test_a_base_without_tar_is_seeded_by_copying(shim_env, engines, tmp_path):
    """The store keeps mounts packed; a base image that cannot unpack them (no tar) gets
    the tree sent and copied instead, in the same build."""
    a, b = engines["a"], engines["b"]
    base = f"{a.prefix}/notar:1"
    for e in (a, b):  # busybox without its tar, gzip and gunzip applets
        e.images.append(base)
        made = subprocess.run([REAL, "-H", e.host, "build", "--network", "none", "-q", "-t", base, "-"],
                              input="FROM dockcache-test/busybox:latest\nRUN rm /bin/tar /bin/gzip /bin/gunzip\n",
                              capture_output=True, text=True, timeout=300)
        assert made.returncode == 0, made.stderr
    lacks = subprocess.run([REAL, "-H", b.host, "run", "--rm", "--network", "none", base, "tar", "--help"],
                           capture_output=True, text=True, timeout=120)
    assert lacks.returncode != 0  # so the packed seed cannot have served B below
    ctx, token = project(tmp_path, base=base)
    tag = f"{a.prefix}/notar-app:1"
    assert "MOUNT-COLD" in ok(build(shim_env, a, ctx, tag, token))
    (saved,) = wait_saved(shim_env)
    assert saved["bytes"] > 0
    edit(ctx)
    out = ok(build(shim_env, b, ctx, tag, token))
    assert "MOUNT-WARM" in out and out.count("dockcache:") == 0, out[-2000:]
    assert [m for m in metrics(shim_env) if m.get("kind") == "build"][-1]["mounts_seeded"] == 1


def test_a_seeded_mount_keeps_uid_gid_and_mode_for_a_non_root_step(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    step = ("USER 1000:1000\nRUN --mount=type=cache,id=u-${TOKEN},target=/home/u/c,uid=1000,gid=1000,mode=0750 "
            "set -e; cat /app.txt > /home/u/c/$(cat /app.txt | md5sum | cut -c1-8); "
            "echo OWNER=$(stat -c '%u:%g:%a' /home/u/c) FILES=$(ls /home/u/c | wc -l); ls -ln /home/u/c")
    ctx, token = project(tmp_path, step=step)
    tag = f"{a.prefix}/uid:1"
    assert "OWNER=1000:1000:750 FILES=1" in ok(build(shim_env, a, ctx, tag, token))
    wait_saved(shim_env)
    edit(ctx)
    out = ok(build(shim_env, b, ctx, tag, token))
    assert "OWNER=1000:1000:750 FILES=2" in out, out[-2000:]
    assert not re.search(r" 0 +0 .*[0-9a-f]{8}$", out, re.M)  # seeded files belong to the mount's owner
    assert "FILES=1" in ok(control(b, ctx, f"{a.prefix}/uid:ctl"))


def test_compose_build_and_up_build_carry_a_service_mount(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    ctx, token = project(tmp_path, "svc")
    root = tmp_path / f"st{uuid.uuid4().hex[:6]}"
    root.mkdir()
    (root / "compose.yaml").write_text(
        "services:\n  app:\n"
        f"    build: {{context: {ctx}, network: none, args: {{TOKEN: '{token}'}}}}\n"
        "    network_mode: none\n    command: ['true']\n")

    def compose(engine, *args):
        cp = subprocess.run([str(REPO / "bin" / "docker"), "compose", "--progress", "plain", *args],
                            env={**shim_env, "DOCKER_HOST": engine.host}, cwd=root,
                            capture_output=True, text=True, timeout=600)
        subprocess.run([REAL, "-H", engine.host, "compose", "down", "--rmi", "local"], cwd=root, capture_output=True)
        return cp

    assert "MOUNT-COLD" in ok(compose(a, "build"))
    wait_saved(shim_env)
    edit(ctx)
    assert "MOUNT-WARM" in ok(compose(b, "build"))
    wait_saved(shim_env, 2)
    edit(ctx)
    fresh = {**shim_env, "DOCKCACHE_STATE_DIR": str(tmp_path / "state-up")}  # B is new to this state: seeds again
    shim_env.update(fresh)
    assert "MOUNT-WARM" in ok(compose(b, "up", "--build"))
    assert "MOUNT-COLD" in ok(control(b, ctx, f"{a.prefix}/svc:ctl"))


GO_MAIN = 'package main\n\nimport (\n\t"fmt"\n\n\t"github.com/google/uuid"\n\n{imports})\n\nconst edit = "{edit}"\n\n' \
          'func main() {{ fmt.Println(uuid.NewString(), edit{calls}) }}\n'
GO_SUM = ("github.com/google/uuid v1.6.0 h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=\n"
          "github.com/google/uuid v1.6.0/go.mod h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo=\n")
GO_STEP = ("RUN --mount=type=cache,id=gobuild-${TOKEN},target=/root/.cache/go-build "
           "--mount=type=cache,id=gomod-${TOKEN},target=/root/go/pkg/mod "
           "go build -x -o /out/app . 2> /tmp/x; rc=$?; tail -3 /tmp/x; "
           "echo COMPILED=$(grep -c '/compile ' /tmp/x); exit $rc")


def go_project(tmp_path, packages=6, funcs=40):
    """A module with one downloaded dependency and local packages that cost compile time."""
    d = tmp_path / "gomod"
    (d / "lib").mkdir(parents=True)
    imports, calls = "", ""
    for i in range(packages):
        (d / "lib" / f"p{i}").mkdir()
        body = "".join(f"func F{j}(x int) int {{ return x*{j} + {i} }}\n" for j in range(funcs))
        (d / "lib" / f"p{i}" / "p.go").write_text(f"package p{i}\n\n{body}")
        imports += f'\t"example.com/m/lib/p{i}"\n'
        calls += f", p{i}.F1({i})"
    (d / "main.go").write_text(GO_MAIN.format(imports=imports, edit=uuid.uuid4().hex, calls=calls))
    (d / "go.mod").write_text("module example.com/m\n\ngo 1.19\n\nrequire github.com/google/uuid v1.6.0\n")
    (d / "go.sum").write_text(GO_SUM)
    (d / "Dockerfile").write_text(f"FROM {GOTOOLS}\nARG TOKEN\nARG GOPROXY\nWORKDIR /src\n"
                                  f"COPY . .\n{GO_STEP}\n")
    return d, uuid.uuid4().hex[:12]


def go_edit(d: Path) -> None:
    text = (d / "main.go").read_text()
    (d / "main.go").write_text(re.sub(r'const edit = "[0-9a-f]+"', f'const edit = "{uuid.uuid4().hex}"', text))


def compiled(out: str) -> int:
    return int(re.search(r"COMPILED=(\d+)", out).group(1))


def test_go_compile_and_module_caches_follow_to_b_offline(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    d, token = go_project(tmp_path)
    tag = f"{a.prefix}/go:1"
    cold = compiled(ok(build(shim_env, a, d, tag, token, network="host")))  # downloads the module
    assert cold >= 8  # uuid + 6 local packages + main
    wait_saved(shim_env)
    go_edit(d)
    offline = ("--build-arg", "GOPROXY=off")
    warm = ok(build(shim_env, b, d, tag, token, *offline))
    assert compiled(warm) == 1, warm[-2000:]  # only the edited main package
    ctl = control(b, d, f"{a.prefix}/go:ctl", *offline)
    assert ctl.returncode != 0 and "github.com/google/uuid" in ctl.stdout + ctl.stderr  # cold and offline: no module


def test_npm_cache_mount_lets_b_install_offline(shim_env, engines, tmp_path):
    a, b = engines["a"], engines["b"]
    d = tmp_path / "npm"
    d.mkdir()
    (d / "package.json").write_text('{"name": "x", "version": "1.0.0", "dependencies": {"is-number": "7.0.0"}}\n')
    (d / "app.txt").write_text("1")
    (d / "Dockerfile").write_text(
        f"FROM {DEVTOOLS}\nARG TOKEN\nARG OFFLINE\nWORKDIR /app\nCOPY . .\n"
        "RUN --mount=type=cache,id=npm-${TOKEN},target=/root/.npm "
        "npm install --no-audit --no-fund $OFFLINE && ls node_modules && echo NPM-OK\n")
    token = uuid.uuid4().hex[:12]
    tag = f"{a.prefix}/npm:1"
    assert "NPM-OK" in ok(build(shim_env, a, d, tag, token, network="host"))
    wait_saved(shim_env)
    edit(d)
    assert "NPM-OK" in ok(build(shim_env, b, d, tag, token, "--build-arg", "OFFLINE=--offline"))
    ctl = control(b, d, f"{a.prefix}/npm:ctl", "--build-arg", "OFFLINE=--offline")
    assert ctl.returncode != 0 and "ENOTCACHED" in ctl.stdout + ctl.stderr  # cold and offline: nothing to install


def test_concurrent_builds_on_a_and_b_both_succeed_and_the_store_stays_whole(shim_env, engines, tmp_path):
    """Each build adds a file set plus its manifest to the mount; the stored generation is
    one build's complete mount, and seeding it into a daemon that is new to it works."""
    a, b = engines["a"], engines["b"]
    step = ("RUN --mount=type=cache,id=c-${TOKEN},target=/cache,sharing=locked "
            "set -e; n=$(cat /app.txt | md5sum | cut -c1-8); mkdir -p /cache/$n; "
            "for i in $(seq 1 200); do echo $i > /cache/$n/$i; done; ls /cache > /cache/MANIFEST; "
            "for s in $(cat /cache/MANIFEST); do [ $s = MANIFEST ] || [ -f /cache/$s/200 ]; done; echo SETS=$(ls /cache | wc -l)")
    ctx_a, token = project(tmp_path, "ca", step=step)
    ctx_b = tmp_path / "cb"
    ctx_b.mkdir()
    (ctx_b / "Dockerfile").write_text((ctx_a / "Dockerfile").read_text())
    (ctx_b / "app.txt").write_text("other")
    tag = f"{a.prefix}/conc:1"
    with ThreadPoolExecutor(2) as pool:
        done = [pool.submit(build, shim_env, e, c, tag, token) for e, c in ((a, ctx_a), (b, ctx_b))]
        for f in done:
            ok(f.result())
    wait_saved(shim_env, 2)
    (entry,) = read_index(Path(shim_env["DOCKCACHE_BUILD_STORE"])).values()
    assert entry.packed
    stored = tmp_path / "stored"
    unpack(Path(shim_env["DOCKCACHE_BUILD_STORE"]) / "mounts" / entry.dirname, stored)
    sets = [p for p in stored.iterdir() if p.is_dir()]
    assert len(sets) == 1 and len(list(sets[0].iterdir())) == 200
    assert (stored / "MANIFEST").read_text().split() == sorted([sets[0].name, "MANIFEST"])
    fresh = {**shim_env, "DOCKCACHE_STATE_DIR": str(tmp_path / "later")}  # this state never saw A: seed it
    edit(ctx_a)
    out = ok(build(fresh, a, ctx_a, tag, token))
    assert [m for m in metrics(fresh) if m.get("kind") == "build"][-1]["mounts_seeded"] == 1
    assert "SETS=" in out


def test_old_engine_builds_unchanged_and_explain_says_why(shim_env, engines, tmp_path):
    old = engines["old"]
    ctx, token = project(tmp_path)
    tag = f"{old.prefix}/old:1"
    assert "MOUNT-COLD" in ok(build(shim_env, old, ctx, tag, token))
    assert not [m for m in metrics(shim_env) if m.get("kind") == "mount-save"]
    cp = subprocess.run([sys.executable, "-m", "shim", "explain", "--", "docker", "build", "-t", tag,
                         "--build-arg", f"TOKEN={token}", str(ctx)], env={**shim_env, "DOCKER_HOST": old.host},
                        capture_output=True, text=True, timeout=120)
    assert "cache mounts found: m-" in cp.stdout and "stay in this daemon" in cp.stdout, cp.stdout + cp.stderr


def test_save_wait_mode_and_no_cache(shim_env, engines, tmp_path):
    """`build.cache_mounts_save = "wait"`: stored when the command returns; `--no-cache`
    (BuildKit hands every step an empty mount): nothing seeded or saved."""
    a = engines["a"]
    ctx, token = project(tmp_path)
    tag = f"{a.prefix}/wait:1"
    env = {**shim_env, "DOCKCACHE_BUILD_CACHE_MOUNTS_SAVE": "wait"}
    ok(build(env, a, ctx, tag, token))
    assert len(read_index(Path(shim_env["DOCKCACHE_BUILD_STORE"]))) == 1
    assert len([m for m in metrics(env) if m.get("kind") == "mount-save"]) == 1
    edit(ctx)
    assert "MOUNT-COLD" in ok(build(env, a, ctx, tag, token, "--no-cache"))
    assert len([m for m in metrics(env) if m.get("kind") == "mount-save"]) == 1
    assert "mounts" not in [m for m in metrics(env) if m.get("kind") == "build"][-1]


def test_an_unchanged_rebuild_on_a_keeps_what_b_added_since(shim_env, engines, tmp_path):
    """Two sessions on one project: B, seeded with A's mount, adds to it; A then rebuilds
    with nothing changed (no step runs). The store must keep B's additions, not take back
    A's older contents (each session's unchanged rebuild replaced the other's)."""
    a, b = engines["a"], engines["b"]
    step = ("RUN --mount=type=cache,id=m-${TOKEN},target=/cache ls /cache | tr '\\n' ' ' > /seen; "
            "echo SEEN:; cat /seen; echo; echo $BRANCH > /cache/$BRANCH")
    ctx, token = project(tmp_path, step="ARG BRANCH\n" + step)
    tag = f"{a.prefix}/two:1"
    env = {**shim_env, "DOCKCACHE_BUILD_CACHE_MOUNTS_SAVE": "wait"}
    ok(build(env, a, ctx, tag, token, "--build-arg", "BRANCH=main"))
    out = ok(build(env, b, ctx, tag, token, "--build-arg", "BRANCH=feature"))
    assert re.search(r"SEEN:\s+#\d+ [\d.]+ main", out), out[-2000:]  # B was seeded with A's contents

    def stored() -> set[str]:
        (entry,) = [e for e in read_index(Path(env["DOCKCACHE_BUILD_STORE"])).values() if token in e.id]
        dest = tmp_path / f"unpacked-{entry.gen}"
        unpack(Path(env["DOCKCACHE_BUILD_STORE"]) / "mounts" / entry.dirname, dest)
        return {p.name for p in dest.iterdir()}

    assert stored() == {"main", "feature"}
    ok(build(env, a, ctx, tag, token, "--build-arg", "BRANCH=main"))  # every step cached on A
    assert [m for m in metrics(env) if m.get("kind") == "mount-save"][-1].get("skipped") == "layers unchanged"
    assert stored() == {"main", "feature"}
