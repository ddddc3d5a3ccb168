"""Registries on loopback that stand for the internet's: plain, or with htpasswd logins."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(address: str) -> bool:
    try:
        urllib.request.urlopen(f"http://{address}/v2/", timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class Upstream:
    """A Distribution registry of the test's own (started and stopped by its pid)."""

    def __init__(self, root: Path, *, users: dict[str, str] | None = None, access_log: bool = False):
        self.root = root
        self.address = f"127.0.0.1:{free_port()}"
        self.config = root / "upstream.yml"
        auth = ""
        if users:
            import crypt  # bcrypt through libxcrypt: what Distribution's htpasswd reads

            htpasswd = root / "htpasswd"
            htpasswd.write_text("".join(f"{u}:{crypt.crypt(p, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n"
                                        for u, p in users.items()))
            auth = f"auth:\n  htpasswd: {{realm: test, path: {htpasswd}}}\n"
        self.config.write_text(f"version: 0.1\nlog: {{level: {'info' if access_log else 'warn'}}}\nstorage:\n  filesystem: {{rootdirectory: {root / 'data'}}}\n"
                               f"{auth}http: {{addr: \"{self.address}\"}}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Upstream":
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                     stdout=open(self.root / "access.log", "ab"),
                                     stderr=open(self.root / "upstream.log", "ab"), start_new_session=True)
        for _ in range(100):
            if answers(self.address):
                return self
            time.sleep(0.1)
        raise AssertionError(f"upstream registry did not start: {(self.root / 'upstream.log').read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def blob_order(self) -> list[str]:
        """The blobs GET answered, in the order the log has them (each logged when answered;
        access_log=True)."""
        import re

        text = (self.root / "access.log").read_text(errors="replace") if (self.root / "access.log").exists() else ""
        text += (self.root / "upstream.log").read_text(errors="replace")
        return re.findall(r'"GET /v2/[^ ]*/blobs/(sha256:[0-9a-f]{64})', text)

    def blobs_of(self, repo: str) -> set[str]:
        """The blobs a repository holds (its storage's layer links: layers and config)."""
        links = self.root / "data/docker/registry/v2/repositories" / repo / "_layers/sha256"
        return {f"sha256:{p.name}" for p in links.iterdir()} if links.is_dir() else set()

    def blob_gets(self) -> dict[str, int]:
        """digest -> GETs of that blob the upstream answered."""
        from collections import Counter

        return dict(Counter(self.blob_order()))

