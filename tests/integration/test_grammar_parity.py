"""The grammar's flag tables against the docker CLI this machine runs: every option its
`--help` lists with a value is read as taking one, every switch as taking none. A table
that drifts from the CLI moves the image or the build context (a value read as an
argument, or an argument swallowed as a value). Needs the docker CLI only, no engine."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from shim.compose import files, services
from shim.core import grammar
from tests.conftest import REAL_DOCKER

# "  -f, --file stringArray   ..." / "      --rm   ..."
OPTION = re.compile(r"^\s+(?:(-\w), )?(--[\w-]+)(?: ([\w-]+))?(?:\s{2,}|$)")


def options(*words: str, environ: dict | None = None) -> tuple[set[str], set[str]]:
    """(options with a value, switches) as `docker WORDS --help` lists them."""
    if not os.access(REAL_DOCKER, os.X_OK):
        why = f"no docker CLI at {REAL_DOCKER}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    out = subprocess.run([REAL_DOCKER, *words, "--help"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **(environ or {})}).stdout
    valued, switches = set(), set()
    for line in out.splitlines():
        m = OPTION.match(line)
        if m:
            short, long, kind = m.groups()
            (valued if kind else switches).update(f for f in (short, long) if f)
    assert valued or switches, f"docker {' '.join(words)} --help listed no options:\n{out}"
    return valued, switches


NEWER_BUILDX = os.environ.get("DOCKCACHE_TEST_COMPOSE_BAKE", "")  # its cli-plugins dir
RUN = (grammar.RUN_VALUE_FLAGS, grammar.RUN_BOOL_FLAGS)
BUILD = (grammar.BUILD_VALUE_FLAGS, grammar.BUILD_BOOL_FLAGS)


@pytest.mark.parametrize("words,environ,tables", [
    (("run",), None, RUN),
    (("create",), None, RUN),
    (("container", "run"), None, RUN),
    (("build",), None, BUILD),
    (("buildx", "build"), None, BUILD),
    (("build",), {"DOCKER_BUILDKIT": "0"}, BUILD),  # the legacy builder's own list
    ((), None, (grammar.GLOBAL_VALUE_FLAGS, grammar.GLOBAL_BOOL_FLAGS)),
    (("buildx", "bake"), {"BUILDX_EXPERIMENTAL": "1"}, (grammar.BAKE_VALUE_FLAGS, grammar.BAKE_BOOL_FLAGS)),
    # a newer buildx (0.19, tests/engine/provision.sh compose-bake), where it was built
    *([(("buildx", "bake"), {"BUILDX_EXPERIMENTAL": "1", "DOCKER_CONFIG": os.path.dirname(NEWER_BUILDX)},
        (grammar.BAKE_VALUE_FLAGS, grammar.BAKE_BOOL_FLAGS))] if NEWER_BUILDX else []),
])
def test_docker_tables_read_every_option_as_the_cli_does(words, environ, tables):
    valued, switches = options(*words, environ=environ)
    value_table, switch_table = tables
    assert valued - value_table == set(), "options with a value the grammar does not know"
    assert switches - switch_table == set(), "switches the grammar does not know"
    assert switches & value_table == set(), "switches the grammar reads as taking a value"


@pytest.mark.parametrize("sub", ["build", "up", "create", "run"])
def test_compose_tables_read_every_option_as_compose_does(sub):
    valued, switches = options("compose", sub)
    ours = services.sub_values(sub)
    assert valued - ours == set(), f"compose {sub} options with a value read as switches"
    assert switches & ours == set(), f"compose {sub} switches read as taking a value"


def test_compose_global_table_reads_every_option_as_compose_does():
    valued, switches = options("compose")
    assert valued - files.GLOBAL_VALUE == set()
    assert switches & files.GLOBAL_VALUE == set()
