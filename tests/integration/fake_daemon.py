"""A fake Docker daemon on a unix socket that records the requests the real docker CLI sends.

Enough of the Engine API for `docker create` and the facts dockcache asks (ping, version,
image inspect, volume create/inspect): every container create body is recorded, every
other call answered with a plausible document. The differential test drives the real
CLI against it with and without dockcache and compares what the daemon would be asked
to create.
"""

from __future__ import annotations

import json
import re
import socketserver
import threading
from http.server import BaseHTTPRequestHandler

API = "1.45"
IMAGE = {"Id": "sha256:" + "a" * 64, "RepoTags": ["img:latest"], "Architecture": "amd64", "Os": "linux",
         "Config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "User": "",
                    "Cmd": ["sh"], "WorkingDir": "", "Labels": None}}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeDaemon:
    def __init__(self, path: str):
        self.path = path
        self.creates: list[dict] = []
        self.volumes: dict[str, dict] = {}
        handler = _handler(self)
        self.server = _Server(path, handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeDaemon":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"


def _handler(daemon: FakeDaemon):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def address_string(self):  # unix sockets have no peer address
            return "fake"

        def _send(self, code: int, doc=None, *, text: str | None = None):
            body = (text if text is not None else json.dumps(doc if doc is not None else {})).encode()
            self.send_response(code)
            self.send_header("Api-Version", API)
            self.send_header("Ostype", "linux")
            self.send_header("Content-Type", "text/plain" if text is not None else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            return json.loads(raw) if raw else None

        def _route(self):
            path = re.sub(r"^/v[0-9.]+", "", self.path.split("?", 1)[0])
            query = self.path.split("?", 1)[1] if "?" in self.path else ""
            body = self._body() if self.command == "POST" else None
            if path == "/_ping":
                return self._send(200, text="OK")
            if path == "/version":
                return self._send(200, {"Version": "26.1.5", "ApiVersion": API, "MinAPIVersion": "1.24",
                                        "Os": "linux", "Arch": "amd64"})
            if path == "/info":
                return self._send(200, {"ID": "fake", "Name": "fake", "ServerVersion": "26.1.5"})
            if path == "/containers/create":
                daemon.creates.append({"query": query, "body": body})
                return self._send(201, {"Id": "c" * 64, "Warnings": []})
            if re.fullmatch(r"/images/.+/json", path) or re.fullmatch(r"/distribution/.+/json", path):
                return self._send(200, IMAGE)
            if path == "/volumes/create":
                vol = {"Name": (body or {}).get("Name"), "Labels": (body or {}).get("Labels") or {},
                       "Driver": "local", "Mountpoint": "/fake", "Options": {}, "Scope": "local"}
                daemon.volumes[vol["Name"]] = vol
                return self._send(201, vol)
            m = re.fullmatch(r"/volumes/(.+)", path)
            if m:
                vol = daemon.volumes.get(m.group(1))
                return self._send(200, vol) if vol else self._send(404, {"message": "no such volume"})
            if re.fullmatch(r"/containers/.+/json", path):
                return self._send(200, {"Id": "c" * 64, "Mounts": [], "HostConfig": {}, "Config": {"Env": []}})
            return self._send(200, {})

        do_GET = do_POST = do_HEAD = do_DELETE = do_PUT = _route

    return Handler
