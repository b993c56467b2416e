"""The environment the tests set for themselves and every Ray they start (tests/conftest.py)."""

import os

import ray


def test_the_session_rays_workers_run_at_the_tests_priority_with_one_thread(ray_local):
    # At Ray's default nice 15, a loaded machine starved the tests' actors for minutes.
    @ray.remote(num_cpus=0)
    def environment():
        return os.nice(0), os.environ.get("OMP_NUM_THREADS")

    assert ray.get(environment.remote()) == (os.nice(0), "1")
