"""Shared fixtures: a local Ray instance for the whole session, and configs composed from conf/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = REPO / "tests" / "programs"  # programs the tests run as processes of their own

# Every Ray the tests start, in this process or in the subprocesses they run, is a new local
# instance: a cluster that `ray start` runs on this machine (a developer's, another test run's) is
# never joined. A test that means to join one sets RAY_ADDRESS to it.
os.environ["RAY_ADDRESS"] = "local"

# One intra-op thread for torch (and OpenMP/MKL) in this process, the runs it starts and their Ray
# workers (they inherit it): the tiny models' tensors gain nothing from threads, and on a 2-core
# machine with anything else running, torch's threads spin waiting for each other (SAM2's tiny
# encoder took 9x the CPU time and 8x the wall time with 2 threads). A value set outside is kept.
for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

# Ray runs its workers at nice 15 (RAY_worker_niceness): beside two CPU-bound processes at nice 0 on
# 2 cores, an inpainting actor got about 4 % of a core (9 minutes in its constructor; its run made
# no progress for 16). The tests' workers do the work under test, so they compete as equals. A value
# set outside is kept.
os.environ.setdefault("RAY_worker_niceness", "0")

# No usage-stats actor in the Rays the tests start (each head would run one: about 2 CPU seconds).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray shared by the end-to-end tests. 4 logical CPUs on CI's 2 cores: a SAM2 and an
    inpainting actor hold one each for the whole run and the decode/write tasks need the others."""
    import ray

    from vp_ray.runtime.graph import start_local  # ray.init, again if Ray's start-up wait runs out

    start_local({"num_cpus": 4, "include_dashboard": False, "log_to_driver": False,
                 "runtime_env": {"env_vars": {"RAY_DATA_DISABLE_PROGRESS_BARS": "1"}}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture
def ray_address(ray_local):
    """The session Ray's address: a run started in a subprocess joins it (``cluster.address=...``)
    where the test is not about the Ray a run starts for itself; starting one costs a few CPU
    seconds and 10-20 s of wall time on a loaded 2-core machine."""
    return ray_local.get_runtime_context().gcs_address


# A command run with Ctrl-C (SIGINT) back to its default: a suite started in the background by a
# script (`pytest ... &`, nohup) inherits SIGINT ignored, and so would every run it starts; Python
# then never raises KeyboardInterrupt, and a test that stops a run with Ctrl-C waits in vain.
WITH_CTRL_C = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "os.execvp(sys.argv[1], sys.argv[1:])"]


@pytest.fixture
def spawn():
    """``subprocess.Popen`` in a session of its own; whatever is left of it is killed when the test
    ends, passed or failed: a failed test must not leave a run, with its Ray, working beside the next."""
    started = []

    def start(command, **popen):
        started.append(subprocess.Popen([*WITH_CTRL_C, *command], start_new_session=True, **popen))
        return started[-1]

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def compose_dictconfig(overrides: list[str]):
    """The config Hydra composes for these command-line overrides (an OmegaConf node)."""
    from vp_ray.config import compose

    return compose(overrides)


def compose_config(overrides: list[str]):
    """The typed ``Config`` ``launch.py`` would build for these command-line overrides, but without
    report.html unless ``report=true`` is among them: the report costs a run in a test about 2 CPU
    seconds (its plots and thumbnails), most of the driver's work. The runs of ``launch.py`` the tests
    start write it, and tests/test_report.py checks it."""
    from vp_ray.config import load_config

    if not any(override.startswith("report=") for override in overrides):
        overrides = [*overrides, "report=false"]
    return load_config(compose_dictconfig(overrides))
