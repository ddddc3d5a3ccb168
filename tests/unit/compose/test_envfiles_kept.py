"""COMPOSE_FILE moved from ./.env into compose's environment keeps ./.env's values."""

from shim.compose.files import env_files_kept, split


def _project(tmp_path, beside=True):
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "base.yml").write_text("services: {}\n")
    (tmp_path / ".env").write_text("COMPOSE_FILE=deploy/base.yml\nXARG=1\n")
    if beside:
        (tmp_path / "deploy" / ".env").write_text("YARG=2\n")
    return [str(tmp_path / "deploy" / "base.yml")]


def test_both_env_files_the_project_dirs_last(tmp_path):
    files = _project(tmp_path)
    kept = env_files_kept(split("docker", ["compose", "up"]), {}, str(tmp_path), files)
    assert kept == f"{tmp_path}/deploy/.env,{tmp_path}/.env"


def test_only_the_project_dirs_when_none_beside_the_file(tmp_path):
    files = _project(tmp_path, beside=False)
    assert env_files_kept(split("docker", ["compose", "up"]), {}, str(tmp_path), files) == f"{tmp_path}/.env"


def test_nothing_when_compose_reads_the_same_files_either_way(tmp_path):
    files = _project(tmp_path)
    cwd = str(tmp_path)
    assert env_files_kept(split("docker", ["compose", "up"]), {"COMPOSE_FILE": "deploy/base.yml"}, cwd, files) is None
    assert env_files_kept(split("docker", ["compose", "up"]), {"COMPOSE_ENV_FILES": ".env"}, cwd, files) is None
    assert env_files_kept(split("docker", ["compose", "--env-file", ".env", "up"]), {}, cwd, files) is None
    assert env_files_kept(split("docker", ["compose", "--project-directory", ".", "up"]), {}, cwd, files) is None
    assert env_files_kept(split("docker", ["compose", "up"]), {}, cwd, [str(tmp_path / "compose.yaml")]) is None
