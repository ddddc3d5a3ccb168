"""The Distribution registry's config for one pull-through cache. Pure.

Distribution 2.8 (Debian's `docker-registry`) in proxy mode: one upstream per instance
(`proxy.remoteurl`), content kept under the cache's own dir and dropped by the registry's
own scheduler a week after it was last fetched. No in-memory blob descriptor cache: a blob
that `images prune` deleted must read as missing (then the cache fetches it again), not
as present. The debug server's expvar page (`/debug/vars`) carries the proxy's hit and
miss counters that `images status` shows.
"""

from __future__ import annotations

import json
import re


def config_yaml(*, data_dir: str, address: str, debug_address: str, remote_url: str, secret: str,
                username: str = "", password: str = "") -> str:
    """YAML (JSON is YAML: every value quoted by json.dumps)."""
    q = json.dumps
    lines = ["version: 0.1",
             "log:", "  level: info", "  formatter: text",
             "storage:", "  filesystem:", f"    rootdirectory: {q(data_dir)}",
             "  delete:", "    enabled: true",
             "http:", f"  addr: {q(address)}", f"  secret: {q(secret)}",
             "  debug:", f"    addr: {q(debug_address)}",
             "proxy:", f"  remoteurl: {q(remote_url)}"]
    if username:
        lines += [f"  username: {q(username)}", f"  password: {q(password)}"]
    return "\n".join(lines) + "\n"


def fill_mode(version_text: str) -> str:
    """How a miss gets into the cache (images/prefetch.py): Distribution 3 stores a blob from
    the one fetch it streams to the engine ("stream"); 2.x fetches it twice from the
    upstream at once, so dockcache fills the cache before the engine pulls ("prefill").
    `registry --version` prints e.g. `registry github.com/distribution/distribution/v3 v3.1.2`
    (Debian's: `docker-registry github.com/docker/distribution 2.8.2+ds1`); unknown: prefill."""
    words = version_text.split()
    found = re.match(r"v?(\d+)\.\d+", words[2]) if len(words) >= 3 else None
    return "stream" if found and int(found.group(1)) >= 3 else "prefill"

