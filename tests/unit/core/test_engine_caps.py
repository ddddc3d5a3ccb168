"""Engine capabilities from `docker buildx version` and `docker buildx inspect` (faked here;
the engine tests run the real ones on the containerd and classic stores)."""

import threading

import pytest

from shim.core.engine import detect
from shim.core.proc import Result

CONTAINERD = "Name: default\nDriver: docker\nLabels:\n org.mobyproject.buildkit.worker.snapshotter: overlayfs\n"
CLASSIC = "Name: default\nDriver: docker\nLabels:\n org.mobyproject.buildkit.worker.executor: oci\n"
CONTAINER = "Name: ci\nDriver: docker-container\n"


def fake(inspect_out: str | None, *, buildx: bool = True):
    calls = []

    def docker(*argv):
        calls.append((argv, threading.current_thread().name))
        if not buildx:
            return Result(argv, 1, "", "docker: 'buildx' is not a docker command.")
        if argv[:2] == ("buildx", "version"):
            return Result(argv, 0, "github.com/docker/buildx v0.13.1 abc\n", "")
        return Result(argv, 0, inspect_out, "") if inspect_out else Result(argv, 1, "", "no builder \"x\" found\n")
    return docker, calls


@pytest.mark.parametrize("out,mode,driver", [(CONTAINERD, "full", "docker"), (CLASSIC, "import-only", "docker"),
                                             (CONTAINER, "full", "docker-container")])
def test_modes_by_driver_and_image_store(out, mode, driver):
    docker, calls = fake(out)
    caps = detect(docker, None)
    assert (caps.mode, caps.driver, caps.buildx) == (mode, driver, "v0.13.1")
    assert len({thread for _argv, thread in calls}) == 2  # the two CLI starts overlap


def test_no_buildx_and_unknown_builder():
    docker, _ = fake(CONTAINERD, buildx=False)
    assert detect(docker, None).mode == "none"
    docker, calls = fake(None)
    caps = detect(docker, "x")
    assert caps.mode == "none" and caps.reason.startswith("buildx inspect failed: no builder")
    assert (("buildx", "inspect", "--builder", "x"), ) == tuple(a for a, _t in calls if a[1] == "inspect")
