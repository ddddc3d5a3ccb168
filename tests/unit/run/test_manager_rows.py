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
