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
