"""Signals while docker runs as dockcache's child (build, compose): each reaches it once."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CHILD = """
import signal, sys, time
ready, out = sys.argv[1:3]
count = 0
def seen(signum, frame):
    global count
    count += 1
signal.signal(signal.SIGINT, seen)
open(ready, "w").write("ready")
end = time.time() + 2.5
while time.time() < end:
    time.sleep(0.02)
open(out, "w").write(str(count))
"""
RUNNER = ("import sys; sys.path.insert(0, sys.argv[1]); from shim.core import proc; "
          "sys.exit(proc.run_child(sys.executable, sys.argv[2:]))")


def start(tmp_path, *, terminal: bool, stdin_tty: bool):
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    ready, out = tmp_path / "ready", tmp_path / "out"
    args = [sys.executable, "-c", RUNNER, str(REPO), str(child), str(ready), str(out)]
    master = None
    if terminal:
        master, slave = pty.openpty()

        def own_terminal():
            os.setsid()
            fcntl.ioctl(1, termios.TIOCSCTTY, 0)  # the pty (our stdout) becomes the controlling terminal

        proc = subprocess.Popen(args, stdin=slave if stdin_tty else subprocess.DEVNULL, stdout=slave,
                                stderr=slave, preexec_fn=own_terminal)
        os.close(slave)
    else:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 20
    while not ready.exists():
        assert time.time() < deadline, "child did not start"
        time.sleep(0.02)
    return proc, master, out


def finish(proc, master, out) -> int:
    proc.wait(timeout=20)
    if master is not None:
        os.close(master)
    return int(out.read_text())


@pytest.mark.parametrize("stdin_tty", [True, False])
def test_ctrl_c_at_a_terminal_reaches_the_child_once(tmp_path, stdin_tty):
    """stdin redirected (`docker compose up < /dev/null`) used to mean a second SIGINT."""
    proc, master, out = start(tmp_path, terminal=True, stdin_tty=stdin_tty)
    os.write(master, b"\x03")  # ^C: the terminal signals its whole foreground group
    assert finish(proc, master, out) == 1


def test_a_signal_sent_to_dockcache_alone_is_forwarded_once(tmp_path):
    proc, master, out = start(tmp_path, terminal=False, stdin_tty=False)
    os.kill(proc.pid, signal.SIGINT)
    assert finish(proc, master, out) == 1


def test_kill_aimed_at_dockcache_in_a_terminals_foreground_is_forwarded_once(tmp_path):
    """A process-sent signal never reached the child: forwarded even with a terminal."""
    proc, master, out = start(tmp_path, terminal=True, stdin_tty=True)
    os.kill(proc.pid, signal.SIGINT)
    assert finish(proc, master, out) == 1


@pytest.mark.parametrize("code,expected", [("import sys; sys.exit(7)", 7),
                                           ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 143)])
def test_docker_s_exit_code_comes_back_unchanged(code, expected):
    rc = subprocess.run([sys.executable, "-c", RUNNER, str(REPO), "-c", code]).returncode
    assert rc == expected


@pytest.mark.parametrize("runner", [
    "from shim.core import proc; rc = proc.run_child(sys.executable, sys.argv[2:])",
    "from shim.core import proc; from shim.core.parallel import Job, run_all; import os; "
    "rc = run_all([Job('j', (sys.executable, *sys.argv[2:]), dict(os.environ))])"])
def test_a_signal_while_docker_ran_is_remembered(tmp_path, runner):
    """compose's exit code after an interrupted build (130) needs to know one came."""
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    ready, out = tmp_path / "ready", tmp_path / "out"
    code = (f"import sys; sys.path.insert(0, sys.argv[1]); {runner}; "
            "print(proc.interrupted()); sys.exit(rc)")
    p = subprocess.Popen([sys.executable, "-c", code, str(REPO), str(child), str(ready), str(out)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         start_new_session=True, text=True)
    deadline = time.time() + 20
    while not ready.exists():
        assert time.time() < deadline, "child did not start"
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGINT)
    said, _ = p.communicate(timeout=20)
    assert said.split()[-1] == str(int(signal.SIGINT))
