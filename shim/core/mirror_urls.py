"""What a mirror URL in config may be. Core, because config validates `[mirrors]` when it
loads; the run flow (shim.run.mirrors) decides what each tool gets from it."""

from __future__ import annotations

KINDS = ("npm", "pypi", "go", "cargo", "maven")


def check_url(kind: str, value: str) -> str | None:
    """Why `value` can't be the `kind` mirror, or None. Credentials are refused: the URL
    ends up in `docker run -e` (visible in `ps` and `docker inspect`)."""
    from urllib.parse import urlsplit  # ~2 ms: only when a mirror is configured

    items = [v.strip() for v in value.replace("|", ",").split(",")] if kind == "go" else [value]
    for item in items:
        if kind == "go" and item in ("direct", "off"):
            continue
        url = item[len("sparse+"):] if kind == "cargo" and item.startswith("sparse+") else item
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"{item!r} is not an http(s) URL"
        if parts.username or parts.password:
            return ("credentials in a mirror URL would be visible in `docker inspect`; "
                    "keep them in the tool's own config")
        if any(c in item for c in "\"'<>\n\r\t \\"):
            return f"{item!r} contains characters a URL does not need"
    return None
