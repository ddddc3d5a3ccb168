"""The default ACL that keeps bind-mode cache dirs under the host user's control."""

import os
import struct

import pytest

from shim.run.hostacl import encode, grant_host_user


def test_encoding_is_the_kernel_xattr_format():
    blob = encode(1000)
    version, = struct.unpack_from("<I", blob)
    entries = [struct.unpack_from("<HHI", blob, 4 + 8 * i) for i in range(5)]
    assert version == 2 and len(blob) == 4 + 5 * 8
    assert (0x02, 7, 1000) in entries and [e[0] for e in entries] == sorted(e[0] for e in entries)


def test_grant_sets_a_default_acl_that_new_files_inherit(tmp_path):
    d = tmp_path / "cache"
    d.mkdir()
    if not grant_host_user(str(d), 1000):
        pytest.skip(f"{tmp_path} has no POSIX ACL support")
    assert os.getxattr(str(d), "system.posix_acl_default") == encode(1000)
    (d / "sub").mkdir()
    inherited = os.getxattr(str(d / "sub"), "system.posix_acl_access")
    entries = [struct.unpack_from("<HHI", inherited, 4 + 8 * i) for i in range((len(inherited) - 4) // 8)]
    assert (0x02, 7, 1000) in entries  # a dir made later (by anyone) grants the host user rwx
    assert grant_host_user(str(d), 1000)  # idempotent


def test_grant_tree_reaches_every_dir_the_user_owns_and_keeps_their_modes(tmp_path):
    """run.host_caches: a user's existing cache tree; what a root container adds in any
    existing dir stays the user's. Dirs owned by someone else are left alone."""
    from shim.run.hostacl import grant_tree

    # as root, the user is uid 1000 and "other" stays root's; as anyone else, the user is
    # whoever runs the tests (a dir of another owner cannot be made without root)
    user = 1000 if os.geteuid() == 0 else os.geteuid()
    root = tmp_path / "npm"
    (root / "_cacache" / "index").mkdir(parents=True)
    (root / "other").mkdir()
    os.chmod(root, 0o700)
    for d in (root, root / "_cacache", root / "_cacache" / "index"):
        os.chown(d, user, user)
    if not grant_tree(str(root), user):
        pytest.skip(f"{tmp_path} has no POSIX ACL support")
    assert os.getxattr(str(root), "system.posix_acl_default") == encode(user, 0o700)
    assert os.stat(root).st_mode & 0o007 == 0  # private stays private (group bits show the ACL mask)
    assert os.getxattr(str(root / "_cacache" / "index"), "system.posix_acl_default") == encode(user, 0o755)
    if os.geteuid() == 0:
        with pytest.raises(OSError):
            os.getxattr(str(root / "other"), "system.posix_acl_default")  # root's dir: not ours to change
