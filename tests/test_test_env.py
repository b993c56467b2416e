"""The environment the tests set for themselves and every Ray they start (tests/conftest.py)."""

import os
import signal
import subprocess
import sys

import ray


def test_the_session_rays_workers_run_at_the_tests_priority_with_one_thread(ray_local):
    # At Ray's default nice 15, a loaded machine starved the tests' actors for minutes.
    @ray.remote(num_cpus=0)
    def environment():
        return os.nice(0), os.environ.get("OMP_NUM_THREADS")

    assert ray.get(environment.remote()) == (os.nice(0), "1")


def test_a_process_a_test_starts_takes_ctrl_c_even_where_the_suite_ignores_it(spawn):
    # A suite started in the background by a script inherits SIGINT ignored; the runs it started did
    # too, and the Ctrl-C test waited 10 minutes for a run that never saw its Ctrl-C.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = spawn([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT).__name__)"],
                     stdout=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert proc.communicate(timeout=120)[0].strip() == "default_int_handler"
