"""`cache verify`: the check programs of the managers table run here against real files
(the same programs run in the container), and the command's choices with a faked docker."""

import base64
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shim.cli import verify
from shim.cli.inventory import CacheRow
from shim.core.managers import VERIFY
from shim.core.proc import Result


def run_check(name, cache):
    argv = list(VERIFY[name].check)
    exe = {"python3": sys.executable}.get(argv[0], argv[0])
    if not shutil.which(exe):
        pytest.skip(f"{exe} not on this machine")
    cp = subprocess.run([exe, *argv[1:]], env={**os.environ, "CACHE": str(cache)}, capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    return [ln.split("\t") for ln in cp.stdout.splitlines()]


def bad(lines):
    return sorted(ln[1] for ln in lines if ln[0] == "BAD")


def test_npm_check_finds_truncated_content_and_orphaned_index(tmp_path):
    good, broken = b"good tarball", b"original bytes"
    content = tmp_path / "_cacache" / "content-v2" / "sha512"
    for data, stored in ((good, good), (broken, broken[:3])):
        h = hashlib.sha512(data).hexdigest()
        (content / h[:2] / h[2:4]).mkdir(parents=True, exist_ok=True)
        (content / h[:2] / h[2:4] / h[4:]).write_bytes(stored)
    index = tmp_path / "_cacache" / "index-v5" / "aa"
    index.mkdir(parents=True)
    entries = [{"key": k, "integrity": "sha512-" + base64.b64encode(hashlib.sha512(d).digest()).decode()}
               for k, d in (("ok", good), ("gone", broken))]
    (index / "bucket").write_text("".join(f"x\t{json.dumps(e)}\n" for e in entries))
    lines = run_check("npm", tmp_path)
    hb = hashlib.sha512(broken).hexdigest()
    assert bad(lines) == ["_cacache/content-v2/sha512/" + f"{hb[:2]}/{hb[2:4]}/{hb[4:]}", "_cacache/index-v5/aa/bucket"]
    assert ["CHECKED", "4"] in lines


def test_pnpm_check_finds_a_corrupted_store_file_and_the_index_naming_it(tmp_path):
    files = tmp_path / "store" / "v3" / "files"
    digests = {}
    for name, data in (("a.js", b"a"), ("b.js", b"b")):
        h = hashlib.sha512(data).hexdigest()
        (files / h[:2]).mkdir(parents=True, exist_ok=True)
        (files / h[:2] / h[2:]).write_bytes(data)
        digests[name] = h
    index = {"files": {n: {"integrity": "sha512-" + base64.b64encode(bytes.fromhex(h)).decode()}
                       for n, h in digests.items()}}
    (files / "aa").mkdir()
    (files / "aa" / ("0" * 126 + "-index.json")).write_text(json.dumps(index))
    assert bad(run_check("pnpm", tmp_path)) == []
    hb = digests["b.js"]
    (files / hb[:2] / hb[2:]).write_bytes(b"")
    assert bad(run_check("pnpm", tmp_path)) == [f"store/v3/files/{hb[:2]}/{hb[2:]}",
                                                "store/v3/files/aa/" + "0" * 126 + "-index.json"]


def test_pip_check_finds_broken_wheels_and_unparsable_http_entries(tmp_path):
    wheels = tmp_path / "wheels" / "ab"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "ok-1.0-py3-none-any.whl", "w") as z:
        z.writestr("ok/__init__.py", "x = 1\n" * 100)
    data = (wheels / "ok-1.0-py3-none-any.whl").read_bytes()
    (wheels / "cut-1.0-py3-none-any.whl").write_bytes(data[: len(data) // 2])
    http = tmp_path / "http-v2" / "a"
    http.mkdir(parents=True)
    (http / "entry").write_bytes(b"garbage")
    (http / "entry.body").write_bytes(data[:40])  # a zip cut short
    assert bad(run_check("pip", tmp_path)) == ["http-v2/a/entry", "http-v2/a/entry.body",
                                               "wheels/ab/cut-1.0-py3-none-any.whl"]


def test_go_check_compares_the_zip_with_its_ziphash(tmp_path):
    d = tmp_path / "mod" / "cache" / "download" / "example.com" / "m" / "@v"
    d.mkdir(parents=True)
    files = {"example.com/m@v1.0.0/go.mod": b"module example.com/m\n", "example.com/m@v1.0.0/a.go": b"package m\n"}
    with zipfile.ZipFile(d / "v1.0.0.zip", "w") as z:
        for name, body in files.items():
            z.writestr(name, body)
    summary = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files))
    (d / "v1.0.0.ziphash").write_text("h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode())
    assert bad(run_check("go", tmp_path)) == []
    (d / "v1.0.0.ziphash").write_text("h1:AAAA")
    assert bad(run_check("go", tmp_path)) == ["mod/cache/download/example.com/m/@v/v1.0.0.zip"]


def test_cargo_check_gunzips_crates(tmp_path):
    reg = tmp_path / "registry" / "cache" / "index.crates.io-1"
    reg.mkdir(parents=True)
    (reg / "ok-1.0.0.crate").write_bytes(gzip.compress(b"tar" * 100))
    (reg / "cut-1.0.0.crate").write_bytes(gzip.compress(b"tar" * 100)[:20])
    assert bad(run_check("cargo", tmp_path)) == ["registry/cache/index.crates.io-1/cut-1.0.0.crate"]


def test_safe_paths_stay_inside_the_cache_and_take_companions():
    assert verify._safe_paths(["../etc", "/abs", "http-v2/a/e", "http-v2/b/f.body", "."], (".body",)) == \
        ["http-v2/a/e", "http-v2/a/e.body", "http-v2/b/f.body", "http-v2/b/f"]


class FakeCtx:
    """docker answers from a table; state and config as the real ones."""

    def __init__(self, tmp_path, answers, environ=None):
        from shim.cli.context import Ctx

        self.real = Ctx({"HOME": str(tmp_path), "DOCKCACHE_STATE_DIR": str(tmp_path / "s"), **(environ or {})})
        self.answers, self.calls = answers, []
        self.config, self.state = self.real.config, self.real.state

    def docker(self, *args, timeout=0):
        self.calls.append(args)
        for prefix, res in self.answers:
            if all(a in args for a in prefix):
                return res(args) if callable(res) else res
        return Result(args, 1, "", "no such image")

    def audit(self, *a, **k):
        pass


ROW = CacheRow("p-npm", "volume", "npm", 10, None, None)


def test_no_image_with_the_tool_is_said_plainly(tmp_path):
    ctx = FakeCtx(tmp_path, [(("inspect", "mine:1"), Result((), 0, "sha", "")),
                             (("run", "mine:1"), Result((), 127, "", "exec: node: not found"))])
    ctx.state.put("cacheimage", "run", "p-npm", {"image": "mine:1", "manager": "npm"})
    out = verify.verify_one(ctx, ROW, repair=False)
    assert out.status == "unchecked" and "mine:1 (no node)" in out.reason and "node:lts (not on this daemon)" in out.reason
    assert "verify.image_npm" in out.reason and not any("pull" in c for c in ctx.calls)


def test_broken_entries_are_repaired_by_the_tool_and_checked_again(tmp_path):
    (tmp_path / "c.toml").write_text('[verify]\nimage_npm = "local/node:1"\n')
    checks = iter([Result((), 0, "OWNER\t1000:1000\nBAD\t_cacache/x\tchecksum mismatch\nCHECKED\t3\n", ""),
                   Result((), 0, "OWNER\t1000:1000\nCHECKED\t2\n", "")])
    ctx = FakeCtx(tmp_path, [(("inspect",), Result((), 0, "sha", "")),
                             (("npm", "cache", "verify"), Result((), 0, "Corrupted content removed: 1\n", "")),
                             (("run",), lambda a: next(checks))], {"DOCKCACHE_CONFIG": str(tmp_path / "c.toml")})
    out = verify.verify_one(ctx, ROW, repair=True)
    assert out.status == "repaired" and out.repaired == ["_cacache/x"] and out.image == "local/node:1"
    repair = next(c for c in ctx.calls if "verify" in c)
    assert repair[repair.index("--user") + 1] == "1000:1000" and "readonly" not in " ".join(repair)
    first = ctx.calls[1]
    assert "--network" in first and "none" in first and "never" in first and any(",readonly" in a for a in first)


def test_a_cache_in_use_is_checked_but_never_repaired(tmp_path):
    ctx = FakeCtx(tmp_path, [(("inspect",), Result((), 0, "sha", "")),
                             (("run",), Result((), 0, "BAD\tx\ty\nCHECKED\t1\n", ""))])
    busy = CacheRow("p-npm", "volume", "npm", 10, None, None, in_use_by=["web"])
    out = verify.verify_one(ctx, busy, repair=True)
    assert out.status == "broken" and "in use by web" in out.reason
    assert sum(1 for c in ctx.calls if c[0] == "run") == 1


def test_doctor_cheap_check_flags_a_zero_length_content_file(tmp_path):
    from shim.cli.health import cheap_problem

    store = tmp_path / "_cacache" / "content-v2" / "sha512" / "ab" / "cd"
    store.mkdir(parents=True)
    (store / "ef").write_bytes(b"data")
    assert cheap_problem(str(tmp_path), "npm") is None
    (store / "00").write_bytes(b"")
    assert "zero-length _cacache/content-v2/sha512/ab/cd/00" in cheap_problem(str(tmp_path), "npm")
    assert cheap_problem(str(tmp_path), "maven") is None  # no content store known: only readability


# --- re-fetch: what `--repair` removed comes back, so an offline install works again

NPM_URL = "https://registry.example/left-pad/-/left-pad-1.3.0.tgz"


def sri(data):
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_npm_check_names_the_url_of_each_broken_tarball(tmp_path):
    content = tmp_path / "_cacache" / "content-v2" / "sha512"
    for data, stored in ((b"good", b"good"), (b"tarball", b"tar")):
        h = hashlib.sha512(data).hexdigest()
        (content / h[:2] / h[2:4]).mkdir(parents=True, exist_ok=True)
        (content / h[:2] / h[2:4] / h[4:]).write_bytes(stored)
    index = tmp_path / "_cacache" / "index-v5" / "aa"
    index.mkdir(parents=True)
    key = "make-fetch-happen:request-cache:"
    entries = [{"key": key + "https://registry.example/is-number/-/is-number-7.0.0.tgz", "integrity": sri(b"good")},
               {"key": key + NPM_URL, "integrity": sri(b"tarball")},
               {"key": "pacote:tarball:left-pad@1.3.0", "integrity": sri(b"tarball")}]  # not a URL: not named
    (index / "bucket").write_text("".join(f"x\t{json.dumps(e)}\n" for e in entries))
    lines = run_check("npm", tmp_path)
    h = hashlib.sha512(b"tarball").hexdigest()
    assert [ln[1:] for ln in lines if ln[0] == "FETCH"] == \
        [[f"_cacache/content-v2/sha512/{h[:2]}/{h[2:4]}/{h[4:]}", NPM_URL]]


def go_zip(d, version, files, *, hash_ok=True):
    with zipfile.ZipFile(d / f"{version}.zip", "w") as z:
        for name, body in files.items():
            z.writestr(name, body)
    summary = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files))
    h1 = "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()
    (d / f"{version}.ziphash").write_text(h1 if hash_ok else "h1:AAAA")


def test_go_check_names_module_at_version_with_upper_case_unescaped(tmp_path):
    dl = tmp_path / "mod" / "cache" / "download"
    bad_dir, good_dir = dl / "github.com" / "!burnt!sushi" / "toml" / "@v", dl / "example.com" / "m" / "@v"
    for d in (bad_dir, good_dir):
        d.mkdir(parents=True)
    go_zip(bad_dir, "v1.2.0-!r!c1", {"a.go": b"package toml\n"}, hash_ok=False)
    go_zip(good_dir, "v1.0.0", {"a.go": b"package m\n"})
    lines = run_check("go", tmp_path)
    assert [ln[1:] for ln in lines if ln[0] == "FETCH"] == \
        [["mod/cache/download/github.com/!burnt!sushi/toml/@v/v1.2.0-!r!c1.zip",
          "github.com/BurntSushi/toml@v1.2.0-RC1"]]


def test_go_check_names_nothing_for_a_path_go_would_not_write(tmp_path):
    d = tmp_path / "mod" / "cache" / "download" / "example.com" / "Upper" / "@v"
    d.mkdir(parents=True)
    (d / "v1.0.0.zip").write_bytes(b"not a zip")
    lines = run_check("go", tmp_path)
    assert bad(lines) == ["mod/cache/download/example.com/Upper/@v/v1.0.0.zip"]
    assert not [ln for ln in lines if ln[0] == "FETCH"]


@pytest.mark.parametrize("manager,item,accepted", [
    ("npm", NPM_URL, True),
    ("npm", "https://registry.example/@scope/pkg/-/pkg-2.0.0.tgz", True),
    ("npm", "https://registry.example:8443/a/-/a-1.0.0.tgz", True),
    ("npm", "http://registry.example/a/-/a-1.0.0.tgz", False),  # https only
    ("npm", "https://registry.example/a", False),  # a packument, not a tarball
    ("npm", "https://r.example/a.tgz; rm -rf /", False),
    ("npm", "https://r.example/$(id).tgz", False),
    ("npm", "https://r.example/a.tgz\nhttps://r.example/b.tgz", False),
    ("npm", "--registry=https://x.example/a.tgz", False),
    ("go", "golang.org/x/text@v0.3.7", True),
    ("go", "github.com/BurntSushi/toml@v1.2.0-RC1", True),
    ("go", "gopkg.in/yaml.v2@v2.0.0+incompatible", True),
    ("go", "-modfile=/etc/passwd@v1", False),
    ("go", "example.com/m@latest", False),  # a version, never a query
    ("go", "example.com/m@v1.0.0 example.com/n@v1.0.0", False),
    ("go", "example.com/../m@v1.0.0", False),
    ("npm", "https://r.example/../a/-/a-1.0.0.tgz", False),
])
def test_refetch_argv_passes_only_accepted_items_as_arguments(manager, item, accepted):
    recipe = VERIFY[manager].refetch
    argv, rejected = verify.refetch_argv(recipe, [item])
    assert argv[:4] == ("sh", "-c", recipe.script, "sh")
    assert (list(argv[4:]), rejected) == (([item], []) if accepted else ([], [item]))


@given(st.lists(st.text(min_size=1), max_size=6), st.sampled_from(["npm", "go"]))
def test_refetch_argv_never_lets_shell_text_or_options_through(items, manager):
    recipe = VERIFY[manager].refetch
    argv, rejected = verify.refetch_argv(recipe, items)
    assert argv[:4] == ("sh", "-c", recipe.script, "sh")
    assert set(argv[4:]) | set(rejected) == set(items) and not set(argv[4:]) & set(rejected)
    for item in argv[4:]:
        assert not item.startswith("-") and not set(item) & set(" \t\n;&|`$()<>'\"\\*?[]{}")


def test_refetch_script_takes_items_as_arguments_and_reports_each_fetch(tmp_path):
    """The script itself never evaluates an item: run with a fake npm, one URL failing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text('#!/bin/sh\necho "$@" >> "$LOG"\ncase "$3" in *fail*) exit 1;; esac\n')
    (bin_dir / "npm").chmod(0o755)
    hostile = "https://r.example/$(touch pwned).tgz"  # refetch_argv would refuse it; the script must not care
    items = [NPM_URL, "https://r.example/fail/-/fail-1.0.0.tgz", hostile]
    cp = subprocess.run(["sh", "-c", VERIFY["npm"].refetch.script, "sh", *items], cwd=tmp_path, text=True,
                        capture_output=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(tmp_path / "log")})
    assert verify.fetched_items(cp.stdout) == [NPM_URL, hostile]
    assert (tmp_path / "log").read_text().splitlines() == [f"cache add {i}" for i in items]
    assert not (tmp_path / "pwned").exists()


def npm_repair_ctx(tmp_path, refetch_result):
    """First check: one broken tarball the index names; the re-check after repair: clean."""
    checks = iter([Result((), 0, f"OWNER\t1000:1000\nBAD\t_cacache/x\tchecksum mismatch\nFETCH\t_cacache/x\t{NPM_URL}\n"
                                 "CHECKED\t3\n", ""),
                   Result((), 0, "OWNER\t1000:1000\nCHECKED\t3\n", "")])
    return FakeCtx(tmp_path, [(("inspect",), Result((), 0, "sha", "")),
                              (("npm", "cache", "verify"), Result((), 0, "Corrupted content removed: 1\n", "")),
                              (("host",), refetch_result),
                              (("run",), lambda a: next(checks))])


def test_repair_fetches_back_what_the_tool_removed_with_the_network_for_that_step_only(tmp_path):
    ctx = npm_repair_ctx(tmp_path, Result((), 0, f"OWNER\t1000:1000\nFETCHED\t{NPM_URL}\n", ""))
    out = verify.verify_one(ctx, ROW, repair=True)
    assert (out.status, out.repaired, out.refetched, out.reason) == ("repaired", ["_cacache/x"], [NPM_URL], "")
    runs = [c for c in ctx.calls if c[0] == "run"]
    nets = [c[c.index("--network") + 1] for c in runs]
    assert nets == ["none", "none", "host", "none"]  # check, repair, re-fetch, check again
    fetch = runs[2]
    assert fetch[fetch.index("--user") + 1] == "1000:1000" and not any(",readonly" in a for a in fetch)
    tail = fetch[fetch.index(verify.OWNER_PREFIX) + 1:]
    assert tail == ("sh", "sh", "-c", VERIFY["npm"].refetch.script, "sh", NPM_URL)
    assert "re-fetched: " + NPM_URL in verify._human([out], [])


def test_a_failed_refetch_still_counts_as_repaired_and_says_the_network_is_needed_once(tmp_path):
    ctx = npm_repair_ctx(tmp_path, Result((), 0, "OWNER\t1000:1000\n", "npm error code ENOTFOUND"))
    out = verify.verify_one(ctx, ROW, repair=True)
    assert out.status == "repaired" and out.refetched == []
    assert out.reason == f"re-fetch failed for {NPM_URL} (npm error code ENOTFOUND): {verify.NEEDS_NETWORK}"
    assert verify.NEEDS_NETWORK == "the next install needs the network once"


def test_no_refetch_leaves_the_network_alone(tmp_path):
    ctx = npm_repair_ctx(tmp_path, Result((), 0, f"FETCHED\t{NPM_URL}\n", ""))
    out = verify.verify_one(ctx, ROW, repair=True, refetch=False)
    assert out.status == "repaired" and out.refetched == [] and "--no-refetch" in out.reason
    assert not any("host" in c for c in ctx.calls)


def test_a_tool_without_refetch_says_the_next_online_install_fetches_it(tmp_path):
    checks = iter([Result((), 0, "BAD\twheels/a.whl\tnot a valid zip (wheel)\nCHECKED\t1\n", ""),
                   Result((), 0, "CHECKED\t0\n", "")])
    removal = Result((), 0, "", "")
    ctx = FakeCtx(tmp_path, [(("inspect",), Result((), 0, "sha", "")),
                             (("run",), lambda a: removal if "wheels/a.whl" in a else next(checks))])
    out = verify.verify_one(ctx, CacheRow("p-pip", "volume", "pip", 10, None, None), repair=True)
    assert out.status == "repaired" and out.reason == verify.AGAIN_ONLINE and out.refetched == []


def test_the_json_of_a_refetching_repair_fits_the_schema(tmp_path):
    import jsonschema

    from tests.conftest import REPO

    ctx = npm_repair_ctx(tmp_path, Result((), 0, f"FETCHED\t{NPM_URL}\n", ""))
    doc = {"caches": [verify.verify_one(ctx, ROW, repair=True).to_json()], "healthy": True, "repair": True}
    jsonschema.validate(doc, json.loads((REPO / "docs/cache-verify.schema.json").read_text()))
    assert doc["caches"][0]["refetched"] == [NPM_URL] and "fetchable" not in doc["caches"][0]


def test_names_that_fail_the_pattern_are_counted_never_fetched_or_echoed(tmp_path):
    hostile = "https://r.example/a.tgz\x1b[2J; rm -rf /"
    first = f"BAD\t_cacache/x\tchecksum mismatch\nFETCH\t_cacache/x\t{hostile}\nCHECKED\t3\n"
    checks = iter([Result((), 0, first, ""),
                   Result((), 0, "CHECKED\t3\n", "")])
    ctx = FakeCtx(tmp_path, [(("inspect",), Result((), 0, "sha", "")),
                             (("npm", "cache", "verify"), Result((), 0, "", "")),
                             (("run",), lambda a: next(checks))])
    out = verify.verify_one(ctx, ROW, repair=True)
    assert out.status == "repaired" and out.refetched == [] and not any("host" in c for c in ctx.calls)
    assert out.reason.startswith("not re-fetched: 1 entries") and "rm -rf" not in out.reason
