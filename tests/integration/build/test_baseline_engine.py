"""The harness itself shows cross-session caching with plain docker (no dockcache).

If this fails, no dockcache feature test can be trusted: it proves that daemon B really
reuses a BuildKit cache that daemon A exported, reported as a CACHED step.
"""

import uuid

import pytest

from shim.build.progress import step_named

pytestmark = pytest.mark.engine


def _dockerfile(tmp_path, token: str):
    (tmp_path / "Dockerfile").write_text(
        "FROM dockcache-test/busybox\n"
        f"RUN echo {token} > /token && i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done\n"
    )


def test_b_imports_what_a_exported(engines, tmp_path):
    a, b = engines["a"], engines["b"]
    token = uuid.uuid4().hex
    _dockerfile(tmp_path, token)
    cache = tmp_path / "cache"
    tag = f"{a.prefix}/baseline:1"
    a.images.append(tag)
    b.images.append(tag)
    cold = a.docker("build", "--network", "none", "--progress", "plain", "-t", tag,
                    "--cache-to", f"type=local,dest={cache},mode=max", str(tmp_path))
    step = step_named(cold.stderr, f"RUN echo {token}")
    assert step and step.done and not step.cached
    assert (cache / "index.json").is_file()
    warm = b.docker("build", "--network", "none", "--progress", "plain", "-t", tag,
                    "--cache-from", f"type=local,src={cache}", str(tmp_path))
    assert step_named(warm.stderr, f"RUN echo {token}").cached


def test_b_without_cache_runs_the_step(engines, tmp_path):
    """The control: the same build on B with no import executes the step."""
    b = engines["b"]
    token = uuid.uuid4().hex
    _dockerfile(tmp_path, token)
    tag = f"{b.prefix}/baseline:2"
    b.images.append(tag)
    cp = b.docker("build", "--network", "none", "--progress", "plain", "-t", tag, str(tmp_path))
    step = step_named(cp.stderr, f"RUN echo {token}")
    assert step and step.done and not step.cached


def test_containers_use_no_bridge(engines):
    for eng in engines.values():
        nets = eng.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert "bridge" not in nets
