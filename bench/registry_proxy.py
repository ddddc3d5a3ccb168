"""A registry stand-in on 127.0.0.1 that behaves like the public PyPI and npm registries.

The registries these machines reach answer at LAN speed and send no cache headers, so
pip caches nothing and timings show no gain (../shared/ENGINE.md). This proxy forwards
to the real registries (their URLs come from pip's and npm's own defaults at run time),
rewrites every absolute download URL to itself, adds the cache headers the public
registries send (immutable for package files, short for index pages), shapes bandwidth
and latency to a named profile, and counts requests and bytes served.

  python3 bench/registry_proxy.py --port 8765 --profile 100mbit-20ms
  pip:  --index-url http://127.0.0.1:8765/pypi/simple/
  npm:  --registry http://127.0.0.1:8765/npm/
  GET /__stats  -> counters as JSON;  POST /__stats -> reset them
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PROFILES = {  # bytes per second, seconds of latency per request
    "lan": (None, 0.0),
    "100mbit-20ms": (100_000_000 / 8, 0.020),
    "20mbit-50ms": (20_000_000 / 8, 0.050),
}
FILE_RE = re.compile(r"\.(whl|tar\.gz|tgz|zip|tar\.bz2)$")
URL_RE = re.compile(rb"https://([A-Za-z0-9.-]+)/")


def upstreams() -> dict[str, str]:
    """The public registries, as the clients themselves know them (no host names here)."""
    from pip._internal.models.index import PyPI
    npm = subprocess.run(["npm", "config", "get", "registry"], capture_output=True, text=True).stdout.strip()
    return {"pypi": PyPI.simple_url.rstrip("/") + "/", "npm": npm.rstrip("/") + "/"}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.requests, self.bytes, self.files = 0, 0, 0

    def add(self, n: int, is_file: bool):
        with self.lock:
            self.requests += 1
            self.bytes += n
            self.files += int(is_file)

    def as_dict(self):
        return {"requests": self.requests, "bytes": self.bytes, "files": self.files}


def make_handler(base: str, ups: dict[str, str], profile: str, stats: Stats, cache_dir: Path):
    rate, latency = PROFILES[profile]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            if self.path == "/__stats":
                stats.reset()
                self._send(200, b"{}", "application/json", "no-store", count=False)

        def do_HEAD(self):  # uv asks before it downloads a wheel; answer without a body
            self._head_only = True
            try:
                self.do_GET()
            finally:
                self._head_only = False

        def do_GET(self):
            if self.path == "/__stats":
                return self._send(200, json.dumps(stats.as_dict()).encode(), "application/json", "no-store", count=False)
            url = self._upstream_url()
            if url is None:
                return self._send(404, b"not found", "text/plain", "no-store")
            try:
                body, ctype = self._fetch(url)
            except urllib.error.HTTPError as exc:
                return self._send(exc.code, b"", "text/plain", "no-store")
            is_file = bool(FILE_RE.search(url.split("?")[0]))
            if not is_file:
                body = URL_RE.sub(lambda m: f"{base}/fwd/{m.group(1).decode()}/".encode(), body)
            cache = "max-age=365000000, immutable" if is_file else "max-age=600, public"
            etag = '"%s"' % hashlib.sha256(body).hexdigest()[:32]
            if self.headers.get("If-None-Match") == etag:  # revalidation, as the public index answers it
                return self._send(304, b"", ctype, cache, etag=etag)
            self._send(200, body, ctype, cache, is_file=is_file, etag=etag)

        def _upstream_url(self):
            for prefix, up in (("/pypi/simple/", ups["pypi"]), ("/npm/", ups["npm"])):
                if self.path.startswith(prefix):
                    return up + self.path[len(prefix):]
            if self.path.startswith("/fwd/"):
                host, _, rest = self.path[5:].partition("/")
                return f"https://{host}/{rest}"
            return None

        def _fetch(self, url):
            key = cache_dir / hashlib.sha256((url + self.headers.get("Accept", "")).encode()).hexdigest()
            if key.exists():
                meta, body = key.with_suffix(".type").read_text(), key.read_bytes()
                return body, meta
            req = urllib.request.Request(url, headers={"Accept": self.headers.get("Accept", "*/*"),
                                                       "User-Agent": "dockcache-bench-proxy"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                body, ctype = resp.read(), resp.headers.get("Content-Type", "application/octet-stream")
            key.write_bytes(body)
            key.with_suffix(".type").write_text(ctype)
            return body, ctype

        def _send(self, code, body, ctype, cache, *, is_file=False, count=True, etag=None):
            if latency:
                time.sleep(latency)
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", cache)
            if etag:
                self.send_header("ETag", etag)
            self.send_header("Accept-Ranges", "none")
            self.end_headers()
            if getattr(self, "_head_only", False):
                return
            chunk = 64 * 1024
            for i in range(0, len(body), chunk):
                part = body[i:i + chunk]
                self.wfile.write(part)
                if rate:
                    time.sleep(len(part) / rate)
            if count:
                stats.add(len(body), is_file)

    return Handler


def serve(port: int, profile: str, cache_dir: Path) -> tuple[ThreadingHTTPServer, Stats]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    stats = Stats()
    base = f"http://127.0.0.1:{port}"
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(base, upstreams(), profile, stats, cache_dir))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="100mbit-20ms")
    ap.add_argument("--cache-dir", default="/var/cache/dockcache-bench-proxy")
    ap.add_argument("--seconds", type=float, default=3600, help="stop by itself after this long")
    args = ap.parse_args()
    server, _ = serve(args.port, args.profile, Path(args.cache_dir))
    time.sleep(args.seconds)
    server.shutdown()


if __name__ == "__main__":
    main()
