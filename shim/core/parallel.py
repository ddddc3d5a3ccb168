"""Several children side by side, the way compose runs its service builds: each starts once
the jobs it waits for have succeeded, at most `limit` at a time; the first failure cancels
the others (SIGTERM: docker cancels the build as compose would; SIGINT may be ignored by
children of a non-interactive shell's background job) and its exit code is the result.

Several progress displays cannot share one terminal, so each child writes into a pipe
(docker then prints plain progress) and every line reaches our stdout or stderr with the
job's name in front, whole lines only. One at a time (`limit` 1), each child has our
stdout and stderr: a `--progress tty` display fails in a pipe. Signals are handled as proc.run_child does: one a
terminal sent already reached every child (they are in our process group); one a process
sent to dockcache is forwarded to each running child.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from shim.core.records import dataclass, field

from shim.core.proc import _FORWARDED, _FROM_TERMINAL, _send, debug, seen


@dataclass(frozen=True)
class Job:
    name: str
    argv: tuple[str, ...]  # argv[0] is the program
    env: Mapping[str, str]
    after: frozenset[str] = field(default_factory=frozenset)  # names of jobs that must succeed first


def run_all(jobs: Sequence[Job], limit: int = 0) -> int:
    """0 when every job succeeded; else the first failure's exit code (128+N for a signal,
    and for a SIGINT or SIGTERM to us that left jobs unstarted).
    `limit` 0: no limit. A job waiting for an unknown name does not wait for it."""
    names = {j.name for j in jobs}
    todo = [Job(j.name, j.argv, j.env, frozenset(j.after & names - {j.name})) for j in jobs]
    sigs = [getattr(signal, n) for n in _FORWARDED]
    terminal = {getattr(signal, n) for n in _FROM_TERMINAL}
    waited = [*sigs, signal.SIGCHLD]
    before = signal.pthread_sigmask(signal.SIG_BLOCK, waited)  # reader threads inherit the mask
    # children must not inherit the mask: docker would never see a signal
    unblock = functools.partial(signal.pthread_sigmask, signal.SIG_SETMASK, before)
    run = _Run(todo, limit or len(todo), _Printer(), unblock)
    try:
        return run.until_done(waited, terminal)
    finally:
        run.cancel()  # only if we leave by an exception: then nothing may outlive us
        run.join()
        _take_pending(waited)
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _take_pending(waited: list) -> None:
    """Signals that came after the last wait (a second ^C) count as seen while the jobs ran:
    unblocked, SIGINT would be a KeyboardInterrupt traceback (no handler of ours is set)."""
    while True:
        info = signal.sigtimedwait(waited, 0)
        if info is None:
            return
        if info.si_signo != signal.SIGCHLD:
            seen(info.si_signo)


class _Printer:
    """Whole lines from many pipes onto our two streams, each with its job's name.

    Written to the file descriptors, not through sys.stdout: a stream of ours that is
    closed (`| head -1`) would leave the failed line in Python's buffer, and the flush at
    exit would fail again and turn the builds' exit code into 120."""

    def __init__(self):
        self.lock = threading.Lock()
        self.closed: set[int] = set()  # our fds the reader went away from: their lines are dropped

    def pump(self, name: str, pipe, fd: int) -> None:
        """Until the child closes its end; a stream of ours that is closed only loses the
        lines: the pipe is still drained, so the child never blocks on it."""
        prefix = f"{name} | ".encode()
        with pipe:
            for line in iter(pipe.readline, b""):
                with self.lock:
                    if fd not in self.closed:
                        self._write(fd, prefix + line if line.endswith(b"\n") else prefix + line + b"\n")

    def _write(self, fd: int, data: bytes) -> None:
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError:
            self.closed.add(fd)


class _Run:
    def __init__(self, jobs: list[Job], limit: int, printer: _Printer, unblock):
        self.waiting, self.limit, self.printer, self.unblock = list(jobs), limit, printer, unblock
        self.running: dict[str, subprocess.Popen] = {}
        self.done: dict[str, int] = {}
        self.failed: int | None = None
        self.threads: list[threading.Thread] = []

    def until_done(self, waited: list, terminal: set) -> int:
        while True:
            self._reap()
            if self.failed is None:
                self._start_ready()
            if not self.running:
                return self.failed or 0
            info = signal.sigtimedwait(waited, 1.0)  # SIGCHLD wakes us when a child ends
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            seen(info.si_signo)
            if info.si_signo in (signal.SIGINT, signal.SIGTERM):
                self._stop(info.si_signo)
            if info.si_code > 0 and info.si_signo in terminal:
                continue  # from the terminal: the children, in our group, got it too
            for p in self.running.values():
                _send(p, info.si_signo)

    def _stop(self, signum: int) -> None:
        """compose cancels on SIGINT and SIGTERM: a job not started yet never starts (one
        still running might end well after the signal); jobs left out make the result 128+N."""
        if self.waiting and self.failed is None:
            self.failed = 128 + signum
        self.waiting.clear()

    def _reap(self) -> None:
        for name, p in list(self.running.items()):
            rc = p.poll()
            if rc is None:
                continue
            del self.running[name]
            rc = rc if rc >= 0 else 128 - rc
            self.done[name] = rc
            if rc != 0 and self.failed is None:
                self.failed = rc
                self.cancel()

    def _start_ready(self) -> None:
        for job in list(self.waiting):
            if len(self.running) >= self.limit:
                return
            if any(self.done.get(a) != 0 for a in job.after):
                continue
            self.waiting.remove(job)
            self._start(job)
        if self.waiting and not self.running:  # jobs waiting for each other: compose would refuse; run in order
            self._start(self.waiting.pop(0))

    def _start(self, job: Job) -> None:
        debug("run", job.argv[0], job.argv[1:], job.env)
        if self.limit == 1:  # one at a time: the terminal is the job's (a `--progress tty` display needs it)
            self.running[job.name] = subprocess.Popen(list(job.argv), env=dict(job.env), preexec_fn=self.unblock)
            return
        p = subprocess.Popen(list(job.argv), env=dict(job.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=self.unblock)
        self.running[job.name] = p
        for pipe, fd in ((p.stdout, _fd(sys.stdout, 1)), (p.stderr, _fd(sys.stderr, 2))):
            t = threading.Thread(target=self.printer.pump, args=(job.name, pipe, fd), daemon=True)
            t.start()
            self.threads.append(t)

    def cancel(self) -> None:
        self.waiting.clear()
        for p in self.running.values():
            _send(p, signal.SIGTERM)

    def join(self) -> None:
        for p in list(self.running.values()):
            while True:
                try:
                    p.wait()
                    break
                except InterruptedError:
                    continue
        deadline = time.monotonic() + 1  # a grandchild may hold a pipe open: never wait for it
        for t in self.threads:
            t.join(timeout=max(deadline - time.monotonic(), 0))



def _fd(stream, default: int) -> int:
    """The descriptor under one of our streams (flushed first, so its lines keep their order)."""
    try:
        stream.flush()
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return default
