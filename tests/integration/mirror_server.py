"""A package mirror on 127.0.0.1 for engine tests: npm, PyPI (simple), a Go module
proxy and a Cargo registry (git index over smart HTTP, as cargo before sparse indexes
reads it), with packages made on the spot, optional TLS from a private CA, and a request
counter.

No upstream: the packages exist only here, so an install that succeeds proves the
tool downloaded through the mirror, and the counter shows how often it asked.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import ssl
import subprocess
import tarfile
import tempfile
import threading
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def npm_tarball(name: str, version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in (("package/package.json", json.dumps({"name": name, "version": version, "main": "index.js"})),
                           ("package/index.js", f"module.exports = '{name}@{version}';\n")):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def wheel(name: str, version: str) -> tuple[str, bytes]:
    mod = name.replace("-", "_")
    dist = f"{mod}-{version}.dist-info"
    files = {f"{mod}/__init__.py": f"VERSION = '{version}'\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: dockcache-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return f"{mod}-{version}-py3-none-any.whl", buf.getvalue()


def go_module_zip(module: str, version: str) -> bytes:
    name = module.rsplit("/", 1)[-1]
    files = {"go.mod": f"module {module}\n\ngo 1.19\n",
             f"{name}.go": f'package {name}\n\nfunc Hello() string {{ return "hello from {module}@{version}" }}\n'}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, text in files.items():
            zf.writestr(f"{module}@{version}/{path}", text)
    return buf.getvalue()


def crate_file(name: str, version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in (("Cargo.toml", f'[package]\nname = "{name}"\nversion = "{version}"\nedition = "2021"\n'),
                           ("src/lib.rs", f'pub fn hello() -> &\'static str {{ "hello from {name}@{version}" }}\n')):
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{path}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def index_path(name: str) -> str:
    """Where a crate's line lives in a registry index (cargo's layout by name length)."""
    n = name.lower()
    return {1: f"1/{n}", 2: f"2/{n}", 3: f"3/{n[0]}/{n}"}.get(len(n), f"{n[:2]}/{n[2:4]}/{n}")


class Mirror:
    """Serves npm packages under /npm/, wheels under /pypi/simple/, Go modules under /go/,
    crates under /cargo/ (index: /cargo/index, a git repository)."""

    def __init__(self, npm: dict[str, str], pypi: dict[str, str], tls_dir: Path | None = None,
                 go: dict[str, str] | None = None, cargo: dict[str, str] | None = None):
        self.hits: Counter[str] = Counter()
        self.git_root: str | None = None
        self.files: dict[str, tuple[bytes, str]] = {}
        self.pages: dict[str, bytes] = {}
        self.scheme = "https" if tls_dir else "http"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"{self.scheme}://127.0.0.1:{self.server.server_port}"
        for name, version in npm.items():
            self._add_npm(name, version)
        for name, version in pypi.items():
            self._add_wheel(name, version)
        for module, version in (go or {}).items():
            self._add_go(module, version)
        if cargo:
            self._add_cargo_index(cargo)
        if tls_dir:
            self.ca = make_ca_and_cert(tls_dir)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_dir / "server.pem", tls_dir / "server.key")
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.git_root:
            shutil.rmtree(self.git_root, ignore_errors=True)

    def count(self, prefix: str) -> int:
        return sum(n for path, n in self.hits.items() if path.startswith(prefix))

    def _add_npm(self, name: str, version: str) -> None:
        tgz = npm_tarball(name, version)
        path = f"/npm/{name}/-/{name}-{version}.tgz"
        self.files[path] = (tgz, "application/octet-stream")
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
        doc = {"name": name, "dist-tags": {"latest": version}, "versions": {version: {
            "name": name, "version": version,
            "dist": {"tarball": self.base + path, "integrity": integrity,
                     "shasum": hashlib.sha1(tgz).hexdigest()}}}}
        self.pages[f"/npm/{name}"] = json.dumps(doc).encode()

    def _add_wheel(self, name: str, version: str) -> None:
        filename, data = wheel(name, version)
        path = f"/pypi/files/{filename}"
        self.files[path] = (data, "application/octet-stream")
        sha = hashlib.sha256(data).hexdigest()
        html = f'<html><body><a href="{self.base}{path}#sha256={sha}">{filename}</a></body></html>'
        self.pages[f"/pypi/simple/{name}/"] = html.encode()

    def _add_go(self, module: str, version: str) -> None:
        """The GOPROXY protocol: list, .info, .mod, .zip under /go/<module>/@v/."""
        at = f"/go/{module}/@v/"
        info = json.dumps({"Version": version, "Time": "2026-01-01T00:00:00Z"}).encode()
        self.pages[at + "list"] = f"{version}\n".encode()
        self.pages[at + f"{version}.info"] = info
        self.pages[f"/go/{module}/@latest"] = info
        self.pages[at + f"{version}.mod"] = f"module {module}\n\ngo 1.19\n".encode()
        self.files[at + f"{version}.zip"] = (go_module_zip(module, version), "application/zip")

    def _add_cargo_index(self, crates: dict[str, str]) -> None:
        """A bare git repository `index` holding config.json and one line per crate."""
        self.git_root = tempfile.mkdtemp(prefix="dockcache-cargo-index-")
        work = Path(self.git_root) / "work"
        files = {"config.json": json.dumps({"dl": f"{self.base}/cargo/dl/{{crate}}/{{version}}"})}
        for name, version in crates.items():
            data = crate_file(name, version)
            self.files[f"/cargo/dl/{name}/{version}"] = (data, "application/octet-stream")
            files[index_path(name)] = json.dumps({"name": name, "vers": version, "deps": [], "features": {},
                                                  "cksum": hashlib.sha256(data).hexdigest(), "yanked": False})
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text + "\n")
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
        for args in (["init", "-q", "-b", "master"], ["add", "."], ["commit", "-qm", "index"]):
            subprocess.run([*git, *args], check=True, capture_output=True)
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(Path(self.git_root) / "index")],
                       check=True, capture_output=True)

    def git_backend(self, method: str, path: str, query: str, body: bytes, ctype: str) -> tuple[int, dict, bytes]:
        """git's smart HTTP, answered by git http-backend (CGI)."""
        env = {**os.environ, "GIT_PROJECT_ROOT": self.git_root, "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": path[len("/cargo"):], "QUERY_STRING": query, "REQUEST_METHOD": method,
               "CONTENT_TYPE": ctype, "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1"}
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line)
        status = int(headers.pop("Status", "200").split()[0])
        return status, headers, payload

    def _handler(self):
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):  # uv asks before it downloads a wheel
                self.do_GET(body=False)

            def do_POST(self):
                path, _, query = self.path.partition("?")
                mirror.hits[path] += 1
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._git(path, query, data)

            def _git(self, path, query, data=b""):
                code, headers, payload = mirror.git_backend(self.command, path, query, data,
                                                            self.headers.get("Content-Type", ""))
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self, body=True):
                path, _, query = self.path.partition("?")
                mirror.hits[path] += int(body)
                if path.startswith("/cargo/index") and mirror.git_root:
                    return self._git(path, query)
                if path in mirror.files:
                    payload, ctype = mirror.files[path]
                    cache = "public, max-age=31536000, immutable"
                elif path in mirror.pages or path.rstrip("/") + "/" in mirror.pages:
                    payload = mirror.pages.get(path) or mirror.pages[path.rstrip("/") + "/"]
                    ctype = "text/html" if path.startswith("/pypi/") else "application/json"
                    cache = "max-age=600"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Cache-Control", cache)
                self.end_headers()
                if body:
                    self.wfile.write(payload)

        return Handler


def make_ca_and_cert(where: Path) -> Path:
    """A private CA and a server certificate for 127.0.0.1 signed by it; returns the CA file."""
    where.mkdir(parents=True, exist_ok=True)

    def ssl_cmd(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=where)

    ssl_cmd("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=dockcache test CA",
            "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ssl_cmd("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")
    (where / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                   "extendedKeyUsage=serverAuth\n")
    ssl_cmd("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", "server.pem", "-extfile", "ext.cnf")
    return where / "ca.pem"
