"""The `registry` build cache backend: BuildKit cache as tags in an OCI registry.

Keys map to tags of one repository (`[build] registry = "HOST:PORT/REPO"`). Before
asking BuildKit to import a key we check the tag exists (a HEAD on the manifest), so a
missing key costs nothing and an unreachable registry is one line, not a slow build.

Each build exports to its own tag (`KEY--b<unix time>-<random>`), and dockcache then
points the key tag at that manifest (one GET and one PUT). A registry tag is
last-writer-wins: concurrent builds of one key each publish a complete manifest and the
key ends on one of them; nothing is half-written, one build's records may be lost. The
time in the build tag is what retention (`cache prune --backend registry`) ages keys by.
The key's earlier builds stay as `KEY--h1`, `KEY--h2` (`build.key_history` in all) and
are imported with it, as in the local store: builds of other build args or targets of
one repository no longer replace each other's records. BuildKit itself HEADs every blob
before it uploads, so blobs the registry holds are never sent again.

Credentials come from the user's `docker login` (`shim.build.store.registry_auth`), read only when a
registry answers 401 and never stored. A registry that refuses them, or that has none to
use, is left out of the build with one line (BuildKit would be refused too). One whose
authentication dockcache cannot do (an unknown scheme, a token server that fails) is
still imported from and exported to by BuildKit, straight to the key tag.

About 300 lines: the registry API dockcache needs (probe, move with history, tags,
delete, inventory) and the pure prune plan; authentication is registry_auth.py.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import urllib.error
import urllib.request
from shim.core.records import dataclass

from shim.build.store import registry_auth
from shim.build.store.registry_auth import HUB_HOSTS

ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])
BUILD_TAG_RE = re.compile(r"^(?P<key>.+)--b(?P<ts>\d{10})-[0-9a-f]{6}$")
MAX_TAG = 128
HIST_TAG = "--h"  # KEY--h1: the build before KEY's


def lineage_tags(key: str, history: int) -> list[str]:
    """KEY, KEY--h1, ... KEY--h(history-1): every tag a key's builds live under."""
    return [key, *(f"{key}{HIST_TAG}{i}" for i in range(1, max(1, history)))]


class RegistryUnreachable(Exception):
    """The registry did not answer: build without it."""


class RegistryError(Exception):
    """The registry answered, but not as needed (phrased for the user)."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class RegistryDenied(RegistryError):
    """No usable `docker login` for the registry, or it refused the one there is."""


@dataclass(frozen=True)
class Probe:
    existing: tuple[str, ...]
    needs_login: bool  # dockcache could not authenticate (scheme, token server); BuildKit may


@dataclass(frozen=True)
class TagInfo:
    tag: str
    key: str
    built_at: int | None  # from a build tag; None for a key tag
    digest: str | None
    size: int  # bytes the manifest references (shared blobs counted once per tag)


def ref(registry: str, tag: str) -> str:
    return f"{registry}:{tag}"


def build_tag(key: str, now: float, rand: str) -> str:
    suffix = f"--b{int(now):010d}-{rand}"
    return key[:MAX_TAG - len(suffix)] + suffix


class Registry:
    """The few registry API calls the backend needs, over plain HTTP(S)."""

    def __init__(self, spec: str, *, timeout: float = 5.0, environ=None):
        self.spec = spec
        host, _, self.repo = spec.partition("/")
        self.host = host
        self.environ = os.environ if environ is None else environ
        self.authorization: str | None = None  # answered challenge, reused for later calls
        self._creds = ...  # looked up on the first 401 only
        local = host.split(":")[0] in ("localhost", "127.0.0.1", "::1")
        api_host = "registry-1.docker.io" if host in HUB_HOSTS else host
        # Like the engine: localhost speaks http; others https, and http only if https
        # fails outright (a registry the daemon lists under insecure-registries).
        self.bases = [f"{scheme}://{api_host}/v2/{self.repo}" for scheme in (("http",) if local else ("https", "http"))]
        self.timeout = timeout

    def _call(self, method: str, path: str, *, headers: dict | None = None, data: bytes | None = None):
        code, resp_headers, body = self._send(method, path, headers, data)
        if code == 401:
            self.authorization = self._answer(method, resp_headers)
            code, resp_headers, body = self._send(method, path, headers, data)
            if code in (401, 403):
                if self._creds and self.authorization.startswith("Bearer "):
                    # A token that does not reach the repository: no rights, or (Docker Hub)
                    # a repository not created yet. BuildKit may still push; let it try.
                    raise RegistryError(f"build cache registry {self.spec}: the login's token does not reach "
                                        f"{self.repo} (HTTP {code})", code)
                raise self._denied(code)
        return code, resp_headers, body

    def _denied(self, code: int) -> RegistryDenied:
        if self._creds:
            return RegistryDenied(f"build cache registry {self.spec} refused the `docker login` for {self.host} "
                                  f"(HTTP {code})", code)
        return RegistryDenied(f"build cache registry {self.spec} needs `docker login {self.host}`", code)

    def _answer(self, method: str, headers) -> str:

        if self._creds is ...:
            self._creds = registry_auth.credentials(self.host, self.environ)
        # Ask for push with pull: a token server grants what it can, and Hub answers a pull-only
        # token for a repository that does not exist yet with 401, not 404.
        action = "delete" if method == "DELETE" else "pull,push"
        challenge = headers.get("WWW-Authenticate", "") if headers else ""
        try:
            return registry_auth.authorization(challenge, self._creds, f"repository:{self.repo}:{action}",
                                              timeout=self.timeout)
        except registry_auth.AuthError as exc:
            if exc.denied or not challenge:
                raise self._denied(401) from None
            raise RegistryError(f"build cache registry {self.spec}: {exc}", 401) from None

    def _send(self, method: str, path: str, headers: dict | None, data: bytes | None):
        headers = dict(headers or {})
        if self.authorization:
            headers["Authorization"] = self.authorization
        first_error = None
        for base in list(self.bases):
            req = urllib.request.Request(base + path, method=method, data=data, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    self.bases = [base]  # remember what answered
                    return resp.status, resp.headers, resp.read()
            except urllib.error.HTTPError as exc:
                self.bases = [base]
                return exc.code, exc.headers, b""
            except (urllib.error.URLError, OSError) as exc:
                first_error = first_error or exc
                if not isinstance(getattr(exc, "reason", exc), (ssl.SSLError, ConnectionResetError)):
                    break  # not a TLS mismatch: plain http would not answer either (and a timeout must not double)
        raise RegistryUnreachable(f"build cache registry {self.spec} unreachable ({first_error})")

    def probe(self, keys) -> Probe:
        """Which key tags exist (all may, when only BuildKit can authenticate).

        Raises RegistryDenied when there is no login to use or it is refused."""
        found = []
        for key in keys:
            try:
                code, _h, _b = self._call("HEAD", f"/manifests/{key}", headers={"Accept": ACCEPT})
            except RegistryDenied:
                raise
            except RegistryError:
                return Probe(tuple(keys), True)
            if code == 403:
                raise self._denied(403)
            if code == 200:
                found.append(key)
        return Probe(tuple(found), False)

    def tags(self) -> list[str]:
        out, path = [], "/tags/list?n=1000"
        while path:
            code, headers, body = self._call("GET", path)
            if code == 404:
                return out  # no repository yet
            if code != 200:
                raise RegistryError(f"{self.spec}: listing tags answered HTTP {code}")
            out += json.loads(body or b"{}").get("tags") or []
            link = headers.get("Link", "") if headers else ""
            m = re.search(r"<[^>]*?(/tags/list\?[^>]*)>", link)
            path = m.group(1) if m else ""
        return out

    def manifest(self, tag: str) -> tuple[bytes, str, str]:
        code, headers, body = self._call("GET", f"/manifests/{tag}", headers={"Accept": ACCEPT})
        if code != 200:
            raise RegistryError(f"{self.spec}:{tag}: manifest answered HTTP {code}", code)
        return body, headers.get("Content-Type", ""), headers.get("Docker-Content-Digest", "")

    def move(self, source_tag: str, key: str, *, history: int = 1) -> None:
        """Point `key` at the manifest `source_tag` has (the blobs are already there),
        its earlier builds shifted down to KEY--h1.. first."""
        self.timeout = max(self.timeout, 5.0)  # after the build: the probe's short timeout is not needed
        body, ctype, digest = self.manifest(source_tag)
        if history > 1:
            self._shift(key, digest, history)
        self._put(key, body, ctype)

    def _shift(self, key: str, new_digest: str, history: int) -> None:
        """KEY -> KEY--h1 -> KEY--h2 ..., dropping a build equal to the new one."""
        older = []
        for tag in lineage_tags(key, history)[:-1]:
            try:
                body, ctype, digest = self.manifest(tag)
            except RegistryError as exc:
                if exc.code == 404:
                    break
                raise
            if digest != new_digest:
                older.append((body, ctype))
        for i, (body, ctype) in reversed(list(enumerate(older[: history - 1], start=1))):
            self._put(f"{key}{HIST_TAG}{i}", body, ctype)

    def _put(self, tag: str, body: bytes, ctype: str) -> None:
        code, _h, _b = self._call("PUT", f"/manifests/{tag}", headers={"Content-Type": ctype}, data=body)
        if code not in (200, 201, 202):
            raise RegistryError(f"{self.spec}: moving {tag} answered HTTP {code}")

    def delete(self, digest: str) -> None:
        code, _h, _b = self._call("DELETE", f"/manifests/{digest}")
        if code == 405:
            raise RegistryError(f"{self.spec}: the registry refuses deletes (enable storage.delete)")
        if code not in (200, 202, 404):
            raise RegistryError(f"{self.spec}: deleting {digest[:19]} answered HTTP {code}")

    def inventory(self) -> list[TagInfo]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(self._info, self.tags()))

    def _info(self, tag: str) -> TagInfo:
        m = BUILD_TAG_RE.match(tag)
        try:
            body, _ctype, digest = self.manifest(tag)
        except RegistryError:
            body, digest = b"{}", None
        return TagInfo(tag, m.group("key") if m else tag, int(m.group("ts")) if m else None,
                       digest or None, manifest_size(body))


def manifest_size(body: bytes) -> int:
    """Bytes a cache manifest references: its config and every layer/child it lists."""
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return 0
    parts = [doc.get("config") or {}, *(doc.get("layers") or []), *(doc.get("manifests") or [])]
    return sum(int(p.get("size") or 0) for p in parts if isinstance(p, dict))


@dataclass(frozen=True)
class Deletion:
    digest: str
    tags: tuple[str, ...]
    reason: str
    size: int


def plan_prune(infos: list[TagInfo], *, now: float, max_age: float | None, max_size: int | None) -> list[Deletion]:
    """Which manifests to delete. Pure. A manifest delete removes every tag on it, so a
    digest a kept key points at is never deleted; a build tag newer than its key's
    content is a build still publishing (or one whose move failed) and is kept."""
    by_digest: dict[str, list[TagInfo]] = {}
    for t in infos:
        if t.digest:
            by_digest.setdefault(t.digest, []).append(t)
    keys = {t.key: t for t in infos if t.built_at is None}
    key_time = {k: max((b.built_at for b in by_digest.get(t.digest or "", []) if b.built_at), default=None)
                for k, t in keys.items()}
    doomed: dict[str, str] = {}
    for k, t in keys.items():
        if max_age is not None and key_time[k] is not None and now - key_time[k] > max_age and t.digest:
            doomed[t.digest] = f"key {k} last built {int(now - key_time[k])} s ago"
    if max_size is not None:
        _by_size(keys, key_time, doomed, max_size)
    kept = {t.digest for t in keys.values() if t.digest not in doomed}
    for t in infos:
        if t.built_at is None or not t.digest or t.digest in kept or t.digest in doomed:
            continue
        newest = key_time.get(t.key)
        if newest is not None and t.built_at < newest:
            doomed[t.digest] = f"build tag superseded by a newer build of {t.key}"
        elif max_age is not None and now - t.built_at > max_age:
            doomed[t.digest] = f"build tag older than {int(max_age)} s"
    return [Deletion(d, tuple(sorted(x.tag for x in by_digest[d])), why, by_digest[d][0].size)
            for d, why in doomed.items()]


def _by_size(keys: dict[str, TagInfo], key_time: dict, doomed: dict[str, str], max_size: int) -> None:
    live = [t for t in keys.values() if t.digest and t.digest not in doomed]
    total = sum({t.digest: t.size for t in live}.values())
    for t in sorted(live, key=lambda t: key_time[t.key] or 0):  # oldest first, unknown age first
        if total <= max_size:
            return
        if t.digest not in doomed:
            doomed[t.digest] = f"over the size limit; key {t.key} is the least recently built"
            total -= t.size
