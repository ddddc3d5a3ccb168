"""Image references as docker reads them, and the name the same image has in a cache. Pure.

docker's rule (distribution/reference): the first path component is a registry when it
has a `.` or a `:` or is `localhost`; otherwise the image is Docker Hub's, and a one-word
name is under `library/`. A cache for registry R serves `R/PATH:TAG` as `CACHE/PATH:TAG`.
"""

from __future__ import annotations

import re

from shim.core.records import dataclass

DOCKER_HUB = "docker.io"
HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")
_PATH_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(?::\d+)?$|^\[[0-9A-Fa-f:]+\](?::\d+)?$")
LOOPBACK = ("127.", "localhost", "[::1]")


@dataclass(frozen=True)
class Ref:
    registry: str  # docker.io for Docker Hub
    path: str  # library/nginx
    tag: str  # latest when none was given
    digest: str = ""  # sha256:... for NAME@DIGEST

    def mirror_name(self, address: str) -> str:
        """This image's name in the cache at `address` (HOST:PORT)."""
        return f"{address}/{self.path}:{self.tag}"

    def repository(self) -> str:
        """The repository a tag goes on, as the engine names it."""
        return f"{self.registry}/{self.path}"


def parse(name: str) -> Ref | None:
    """docker's reading of NAME[:TAG][@DIGEST]; None for what is not an image reference."""
    if not name or name != name.strip() or name.startswith("-"):
        return None
    rest, _, digest = name.partition("@")
    if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        return None
    head, slash, tail = rest.partition("/")
    if slash and ("." in head or ":" in head or head == "localhost"):
        registry, remainder = head, tail
    else:
        registry, remainder = DOCKER_HUB, rest
    if registry in HUB_ALIASES:
        registry = DOCKER_HUB
    path, colon, tag = remainder.rpartition(":")
    if not colon or "/" in tag:
        path, tag = remainder, ""
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _HOST_RE.match(registry) or not _PATH_RE.match(path) or (tag and not _TAG_RE.match(tag)):
        return None
    return Ref(registry, path, tag or "latest", digest)


def registry_name(text: str) -> str | None:
    """An upstream as configured (`docker.io`, `ghcr.io`, `127.0.0.1:5000`), normalised; None if not a host."""
    text = text.strip().rstrip("/")
    text = re.sub(r"^https?://", "", text)
    if not _HOST_RE.match(text):
        return None
    return DOCKER_HUB if text in HUB_ALIASES else text


def remote_url(registry: str) -> str:
    """Where a cache fetches what it serves: Docker Hub's API host; plain HTTP only on loopback."""
    if registry == DOCKER_HUB:
        return "https://registry-1.docker.io"
    scheme = "http" if registry.startswith(LOOPBACK) else "https"
    return f"{scheme}://{registry}"


def is_loopback(address: str) -> bool:
    return address.startswith(LOOPBACK)
