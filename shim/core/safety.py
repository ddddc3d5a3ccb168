"""What dockcache must never mount or name: credential stores, sockets, odd names.

Shared caches are writable by every container that uses them; a cache path that lands
on a credential store or the docker socket would hand them out. Config asking for one
is refused with a clear error.
"""

from __future__ import annotations

import posixpath
import re

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

# Path fragments (a component sequence) that are never a cache location.
SENSITIVE = (
    ".ssh", ".aws", ".gnupg", ".docker", ".kube", ".azure", ".config/gcloud",
    ".config/gh", ".npmrc", ".pypirc", ".netrc", ".git-credentials", ".vault-token",
    "docker.sock", "containerd.sock", ".oci", ".terraform.d",
)
SYSTEM = ("/", "/etc", "/proc", "/sys", "/dev", "/boot", "/bin", "/sbin", "/lib", "/lib64",
          "/usr", "/var/run", "/run", "/root", "/home")


def check_container_path(path: str) -> str | None:
    """Problem with using `path` as a cache mount target, or None."""
    if not isinstance(path, str) or not path.startswith("/"):
        return f"{path!r} must be an absolute container path"
    if any(c in path for c in ",:\n\0"):
        return f"{path!r} contains a character docker mount syntax cannot carry"
    return check_sensitive(path)


def check_sensitive(path: str) -> str | None:
    norm = posixpath.normpath(path)
    if norm in SYSTEM:
        return f"{norm} is a system directory, not a cache"
    parts = norm.strip("/").split("/")
    for frag in SENSITIVE:
        fparts = frag.split("/")
        for i in range(len(parts) - len(fparts) + 1):
            if parts[i:i + len(fparts)] == fparts:
                return f"{norm} is (or is inside) a credential store or socket ({frag}); refused"
    return None


def check_name(name: str) -> str | None:
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        return f"invalid name {name!r} (letters, digits, . _ -; at most 128)"
    return None
