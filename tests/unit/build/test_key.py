"""Build cache keys: tags, and an untagged build's key that a fresh clone elsewhere finds again."""

from __future__ import annotations

import subprocess

import pytest

from shim.build.key import default_repo, keys_for, normalize_url, repo_of


@pytest.mark.parametrize("tag,repo", [("reg.example:5000/org/app:feature", "org/app"), ("app", "app"),
                                      ("localhost/x/y:1", "x/y"), ("org/app@sha256:ab", "org/app")])
def test_repo_of_a_tag(tag, repo):
    assert repo_of(tag) == repo


@pytest.mark.parametrize("url", ["https://user:tok@Git.Example.org/org/svc.git", "ssh://git@git.example.org:22/org/svc",
                                 "git@git.example.org:org/svc.git", "https://git.example.org/org/svc/"])
def test_every_form_of_one_origin_is_the_same(url):
    assert normalize_url(url) == "git.example.org/org/svc"


def clone(tmp_path, where: str, origin: str | None = "git@git.example.org:org/svc.git"):
    root = tmp_path / where
    (root / "api").mkdir(parents=True)
    (root / "api" / "Dockerfile").write_text("FROM scratch\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    if origin:
        subprocess.run(["git", "-C", str(root), "remote", "add", "origin", origin], check=True)
    return root


def test_an_untagged_build_in_two_clones_of_one_origin_has_one_key(tmp_path):
    one, two = clone(tmp_path, "session1/svc"), clone(tmp_path, "elsewhere/checkout")
    k1 = default_repo((), "api", None, str(one))
    assert k1 == default_repo((), "api", None, str(two)) == default_repo((), ".", None, str(two / "api"))
    assert k1.startswith("ctx-svc-")
    assert default_repo((), ".", None, str(one)) != k1  # another context in the clone
    assert default_repo((), "api", "api/Dockerfile.dev", str(one)) != k1  # another Dockerfile


def test_without_an_origin_the_key_is_the_paths(tmp_path):
    one, two = clone(tmp_path, "a/svc", origin=None), clone(tmp_path, "b/svc", origin=None)
    assert default_repo((), "api", None, str(one)) != default_repo((), "api", None, str(two))
    plain = tmp_path / "noclone"
    plain.mkdir()
    assert default_repo((), ".", None, str(plain)).startswith("ctx-")


def test_a_worktree_has_its_main_clones_origin(tmp_path):
    main = clone(tmp_path, "main/svc")
    subprocess.run(["git", "-C", str(main), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    wt = tmp_path / "wt"
    subprocess.run(["git", "-C", str(main), "worktree", "add", "-q", str(wt)], check=True)
    (wt / "api").mkdir(exist_ok=True)
    assert default_repo((), "api", None, str(wt)) == default_repo((), "api", None, str(main))


def test_tagged_builds_key_on_the_repository_and_fallbacks_drop_the_own_key(tmp_path):
    own, rest = keys_for(["reg:5000/org/app:1"], ".", None, str(tmp_path), "{repo}", ["{repo}", "base"])
    assert own == "org-app" and rest == ["base"]
