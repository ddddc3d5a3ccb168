"""The one process boundary: dockcache's own docker calls never read the user's stdin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_a_fact_call_leaves_stdin_to_the_real_command():
    """`docker build -`, `build -f -` and `compose -f -` read stdin: a fact call that
    inherited it (image inspect, compose config, buildx inspect) would drain it first."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from shim.core import proc; "
            "got = proc.run_docker('/bin/cat', []); print(repr(got.stdout), repr(sys.stdin.read()))")
    cp = subprocess.run([sys.executable, "-c", code, str(REPO)], input="FROM scratch\n", capture_output=True,
                        text=True, timeout=30)
    assert cp.stdout.strip() == "'' 'FROM scratch\\n'"
