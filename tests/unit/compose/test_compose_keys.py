"""Compose services' cache keys survive the project directory's name (compose/keys.py)."""

import shutil

from shim.compose.keys import service_keys


def project(root, name="proj-a"):
    d = root / name
    (d / "api").mkdir(parents=True)
    (d / "api" / "Dockerfile").write_text("FROM busybox\nRUN echo api\n")
    return d


def builds(d, **extra):
    return {"api": {"build": {"context": str(d / "api"), "dockerfile": "Dockerfile", **extra}},
            "worker": {"build": {"context": str(d / "api"), "dockerfile": "Dockerfile", **extra}}}


def test_a_copy_in_a_directory_of_another_name_exports_under_the_same_key(tmp_path):
    a = project(tmp_path)
    b = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(a, b)
    ka = service_keys(builds(a), "proj-a", str(a), "", [])
    kb = service_keys(builds(b), "checkout", str(b), "", [])
    assert ka["api"].own == kb["api"].own and ka["api"].own.startswith("df-") and ka["api"].own.endswith("-api")
    assert ka["api"].candidates[-1].kind == "project" and "proj-a-api" in ka["api"].imports  # old stores still hit
    assert "checkout-api" in kb["api"].imports


def test_two_services_of_one_dockerfile_keep_their_own_keys(tmp_path):
    d = project(tmp_path)
    keys = service_keys(builds(d), "proj-a", str(d), "", [])
    assert keys["api"].own != keys["worker"].own and keys["worker"].own.endswith("-worker")


def test_the_services_own_image_name_comes_first_a_path_hash_last(tmp_path):
    d = project(tmp_path)
    cfg = builds(d)
    cfg["api"]["image"] = "reg.example:5000/org/api:1"
    cfg["worker"]["image"] = f"vsc-proj-{'ab' * 32}"
    keys = service_keys(cfg, "proj-a", str(d), "", [])
    assert keys["api"].own == "org-api" and keys["api"].imports[0].startswith("df-")
    assert [c.kind for c in keys["worker"].candidates] == ["content", "tag", "project"]


def test_one_image_named_by_two_services_is_no_ones_key(tmp_path):
    d = project(tmp_path)
    cfg = builds(d)
    cfg["api"]["image"] = cfg["worker"]["image"] = "org/app"
    keys = service_keys(cfg, "proj-a", str(d), "", [])
    assert "org-app" not in {keys["api"].own, keys["worker"].own, *keys["api"].imports, *keys["worker"].imports}


def test_a_target_is_part_of_the_content_key(tmp_path):
    d = project(tmp_path)
    one = service_keys(builds(d, target="dev"), "p", str(d), "", [])
    other = service_keys(builds(d, target="prod"), "p", str(d), "", [])
    assert one["api"].own != other["api"].own


def test_in_a_git_clone_the_origin_names_it(tmp_path):
    d = project(tmp_path)
    (d / ".git").mkdir()
    (d / ".git" / "config").write_text('[remote "origin"]\n\turl = git@github.com:org/shop.git\n')
    keys = service_keys(builds(d), "proj-a", str(d), "", [])
    assert keys["api"].own.startswith("ctx-shop-") and keys["api"].own.endswith("-api")


def test_inline_dockerfiles_and_remote_contexts_keep_the_project_key(tmp_path):
    d = project(tmp_path)
    cfg = {"a": {"build": {"context": str(d / "api"), "dockerfile_inline": "FROM busybox\n"}},
           "b": {"build": {"context": "https://github.com/org/repo.git#main"}}}
    keys = service_keys(cfg, "proj-a", str(d), "", [])
    assert keys["a"].own == "proj-a-a" and keys["b"].own == "proj-a-b"


def test_the_key_template_and_fallbacks_apply_as_for_builds(tmp_path):
    d = project(tmp_path)
    keys = service_keys(builds(d), "proj-a", str(d), "{repo}-x", ["{repo}-main"])
    assert keys["api"].own.endswith("-api-x") and keys["api"].imports[-1].endswith("-api-main")


def test_a_project_the_user_named_keeps_its_key_first(tmp_path):
    from shim.compose.keys import named_project

    d = project(tmp_path)
    keys = service_keys(builds(d), "shop", str(d), "", [], named=True)
    assert keys["api"].own == "shop-api" and keys["api"].imports[0].startswith("df-")
    assert named_project("shop", [str(d)]) and not named_project("proj-a", [str(d / "api")])
    assert not named_project("myproj", ["/tmp/x/My.Proj"])  # compose's own name for the dir
