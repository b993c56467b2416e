"""Starts a local Ray with its dashboard and asks it for its version without a token, then with
``ray get-auth-token``'s; prints the two HTTP statuses (tests/test_run.py)."""

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from vp_ray.runtime.graph import start_local  # ray.init, again if Ray's start-up wait runs out

context = start_local({"num_cpus": 1, "include_dashboard": True})
url = f"http://{context.dashboard_url}/api/version"
token = subprocess.run([str(Path(sys.executable).parent / "ray"), "get-auth-token"], capture_output=True,
                       text=True, check=True).stdout.strip()
for headers in ({}, {"Authorization": f"Bearer {token}"}):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as reply:
            print(reply.status)
    except urllib.error.HTTPError as error:
        print(error.code)
