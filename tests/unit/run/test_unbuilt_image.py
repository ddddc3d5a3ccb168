"""A compose service whose image is not built yet gets caches planned from its Dockerfile
(build/imageconfig.py). Making a volume cache writable for its USER runs `chown` in a
container: that container must come from an image the engine has, not the unbuilt one
(`docker run` would pull that name from a registry: a network wait, an old published
image, or 'pull access denied' and no cache at all)."""

from __future__ import annotations

from shim.compose import files
from shim.compose.services import _unbuilt
from shim.core.grammar import parse_invocation
from shim.core.proc import Result
from shim.run import command


def test_an_unbuilt_images_volume_is_chowned_in_its_base_never_pulled(tmp_path, monkeypatch):
    app = tmp_path / "app"
    app.mkdir()
    (app / "package-lock.json").write_text("{}")
    (app / "Dockerfile").write_text("FROM node:20\nUSER 4321\n")
    calls = []

    def docker(real, argv, **kw):
        calls.append(list(argv))
        if argv[:2] == ["image", "inspect"] and argv[-1] == "node:20":
            return Result(tuple(argv), 0, '["PATH=/usr/bin"]\t""\tamd64\tsha256:base\n', "")
        if argv[:2] == ["image", "inspect"]:
            return Result(tuple(argv), 1, "", "Error: No such image: proj-web\n")
        return Result(tuple(argv), 0, "", "")
    monkeypatch.setattr(command.proc, "run_docker", docker)
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--rm", "-v", f"{app}:/app", "-w", "/app", "proj-web", "npm", "ci"]
    env = {"HOME": str(tmp_path / "home"), "DOCKCACHE_STATE_DIR": str(tmp_path / "state"), "DOCKCACHE_MODE": "volume"}
    unbuilt = _unbuilt({"build": {"context": str(app)}}, files.split("docker", ["compose", "up", "--build"]))
    plan, _cfg, notes = command.build_plan("/bin/false", argv, parse_invocation(argv), env, pull=False,
                                           need_image=True, unbuilt=unbuilt)
    assert "npm_config_cache=/dockcache/npm" in plan.argv, (plan.reasons, notes)
    (chown,) = [c for c in calls if c[:1] == ["run"]]
    assert "proj-web" not in chown and "node:20" in chown and "4321" in chown, chown
    assert chown[chown.index("--pull") + 1] == "never"
