"""Service builds side by side (core/parallel.py), with real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shim.core.parallel import Job, run_all
from tests.ptyread import drain

REPO = Path(__file__).resolve().parents[3]


def sh(name: str, script: str, after=()) -> Job:
    return Job(name, ("/bin/sh", "-c", script), dict(os.environ), frozenset(after))


def test_lines_carry_their_job_and_both_streams_stay_apart(capfd):
    rc = run_all([sh("web", "echo one; echo two >&2; printf tail"), sh("api", "echo three")])
    out, err = capfd.readouterr()
    assert rc == 0
    assert sorted(out.splitlines()) == ["api | three", "web | one", "web | tail"]
    assert err.splitlines() == ["web | two"]


def test_dependencies_run_first_and_independent_jobs_overlap(tmp_path, capfd):
    log = tmp_path / "log"
    # each job notes its start and end; b and c wait for a, c also for b
    jobs = [sh(n, f"echo start-{n} >> {log}; sleep 0.3; echo end-{n} >> {log}", after)
            for n, after in (("c", "ab"), ("b", "a"), ("a", ""), ("x", ""))]
    assert run_all(jobs) == 0
    order = log.read_text().split()
    assert order.index("end-a") < order.index("start-b") < order.index("end-b") < order.index("start-c")
    assert order.index("start-x") < order.index("end-a")  # x waits for nobody: beside a


def test_the_limit_holds(tmp_path):
    log = tmp_path / "log"
    jobs = [sh(n, f"echo start >> {log}; sleep 0.2; echo end >> {log}") for n in "abcd"]
    assert run_all(jobs, limit=1) == 0
    assert log.read_text().split() == ["start", "end"] * 4  # never two at once


def test_the_first_failure_cancels_the_rest_and_is_the_exit_code(tmp_path, capfd):
    marker = tmp_path / "never"
    jobs = [sh("bad", "sleep 0.2; exit 3"),
            sh("slow", f"trap 'exit 143' TERM; sleep 5 & wait; touch {marker}"),
            sh("later", f"touch {marker}", after=["bad"])]
    assert run_all(jobs) == 3
    time.sleep(0.3)
    assert not marker.exists()  # slow was interrupted (its tail never ran), later never started


def test_a_job_killed_by_a_signal_counts_as_shells_do():
    assert run_all([sh("a", "kill -TERM $$"), sh("b", "true")]) == 128 + signal.SIGTERM


def test_jobs_waiting_for_each_other_still_run_in_order(capfd):
    assert run_all([sh("a", "echo a", "b"), sh("b", "echo b", "a")]) == 0
    assert sorted(capfd.readouterr().out.split()) == ["a", "a", "b", "b", "|", "|"]


def test_a_signal_sent_to_dockcache_reaches_every_running_job_once(tmp_path):
    """Process-sent (not from a terminal): forwarded to each child, not twice."""
    counts = [tmp_path / f"count{i}" for i in range(2)]
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    child = ("import signal, sys, time\nn = 0\n"
             "def seen(*a):\n    global n\n    n += 1\n"
             "signal.signal(signal.SIGTERM, seen)\nopen(sys.argv[1], 'w').close()\n"
             "end = time.time() + 2\nwhile time.time() < end: time.sleep(0.02)\n"
             "open(sys.argv[2], 'w').write(str(n))\n")
    runner = ("import sys; sys.path.insert(0, sys.argv[1]); from shim.core.parallel import Job, run_all; "
              "import os; c = sys.argv[2]; "
              "sys.exit(run_all([Job(f'j{i}', (sys.executable, '-c', c, sys.argv[3 + i], sys.argv[5 + i]), "
              "dict(os.environ)) for i in range(2)]))")
    proc = subprocess.Popen([sys.executable, "-c", runner, str(REPO), child, *map(str, ready), *map(str, counts)],
                            stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 20
    while not all(r.exists() for r in ready):
        assert time.time() < deadline, "children did not start"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert [c.read_text() for c in counts] == ["1", "1"]


# What `env -i PATH=... HOME=... LANG=C.UTF-8` leaves: no PYTHONUNBUFFERED, which would hide a
# failed line left in Python's buffer (its flush at exit turns any exit code into 120).
MINIMAL = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}


def _closed_after_one_line(tmp_path, stream: str, code: int) -> subprocess.CompletedProcess:
    """Two jobs of 3000 lines each on `stream`, the second (after the first) ending with `code`, under a reader
    that goes away after one line (`| head -1`); a `dockcache:` line after them."""
    redirect = " >&2" if stream == "stderr" else ""
    runner = ("import sys; sys.path.insert(0, sys.argv[1]); from shim.core.parallel import Job, run_all; "
              "from shim.core.notice import say; import os; "
              "jobs = [Job(n, ('/bin/sh', '-c', 'i=0; while [ $i -lt 3000 ]; do echo line $i" + redirect + "; "
              "i=$((i+1)); done; touch ' + sys.argv[2] + '/' + n + '; exit ' + c), dict(os.environ), "
              "frozenset(w)) for n, c, w in (('a', '0', ''), ('b', sys.argv[3], 'a'))]; "
              "rc = run_all(jobs); say('after the builds'); sys.exit(rc)")
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
    if stream == "stderr":
        pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    reader = subprocess.Popen([sys.executable, "-c", runner, str(REPO), str(tmp_path), str(code)], env=MINIMAL,
                              **pipes)
    ours = reader.stdout if stream == "stdout" else reader.stderr
    assert ours.readline().endswith(b"line 0\n")
    ours.close()  # the reader goes away after one line
    reader.wait(timeout=60)
    assert (tmp_path / "a").exists() and (tmp_path / "b").exists()
    return reader


def test_a_closed_stream_of_ours_loses_lines_not_jobs(tmp_path):
    """`docker compose build | head -1`: the builds still finish with their own codes, also in
    a minimal environment (issue 34: it exited 120)."""
    assert _closed_after_one_line(tmp_path, "stdout", 0).returncode == 0


def test_a_closed_stderr_keeps_the_failed_builds_code(tmp_path):
    """`docker compose build 2>&1 | head -1`, where the progress lines and dockcache's own go."""
    assert _closed_after_one_line(tmp_path, "stderr", 17).returncode == 17


def _on_a_terminal(limit: int) -> str:
    """What jobs see of stdout/stderr when our own are a terminal (a pty here)."""
    import pty

    runner = ("import sys; sys.path.insert(0, sys.argv[1]); from shim.core.parallel import Job, run_all; import os; "
              "sys.exit(run_all([Job(n, ('/bin/sh', '-c', "
              "'if [ -t 1 ] && [ -t 2 ]; then echo tty; else echo pipe; fi'), dict(os.environ)) for n in 'ab'], "
              "limit=int(sys.argv[2])))")
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-c", runner, str(REPO), str(limit)], stdin=subprocess.DEVNULL,
                         stdout=slave, stderr=slave)
    os.close(slave)
    out = drain(master)
    assert p.wait(timeout=30) == 0
    return out.decode()


def test_one_at_a_time_each_job_has_our_terminal():
    """`compose --progress tty build` (limit 1): docker's tty display needs a terminal; in a pipe
    it fails ("failed to get console: provided file is not a console")."""
    assert _on_a_terminal(1).split() == ["tty", "tty"]


def test_side_by_side_jobs_write_into_pipes_named_lines():
    assert sorted(_on_a_terminal(0).split()) == ["a", "b", "pipe", "pipe", "|", "|"]


def test_after_a_sigterm_no_waiting_job_starts(tmp_path):
    """compose cancels on SIGINT/SIGTERM: a job waiting for one that still ends well (it got
    the signal at its very end, or ignores it) must not start after it; the result says
    the run was cut short (128+N), not that every job succeeded."""
    got, go, marker = tmp_path / "got", tmp_path / "go", tmp_path / "later-ran"
    first = (f"trap 'touch {got}' TERM; touch {tmp_path}/ready; "
             f"while [ ! -e {go} ]; do sleep 0.05; done; exit 0")
    runner = ("import sys; sys.path.insert(0, sys.argv[1]); from shim.core.parallel import Job, run_all; import os; "
              "sys.exit(run_all([Job('first', ('/bin/sh', '-c', sys.argv[2]), dict(os.environ)), "
              "Job('later', ('/bin/sh', '-c', 'touch ' + sys.argv[3]), dict(os.environ), frozenset({'first'}))]))")
    proc = subprocess.Popen([sys.executable, "-c", runner, str(REPO), first, str(marker)],
                            stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 20
    while not (tmp_path / "ready").exists():
        assert time.time() < deadline, "first did not start"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    while not got.exists():  # forwarded: dockcache has taken the signal
        assert time.time() < deadline, "the signal was not forwarded"
        time.sleep(0.02)
    go.touch()  # first ends well all the same
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert not marker.exists()


def test_a_sigint_after_the_last_wait_is_no_traceback(tmp_path):
    """A ^C that lands after the jobs ended, before our signal mask is restored (a second ^C
    pressed quickly): it is taken as one seen while the jobs ran, never a KeyboardInterrupt
    traceback on the user's terminal. (The hook sends it at exactly that moment.)"""
    runner = ("import sys; sys.path.insert(0, sys.argv[1]); import os, signal; from shim.core import parallel, proc; "
              "real = parallel._Run.join\n"
              "def join(self):\n    real(self); os.kill(os.getpid(), signal.SIGINT)\n"
              "parallel._Run.join = join\n"
              "rc = parallel.run_all([parallel.Job(n, ('/bin/true',), dict(os.environ)) for n in 'ab'])\n"
              "print(rc, proc.interrupted())\n")
    cp = subprocess.run([sys.executable, "-c", runner, str(REPO)], capture_output=True, text=True, timeout=60,
                        stdin=subprocess.DEVNULL)
    assert "Traceback" not in cp.stderr and cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == ["0", str(int(signal.SIGINT))]
