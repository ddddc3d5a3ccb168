"""The build flow under the disk guard: no new keys in the store on a nearly full disk."""

import os
from collections import namedtuple

from shim.build import command
from shim.build.store.cachestore import CacheStore
from shim.core.config import load

VFS = namedtuple("VFS", "f_bavail f_frsize f_blocks")


def test_no_new_key_on_a_nearly_full_disk_said_once(tmp_path, monkeypatch, capsys):
    env = {"HOME": str(tmp_path), "DOCKCACHE_STATE_DIR": str(tmp_path / "state")}
    cfg, store = load(env), CacheStore(tmp_path / "store")
    monkeypatch.setattr(os, "statvfs", lambda p: VFS(1, 4096, 10_000))
    assert not command._room_for(store, "app", cfg, env)
    assert not command._room_for(store, "app", cfg, env)
    assert capsys.readouterr().err.count("disk nearly full") == 1
    monkeypatch.setattr(CacheStore, "keys", lambda self: {"app": None})
    assert command._room_for(store, "app", cfg, env)  # a key the store holds is still updated
    monkeypatch.setattr(os, "statvfs", lambda p: VFS(9_000, 1024 ** 2, 10_000))
    assert command._room_for(store, "new", cfg, env)
