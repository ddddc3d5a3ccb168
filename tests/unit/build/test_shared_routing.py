"""The shared builder's pure parts: which builder, whether a build goes there, the plan,
the load comparison, build.builder validation, and fail-open with a faked docker."""

import os
import socket

import pytest

from shim.build.shared import builder
from shim.build.shared import route as shared
from shim.build import command as buildcmd
from shim.cli.buildercmd import buildkitd_config, with_builder
from shim.core import proc
from shim.core.config import ConfigError, load
from shim.core.engine import BuildCaps
from shim.core.grammar import parse_build, parse_invocation

CAPS = BuildCaps("full", "test", "remote")
TARGET = shared.target_for("unix:///run/x/buildkitd.sock")


def args(argv):
    inv = parse_invocation(argv)
    return inv, parse_build(inv)


@pytest.mark.parametrize("setting,address,name", [
    ("auto", f"unix://{shared.DEFAULT_SOCKET}", None),
    ("unix:///run/x/buildkitd.sock", "unix:///run/x/buildkitd.sock", None),
    ("tcp://127.0.0.1:1234", "tcp://127.0.0.1:1234", None),
    ("team-builder", "", "team-builder"),
])
def test_target_for_each_setting(setting, address, name):
    target = shared.target_for(setting)
    assert target.address == address
    assert target.name == (name or shared.builder_name(address)) and target.name.startswith(name or "dockcache-shared-")
    assert shared.target_for("off") is None


@pytest.mark.parametrize("argv,why", [
    (["build", "--builder", "mine", "."], "you chose the builder mine"),
    (["buildx", "--builder", "mine", "build", "."], "you chose the builder mine"),
    (["build", "-o", "type=local,dest=out", "."], "--output"),
    (["build", "--push", "-t", "r/x", "."], "--push"),
    (["build", "--platform", "linux/amd64,linux/arm64", "."], "several --platform"),
])
def test_builds_that_stay_local_say_why(argv, why):
    _inv, build = args(argv)
    assert why in shared.why_local(build, {})


def test_buildx_builder_variable_keeps_the_build_local_and_plain_builds_may_go():
    _inv, build = args(["build", "-t", "x", "."])
    assert "you chose the builder b1" in shared.why_local(build, {"BUILDX_BUILDER": "b1"})
    assert shared.why_local(build, {}) is None


def test_plan_adds_only_the_builder_and_compares_before_loading():
    inv, build = args(["build", "-t", "x", "."])
    p = shared.plan_shared(inv.argv, inv, build, TARGET, "x", CAPS)
    assert p.argv == ("build", "--builder", TARGET.name, "-t", "x", ".") and p.load_check
    assert not p.export and p.imports == () and "--cache-from" not in p.argv


@pytest.mark.parametrize("argv", [["build", "."], ["build", "-t", "x", "-"], ["build", "-q", "-t", "x", "."],
                                  ["build", "--progress", "quiet", "-t", "x", "."],
                                  ["build", "--iidfile", "f", "-t", "x", "."]])
def test_builds_that_cannot_run_twice_load_at_once(argv):
    inv, build = args(argv)
    p = shared.plan_shared(inv.argv, inv, build, TARGET, "x", CAPS)
    assert "--load" in p.argv and not p.load_check


def test_a_user_load_is_not_doubled():
    inv, build = args(["build", "--load", "-t", "x", "."])
    p = shared.plan_shared(inv.argv, inv, build, TARGET, "x", CAPS)
    assert p.argv.count("--load") == 1 and not p.load_check


def test_first_build_keeps_the_image_in_the_builder_without_attestations():
    inv, _build = args(["build", "-t", "x", "."])
    first, loading = shared.first_and_load(inv.argv, inv, "/m.json")
    assert first[:6] == ("build", "--provenance=false", "--output", "type=image", "--metadata-file", "/m.json")
    assert loading == ("build", "--load", "-t", "x", ".")


@pytest.mark.parametrize("built,local,remembered,same", [
    ("sha256:c", ["sha256:c"], None, True),  # classic store: the id is the config digest
    ("sha256:c", ["sha256:m"], {"config": "sha256:c", "id": "sha256:m"}, True),  # containerd store
    ("sha256:c", ["sha256:m"], {"config": "sha256:old", "id": "sha256:m"}, False),  # rebuilt
    ("sha256:c", ["sha256:other"], {"config": "sha256:c", "id": "sha256:m"}, False),  # retagged since
    ("sha256:c", ["sha256:c", "sha256:x"], None, False),  # one tag points elsewhere
    ("", ["sha256:c"], None, False),  # no digest from the build: load
    ("sha256:c", [], None, False),  # the engine has no such tag
])
def test_unchanged(built, local, remembered, same):
    assert shared.unchanged(built, local, remembered) is same


@pytest.mark.parametrize("value", ["auto", "off", "unix:///run/dockcache/buildkitd.sock", "tcp://127.0.0.1:1234",
                                   "tcp://[::1]:1234", "my-builder"])
def test_build_builder_accepts(value):
    assert load({"DOCKCACHE_BUILD_BUILDER": value})["build.builder"] == value


@pytest.mark.parametrize("value", ["unix://relative.sock", "tcp://host", "tcp://h:0", "ssh://h", "two words", "-x"])
def test_build_builder_rejects(value):
    with pytest.raises(ConfigError, match="build.builder"):
        load({"DOCKCACHE_BUILD_BUILDER": value})


def test_unreachable_says_why_and_a_listening_socket_answers(tmp_path):
    path = str(tmp_path / "b.sock")
    assert "No such file" in builder.unreachable(f"unix://{path}")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    try:
        assert builder.unreachable(f"unix://{path}") is None
    finally:
        srv.close()
    assert builder.unreachable(f"unix://{path}")  # the file is left, nobody listens: refused


def test_auto_without_a_host_builder_is_silent_and_a_named_dead_one_says_so(tmp_path):
    _inv, build = args(["build", "-t", "x", "."])
    assert builder.choose(load({}), build, {}) == (None, None) or os.path.exists(shared.DEFAULT_SOCKET)
    target, why = builder.choose(load({"DOCKCACHE_BUILD_BUILDER": f"unix://{tmp_path}/no.sock"}), build, {})
    assert target is None and "unreachable" in why


def test_a_dead_builder_costs_one_line_and_the_store_path_runs(tmp_path, monkeypatch, capsys):
    """Fail-open with a faked docker: the plan is today's (store import/export)."""
    env = {"HOME": str(tmp_path), "DOCKCACHE_STATE_DIR": str(tmp_path / "s"),
           "DOCKCACHE_BUILD_STORE": str(tmp_path / "store"), "DOCKCACHE_BUILD_BUILDER": f"unix://{tmp_path}/no.sock"}
    monkeypatch.setattr(buildcmd, "caps_for", lambda *a: BuildCaps("full", "t", "docker", "0.13.1"))
    monkeypatch.chdir(tmp_path)
    inv, _b = args(["build", "-t", "x", "."])
    prep = buildcmd.prepare("/bin/false", list(inv.argv), inv, env)
    try:
        assert prep.shared is None and prep.plan.export and "--builder" not in prep.plan.argv
        assert any("unreachable" in r for r in prep.plan.reasons)
        err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("dockcache:")]
        assert len(err) == 1 and "unreachable" in err[0]
    finally:
        buildcmd._cleanup(prep)


def test_a_live_builder_gets_the_build_and_the_buildx_builder_is_made_once(tmp_path, monkeypatch):
    path = str(tmp_path / "b.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)
    calls = []

    def fake(real, argv, **kw):
        calls.append(list(argv))
        if argv[:2] == ["buildx", "create"]:  # what buildx writes
            inst = tmp_path / ".docker" / "buildx" / "instances"
            inst.mkdir(parents=True, exist_ok=True)
            name = argv[argv.index("--name") + 1]
            (inst / name).write_text('{"Nodes": [{"Endpoint": "%s"}]}' % argv[-1])
        return proc.Result(tuple(argv), 0, "", "")

    monkeypatch.setattr(proc, "run_docker", fake)
    monkeypatch.setattr(buildcmd, "caps_for", lambda *a: BuildCaps("full", "t", "docker", "0.13.1"))
    monkeypatch.chdir(tmp_path)
    env = {"HOME": str(tmp_path), "DOCKCACHE_STATE_DIR": str(tmp_path / "s"),
           "DOCKCACHE_BUILD_STORE": str(tmp_path / "store"), "DOCKCACHE_BUILD_BUILDER": f"unix://{path}"}
    try:
        for _ in range(2):
            inv, _b = args(["build", "-t", "x", "."])
            prep = buildcmd.prepare("/bin/docker", list(inv.argv), inv, env)
            assert prep.shared and prep.plan.argv[1:3] == ("--builder", shared.builder_name(f"unix://{path}"))
            assert prep.store is None and prep.snapshot is None
    finally:
        srv.close()
    assert [c[:2] for c in calls] == [["buildx", "create"]]  # the second build: no docker call


def test_a_nested_shim_leaves_a_routed_build_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(buildcmd, "caps_for", lambda *a: BuildCaps("full", "t", "remote", "0.13.1"))
    monkeypatch.chdir(tmp_path)
    argv = ["build", "--builder", shared.builder_name("unix:///x.sock"), "-t", "x", "."]
    inv, _b = args(argv)
    env = {"HOME": str(tmp_path), "DOCKCACHE_STATE_DIR": str(tmp_path / "s"),
           "DOCKCACHE_BUILD_STORE": str(tmp_path / "store")}
    assert buildcmd.prepare("/bin/docker", argv, inv, env).plan.argv == tuple(argv)


def test_buildkitd_config_has_gc_host_network_and_loopback_mirrors():
    text = buildkitd_config("/run/d/b.sock", "/var/lib/b", 20 * 2**30, 999, [("docker.io", "127.0.0.1:5000")])
    import tomllib
    cfg = tomllib.loads(text)
    assert cfg["grpc"] == {"address": ["unix:///run/d/b.sock"], "gid": 999}
    oci = cfg["worker"]["oci"]
    assert oci["gc"] and oci["gckeepstorage"] == str(20 * 2**30) and oci["networkMode"] == "host"
    assert cfg["worker"]["containerd"]["enabled"] is False
    assert cfg["registry"]["docker.io"]["mirrors"] == ["127.0.0.1:5000"] and cfg["registry"]["127.0.0.1:5000"]["http"]


@pytest.mark.parametrize("before", ["", "# mine\n[run]\nmode = \"volume\"\n", "[build]\nbuilder = \"off\"\nkey = \"k\"\n",
                                    "build.builder = \"off\"\n", "[build]\nkey = \"k\"\n"])
def test_use_sets_the_key_and_keeps_the_rest(before):
    import tomllib
    after = with_builder(before, "unix:///run/b.sock")
    data = tomllib.loads(after)
    assert data["build"]["builder"] == "unix:///run/b.sock"
    assert after.startswith("# mine") or "# mine" not in before
    if "key" in before:
        assert data["build"]["key"] == "k"


def test_from_images_skips_stages_scratch_and_args():
    text = "FROM --platform=$X base:1 AS b\nFROM b\nfrom scratch\nFROM ${IMG}\nFROM mybase\n"
    assert shared.from_images(text) == ["base:1", "mybase"]


def test_a_build_from_an_image_this_session_loaded_stays_here(tmp_path, monkeypatch):
    from shim.core.state import State

    (tmp_path / "Dockerfile").write_text("FROM mybase\nRUN true\n")
    run = builder.SharedRun(TARGET, State(tmp_path / "s"), "daemon-1")
    _inv, build = args(["build", "-t", "app", "."])
    assert builder.session_base(build, run, str(tmp_path)) is None
    run.state.put("sharedloads", "daemon-1", "mybase:latest", {"config": "c", "id": "i"})
    assert builder.session_base(build, run, str(tmp_path)) == "mybase"
    other = builder.SharedRun(TARGET, run.state, "daemon-2")  # another session's engine: not its image
    assert builder.session_base(build, other, str(tmp_path)) is None


def _layout_with_image(root, tag, layers_data):
    import hashlib
    import json as _json

    from shim.build.shared.thinload import Layout

    lay = Layout(root, tag)
    lay.blobs.mkdir(parents=True)
    (lay.dir / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def put(data: bytes) -> str:
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        (lay.blobs / d.split(":")[1]).write_bytes(data)
        return d

    config = put(b'{"rootfs": {"diff_ids": []}}')
    layer_digests = [put(x) for x in layers_data]
    manifest = {"config": {"digest": config}, "layers": [{"digest": d} for d in layer_digests]}
    mdig = put(_json.dumps(manifest).encode())
    entry = {"digest": mdig, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
    (lay.dir / "index.json").write_text(_json.dumps({"manifests": [entry]}))
    return lay, entry, manifest


def test_thin_tar_leaves_out_held_layers_and_the_layout_keeps_one_image(tmp_path):
    import tarfile

    lay, entry, manifest = _layout_with_image(tmp_path, "x:1", [b"base", b"app"])
    base, app = (x["digest"] for x in manifest["layers"])
    assert lay.image() == (entry, manifest)
    lay.write_tar(str(tmp_path / "t.tar"), entry, manifest, {base})
    names = tarfile.open(tmp_path / "t.tar").getnames()
    assert "index.json" in names and "oci-layout" in names
    assert f"blobs/sha256/{app.split(':')[1]}" in names and f"blobs/sha256/{base.split(':')[1]}" not in names
    (lay.blobs / ("0" * 64)).write_text("old build")
    lay.keep_only(entry["digest"], manifest)
    assert ("sha256:" + "0" * 64) not in lay.blob_names() and base in lay.blob_names()


def test_a_new_layout_is_seeded_with_links_to_its_siblings_blobs(tmp_path):
    from shim.build.shared.thinload import Layout

    first, _e, manifest = _layout_with_image(tmp_path, "x:1", [b"base"])
    new = Layout(tmp_path, "y:1")
    new.seed()
    assert new.blob_names() == first.blob_names()
    assert os.stat(new.blobs / manifest["layers"][0]["digest"].split(":")[1]).st_nlink == 2


def test_a_new_layout_links_the_blobs_of_the_layout_that_held_its_base_however_old(tmp_path):
    """Past the newest siblings: the layout remembered for a FROM image still seeds a new tag."""
    from shim.build.shared import thinload
    from shim.build.shared.thinload import Layout

    holder, _e, manifest = _layout_with_image(tmp_path, "old:1", [b"node base"])
    holder.holds(["node:20"])
    for i in range(thinload.SEED_FROM + 2):  # newer layouts of other bases
        _layout_with_image(tmp_path, f"other{i}:1", [f"other base {i}".encode()])
        os.utime(tmp_path / Layout(tmp_path, f"other{i}:1").dir.name, (2e9 + i, 2e9 + i))
    base = manifest["layers"][0]["digest"]
    plain = Layout(tmp_path, "plain:1")
    plain.seed()
    assert base not in plain.blob_names()  # not among the newest
    new = Layout(tmp_path, "new:1")
    new.seed(["node:20"])
    assert base in new.blob_names()
    (tmp_path / thinload.BASES / os.listdir(tmp_path / thinload.BASES)[0]).write_text("../../etc")
    Layout(tmp_path, "safe:1").seed(["node:20"])  # a bad record is ignored


def test_layouts_beside_the_store_are_bounded(tmp_path, monkeypatch):
    """The oldest beyond KEEP_LAYOUTS, and any unused for KEEP_DAYS, go when a new tag's
    layout is made; one whose lock is held (a build writing it) stays."""
    import fcntl

    from shim.build.shared import thinload
    from shim.build.shared.thinload import Layout

    monkeypatch.setattr(thinload, "KEEP_LAYOUTS", 3)
    names = []
    for i in range(5):
        lay, _e, _m = _layout_with_image(tmp_path, f"t{i}:1", [f"layer {i}".encode()])
        os.utime(lay.dir, (2e9 + i, 2e9 + i))
        names.append(lay.dir.name)
    stale, _e, _m = _layout_with_image(tmp_path, "stale:1", [b"stale"])
    os.utime(stale.dir, (1e9, 1e9))  # years ago
    with open(tmp_path / f"{names[0]}.lock", "w") as busy:
        fcntl.flock(busy, fcntl.LOCK_EX)  # t0, the oldest, is being written
        Layout(tmp_path, "new:1").seed()
    left = {d.name for d in tmp_path.iterdir() if d.is_dir()}
    assert {names[4], names[3], names[2], names[0]} <= left  # the newest three, and the busy one
    assert names[1] not in left and stale.dir.name not in left


def test_a_layout_whose_first_build_failed_does_not_keep_blobs_forever(tmp_path):
    """A failed first build of a tag leaves its layout seeded (hard links to its siblings'
    blobs) but without index.json: it never counted among the layouts kept, so it was never
    removed and kept those blobs on disk after their own layouts went (a tag per commit:
    one more per failed build). An old one nobody writes goes; the one being written and
    the FROM records stay."""
    import fcntl

    from shim.build.shared import thinload
    from shim.build.shared.thinload import Layout

    _layout_with_image(tmp_path, "base:1", [b"big base"])
    failed, busy = Layout(tmp_path, "app:sha1"), Layout(tmp_path, "app:sha2")
    for lay in (failed, busy):
        lay.seed()  # then the build failed: no index.json
        os.utime(lay.dir, (1e9, 1e9))
    Layout(tmp_path, "base:1").holds(["node:20"])
    with open(tmp_path / f"{busy.dir.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # still being written
        Layout(tmp_path, "new:1").seed()
    assert not failed.dir.exists() and not (tmp_path / f"{failed.dir.name}.lock").exists()
    assert busy.dir.exists() and (tmp_path / thinload.BASES).is_dir()
    fresh = Layout(tmp_path, "app:sha3")
    fresh.seed()  # a build of it may be about to start: an unfinished layout is kept for a while
    Layout(tmp_path, "newer:1").seed()
    assert fresh.dir.exists()


def test_a_sibling_removed_while_a_new_layout_is_seeded_costs_nothing(tmp_path, monkeypatch):
    """Another session's prune may remove a sibling between the listing and the links: the
    seed links what is left (before, the FileNotFoundError made the shared build fall back
    to the user's command on this engine)."""
    import shutil

    from shim.build.shared import thinload
    from shim.build.shared.thinload import Layout

    kept, _e, manifest = _layout_with_image(tmp_path, "kept:1", [b"base"])
    gone, _e, _m = _layout_with_image(tmp_path, "gone:1", [b"other"])
    os.utime(gone.dir, (2e9, 2e9))  # the newest: linked from first
    real_pruned = thinload._pruned

    def pruned_then_vanish(siblings):
        out = real_pruned(siblings)
        shutil.rmtree(gone.blobs)  # removed by another session right after the listing
        return out

    monkeypatch.setattr(thinload, "_pruned", pruned_then_vanish)
    new = Layout(tmp_path, "new:1")
    new.seed()
    assert manifest["layers"][0]["digest"] in new.blob_names()


def test_a_bug_in_the_shared_build_runs_the_users_command_unchanged(tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(builder, "build", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    monkeypatch.setattr(proc, "run_child", lambda real, argv, env=None: ran.append(tuple(argv)) or 7)
    inv, _b = args(["build", "-t", "x", "."])
    prep = buildcmd.Prepared(shared.plan_shared(inv.argv, inv, _b, TARGET, "x", CAPS), None, None, None, None, CAPS,
                             shared=builder.SharedRun(TARGET, None, "d"))
    assert buildcmd._build("/bin/docker", inv, prep) == 7
    assert ran == [("build", "-t", "x", ".")]
    assert "running docker unchanged" in capsys.readouterr().err


def test_an_index_in_the_layout_is_not_taken_for_an_image(tmp_path):
    import json as _json

    lay, entry, _m = _layout_with_image(tmp_path, "x:1", [b"l"])
    (lay.blobs / entry["digest"].split(":")[1]).write_text(_json.dumps({"manifests": []}))
    assert lay.image() is None


class FakeEngine:
    """A docker CLI stand-in for loads: which images exist, what a load adds (None: nothing,
    as a containerd store that lacked an omitted blob)."""

    def __init__(self, present=(), adds="sha256:nothing"):
        self.present, self.adds, self.calls = set(present), adds, []

    def __call__(self, real, argv, timeout=None, **_k):
        import subprocess

        self.calls.append(tuple(argv))
        if argv[0] == "load":
            self.present.add(self.adds)
            return subprocess.CompletedProcess(argv, 0, "Loaded image ID: sha256:x\n", "")
        if argv[:2] == ["image", "inspect"]:
            wanted = argv[4:]
            ids = [i for i in wanted if i in self.present]
            return subprocess.CompletedProcess(argv, 0 if len(ids) == len(wanted) else 1, "\n".join(ids), "")
        return subprocess.CompletedProcess(argv, 0, "", "")


def _loaded_run(tmp_path, images):
    from shim.core.state import State

    run = builder.SharedRun(TARGET, State(tmp_path / "state"), "daemon-1")
    run.state.put(builder.LOADED, "daemon-1", "images", {"images": images})
    return run


def test_layers_of_a_loaded_image_still_present_are_left_out_and_the_load_is_not_rechecked(tmp_path, monkeypatch):
    lay, entry, manifest = _layout_with_image(tmp_path / "l", "x:1", [b"base", b"app"])
    base, app = (x["digest"] for x in manifest["layers"])
    run = _loaded_run(tmp_path, {"sha256:old": [base, "sha256:other"], "sha256:gone": [app]})
    fake = FakeEngine(present={"sha256:old"}, adds=entry["digest"])
    monkeypatch.setattr(proc, "run_docker", fake)
    inv, _b = args(["build", "-t", "x:1", "."])
    facts = builder._engine_facts("/bin/docker", inv, ["x:1"], run)
    assert facts["held"] == {base, "sha256:other"}  # the gone image's layers are not trusted
    assert builder._thin_load("/bin/docker", inv, ["x:1"], run, lay, entry, manifest, facts["held"]) == 0
    assert [c[0] for c in fake.calls].count("load") == 1
    assert not any(c[:2] == ("image", "inspect") and c[-1] == entry["digest"] for c in fake.calls)  # no check
    loaded_at = [c[0] for c in fake.calls].index("load")
    assert fake.calls[loaded_at + 1:] == [("tag", entry["digest"], "x:1")]  # the tag moves after the load
    assert run.thin is True
    remembered = builder._loaded(run)
    assert list(remembered)[-1] == entry["digest"] and remembered[entry["digest"]] == [base, app]


def test_a_load_that_guessed_at_base_layers_is_checked_and_redone_in_full(tmp_path, monkeypatch):
    lay, entry, manifest = _layout_with_image(tmp_path / "l", "x:1", [b"base", b"app"])
    run = _loaded_run(tmp_path, {})
    fake = FakeEngine(adds="sha256:nothing")  # the guessed blob was not there: no image
    monkeypatch.setattr(proc, "run_docker", fake)
    monkeypatch.setattr(builder, "_base_layers", lambda *a: {manifest["layers"][0]["digest"]})
    inv, _b = args(["build", "-t", "x:1", "."])
    assert builder._thin_load("/bin/docker", inv, ["x:1"], run, lay, entry, manifest, set()) == 1
    loads = [c for c in fake.calls if c[0] == "load"]
    assert len(loads) == 2  # thin, then the full layout; each checked
    assert sum(1 for c in fake.calls if c[:2] == ("image", "inspect") and c[-1] == entry["digest"]) == 2
    assert not any(c[0] == "tag" for c in fake.calls)  # the tag never moved


def test_remembered_images_are_capped(tmp_path, monkeypatch):
    lay, entry, manifest = _layout_with_image(tmp_path / "l", "x:1", [b"app"])
    many = {f"sha256:{i:064x}": [] for i in range(builder.REMEMBER + 5)}
    run = _loaded_run(tmp_path, many)
    monkeypatch.setattr(proc, "run_docker", FakeEngine(adds=entry["digest"]))
    inv, _b = args(["build", "-t", "x:1", "."])
    assert builder._thin_load("/bin/docker", inv, ["x:1"], run, lay, entry, manifest, set()) == 0
    kept = builder._loaded(run)
    assert len(kept) == builder.REMEMBER and entry["digest"] in kept


def test_a_tls_builder_is_made_with_its_certificates_and_new_certificates_get_a_new_builder(tmp_path, monkeypatch):
    certs = tmp_path / "certs"
    certs.mkdir()
    target = shared.target_for("tcp://127.0.0.1:1234", str(certs))
    assert target.tls == str(certs) and target.name != shared.target_for("tcp://127.0.0.1:1234").name
    assert target.name != shared.target_for("tcp://127.0.0.1:1234", str(tmp_path / "other")).name
    assert shared.target_for("unix:///x.sock", str(certs)).tls == ""  # a socket's permissions guard it
    calls = []
    monkeypatch.setattr(proc, "run_docker", lambda real, argv, **kw: calls.append(list(argv))
                        or proc.Result(tuple(argv), 0, "", ""))
    inv, _b = args(["build", "-t", "x", "."])
    env = {"HOME": str(tmp_path)}
    problem = builder.ensure_builder("/bin/docker", inv, target, env)
    assert problem == f"build.builder_tls {certs} lacks ca.pem, cert.pem, key.pem" and calls == []
    for f in shared.TLS_FILES:
        (certs / f).write_text("x")
    builder.ensure_builder("/bin/docker", inv, target, env)
    (create,) = calls
    opt = create[create.index("--driver-opt") + 1]
    assert opt == f"cacert={certs}/ca.pem,cert={certs}/cert.pem,key={certs}/key.pem"
    assert create[-1] == "tcp://127.0.0.1:1234"


def test_explain_says_a_build_goes_over_tls():
    inv, b = args(["build", "-t", "x", "."])
    target = shared.target_for("tcp://127.0.0.1:1234", "/etc/dockcache/tls")
    plan = shared.plan_shared(inv.argv, inv, b, target, "x", CAPS)
    assert any("TLS with the certificates in /etc/dockcache/tls" in r for r in plan.reasons)


def test_asking_the_engine_beside_the_build_fails_quietly(tmp_path, monkeypatch):
    def broken(*a, **k):
        raise OSError("docker vanished")
    monkeypatch.setattr(proc, "run_docker", broken)
    run = _loaded_run(tmp_path, {"sha256:old": ["sha256:l"]})
    inv, _b = args(["build", "-t", "x:1", "."])
    facts: dict = {}
    builder._ask(facts, "/bin/docker", inv, ["x:1"], run)
    assert facts == {}  # the build goes on; the load then trusts nothing it has not checked


def test_a_load_after_another_leaves_out_what_that_one_just_loaded(tmp_path):
    from shim.core.state import State

    run = builder.SharedRun(shared.target_for("unix:///x.sock", ""), State(tmp_path), "daemon-a")
    run.state.put(builder.LOADED, "daemon-a", "images", {"images": {"old": ["sha256:l1"], "new": ["sha256:l2"]}})
    assert builder.loaded_since(run, {"old"}) == {"sha256:l2"}  # loaded while this build ran
    assert builder.loaded_since(run, {"old", "new"}) == set()
    assert builder.loaded_since(run, None) == set()  # the engine was never asked: nothing trusted


def test_loads_take_turns_but_a_stuck_one_is_not_waited_for(tmp_path, monkeypatch):
    import fcntl
    import threading

    from shim.core.state import State

    run = builder.SharedRun(shared.target_for("unix:///x.sock", ""), State(tmp_path), "daemon-a")
    order = []

    def second():
        with builder.one_load_at_a_time(run):
            order.append("second")
    with builder.one_load_at_a_time(run):
        t = threading.Thread(target=second)
        t.start()
        t.join(0.3)
        order.append("first")
    t.join(5)
    assert order == ["first", "second"]
    monkeypatch.setattr(builder, "LOAD_WAIT", 0.05)
    lock = next(tmp_path.glob("load-*.lock"))
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # another process's stuck load
        with builder.one_load_at_a_time(run):
            order.append("anyway")
    assert order[-1] == "anyway"


@pytest.mark.parametrize("argv", [
    ["build", "-q", "-t", "x", "."], ["build", "--iidfile", "/tmp/id", "-t", "x", "."],
    ["buildx", "build", "--load", "-t", "x", "."], ["build", "."], ["build", "-t", "x", "-"],
])
def test_builds_that_load_always_elsewhere_take_the_thin_load_on_a_containerd_store_engine(tmp_path, monkeypatch, argv):
    """-q, --iidfile, no tag, a user's --load, a context from stdin: each runs once into the
    layout and loads only what the engine lacks (a full --load of a 320 MB image: ~5 s)."""
    monkeypatch.setattr(buildcmd, "caps_for", lambda *a: BuildCaps("full", "t", "docker", "0.13.1"))
    monkeypatch.setattr(builder, "ensure_builder", lambda *a: None)
    monkeypatch.setattr(proc, "run_docker", lambda *a, **k: pytest.fail("no docker call while planning"))
    sock = tmp_path / "bk.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    server.listen(1)
    monkeypatch.chdir(tmp_path)
    inv, build = args(argv)
    env = {"HOME": str(tmp_path), "DOCKCACHE_STATE_DIR": str(tmp_path / "s"),
           "DOCKCACHE_BUILD_STORE": str(tmp_path / "store"), "DOCKCACHE_BUILD_BUILDER": f"unix://{sock}"}
    try:
        prep = buildcmd.prepare("/bin/docker", list(inv.argv), inv, env)
    finally:
        server.close()
    assert prep.shared and prep.shared.layouts is not None and prep.plan.load_check
    assert prep.plan.argv.count("--load") == argv.count("--load")  # none added
    assert prep.shared.prints_id == ("-q" in argv) and prep.shared.iidfile == build.iidfile
    assert any(r.startswith("load: ") and "thin load" in r for r in prep.plan.reasons)


class LayoutWritingDocker:
    """The build writes an image into the layout its --output names; loads succeed."""

    def __init__(self, tmp_path, stdout_text="sha256:configdigest\n"):
        self.tmp, self.stdout_text, self.builds, self.calls = tmp_path, stdout_text, [], []

    def child(self, real, argv, env=None, stdout=None, **_k):
        from pathlib import Path

        self.builds.append(tuple(argv))
        dest = next(v for v in argv if v.startswith("type=oci")).split("dest=")[1].split(",")[0]
        self.layout = _layout_with_image(Path(dest).parent, "unused", [b"app"])
        import shutil
        shutil.rmtree(dest, ignore_errors=True)
        shutil.move(str(self.layout[0].dir), dest)
        if stdout is not None:
            stdout.write(self.stdout_text)
        return 0

    def docker(self, real, argv, timeout=None, **_k):
        import subprocess

        self.calls.append(tuple(argv))
        if argv[0] in ("load", "tag"):
            return subprocess.CompletedProcess(argv, 0, "Loaded image ID: x\n" if argv[0] == "load" else "", "")
        return subprocess.CompletedProcess(argv, 1, "", "no such image")


def _thin_run(tmp_path, argv, monkeypatch):
    from shim.core.state import State

    fake = LayoutWritingDocker(tmp_path)
    monkeypatch.setattr(proc, "run_child", fake.child)
    monkeypatch.setattr(proc, "run_docker", fake.docker)
    inv, build = args(argv)
    run = builder.SharedRun(TARGET, State(tmp_path / "state"), "daemon-1", layouts=tmp_path / "layouts",
                            key="ctx-key", prints_id=shared.prints_id(build), iidfile=build.iidfile)
    return fake, inv, build, run


def test_an_untagged_thin_build_loads_nameless_and_a_quiet_one_prints_the_engines_id(tmp_path, monkeypatch, capsys):
    fake, inv, build, run = _thin_run(tmp_path, ["build", "-q", "--load", "."], monkeypatch)
    assert builder.build("/bin/docker", inv, inv.argv, build.tags, run) == 0
    (built,) = fake.builds
    assert "--load" not in built  # the thin load is the user's --load
    out = built[built.index("--output") + 1]
    assert "name=" not in out and str(tmp_path / "layouts") in out
    manifest_digest = fake.layout[1]["digest"]
    assert capsys.readouterr().out == manifest_digest + "\n"  # not the config digest docker printed
    assert any(c[0] == "load" for c in fake.calls)
    assert run.loaded is True


def test_a_thin_build_writes_the_engines_id_into_the_users_iidfile(tmp_path, monkeypatch, capsys):
    iid = tmp_path / "iid"
    fake, inv, build, run = _thin_run(tmp_path, ["build", "--iidfile", str(iid), "-t", "x:1", "."], monkeypatch)
    assert builder.build("/bin/docker", inv, inv.argv, build.tags, run) == 0
    assert iid.read_text() == fake.layout[1]["digest"]
    assert capsys.readouterr().out == ""  # not quiet: docker's own output went to the terminal


def test_a_failed_quiet_thin_build_passes_dockers_output_through(tmp_path, monkeypatch, capsys):
    fake, inv, build, run = _thin_run(tmp_path, ["build", "-q", "-t", "x:1", "."], monkeypatch)

    def failing(real, argv, env=None, stdout=None, **_k):
        stdout.write("partial\n")
        return 3
    monkeypatch.setattr(proc, "run_child", failing)
    assert builder.build("/bin/docker", inv, inv.argv, build.tags, run) == 3
    assert capsys.readouterr().out == "partial\n" and fake.calls[:1] != [("load",)]


def test_the_base_images_layers_are_asked_while_the_build_runs(tmp_path, monkeypatch):
    """The FROM image's layers (by diff id) come with the facts asked beside the build: after
    it, only the load and its check run."""
    import subprocess

    lay, entry, manifest = _layout_with_image(tmp_path / "l", "x:1", [b"base", b"app"])
    (lay.blobs / manifest["config"]["digest"][7:]).write_text('{"rootfs": {"diff_ids": ["sha256:d0", "sha256:d1"]}}')
    run = _loaded_run(tmp_path, {})
    run.bases = ("base:1",)
    calls, sent = [], []

    def fake(real, argv, timeout=None, **_k):
        calls.append(tuple(argv))
        if argv[:4] == ["image", "inspect", "--format", "{{json .RootFS.Layers}}"]:
            return subprocess.CompletedProcess(argv, 0, '["sha256:d0", "sha256:other"]\n', "")
        if argv[0] == "load":
            sent.append(argv[-1])
            return subprocess.CompletedProcess(argv, 0, "Loaded image: x:1\n", "")
        return subprocess.CompletedProcess(argv, 0, entry["digest"] if sent else "", "")
    monkeypatch.setattr(proc, "run_docker", fake)
    inv, _b = args(["build", "-t", "x:1", "."])
    facts = builder._engine_facts("/bin/docker", inv, ["x:1"], run)
    assert facts["base_diffs"] == {"sha256:d0", "sha256:other"}
    calls.clear()
    assert builder._thin_load("/bin/docker", inv, ["x:1"], run, lay, entry, manifest, set(), facts["base_diffs"]) == 0
    assert [c[0] for c in calls] == ["load", "image", "tag"]  # the load, its check, the tag; no question about the base
    assert run.thin is True


def test_a_layout_lock_taken_on_a_file_a_prune_unlinked_is_taken_again_on_the_current_one(tmp_path):
    """A prune removes a layout and its lock file while holding it; a build that opened the
    file before must not hold a lock a newer build also holds."""
    import os
    import shutil

    from shim.build.shared import thinload
    from shim.build.shared.thinload import Layout

    lay = Layout(tmp_path, "x:1")
    lay.dir.mkdir()
    path = tmp_path / f"{lay.dir.name}.lock"
    path.touch()
    stale = os.open(path, os.O_RDWR)  # opened before the prune unlinks it
    assert thinload._remove_unless_busy(lay.dir, shutil.rmtree) and not lay.dir.exists()
    with lay.locked():  # a new build makes the layout again, under a new lock file
        assert lay.dir.exists()
        assert thinload._lock_file(path, wait=False) is None  # busy: the lock at the path is held
        import fcntl
        fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the old inode's lock is free: no lock at all
    os.close(stale)
    fd = thinload._lock_file(path, wait=False)
    assert fd is not None
    os.close(fd)
