"""The one place that starts processes. Tests fake these names.

Every docker call is an argv list (never a shell string) so the real CLI's contexts,
DOCKER_HOST and TLS settings apply exactly as for the user's own command.
"""

from __future__ import annotations

import os
import sys
TYPE_CHECKING = False  # typing costs ~15 ms to import; the hot path avoids it
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import NoReturn


class Result:
    """What a captured docker call gave (a plain class: dataclasses cost ~10 ms to import)."""

    __slots__ = ("argv", "returncode", "stdout", "stderr")

    def __init__(self, argv: tuple[str, ...], returncode: int, stdout: str, stderr: str):
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr


def debug(how: str, real: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """DOCKCACHE_DEBUG=1: the final argv (and variables dockcache adds) of every docker it starts."""
    if not os.environ.get("DOCKCACHE_DEBUG"):
        return
    import json

    added = {k: v for k, v in (env or {}).items() if os.environ.get(k) != v}
    extra = f" with {json.dumps(added)}" if added else ""
    sys.stderr.write(f"dockcache: {how} {json.dumps([real, *argv])}{extra}\n")


def exec_docker(real: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> NoReturn:
    """Replace this process with the real docker: TTY, signals, stdin and exit code stay its own."""
    debug("exec", real, argv, env)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(real, [real, *argv], dict(os.environ if env is None else env))


def run_docker(real: str, argv: Sequence[str], *, timeout: float = 30.0,
               stdin: str | None = None, env: Mapping[str, str] | None = None) -> Result:
    """Run docker for facts (inspect, volume create); output captured, never raises on exit code."""
    import subprocess  # lazily: the steady state never needs it

    cmd = (real, *argv)
    # Never the user's stdin: `build -`, `build -f -` and `compose -f -` read it, and a fact
    # call that inherited it would drain what only the real command may read.
    feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                            env=dict(env) if env is not None else None, **feed)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Result(cmd, 125, "", str(exc))
    return Result(cmd, cp.returncode, cp.stdout, cp.stderr)


_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


_FROM_TERMINAL = ("SIGINT", "SIGQUIT", "SIGWINCH")  # keys and resizes reach the whole foreground group


def run_child(real: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run docker as a child sharing our TTY; forward signals; return its exit code as docker would.

    Used where dockcache has work to do after docker ends (publishing a build cache).
    The child shares our process group: when that group is a terminal's foreground
    group, ^C, ^\\ and resizes already reach the child from the terminal and are not
    sent again (compose takes a second ^C as "force stop"), whether or not stdin is that
    terminal; every other signal we get, and these too when we are no terminal's
    foreground group (`kill -INT PID` from a script, a background job), is forwarded
    once. Known limit: `kill -INT PID` aimed at dockcache alone while it runs in a
    terminal's foreground is taken for a key press and not forwarded.
    """
    import signal
    import subprocess

    debug("run", real, argv, env)
    proc = subprocess.Popen([real, *argv], env=dict(os.environ if env is None else env))
    previous = {}
    terminal = {getattr(signal, n) for n in _FROM_TERMINAL}

    def forward(signum, _frame):
        if signum in terminal and _foreground_of_a_terminal():
            return
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    for name in _FORWARDED:
        sig = getattr(signal, name)
        previous[sig] = signal.signal(sig, forward)
    try:
        while True:
            try:
                rc = proc.wait()
                break
            except InterruptedError:
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return rc if rc >= 0 else 128 - rc


def _foreground_of_a_terminal() -> bool:
    """Is our process group the foreground group of our controlling terminal?"""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False  # no controlling terminal: nobody pressed ^C
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)
