"""One pull through a host cache, on the engine's own unix socket, then the user's name.

The engine pulls `CACHE/PATH:TAG` (no X-Registry-Auth header: the user's own login is
never sent, so the cache only ever serves what an anonymous pull, or the credentials its
operator configured, may read), tags the image with the name the user gave and removes the
cache's name. The image keeps its id and digest: the cache serves the upstream's manifest
bytes, and the engine verifies every digest as for any pull.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from urllib.parse import quote, urlencode

from shim.core import engineapi
from shim.core.records import dataclass
from shim.images.route import Route

PULL_TIMEOUT = 600.0  # between two progress lines; a pull itself may take longer


@dataclass(frozen=True)
class Pulled:
    ok: bool
    why: str = ""  # the engine's own words when not ok
    down: bool = False  # the cache did not answer at all (not: it had no such image)
    digest: str = ""


def pull(socket_path: str, route: Route, *, platform: str | None = None,
         show: Callable[[dict], None] | None = None) -> Pulled:
    """Pull `route.mirror`, then tag it as `route.image`; `show` gets each progress message."""
    assert route.ref is not None and route.mirror is not None
    name, _, tag = route.mirror.rpartition(":")
    query = {"fromImage": name, "tag": tag, **({"platform": platform} if platform else {})}
    got = _stream(socket_path, f"/images/create?{urlencode(query)}", show)
    if not got.ok:
        return got
    if not engineapi.tag(socket_path, route.mirror, user_ref(route)):
        return Pulled(False, "the engine did not tag the image")
    engineapi.request(socket_path, "DELETE", f"/images/{quote(route.mirror, safe='/:@')}?noprune=1")
    return got


def user_ref(route: Route) -> str:
    """The name the user gave, with the tag docker would add."""
    return route.image if ":" in route.image.rsplit("/", 1)[-1] else f"{route.image}:{route.ref.tag}"


def _stream(socket_path: str, path: str, show) -> Pulled:
    """POST a pull and read its JSON progress lines; an `error` line or a non-200 is a failure."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(PULL_TIMEOUT)
            s.connect(socket_path)
            s.sendall(f"POST {path} HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n".encode())
            fh = s.makefile("rb")
            status = fh.readline().split(b" ", 2)
            code = int(status[1]) if len(status) > 1 else 0
            while fh.readline().strip():  # headers
                pass
            return _read_progress(fh, code, show)
    except (OSError, ValueError) as exc:
        return Pulled(False, f"engine socket: {exc}")


def _read_progress(fh, code: int, show) -> Pulled:
    digest, error = "", ""
    for raw in fh:
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        if msg.get("error") or msg.get("message"):
            error = str(msg.get("error") or msg.get("message"))
            continue
        status = str(msg.get("status", ""))
        if status.startswith("Digest: "):
            digest = status[len("Digest: "):]
        if show is not None:
            show(msg)
    if code != 200 or error:
        return Pulled(False, error or f"engine answered {code}", down=_is_down(code, error))
    return Pulled(True, digest=digest)


def _is_down(code: int, error: str) -> bool:
    """The cache did not answer (refused, reset, timed out): a 404 or 401 came from a cache that is up."""
    words = error.lower()
    return code >= 500 and any(w in words for w in ("connection refused", "connection reset", "timeout",
                                                    "no such host", "eof", "dial tcp"))
