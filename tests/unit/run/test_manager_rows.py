"""Rows of the managers table whose variables the engine proofs corrected (issue #18)."""

from shim.core.config import load
from shim.core.grammar import parse_invocation, parse_run
from shim.core.managers import MANAGERS
from shim.run.detect import Detection
from shim.run.plan import Facts, env_of, plan_run

CFG = load({"HOME": "/nonexistent"})


def plan_for(manager, argv=("run", "img"), image_env=None):
    argv = list(argv)
    facts = Facts(detections=(Detection(manager, "test"),), image_env=image_env)
    return plan_run(argv, parse_run(parse_invocation(argv)), CFG, facts)


def test_poetry_caches_in_the_volume_but_keeps_virtualenvs_at_its_default():
    env = env_of(plan_for("poetry"))
    assert env["POETRY_CACHE_DIR"] == "/dockcache/poetry"
    assert env["POETRY_VIRTUALENVS_PATH"] == "~/.cache/pypoetry/virtualenvs"  # Poetry expands ~


def test_poetry_image_virtualenvs_setting_is_kept():
    env = env_of(plan_for("poetry", image_env=(("POETRY_VIRTUALENVS_PATH", "/venvs"),)))
    assert "POETRY_VIRTUALENVS_PATH" not in env and env["POETRY_CACHE_DIR"] == "/dockcache/poetry"


def test_every_row_points_a_variable_at_its_mount():
    for m in MANAGERS:
        assert any("{cache}" in value for _, value in m.env), m.name


def test_maven_opts_of_the_image_keep_their_options_and_get_the_repository():
    env = env_of(plan_for("maven", image_env=(("MAVEN_OPTS", "-Xmx512m"),)))
    assert env["MAVEN_OPTS"] == "-Xmx512m -Dmaven.repo.local=/dockcache/maven/repository"


def test_maven_repository_set_by_the_image_is_respected():
    image = (("MAVEN_OPTS", "-Xmx512m -Dmaven.repo.local=/opt/m2"),)
    assert "MAVEN_OPTS" not in env_of(plan_for("maven", image_env=image))


def test_maven_opts_without_an_image_value():
    assert env_of(plan_for("maven"))["MAVEN_OPTS"] == "-Dmaven.repo.local=/dockcache/maven/repository"
