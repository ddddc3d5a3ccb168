"""The `registry` build cache backend: BuildKit cache as tags in an OCI registry.

Keys map to tags of one repository (`[build] registry = "HOST:PORT/REPO"`). Before
asking BuildKit to import a key we check the tag exists (a HEAD on the manifest), so a
missing key costs nothing and an unreachable registry is one line, not a slow build.
Credentials stay with the user's `docker login`; a registry that wants them (401) is
imported from anyway and BuildKit authenticates. Concurrent publishes of one key are
last-writer-wins in a registry: nothing is corrupted, one build's records may be lost.
"""

from __future__ import annotations

import urllib.error
import urllib.request

ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


class RegistryUnreachable(Exception):
    """The registry did not answer: build without it."""


def ref(registry: str, key: str) -> str:
    return f"{registry}:{key}"


def _url(registry: str, key: str) -> str:
    host, _, repo = registry.partition("/")
    local = host.split(":")[0] in ("localhost", "127.0.0.1", "::1")
    return f"{'http' if local else 'https'}://{host}/v2/{repo}/manifests/{key}"


def existing(registry: str, keys, *, timeout: float = 2.0) -> list[str]:
    """Keys whose tag exists (or may exist behind auth); raises RegistryUnreachable."""
    out = []
    for key in keys:
        req = urllib.request.Request(_url(registry, key), method="HEAD", headers={"Accept": ACCEPT})
        try:
            urllib.request.urlopen(req, timeout=timeout).close()
            out.append(key)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                out.append(key)
        except (urllib.error.URLError, OSError) as exc:
            raise RegistryUnreachable(f"build cache registry {registry} unreachable ({exc}); "
                                      "building without it") from None
    return out
