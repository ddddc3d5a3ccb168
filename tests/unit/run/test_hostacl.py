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
