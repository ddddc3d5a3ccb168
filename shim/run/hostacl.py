"""Bind mode: let the host user keep control of cache dirs that root containers write.

A root container writes root-owned files into a host cache dir; a non-root host user
could then neither clear nor prune them. A default POSIX ACL on the dir gives that user
rwx on everything created below it (the kernel applies it whoever creates the file), so
no chown after the container is needed. Filesystems without ACLs simply keep today's
behaviour. Encoded by hand (the xattr format is small and stable) to avoid a dependency
on the acl tools.
"""

from __future__ import annotations

import os
import struct

_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_UNDEFINED = 0xFFFFFFFF
_DEFAULT = "system.posix_acl_default"
_ACCESS = "system.posix_acl_access"


def encode(uid: int, mode: int = 0o755) -> bytes:
    """u::rwx, u:<uid>:rwx, g::r-x, m::rwx, o::r-x (entries sorted by tag, then id); the
    owner, group and other entries follow `mode`."""
    entries = [(_USER_OBJ, (mode >> 6) & 7, _UNDEFINED), (_USER, 7, uid), (_GROUP_OBJ, (mode >> 3) & 7, _UNDEFINED),
               (_MASK, 7, _UNDEFINED), (_OTHER, mode & 7, _UNDEFINED)]
    return struct.pack("<I", _VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries)


def grant_host_user(path: str, uid: int) -> bool:
    """Give `uid` rwx on `path` and, by default, on all it will hold. False if unsupported."""
    blob = encode(uid)
    try:
        if os.getxattr(path, _DEFAULT) == blob:
            return True
    except OSError:
        pass
    try:
        os.setxattr(path, _ACCESS, blob)
        os.setxattr(path, _DEFAULT, blob)
        return True
    except OSError:
        return False  # no ACL support here (tmpfs without acl, some network filesystems)


def grant_tree(path: str, uid: int) -> bool:
    """The host user's own cache dir (run.host_caches): every dir in it, with its own mode
    kept, so whatever a root container adds anywhere below stays the user's to clear.
    Only dirs the user owns can be changed (we run as that user); False if none could."""
    changed = False
    for here, _dirs, _files in os.walk(path):
        try:
            st = os.lstat(here)
            if st.st_uid != uid:
                continue
            blob = encode(uid, st.st_mode & 0o777)
            os.setxattr(here, _ACCESS, blob)
            os.setxattr(here, _DEFAULT, blob)
            changed = True
        except OSError:
            continue
    return changed
