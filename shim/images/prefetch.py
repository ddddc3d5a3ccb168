"""Fill a cache with one image before the engine pulls it from there. Stdlib only.

Distribution 3 stores a missed blob from the one fetch it streams to the client: the
engine pulls through it directly (only the manifest is read here first). Distribution
2.8's proxy fetches a blob it lacks twice: one copy for its storage, one streamed to the
client, both from the upstream at once (proxyblobstore.go, ServeBlob). On a link to the
internet that doubles the bytes and halves the speed of every first pull. So on a miss
dockcache reads the image's manifest through the cache (stored as it passes),
asks the cache for each blob it does not hold and hangs up once the answer starts (the
proxy's own copy for its storage carries on alone), waits until every blob is in the
cache's storage, and only then lets the engine pull: everything then comes from the host.
"""

from __future__ import annotations

import http.client
import json
import os
import platform as _platform
import threading
import time

ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}
BLOBS = "docker/registry/v2/blobs/sha256"
REPOS = "docker/registry/v2/repositories"
TIMEOUT = 30.0


class Unavailable(Exception):
    """The cache cannot give this image (an upstream it cannot read, a name it does not know)."""


def image_manifest(address: str, path: str, tag: str, *, platform: str | None = None) -> dict:
    """The manifest the engine will pull (the platform's, from an index). Raises Unavailable."""
    manifest = _manifest(address, path, tag)
    if "manifests" in manifest:
        manifest = _manifest(address, path, _pick(manifest["manifests"], platform))
    return manifest


def warm(address: str, path: str, tag: str, data_dir: str, *, platform: str | None = None,
         fill: bool = True, manifest: dict | None = None) -> int:
    """The image's blobs (the cache holds them all when this returns, with `fill`). Raises
    Unavailable. Without `fill` (Distribution 3 stores what it streams: registryconf.fill_mode)
    only the manifest is read: whether the cache can give the image at all."""
    if manifest is None:
        manifest = image_manifest(address, path, tag, platform=platform)
    blobs = [manifest.get("config", {})] + list(manifest.get("layers") or [])
    link_stored(data_dir, path, [str(b.get("digest") or "") for b in blobs])
    if not fill:
        return 0
    missing = [b for b in blobs if b.get("digest") and not stored(data_dir, b["digest"])]
    for b in missing:
        if _claim(data_dir, b["digest"]):
            _trigger(address, path, b["digest"])
    size = sum(int(b.get("size") or 0) for b in missing)
    deadline = time.monotonic() + 60 + size / 1_000_000  # 1 MB/s at least, else the engine's own pull
    while missing and time.monotonic() < deadline:
        missing = [b for b in missing if not stored(data_dir, b["digest"])]
        time.sleep(0.1)
    link_stored(data_dir, path, [str(b.get("digest") or "") for b in blobs])  # those another image fetched
    return len(blobs)


_CLAIMED: set[tuple[str, str]] = set()
_CLAIM_LOCK = threading.Lock()


def _claim(data_dir: str, digest: str) -> bool:
    """Only one fill per blob in this process: images pulled side by side (`compose up`) that
    share a base would each have the cache fetch the shared layers again (935 MB from the
    upstream for a 540 MB stack); the others wait for it to be stored and link it."""
    with _CLAIM_LOCK:
        if (data_dir, digest) in _CLAIMED:
            return False
        _CLAIMED.add((data_dir, digest))
        return True


def link_stored(data_dir: str, path: str, digests: list[str]) -> int:
    """Blobs the cache holds under another repository, linked under this one; how many.

    Distribution's proxy serves a blob only from the repository it was fetched for: images
    that share a base (every service image FROM one distro) get the shared layers once, under
    whichever repository the engine asked first, and a new session whose engine asks another
    repository for them fetches them from the internet again (a 197 MB base layer in the
    images bench). The registry's own storage layout (`storage/paths.go`: a `link` file per
    repository naming the digest, as a blob's commit writes it) makes the stored blob this
    repository's too. Only where this process may write the cache's storage (`images up`
    ran as this user): elsewhere the proxy fetches it again, as before."""
    if any(part in ("", ".", "..") for part in path.split("/")):
        return 0
    done = 0
    for digest in digests:
        hexd = digest.split(":", 1)[-1]
        if not digest.startswith("sha256:") or not stored(data_dir, digest):
            continue
        link = os.path.join(data_dir, REPOS, path, "_layers", "sha256", hexd, "link")
        if os.path.exists(link):
            continue
        try:
            os.makedirs(os.path.dirname(link), exist_ok=True)
            tmp = f"{link}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(digest)
            os.replace(tmp, link)
        except OSError:
            return done
        done += 1
    return done


def stored(data_dir: str, digest: str) -> bool:
    hexd = digest.split(":", 1)[-1]
    return os.path.exists(os.path.join(data_dir, BLOBS, hexd[:2], hexd, "data"))


def _pick(entries: list, platform: str | None) -> str:
    """The digest of the platform's manifest in an index, as the engine picks it."""
    want = (platform or f"linux/{ARCH.get(_platform.machine(), _platform.machine())}").split("/")
    for e in entries:
        p = e.get("platform") or {}
        if [p.get("os"), p.get("architecture")] == want[:2] and (len(want) < 3 or p.get("variant") == want[2]):
            return e["digest"]
    raise Unavailable(f"no manifest for {'/'.join(want)}")


def _manifest(address: str, path: str, reference: str) -> dict:
    conn = http.client.HTTPConnection(address, timeout=TIMEOUT)
    try:
        conn.request("GET", f"/v2/{path}/manifests/{reference}", headers={"Accept": ACCEPT})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise Unavailable(f"cache at {address}: {exc}") from None
    finally:
        conn.close()
    if resp.status != 200:
        raise Unavailable(f"cache answered {resp.status} for {path}:{reference}")
    try:
        return json.loads(body)
    except ValueError:
        raise Unavailable("not a manifest") from None


def _trigger(address: str, path: str, digest: str) -> None:
    """Ask for a blob and hang up once the answer starts: the proxy stores it on its own."""
    conn = http.client.HTTPConnection(address, timeout=TIMEOUT)
    try:
        conn.request("GET", f"/v2/{path}/blobs/{digest}")
        conn.getresponse()
    except (OSError, http.client.HTTPException):
        pass
    finally:
        conn.close()
