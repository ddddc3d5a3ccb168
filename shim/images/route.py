"""Whether one image is pulled through a host cache, and why (or why not). Pure.

The engine pulls directly, as it always did, unless every condition holds: the image is
named by tag (a cache can be asked for a digest, but the engine cannot then give the image
the user's digest name), its registry has a cache that is up, the engine shares this
host's loopback (its own unix socket), and the image is absent or the user asked for a
pull (`docker pull`, `--pull always`).
"""

from __future__ import annotations

from collections.abc import Mapping

from shim.core.records import dataclass
from shim.images.refs import Ref, parse


@dataclass(frozen=True)
class Route:
    image: str
    via: str | None  # the cache's HOST:PORT, or None: the engine pulls as it always did
    mirror: str | None  # the image's name in the cache
    reason: str
    ref: Ref | None = None


def decide(image: str, caches: Mapping[str, str], *, present: bool | None, asked: bool, local: bool) -> Route:
    """`caches`: registry -> the address of its cache, only those that are up.
    `present`: the engine has the image (None: not asked yet). `asked`: a pull the user asked for."""
    ref = parse(image)
    if ref is None:
        return Route(image, None, None, "not an image reference dockcache reads")
    if ref.digest:
        return Route(image, None, None, "named by digest: the engine pulls it directly", ref)
    address = caches.get(ref.registry)
    if address is None:
        return Route(image, None, None, f"no image cache for {ref.registry}", ref)
    if not local:
        return Route(image, None, None, "the engine is not on this host's unix socket: it cannot reach the cache", ref)
    if present and not asked:
        return Route(image, None, None, "the engine has it", ref)
    return Route(image, address, ref.mirror_name(address), f"through the cache for {ref.registry} at {address}", ref)


def wanted(routes) -> list[Route]:
    """The routes that pull through a cache, each image once."""
    seen, out = set(), []
    for r in routes:
        if r.via and r.image not in seen:
            seen.add(r.image)
            out.append(r)
    return out
