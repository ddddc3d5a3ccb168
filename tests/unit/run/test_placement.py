"""run.mode auto: the placement decision from facts, the probe's reading of docker, and
the session-local warning."""

from hypothesis import given
from hypothesis import strategies as st

from shim.core import proc
from shim.run.placement import decide, probe, resolve, session_local

VERDICTS = st.sampled_from(["seen", "unseen", "unwritable", None])


@given(st.sampled_from(["auto", "bind", "volume"]), VERDICTS, st.text(max_size=40))
def test_decision_from_facts(configured, verdict, detail):
    placed = decide(configured, verdict, "/b", detail)
    if configured != "auto":
        assert placed.mode == configured  # a forced mode is never second-guessed
    else:
        assert placed.mode == ("bind" if verdict == "seen" else "volume")  # only evidence picks host dirs
    assert placed.reason and (configured != "auto" or placed.reason.startswith("auto:"))


def fake_docker(rc, out="", err=""):
    calls = []

    def docker(*args, timeout=60.0):
        calls.append(args)
        return proc.Result(args, rc if args[0] == "create" else 0, out, err)
    return docker, calls


def test_probe_reads_dockers_answer(tmp_path):
    docker, calls = fake_docker(0, "abc123\n")
    assert probe(docker, str(tmp_path / "root"), "img") == ("seen", "")
    assert calls[1] == ("rm", "-f", "abc123") and not list((tmp_path / "root").iterdir())
    docker, _ = fake_docker(1, err='Error response from daemon: invalid mount config for type "bind": '
                            'bind source path does not exist: /x')
    assert probe(docker, str(tmp_path / "root"), "img")[0] == "unseen"
    docker, _ = fake_docker(1, err="No such image: img")
    assert probe(docker, str(tmp_path / "root"), "img") == (None, "No such image: img")
    (tmp_path / "file").write_text("")
    assert probe(docker, str(tmp_path / "file" / "root"), "img")[0] == "unwritable"


class FakeState:
    def __init__(self):
        self.data = {}

    def get(self, *key, max_age=None):
        return self.data.get(key)

    def put(self, *key_and_value):
        *key, value = key_and_value
        self.data[tuple(key)] = value


def test_resolve_probes_once_per_daemon_and_not_without_an_image(tmp_path):
    state, root = FakeState(), str(tmp_path / "r")
    docker, calls = fake_docker(0, "id\n")
    assert resolve(state, "d1", "auto", root, docker, None).mode == "volume" and not calls
    assert resolve(state, "d1", "auto", root, docker, "img").mode == "bind" and len(calls) == 2
    assert resolve(state, "d1", "auto", root, docker, "img").mode == "bind" and len(calls) == 2  # remembered
    resolve(state, "d2", "auto", root, docker, "img")  # another daemon (a new session): asked again
    assert len(calls) == 4
    assert resolve(state, "d3", "volume", root, docker, "img").mode == "volume" and len(calls) == 4


def test_session_local_reads_the_filesystem_of_the_longest_mount(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("22 1 254:0 / / rw - ext4 /dev/vda rw\n"
                    "30 22 0:40 / /scratch rw - tmpfs tmpfs rw\n"
                    "31 22 0:41 / /sandbox rw - overlay overlay rw,upperdir=/u\n")
    assert "tmpfs" in session_local("/scratch/caches", str(info))
    assert "overlay" in session_local("/sandbox/home/u/.cache", str(info))
    assert session_local("/srv/caches", str(info)) is None
    assert session_local("/scratchy", str(info)) is None  # a prefix of a name is not inside it
