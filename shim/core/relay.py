"""docker's stderr passed on to ours as it comes, with its last lines kept.

A build that fails on the shared builder is retried on the session's engine only for a
reason that engine would not have (build/fallback.py); the reason is in BuildKit's last
lines. So the build's stderr goes through us: every byte is written on as soon as it is
read (nothing is held back from the user), and the last TAIL bytes are kept. On a
terminal, docker gets a pseudo-terminal of ours with the terminal's size and modes, so
its progress display stays the interactive one; elsewhere a pipe. Stdlib only.
"""

from __future__ import annotations

import os
import threading

TAIL = 64 * 1024


class Relay:
    def __init__(self, read_fd: int, child_fd: int, *, pty: bool):
        self.read_fd, self.child_fd, self.pty = read_fd, child_fd, pty
        self.tail = bytearray()
        self.thread: threading.Thread | None = None

    @classmethod
    def open(cls) -> Relay | None:
        """A relay for our stderr, or None when one cannot be made (docker then writes to ours)."""
        try:
            if os.isatty(2):
                master, slave = os.openpty()
                _like_terminal(slave)
                return cls(master, slave, pty=True)
            r, w = os.pipe()
            return cls(r, w, pty=False)
        except OSError:
            return None

    def start(self) -> None:
        """After the child has its end: copy in a thread that takes no signal (they stay
        the main thread's, which waits for docker and forwards them)."""
        import signal

        os.close(self.child_fd)
        self.child_fd = -1
        self.thread = threading.Thread(target=self._copy, daemon=True)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self.thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def resize(self) -> None:
        """The terminal's new size, for docker's display (SIGWINCH)."""
        if self.pty:
            _copy_size(2, self.read_fd)

    def finish(self, wait: float = 5.0) -> str:
        """Everything docker wrote, written on; the tail as text. A process docker left
        holding the stream is not waited for past `wait` seconds."""
        if self.child_fd >= 0:
            os.close(self.child_fd)
            self.child_fd = -1
        if self.thread is not None:
            self.thread.join(wait)
        if self.thread is None or not self.thread.is_alive():
            try:
                os.close(self.read_fd)
            except OSError:
                pass
        return bytes(self.tail).decode("utf-8", "replace")

    def _copy(self) -> None:
        writable = True
        while True:
            try:
                data = os.read(self.read_fd, 65536)
            except InterruptedError:
                continue
            except OSError:  # EIO: a pty whose other end every writer closed
                return
            if not data:
                return
            if writable:
                writable = _write_all(2, data)
            self.tail += data
            del self.tail[:-TAIL]


def _write_all(fd: int, data: bytes) -> bool:
    """False once our stderr is gone (the relay then only drains, so docker never blocks)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except InterruptedError:
            continue
        except BlockingIOError:
            import select

            select.select([], [fd], [], 1.0)
        except OSError:
            return False
    return True


def _like_terminal(slave: int) -> None:
    """The terminal's modes and size on the pseudo-terminal, output passed as written (the
    terminal itself turns \\n into \\r\\n)."""
    import termios

    try:
        attrs = termios.tcgetattr(2)
        attrs[1] &= ~termios.OPOST
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
    except termios.error:
        pass
    _copy_size(2, slave)


def _copy_size(src: int, dst: int) -> None:
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass
