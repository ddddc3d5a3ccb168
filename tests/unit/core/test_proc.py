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


def test_a_call_with_progress_shows_its_stdout_on_the_users_stderr(capfd):
    """A pull dockcache makes before `docker run` (for the image's facts) is one the user
    would have watched docker run make: its progress goes to stderr, never to stdout."""
    from shim.core import proc

    res = proc.run_docker("/bin/sh", ["-c", "echo Pulling fs layer; echo oops >&2; exit 3"], progress=True)
    out, err = capfd.readouterr()
    assert "Pulling fs layer" in err and out == ""
    assert res.returncode == 3 and res.stdout == "" and res.stderr.strip() == "oops"


def test_the_pull_before_a_run_is_made_with_progress(monkeypatch, tmp_path):
    from shim.core.grammar import parse_invocation, parse_run
    from shim.core import proc
    from shim.run import command

    calls = []

    def fake(real, argv, **kw):
        calls.append((list(argv), kw.get("progress", False)))
        return proc.Result(tuple(argv), 1, "", "No such image")

    monkeypatch.setattr(command.proc, "run_docker", fake)
    inv = parse_invocation(["run", "--rm", "reg.example/app:1", "npm", "ci"])
    ctx = command._Context("/bin/false", inv, parse_run(inv), {"HOME": str(tmp_path), "DOCKCACHE_STATE_DIR": str(tmp_path)})
    assert ctx.image_facts(pull=True) == {}
    assert [p for a, p in calls if a[0] == "pull"] == [True]
    assert all(not p for a, p in calls if a[0] != "pull")
