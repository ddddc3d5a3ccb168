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
