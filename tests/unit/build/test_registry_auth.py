"""dockcache's registry calls use the user's docker login: Basic and Bearer challenges,
config.json `auths`, credential helpers, and one clear refusal when there is no login.

A small registry on loopback plays the server: it checks the Authorization header the
way distribution's htpasswd and token auth do."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shim.build.store import registry_auth as registryauth
from shim.build.store.registry import Registry, RegistryDenied

USER, PASSWORD, TOKEN = "ci", "s3cret", "tok-123"


class FakeRegistry(BaseHTTPRequestHandler):
    mode = "basic"  # or "bearer"
    MAIN = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
    tags: dict = {}
    seen: list = []

    def log_message(self, *a):
        pass

    grantable = {"pull", "push", "delete"}  # what the token server gives this user

    def _authorized(self, action: str) -> bool:
        got = self.headers.get("Authorization", "")
        if self.mode == "basic":
            return got == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        prefix = f"Bearer {TOKEN}:"
        return got.startswith(prefix) and set(action.split(",")) <= set(got[len(prefix):].split(","))

    def _challenge(self, action: str):
        self.send_response(401)
        port = self.server.server_address[1]
        self.send_header("WWW-Authenticate", 'Basic realm="test"' if self.mode == "basic" else
                         f'Bearer realm="http://127.0.0.1:{port}/token",service="reg",scope="repository:c:{action}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, code: int, body: bytes = b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _token(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        self.seen.append(("token", self.headers.get("Authorization", ""), query.get("scope")))
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode():
            return self._answer(401)
        asked = {a for scope in query["scope"] for a in scope.rsplit(":", 1)[1].split(",")}
        granted = ",".join(sorted(asked & self.grantable))  # a subset, as token servers do
        self._answer(200, json.dumps({"token": f"{TOKEN}:{granted}"}).encode())

    def _manifests(self, action: str):
        if self.path.startswith("/token"):
            return self._token()
        self.seen.append((self.command, self.path))
        if not self._authorized(action):
            return self._challenge(action)
        tag = self.path.rsplit("/", 1)[1]
        if self.command == "PUT":
            self.tags[tag] = self.rfile.read(int(self.headers["Content-Length"]))
            return self._answer(201)
        if tag not in self.tags:
            return self._answer(404)
        self._answer(200, self.tags[tag], [("Content-Type", "application/vnd.oci.image.index.v1+json"),
                                           ("Docker-Content-Digest", "sha256:" + "a" * 64)])

    def do_GET(self):
        self._manifests("pull")

    def do_HEAD(self):
        self._manifests("pull")

    def do_PUT(self):
        self._manifests("pull,push")


@pytest.fixture()
def server():
    FakeRegistry.seen = []
    FakeRegistry.tags = {"main": FakeRegistry.MAIN}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def login(tmp_path, host: str, **entry) -> dict:
    cfg = tmp_path / "docker"
    cfg.mkdir(exist_ok=True)
    doc = entry.pop("doc", None) or {"auths": {host: entry or {
        "auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}
    (cfg / "config.json").write_text(json.dumps(doc))
    return {"DOCKER_CONFIG": str(cfg), "PATH": os.environ.get("PATH", "")}


@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_probe_and_move_use_the_docker_login(server, tmp_path, monkeypatch, mode):
    monkeypatch.setattr(FakeRegistry, "mode", mode)
    host = f"localhost:{server.server_address[1]}"
    reg = Registry(f"{host}/c", environ=login(tmp_path, host))
    probe = reg.probe(["main", "absent"])
    assert probe.existing == ("main",) and not probe.needs_login
    reg.move("main", "feature")
    assert FakeRegistry.tags["feature"] == FakeRegistry.tags["main"]
    if mode == "bearer":  # one token, asked with push up front, served the probe and the move
        scopes = [s for kind, _auth, s in (x for x in FakeRegistry.seen if x[0] == "token")]
        assert scopes == [["repository:c:pull", "repository:c:pull,push"]]


@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_no_login_is_one_clear_refusal(server, tmp_path, monkeypatch, mode):
    monkeypatch.setattr(FakeRegistry, "mode", mode)
    host = f"localhost:{server.server_address[1]}"
    env = {"DOCKER_CONFIG": str(tmp_path / "nothing-here")}
    with pytest.raises(RegistryDenied, match=rf"needs `docker login {host}`"):
        Registry(f"{host}/c", environ=env).probe(["main"])


@pytest.mark.parametrize("mode", ["basic", "bearer"])
def test_a_wrong_password_is_refused_not_retried_forever(server, tmp_path, monkeypatch, mode):
    monkeypatch.setattr(FakeRegistry, "mode", mode)
    host = f"localhost:{server.server_address[1]}"
    env = login(tmp_path, host, auth=base64.b64encode(f"{USER}:wrong".encode()).decode())
    with pytest.raises(RegistryDenied, match="refused the `docker login`"):
        Registry(f"{host}/c", environ=env).probe(["main"])
    assert len([x for x in FakeRegistry.seen if x[0] == "HEAD"]) <= 2


def test_credential_helper_wins_over_auths(server, tmp_path, monkeypatch):
    """docker-credential-HELPER get: host on stdin, JSON with Username/Secret out."""
    monkeypatch.setattr(FakeRegistry, "mode", "basic")
    host = f"localhost:{server.server_address[1]}"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-fake"
    helper.write_text("#!/bin/sh\nread server\necho \"$server\" >> \"$(dirname \"$0\")/asked\"\n"
                      f"echo '{{\"ServerURL\":\"'$server'\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n")
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    env = login(tmp_path, host, doc={"credHelpers": {host: "fake"},
                                     "auths": {host: {"auth": base64.b64encode(b"ci:wrong").decode()}}})
    env["PATH"] = f"{bindir}:{env['PATH']}"
    assert Registry(f"{host}/c", environ=env).probe(["main"]).existing == ("main",)
    assert (bindir / "asked").read_text().split() == [host]
    # Docker Hub logins are filed under docker's old index URL, whatever name the repo uses.
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"credsStore": "fake"}))
    (bindir / "asked").unlink()
    assert registryauth.credentials("docker.io", env) == registryauth.Credentials(USER, PASSWORD)
    assert (bindir / "asked").read_text().split() == ["https://index.docker.io/v1/"]


def test_credentials_lookup_matches_docker_key_forms(tmp_path):
    auth = base64.b64encode(b"u:p:with:colons").decode()
    env = login(tmp_path, "", doc={"auths": {"https://reg.example:5000/v1/": {"auth": auth},
                                             "https://index.docker.io/v1/": {"identitytoken": "rt"}}})
    assert registryauth.credentials("reg.example:5000", env) == registryauth.Credentials("u", "p:with:colons")
    assert registryauth.credentials("docker.io", env).identity_token
    assert registryauth.credentials("other.example", env) is None
    (tmp_path / "docker" / "config.json").write_text("{not json")
    assert registryauth.credentials("reg.example:5000", env) is None  # a broken config is no login, not a crash


def test_challenge_parsing():
    scheme, params = registryauth.parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')
    assert scheme == "bearer" and params == {"realm": "https://auth.example/token", "service": "registry.example",
                                             "scope": "repository:a/b:pull,push"}
    assert registryauth.parse_challenge("") == ("", {})


def test_a_token_that_does_not_reach_the_repository_leaves_it_to_buildkit(server, tmp_path, monkeypatch):
    """Logged in, but the token server grants nothing here (no rights, or Docker Hub's answer
    for a repository not created yet): not a refusal of the login, BuildKit may still push."""
    monkeypatch.setattr(FakeRegistry, "mode", "bearer")
    monkeypatch.setattr(FakeRegistry, "grantable", set())
    host = f"localhost:{server.server_address[1]}"
    probe = Registry(f"{host}/c", environ=login(tmp_path, host)).probe(["main", "other"])
    assert probe.needs_login and probe.existing == ("main", "other")
    with pytest.raises(RegistryDenied, match="needs `docker login"):  # and without a login it is a refusal
        Registry(f"{host}/c", environ={"DOCKER_CONFIG": str(tmp_path / "none")}).probe(["main"])
