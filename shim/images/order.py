"""Which of the pulls side by side waits for which: a layer two images share is pulled once.

A fresh engine asked for several images that share a base (every service image FROM one
distro) fetches and unpacks the shared layers for each pull at once: containerd's pulls of
one blob wait on each other's locks and each image's unpack redoes the shared chain. On this
project's machines five images sharing a 197 MB base layer took 31-50 s side by side and
17-23 s with the largest first and the rest after it (docs/benchmarks.md). So the image with
the most bytes leads; an image waits for the first image holding each layer it shares;
images sharing nothing run side by side from the start. Measured and not kept: the smallest
first (19-24 s, no better), and releasing the others once the first has *fetched* its
layers, not unpacked them (27-31 s: the unpacks are what collide). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# a layer this small costs the pulls that share it less than the wait would
SMALL = 1 << 20

Layers = Sequence[tuple[str, int]]  # (digest, compressed size) of an image's layers, base first


def layers_of(manifest: Mapping) -> list[tuple[str, int]]:
    """An image manifest's layers as (digest, size); [] for anything else."""
    out = []
    for layer in manifest.get("layers") or []:
        if isinstance(layer, Mapping) and isinstance(layer.get("digest"), str):
            try:
                out.append((layer["digest"], int(layer.get("size") or 0)))
            except (TypeError, ValueError):
                out.append((layer["digest"], 0))
    return out


def waits(layers: Mapping[str, Layers]) -> dict[str, frozenset[str]]:
    """image -> the images whose pull it waits for (an empty set: it starts at once)."""
    lead = sorted(layers, key=lambda i: -sum(size for _, size in layers[i]))  # stable: ties keep the order given
    first: dict[str, str] = {}
    out: dict[str, frozenset[str]] = {}
    for image in lead:
        deps = set()
        for digest, size in layers[image]:
            holder = first.setdefault(digest, image)
            if holder != image and size >= SMALL:
                deps.add(holder)
        out[image] = frozenset(deps)
    return out
