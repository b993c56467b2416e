"""Writes Ray's known noisy line, a real error and Python's own line inside ``known_ray_lines_dropped``;
with ``crash`` as its argument, dies by SIGKILL inside the block (tests/test_dashboard.py)."""

import os
import signal
import sys

from vp_ray.runtime.console import known_ray_lines_dropped

crash = sys.argv[1:] == ["crash"]
with known_ray_lines_dropped():
    os.write(2, b"[2026-12-05 20:46:46,245 E 1 1] core_worker.cc:2465: Actor with class name: 'MapWorker' "
                b"has constructor arguments in the object store and max_restarts > 0. If ...\n")
    os.write(2, b"[2026-12-05 20:46:47,001 E 1 1] core_worker.cc:99: a real error\n")
    print("python's own line", file=sys.stderr)
    if crash:
        os.write(2, b"last words\n")
        os.kill(os.getpid(), signal.SIGKILL)
os.write(2, b"after the block\n")
