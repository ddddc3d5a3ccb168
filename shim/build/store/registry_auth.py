"""The user's `docker login`, used for dockcache's own registry API calls.

BuildKit authenticates cache imports and exports itself; dockcache's few calls (does a
key exist, move a key tag, prune) need the same credentials. They are read when a
registry answers 401, from where `docker login` put them (a credential helper, the
credsStore, or config.json `auths`), used for that process only and never written
anywhere. Both challenge kinds are answered: Basic (htpasswd registries) and Bearer
(token servers: Docker Hub, Harbor, GitLab, distribution's token auth).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from shim.core.records import dataclass
from pathlib import Path

HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")  # names of Docker Hub's registry

TOKEN_USER = "<token>"  # what docker stores as the username of an identity (refresh) token


@dataclass(frozen=True)
class Credentials:
    username: str
    secret: str

    @property
    def identity_token(self) -> bool:
        return self.username == TOKEN_USER


class AuthError(Exception):
    """The registry's challenge could not be answered."""

    def __init__(self, message: str, *, denied: bool = False):
        super().__init__(message)
        self.denied = denied  # no login to use, or the login was refused: BuildKit fails too


def config_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("DOCKER_CONFIG") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".docker")
    return Path(base) / "config.json"


def _server_of(key: str) -> str:
    """`https://host:5000/v1/` and `host:5000` name the same login."""
    key = re.sub(r"^[a-z]+://", "", key.strip())
    return key.split("/", 1)[0].lower()


def credentials(host: str, environ: Mapping[str, str]) -> Credentials | None:
    """What `docker login HOST` left, or None. Never raises on a bad config."""
    try:
        cfg = json.loads(config_path(environ).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None

    host = "index.docker.io" if host.lower() in HUB_HOSTS else host.lower()  # where docker files Hub logins
    helpers = cfg.get("credHelpers") if isinstance(cfg.get("credHelpers"), dict) else {}
    helper = next((h for k, h in helpers.items() if _server_of(k) == host), None) or cfg.get("credsStore")
    if isinstance(helper, str) and helper:
        found = from_helper(helper, host, environ)
        if found:
            return found
    auths = cfg.get("auths") if isinstance(cfg.get("auths"), dict) else {}
    entry = next((v for k, v in auths.items() if _server_of(k) == host and isinstance(v, dict)), None)
    return from_entry(entry) if entry else None


def from_entry(entry: dict) -> Credentials | None:
    if entry.get("identitytoken"):
        return Credentials(TOKEN_USER, str(entry["identitytoken"]))
    if entry.get("auth"):
        try:
            user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return Credentials(user, secret) if user else None
    if entry.get("username") and entry.get("password"):
        return Credentials(str(entry["username"]), str(entry["password"]))
    return None


def from_helper(helper: str, host: str, environ: Mapping[str, str]) -> Credentials | None:
    """Ask `docker-credential-HELPER get`, the protocol docker itself uses."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", helper):
        return None
    servers = ("https://index.docker.io/v1/",) if host == "index.docker.io" else (host, f"https://{host}")
    for server in servers:  # the names `docker login` files a server under
        try:
            out = subprocess.run([f"docker-credential-{helper}", "get"], input=server, capture_output=True,
                                 text=True, timeout=10, env=dict(environ), check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode == 0:
            try:
                doc = json.loads(out.stdout)
            except ValueError:
                return None
            if doc.get("Secret"):
                return Credentials(str(doc.get("Username") or ""), str(doc["Secret"]))
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` → ("bearer", {...})."""
    scheme, _, rest = (header or "").strip().partition(" ")
    return scheme.lower(), {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}


def basic_header(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()


def authorization(challenge: str, creds: Credentials | None, scope: str, *, timeout: float) -> str:
    """The Authorization header that answers `challenge`, fetching a token if asked to."""
    scheme, params = parse_challenge(challenge)
    if scheme == "basic":
        if not creds or creds.identity_token:
            raise AuthError("wants a login", denied=True)
        return basic_header(creds)
    if scheme != "bearer" or not params.get("realm"):
        raise AuthError(f"asks for {scheme or 'an unknown'} authentication")
    scopes = [s for s in dict.fromkeys([params.get("scope", ""), scope]) if s]
    return "Bearer " + fetch_token(params["realm"], params.get("service", ""), scopes, creds, timeout=timeout)


def fetch_token(realm: str, service: str, scopes: list[str], creds: Credentials | None, *, timeout: float) -> str:
    if creds and creds.identity_token:  # OAuth2 refresh, as docker does for identity tokens
        form = {"grant_type": "refresh_token", "refresh_token": creds.secret, "service": service,
                "scope": " ".join(scopes), "client_id": "dockcache"}
        req = urllib.request.Request(realm, data=urllib.parse.urlencode(form).encode(), method="POST")
    else:
        query = urllib.parse.urlencode([("service", service)] * bool(service) + [("scope", s) for s in scopes])
        req = urllib.request.Request(f"{realm}{'&' if '?' in realm else '?'}{query}")
        if creds:
            req.add_header("Authorization", basic_header(creds))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise AuthError(f"token server answered HTTP {exc.code}", denied=exc.code in (401, 403)) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise AuthError(f"token server unreachable ({exc})") from None
    token = doc.get("token") or doc.get("access_token")
    if not token:
        raise AuthError("token server gave no token")
    return str(token)
