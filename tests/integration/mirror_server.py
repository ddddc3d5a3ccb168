"""A package mirror on 127.0.0.1 for engine tests: npm, PyPI (simple) and a Go module
proxy, with packages made on the spot, optional TLS from a private CA, and a request
counter.

No upstream: the packages exist only here, so an install that succeeds proves the
tool downloaded through the mirror, and the counter shows how often it asked.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import ssl
import subprocess
import tarfile
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


class Mirror:
    """Serves npm packages under /npm/, wheels under /pypi/simple/, Go modules under /go/."""

    def __init__(self, npm: dict[str, str], pypi: dict[str, str], tls_dir: Path | None = None,
                 go: dict[str, str] | None = None):
        self.hits: Counter[str] = Counter()
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
        if tls_dir:
            self.ca = make_ca_and_cert(tls_dir)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_dir / "server.pem", tls_dir / "server.key")
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

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

    def _handler(self):
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):  # uv asks before it downloads a wheel
                self.do_GET(body=False)

            def do_GET(self, body=True):
                path = self.path.split("?")[0]
                mirror.hits[path] += int(body)
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
