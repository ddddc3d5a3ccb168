"""Build cache keys: tags, and an untagged build's key that a fresh clone elsewhere finds again."""

from __future__ import annotations

import subprocess

import pytest

from shim.build.key import choose, default_repo, keys_for, kin, names_a_path, normalize_url, repo_of
from shim.core.state import short_hash


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


def test_without_an_origin_the_key_is_the_dockerfile_and_the_contexts_names(tmp_path):
    one, two = clone(tmp_path, "a/svc", origin=None), clone(tmp_path, "b/svc", origin=None)
    key = default_repo((), "api", None, str(one))
    assert key.startswith("df-") and key == default_repo((), "api", None, str(two))  # a copy elsewhere
    (two / "api" / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    assert default_repo((), "api", None, str(two)) != key  # another Dockerfile
    assert default_repo((), "api", None, str(one)) != choose((), "api", None, str(one), "", (), target="dev").own
    (two / "api" / "Dockerfile").write_text("FROM scratch\n")
    (two / "api" / "extra.txt").write_text("x")
    assert default_repo((), "api", None, str(two)) != key  # another context
    paths = [c for c in choose((), "api", None, str(one), "", ()).candidates if c.kind == "path"]
    assert paths and paths[0].key.startswith("ctx-")  # the key before: still imported


def test_a_client_that_names_images_by_path_and_writes_its_dockerfile_anywhere(tmp_path):
    """The dev containers CLI: `vsc-<folder>-<sha256 of the path>`, a Dockerfile in a new temp dir."""
    keys = []
    for n in ("one", "two"):
        ws = tmp_path / n / "proj"
        (ws / ".devcontainer").mkdir(parents=True)
        (ws / ".devcontainer" / "devcontainer.json").write_text("{}")
        tmp = tmp_path / f"devcontainercli-{n}" / "x"
        tmp.mkdir(parents=True)
        (tmp / "Dockerfile").write_text("FROM debian\nRUN make\n")
        tag = f"vsc-proj-{short_hash(str(ws), 64)}"
        keys.append(choose([tag], str(ws / ".devcontainer"), str(tmp / "Dockerfile"), str(ws), "", ["{repo}-main"]))
    a, b = keys
    assert a.own == b.own and a.own.startswith("df-")  # exported under what both sessions derive
    assert [c.kind for c in a.candidates] == ["content", "tag"] and a.candidates[1].key in a.imports
    assert a.candidates[1].key != b.candidates[1].key and f"{a.own}-main" in a.imports


def test_a_tag_with_a_path_hash_is_not_the_projects_name():
    assert names_a_path("vsc-proj-" + "ab" * 32) and names_a_path("vsc-proj-" + "ab" * 32 + "-uid")
    assert not names_a_path("org-app") and not names_a_path("app-v2-cafe")


def test_a_clone_with_its_dockerfile_outside_keys_on_the_content_and_the_origin(tmp_path):
    one, two = clone(tmp_path, "s1/svc"), clone(tmp_path, "s2/co")
    outside = tmp_path / "tmpdf"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM x\n")
    k1, k2 = (default_repo((), "api", str(outside / "Dockerfile"), str(c)) for c in (one, two))
    assert k1 == k2 and k1.startswith("df-")
    (one / "api" / "new.txt").write_text("y")
    assert default_repo((), "api", str(outside / "Dockerfile"), str(one)) == k1  # a clone's identity is its origin


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


def test_a_file_added_at_the_top_keeps_the_recipes_half_of_the_content_key(tmp_path):
    ctx = tmp_path / "app"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    before = default_repo((), str(ctx), None, str(tmp_path))
    (ctx / "util.py").write_text("")
    after = default_repo((), str(ctx), None, str(tmp_path))
    assert before != after and before[:11] == after[:11]  # df- + the Dockerfile's 8
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /app\n")
    assert default_repo((), str(ctx), None, str(tmp_path))[:11] != after[:11]
    assert choose((), str(ctx), None, str(tmp_path), "", (), target="dev").own[:11] != after[:11]


def test_kin_is_the_newest_stored_key_of_the_same_recipe_and_only_when_none_of_its_own_is():
    own = "df-0123456789abcdef-web"
    used = {"df-01234567aaaaaaaa-web": 10.0, "df-01234567bbbbbbbb-web": 20.0, "df-01234567cccccccc-web~1": 30.0,
            "df-01234567dddddddd-api": 40.0, "df-ffffffff0123abcd-web": 50.0, "proj-web": 60.0}
    assert kin([own, "proj-x"], used) == "df-01234567bbbbbbbb-web"  # not history, not another service or recipe
    assert kin([own, "proj-web"], used) is None  # a key of its own is stored
    assert kin(["org-web", own], used) == "df-01234567bbbbbbbb-web"  # a content key among the imports
    assert kin(["org-web", "ctx-svc-0011"], used) is None  # no content key
    assert kin([own], {}) is None
    assert kin(["df-0123456789abcdef-main"], {"df-01234567bbbbbbbb-main": 1.0, "df-01234567bbbbbbbb": 2.0}) \
        == "df-01234567bbbbbbbb-main"  # the template around it (a branch) must match too


def test_explain_names_an_import_of_the_same_dockerfile_in_another_context(tmp_path):
    from shim.build.command import candidates_note
    from shim.build.store.cachestore import CacheStore

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    keys = choose((), str(tmp_path), None, str(tmp_path), "", ["{repo}-main"])
    assert keys.own.startswith("df-")
    related = keys.own[:11] + "00000000"
    note = candidates_note(keys, CacheStore(tmp_path / "store"), (related, f"{related}~1"), True)
    assert note.endswith(f"; the same Dockerfile in a context with other top names {related} (imported)")
    assert note.count(related) == 1 and "-main" not in note  # a configured fallback is not called that
