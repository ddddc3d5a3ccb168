"""The engine's HTTP API on its own unix socket, for the few calls on a build's clock.

The docker CLI's start is ~35 ms; one request on the socket is a few ms. Only a local
unix socket is spoken to (TLS, ssh and other transports are the CLI's); any answer but
the one expected is None or False, and the caller asks the CLI instead.
"""

from __future__ import annotations

import json
import os
import socket
from typing import BinaryIO
from urllib.parse import quote, urlencode

TIMEOUT = 5.0


def request(socket_path: str, method: str, path: str, timeout: float = TIMEOUT,
            body: BinaryIO | None = None, size: int = 0) -> tuple[int, bytes] | None:
    """(status, body) of one HTTP/1.0 request (the engine closes after the answer); None on any error.
    `body`: a file of `size` bytes sent as the request's tar body."""
    kind = "Content-Type: application/x-tar\r\n" if body is not None else ""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(socket_path)
            s.sendall(f"{method} {path} HTTP/1.0\r\nHost: docker\r\n{kind}Content-Length: {size}\r\n\r\n".encode())
            if body is not None:
                s.sendfile(body)
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1."):
            return None
        return int(head.split(b" ", 2)[1]), body
    except (OSError, ValueError, IndexError):
        return None


class Unanswered(Exception):
    """The socket gave no engine's answer: ask the CLI."""


def inspect(socket_path: str, name: str) -> dict | None:
    """`docker image inspect NAME` (a name, or an id); None when the engine has no such image."""
    got = request(socket_path, "GET", f"/images/{quote(name, safe='/:@')}/json")
    if got is None or got[0] not in (200, 404):
        raise Unanswered(name)
    if got[0] == 404:
        return None
    try:
        found = json.loads(got[1])
    except ValueError as exc:
        raise Unanswered(name) from exc
    if not isinstance(found, dict) or not str(found.get("Id", "")).startswith("sha256:"):
        raise Unanswered(name)
    return found


def inspect_all(socket_path: str | None, names) -> list[dict | None] | None:
    """`inspect` of each name; None when there is no socket or it did not answer (ask the CLI)."""
    if not socket_path:
        return None
    try:
        return [inspect(socket_path, n) for n in names]
    except Unanswered:
        return None


def image_id(socket_path: str, name: str) -> str | None:
    """The engine's id of an image (a name, or an id), or None."""
    try:
        found = inspect(socket_path, name)
    except Unanswered:
        return None
    return found["Id"] if found else None


def tag(socket_path: str, image: str, ref: str) -> bool:
    """`docker tag IMAGE REF` on the socket; False when REF is not NAME[:TAG] or the engine refused."""
    parts = split_ref(ref)
    if parts is None:
        return False
    query = urlencode({"repo": parts[0], "tag": parts[1]})
    got = request(socket_path, "POST", f"/images/{quote(image, safe=':@')}/tag?{query}")
    return bool(got) and got[0] == 201


def load(socket_path: str, tar_path: str, timeout: float) -> tuple[bool, str] | None:
    """`docker load -q -i TAR` on the socket: (loaded, what the CLI would print), or None
    when the socket gave no engine's answer (then ask the CLI)."""
    try:
        with open(tar_path, "rb") as fh:
            got = request(socket_path, "POST", "/images/load?quiet=1", timeout, fh, os.fstat(fh.fileno()).st_size)
    except OSError:
        return None
    if got is None:
        return None
    if got[0] != 200:
        return False, ""
    said, failed = [], False
    for line in got[1].splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict):
            failed = failed or "error" in msg or "errorDetail" in msg
            said.append(str(msg.get("stream", "")))
    return not failed, "".join(said)


def split_ref(ref: str) -> tuple[str, str] | None:
    """NAME[:TAG] -> (NAME, TAG or latest); None for a digest reference or an empty part.
    A colon before the last slash is a registry's port, not a tag."""
    if "@" in ref or not ref:
        return None
    name, colon, tag_ = ref.rpartition(":")
    if not colon or "/" in tag_:
        return ref, "latest"
    return (name, tag_) if name and tag_ else None
