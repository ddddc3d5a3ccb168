"""docker's stderr through core/relay.py: passed on as it comes, its tail kept, and a
terminal stays a terminal for docker (its interactive progress display)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CHILD = ("import os, sys, time; sys.stderr.write('first\\n'); sys.stderr.flush(); time.sleep(0.3); "
         "sys.stderr.write('tty=%s\\nERROR: last\\n' % os.isatty(2)); sys.exit(3)")
WATCH = ("import sys, time; sys.path.insert(0, sys.argv[1]); from shim.core import proc; "
         "rc, tail = proc.run_watched(sys.executable, ['-c', sys.argv[2]]); "
         "print(rc, repr(tail[-40:]))")


def test_a_pipe_gets_every_byte_as_it_comes_and_the_tail_is_kept():
    p = subprocess.Popen([sys.executable, "-c", WATCH, str(REPO), CHILD], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    first = p.stderr.readline()  # before the child has finished: nothing is held back
    assert first == "first\n" and p.poll() is None
    out, rest = p.communicate(timeout=30)
    assert rest == "tty=False\nERROR: last\n"
    assert out.strip() == "3 'first\\ntty=False\\nERROR: last\\n'"


def test_on_a_terminal_docker_writes_to_a_terminal_of_the_same_size():
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    size = ("import fcntl, termios, struct, sys; "
            "sys.stderr.write('size=%d,%d\\n' % struct.unpack('HHHH', fcntl.ioctl(2, termios.TIOCGWINSZ, b'0'*8))[:2]);"
            + CHILD)
    p = subprocess.Popen([sys.executable, "-c", WATCH, str(REPO), size], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    out, _ = p.communicate(timeout=30)
    said = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        said += chunk
    os.close(master)
    assert b"size=33,111" in said and b"tty=True" in said and b"ERROR: last" in said
    assert out.decode().startswith("3 ")
