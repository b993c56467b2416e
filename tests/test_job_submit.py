"""The README's multi-node recipe on one machine: `ray start --head`, then `ray job submit ... --
python launch.py cluster=multinode ...` runs to completion, token authentication included."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO
from support import free_ports

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")
SMALL = ["dataset.demo_num_frames=9", "model.height=64", "model.width=96", "dilate_size=2"]


@pytest.fixture
def head(tmp_path):
    """A head node of our own (its own ports and temp dir, so that no other Ray on this machine
    sees it or is touched by it), killed with everything it started (nothing of it is reused, so no
    graceful stop: that took 33 s)."""
    gcs, dashboard, *others = free_ports(9)
    (tmp_path / "gcs_port").write_text(str(gcs))
    names = ["--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
             "--metrics-export-port", "--node-manager-port", "--object-manager-port", "--ray-client-server-port"]
    ports = [arg for name, port in zip(names, others) for arg in (name, str(port))]
    temp = Path("/tmp") / f"vp-head-{os.getpid()}"  # Ray's socket paths must stay short
    # As the README's recipe: token authentication on, the same token for the head and the submitting
    # shell (given here, so that no token file of this machine's user is read or written).
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    env.pop("RAY_ADDRESS", None)
    process = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dashboard}",
         "--dashboard-host=127.0.0.1", "--include-dashboard=true", "--num-cpus=4", "--num-gpus=0",
         f"--temp-dir={temp}", "--disable-usage-stats", *ports],
        stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        subprocess.run(["pkill", "-KILL", "-f", str(temp)], check=False)  # workers in sessions of their own
        shutil.rmtree(temp, ignore_errors=True)


def submit(address: str, env: dict, args: list[str]) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the head's job agent is still starting (the deadline only
    turns a head that never starts into a failure)."""
    deadline = time.monotonic() + 600
    while True:
        done = subprocess.run([RAY, "job", "submit", "--address", address, *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        if "No available agent" not in done.stdout + done.stderr and "Connection refused" not in done.stderr \
                or time.monotonic() > deadline:
            return done
        time.sleep(3)


def test_ray_job_submit_runs_launch_py_on_a_head_started_with_ray_start(head, tmp_path):
    address, env = head
    excludes = {"excludes": ["ckpt/", "data/", "outputs/", ".venv/", "build/", ".site/", "logs/"]}
    done = submit(address, env, [
        "--working-dir", ".", "--runtime-env-json", json.dumps(excludes), "--",
        "python", "launch.py", "cluster=multinode", "dataset=demo", f"dataset.path={tmp_path / 'demo'}",
        "dataset.demo_num_clips=2", *SMALL, f"output_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'logs'}"])
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "succeeded" in log, log[-4000:]
    assert "Token authentication is disabled" not in (tmp_path / "head.log").read_text()
    refused = subprocess.run([RAY, "job", "list", "--address", address], cwd=REPO, capture_output=True, text=True,
                             env={**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}, timeout=120)
    assert refused.returncode != 0  # another token is turned away
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert len(manifest) == 2 and set(manifest.status) == {"ok"}

    # A plain `python launch.py` on a machine where a cluster runs joins it, even with sizing
    # settings that only a local instance takes (Ray refuses them when connecting).
    gcs = address.replace("http://", "").rsplit(":", 1)[0] + ":" + head_gcs_port(tmp_path)
    done = subprocess.run(
        [sys.executable, "launch.py", "dataset=demo", f"dataset.path={tmp_path / 'demo'}", "dataset.demo_num_clips=2",
         *SMALL, "cluster.num_cpus=2", f"output_dir={tmp_path / 'again'}", f"hydra.run.dir={tmp_path / 'logs2'}"],
        cwd=REPO, env={**env, "RAY_ADDRESS": gcs}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert re.search(rf"connecting to the Ray cluster running at \S+:{head_gcs_port(tmp_path)} ", done.stdout)
    assert len(pd.read_parquet(tmp_path / "again" / "manifest.parquet")) == 2


def head_gcs_port(tmp_path) -> str:
    return (tmp_path / "gcs_port").read_text()
