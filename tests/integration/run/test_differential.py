"""Differential: the real docker CLI, with and without dockcache, against a fake daemon
that records the container create request. The rewritten request must be the original
plus only dockcache's additions (its volumes and variables) — nothing of the user's
dropped, reordered or altered, nothing added that the user set. Driven by hypothesis."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shim.core.managers import MANAGERS
from shim.run.command import INIT_TARGET
from tests.conftest import REAL_DOCKER, REPO
from tests.integration.fake_daemon import FakeDaemon

pytestmark = pytest.mark.skipif(not os.access(REAL_DOCKER, os.X_OK), reason=f"no docker CLI at {REAL_DOCKER}")

OURS = {var for m in MANAGERS for var, _v in (*m.env, *m.mirror_env, *m.ro_env)} | {
    v for m in MANAGERS for v in m.ca_env}
OPTIONS = [
    ["--rm"], ["-t"], ["-i"], ["--init"], ["--read-only"], ["-t=true"], ["-e", "A=1"], ["--env", "B=two words"],
    ["-e", "npm_config_cache=/mine"], ["-e", "PIP_CACHE_DIR=/pipc"], ["-v", "/tmp/x:/data"], ["-v", "mine:/root/.npm"],
    ["--mount", "type=volume,src=v1,dst=/m"], ["--mount", 'type=bind,"source=/tmp/a,b",target=/ab'],
    ["-w", "/app"], ["--name", "n1"], ["-u", "1000:1000"], ["--network", "none"], ["--label", "k=v"],
    ["--entrypoint", "sh"], ["-h", "host1"], ["--tmpfs", "/run"], ["-e=C=3"], ["--env-file", "/dev/null"],
    ["--cap-add", "NET_ADMIN"], ["-p", "8080:80"], ["--workdir=/srv"],
    # what dockcache's plan reads: a variable passed through, mounts at or near a cache path,
    # another user, other containers' volumes, another network, a subdirectory to work in
    ["-e", "npm_config_cache"], ["-v", "/tmp/y:/dockcache/npm"], ["--mount", "type=tmpfs,dst=/root/.cache/pip"],
    ["--user", "node"], ["--volumes-from", "c1"], ["--network", "host"], ["--env", "HOME=/srv"],
    ["-v", "/tmp/x:/app:ro"], ["-w", "/app/web"], ["--read-only=false"],
]
COMMANDS = [[], ["npm", "ci"], ["pip", "install", "x"], ["sh", "-c", "npm ci && pip install x"], ["yarn"], ["go", "build"]]


@st.composite
def argvs(draw):
    words = draw(st.sampled_from([["create"], ["container", "create"]]))
    opts = [tok for o in draw(st.lists(st.sampled_from(OPTIONS), max_size=6)) for tok in o]
    dashdash = ["--"] if draw(st.booleans()) else []
    return [*words, *opts, *dashdash, "img", *draw(st.sampled_from(COMMANDS))]


def dockcaches_own(body: dict) -> bool:
    """A container dockcache creates for itself before the user's: the placement probe (a bind
    mount the daemon must see) or the short-lived one that gives a non-root user its volume."""
    probe = "dockcache.probe" in (body.get("Labels") or {})
    chown = body.get("Entrypoint") == ["chown"] and (body.get("Cmd") or [""])[-1] == INIT_TARGET
    return probe or chown


def created(daemon: FakeDaemon, argv, env) -> dict | None:
    """The user's container, None when docker refused the command. Not any create: dockcache's
    own come first, also when docker then refuses the user's (issue 34: `--network none
    --network none` looked accepted through dockcache, as its probe had created a container)."""
    before = len(daemon.creates)
    cp = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in cp.stderr
    users = [c["body"] for c in daemon.creates[before:] if not dockcaches_own(c["body"])]
    return users[-1] if users else None


def names(env_list) -> list[str]:
    return [e.split("=", 1)[0] for e in env_list or []]


def assert_original_plus_ours(plain: dict, shimmed: dict) -> None:
    p_env, s_env = plain.get("Env") or [], shimmed.get("Env") or []
    added_env = [e for e in s_env if e not in p_env]
    # the CLI itself does not keep -e order stable from run to run: compare as multisets
    assert sorted(e for e in s_env if e in p_env) == sorted(p_env), "the user's variables changed"
    assert all(n in OURS for n in names(added_env)), f"not dockcache's: {added_env}"
    assert not set(names(added_env)) & set(names(p_env)), "a variable the user set was added again"
    p_hc, s_hc = plain["HostConfig"], shimmed["HostConfig"]
    p_binds, s_binds = p_hc.get("Binds") or [], s_hc.get("Binds") or []
    added_binds = [b for b in s_binds if b not in p_binds]
    assert sorted(b for b in s_binds if b in p_binds) == sorted(p_binds)  # the CLI's order varies too
    assert all(b.split(":")[0].startswith("dockcache-") or "dockcache" in b.split(":")[0] for b in added_binds)
    user_targets = {b.split(":")[1] for b in p_binds} | {m.get("Target") for m in p_hc.get("Mounts") or []}
    assert not {b.split(":")[1] for b in added_binds} & user_targets
    p_labels, s_labels = plain.get("Labels") or {}, dict(shimmed.get("Labels") or {})
    ours = s_labels.pop("dockcache.caches", None)  # the caches' owner, for `docker exec -u` (run/execplan.py)
    assert s_labels == p_labels and (ours is None or "dockcache.caches" not in p_labels), "the user's labels changed"
    assert (ours is not None) == bool(added_binds or [m for m in s_hc.get("Mounts") or [] if m not in (p_hc.get("Mounts") or [])])
    rest_p = {**plain, "Env": None, "Labels": None, "HostConfig": {**p_hc, "Binds": None}}
    rest_s = {**shimmed, "Env": None, "Labels": None, "HostConfig": {**s_hc, "Binds": None}}
    assert rest_s == rest_p, "something besides dockcache's volumes and variables changed"


# CI runs 40 examples; a longer hunt: DOCKCACHE_DIFF_EXAMPLES=400 (issue 34 ran it with 10x and more)
EXAMPLES = int(os.environ.get("DOCKCACHE_DIFF_EXAMPLES", "40"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=argvs())
def test_rewritten_create_request_is_the_original_plus_ours(argv, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diff")
    with FakeDaemon(str(tmp / "d.sock")) as daemon:
        env = {"PATH": f"{REPO / 'bin'}:{os.path.dirname(REAL_DOCKER)}:/usr/bin:/bin", "HOME": str(tmp),
               "DOCKER_HOST": daemon.host, "DOCKCACHE_STATE_DIR": str(tmp / "state"),
               "DOCKCACHE_PYTHON": os.environ.get("DOCKCACHE_TEST_PYTHON", sys.executable)}
        plain = created(daemon, [REAL_DOCKER, *argv], env)
        shimmed = created(daemon, [str(REPO / "bin" / "docker"), *argv], env)
    assert (plain is None) == (shimmed is None), "docker accepted one form and refused the other"
    if plain is not None:
        assert_original_plus_ours(plain, shimmed)


def test_the_harness_sees_a_change_that_is_not_ours():
    plain = {"Env": ["A=1"], "HostConfig": {"Binds": ["/h:/x"]}, "Cmd": ["npm", "ci"]}
    for bad in ({**plain, "Cmd": ["npm"]}, {**plain, "Env": ["A=2"]}, {**plain, "Env": ["A=1", "FOO=1"]},
                {**plain, "HostConfig": {"Binds": ["/h:/x", "mine:/y"]}}, {**plain, "Labels": {"k": "v"}}):
        with pytest.raises(AssertionError):
            assert_original_plus_ours(plain, bad)
    assert_original_plus_ours(plain, {**plain, "Env": ["A=1", "npm_config_cache=/dockcache/npm"],
                                      "HostConfig": {"Binds": ["/h:/x", "dockcache-npm:/dockcache/npm"]},
                                      "Labels": {"dockcache.caches": '{"owner":"root","paths":["/dockcache/npm"]}'}})


def shim_env(tmp) -> dict:
    return {"PATH": f"{REPO / 'bin'}:{os.path.dirname(REAL_DOCKER)}:/usr/bin:/bin", "HOME": str(tmp),
            "DOCKCACHE_STATE_DIR": str(tmp / "state"),
            "DOCKCACHE_PYTHON": os.environ.get("DOCKCACHE_TEST_PYTHON", sys.executable)}


def test_a_repeated_network_is_refused_by_docker_with_and_without_dockcache(tmp_path):
    """Found by this harness (issue 34): docker refuses `--network none --network none`; through
    dockcache too, with docker's own code, though dockcache's probe created a container first."""
    argv = ["create", "--network", "none", "--network", "none", "img", "npm", "ci"]
    with FakeDaemon(str(tmp_path / "d.sock")) as daemon:
        env = {**shim_env(tmp_path), "DOCKER_HOST": daemon.host}
        plain = subprocess.run([REAL_DOCKER, *argv], env=env, capture_output=True, text=True, timeout=60)
        before = len(daemon.creates)
        shimmed = subprocess.run([str(REPO / "bin" / "docker"), *argv], env=env, capture_output=True, text=True,
                                 timeout=60)
        ours = daemon.creates[before:]
    assert plain.returncode == shimmed.returncode == 125, shimmed.stderr
    assert "specified multiple times" in shimmed.stderr
    assert ours and all(dockcaches_own(c["body"]) for c in ours)  # the probe only: the harness must skip it


def test_end_of_options_marker_through_the_real_cli(tmp_path):
    with FakeDaemon(str(tmp_path / "d.sock")) as daemon:
        env = {"PATH": f"{REPO / 'bin'}:{os.path.dirname(REAL_DOCKER)}:/usr/bin:/bin", "HOME": str(tmp_path),
               "DOCKER_HOST": daemon.host, "DOCKCACHE_STATE_DIR": str(tmp_path / "state"),
               "DOCKCACHE_PYTHON": sys.executable}
        body = created(daemon, [str(REPO / "bin" / "docker"), "create", "--rm", "--", "img", "npm", "ci"], env)
    assert body["Image"] == "img" and body["Cmd"] == ["npm", "ci"]
    assert "npm_config_cache=/dockcache/npm" in body["Env"]
    assert json.dumps(body).count("dockcache-npm") == 1
