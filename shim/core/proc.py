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
               stdin: str | None = None, env: Mapping[str, str] | None = None,
               progress: bool = False) -> Result:
    """Run docker for facts (inspect, volume create); output captured, never raises on exit code.
    progress: its stdout goes to the user's stderr instead (a pull the user would have
    watched docker run make), only its stderr is captured."""
    import subprocess  # lazily: the steady state never needs it

    cmd = (real, *argv)
    # Never the user's stdin: `build -`, `build -f -` and `compose -f -` read it, and a fact
    # call that inherited it would drain what only the real command may read.
    feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
    out = {"stdout": sys.stderr.fileno() if progress else subprocess.PIPE, "stderr": subprocess.PIPE}
    if progress:
        sys.stderr.flush()
    try:
        cp = subprocess.run(cmd, text=True, timeout=timeout, check=False,
                            env=dict(env) if env is not None else None, **out, **feed)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Result(cmd, 125, "", str(exc))
    return Result(cmd, cp.returncode, cp.stdout or "", cp.stderr)


_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")


_FROM_TERMINAL = ("SIGINT", "SIGQUIT", "SIGWINCH", "SIGHUP")  # a terminal sends these to its foreground group

_SEEN: list[int] = []  # the signals that reached us while a child of ours ran (terminal or process-sent)


def seen(signum: int) -> None:
    _SEEN.append(signum)


def interrupted() -> int | None:
    """The first SIGINT or SIGTERM that reached dockcache while docker ran as its child
    (compose exits 130 for either, whatever its builds then exit with), else None."""
    import signal

    return next((s for s in _SEEN if s in (signal.SIGINT, signal.SIGTERM)), None)


def run_watched(real: str, argv: Sequence[str], env: Mapping[str, str] | None = None, *,
                stdout=None) -> tuple[int, str]:
    """`run_child` with docker's stderr passed on as it comes and its last lines returned
    (core/relay.py): why a build failed, without holding its output back from the user."""
    from shim.core.relay import Relay

    relay = Relay.open()
    try:
        rc = run_child(real, argv, env, stdout=stdout, relay=relay)
    finally:
        tail = relay.finish() if relay else ""
    return rc, tail


def run_child(real: str, argv: Sequence[str], env: Mapping[str, str] | None = None, *, stdout=None,
              relay=None) -> int:
    """Run docker as a child sharing our TTY; forward signals; return its exit code as docker would.

    Used where dockcache has work to do after docker ends (publishing a build cache).
    The child shares our process group, so what a terminal sends (^C, ^\\, hangup,
    resize) reaches it directly and must not be sent again (compose takes a second ^C
    as "force stop"); a signal a process sent to dockcache (`kill -INT PID`) is
    forwarded, terminal or not. The two are told apart by the sender the kernel records
    (siginfo's si_code), where the platform gives it (sigtimedwait); elsewhere by
    whether we are a terminal's foreground group. A signal sent to the whole process
    group by a process (`kill -INT -PGID`) reaches docker twice, as it would reach any
    wrapper's child. `stdout`: a file that takes docker's standard output instead of ours;
    `relay`: a core.relay.Relay that takes its standard error (run_watched).
    """
    import signal
    import subprocess

    debug("run", real, argv, env)
    sigs = [getattr(signal, n) for n in _FORWARDED]
    terminal = {getattr(signal, n) for n in _FROM_TERMINAL}
    proc = None

    def forward(signum, _frame):  # until the mask below is in place, and where it can't be
        seen(signum)
        if relay is not None and signum == signal.SIGWINCH:
            relay.resize()
        if proc is None or (signum in terminal and _foreground_of_a_terminal()):
            return
        _send(proc, signum)

    previous = {sig: signal.signal(sig, forward) for sig in sigs}
    try:
        proc = subprocess.Popen([real, *argv], env=dict(os.environ if env is None else env), stdout=stdout,
                                stderr=relay.child_fd if relay is not None else None)
        if relay is not None:
            relay.start()
        try:
            rc = _wait_forwarding(proc, sigs, terminal, relay) if hasattr(signal, "sigtimedwait") else _wait(proc)
        except Exception:  # noqa: BLE001 - docker is running: its exit code is still what we return
            rc = _wait(proc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return rc if rc >= 0 else 128 - rc


def _wait_forwarding(proc, sigs: list, terminal: set, relay=None) -> int:
    """Wait for the child, taking our signals with their sender: a kernel-sent one
    (si_code > 0: the terminal) already reached the child; a process-sent one did not."""
    import signal

    waited = [*sigs, signal.SIGCHLD]
    before = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        while True:
            rc = proc.poll()
            if rc is not None:
                return rc
            info = signal.sigtimedwait(waited, 1.0)  # SIGCHLD wakes us as soon as docker ends
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            seen(info.si_signo)
            if relay is not None and info.si_signo == signal.SIGWINCH:
                relay.resize()  # docker reads its new size from our pseudo-terminal
            if info.si_code > 0 and info.si_signo in terminal:
                continue  # from the terminal: the child, in our group, got it too
            _send(proc, info.si_signo)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _wait(proc) -> int:
    while True:
        try:
            return proc.wait()
        except InterruptedError:
            continue


def _send(proc, signum: int) -> None:
    try:
        proc.send_signal(signum)
    except ProcessLookupError:
        pass


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



def through_shim(docker: str, argv: Sequence[str], environ: Mapping[str, str]):
    """A docker command through dockcache's own hot path, as if typed (a child Python, so
    that flow's routing, loads, metrics and fail-open apply unchanged): program, argv, env."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**environ, "DOCKCACHE_RESOLVED_REAL": docker}
    if "LC_CTYPE" in environ:  # what bin/docker does: Python's locale coercion is undone for docker
        env["DOCKCACHE_LC_CTYPE"] = environ["LC_CTYPE"]
    else:
        env["DOCKCACHE_LC_CTYPE_UNSET"] = "1"
    return sys.executable, ["-S", "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); "
                            "from shim.hot import main; main()", root, "docker", *argv], env

def spawn_detached(argv: Sequence[str], log_path: str) -> int:
    """Start a long-lived service (`dockcache builder up`) in its own session, so it outlives
    this command and no terminal signal reaches it; its output goes to `log_path`. Its pid."""
    import subprocess

    debug("spawn", argv[0], argv[1:])
    with open(log_path, "ab") as log:
        child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)
    return child.pid


def spawn_background(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Start a background job that outlives us and never touches the user's terminal:
    its own session, no stdin/stdout/stderr, lowest priority. Never raises."""
    import subprocess

    try:
        subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                         preexec_fn=lambda: os.nice(19))
    except (OSError, ValueError):
        pass


def spawn_job(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Start work that outlives this process (a cache-mount save after the build): its own
    session (a ^C meant for the next command never reaches it), no stdio of ours (a caller
    reading our output must not wait for it). Returns its pid."""
    import subprocess

    debug("detach", argv[0], argv[1:], env)
    child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                             env=dict(os.environ if env is None else env))
    return child.pid
