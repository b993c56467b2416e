"""What a user notices around the edges: the single-video command's meta.json and --help, and a run
stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import REPO, compose_config

from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.models import gate
from vp_ray.runtime import graph
from vp_ray.tools import single


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    csv = ensure_demo_dataset(folder, num_clips=1, num_frames=9, height=64, width=96, seed=3)
    return csv, folder / "demo00_landscape"


def test_single_video_meta_names_the_folder_its_files_are_in(tmp_path, demo):
    _, clip = demo
    out = tmp_path / "o"
    code = single.main(["--video", str(clip / "video.mp4"), "--mask", str(clip / "all_masks.npz"),
                        "--output_dir", str(out), "--mask_only", "--model", "classic",
                        "model.height=64", "model.width=96", "dilate_size=2"])
    assert code == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["output_dir"] == str(out.resolve())
    assert "work_dir" not in meta  # the work folder is gone once the clip is written
    assert sorted(p.name for p in out.iterdir()) == sorted([*meta["files"], "meta.json"])


def test_single_video_help_gives_each_models_own_number_of_steps(tmp_path, capsys):
    with pytest.raises(SystemExit):
        single.parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    steps = shown[shown.rindex("--num_inference_steps"):shown.rindex("--guidance_scale")]  # not the usage line
    for model in ("videopainter", "tiny"):
        own = compose_config([f"output_dir={tmp_path}", f"model={model}"]).model.num_inference_steps
        assert f"{own} for {model}" in steps, steps


def test_sigterm_stops_a_run_as_ctrl_c_does():
    previous = signal.getsignal(signal.SIGTERM)
    with graph.sigterm_as_ctrl_c(), pytest.raises(KeyboardInterrupt) as stop:
        signal.raise_signal(signal.SIGTERM)
    assert isinstance(stop.value, graph.Terminated)
    assert signal.getsignal(signal.SIGTERM) is previous


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_writes_its_summary_and_report_and_exits_143(tmp_path, demo, spawn, ray_address):
    """Its one clip held in the model (a gate that lets none through) when SIGTERM comes."""
    csv, _ = demo
    out, gate_dir = tmp_path / "out", tmp_path / "gate"
    proc = spawn(
        [sys.executable, "launch.py", "dataset=csv", f"dataset.path={csv}", f"output_dir={out}",
         f"cluster.address={ray_address}", "model=faulty", "model.height=64", "model.width=96",
         "dilate_size=2", "model.hold_after_clips=0", f"model.fault_state_dir={gate_dir}"],
        cwd=REPO, env={**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600  # only turns a hang into a failure
    while not gate.held(gate_dir):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no clip reached the gate: {proc.communicate()[0][-3000:]}")
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, output[-3000:]
    assert "INTERRUPTED" in output and "Traceback" not in output
    assert len(pd.read_parquet(out / "manifest.parquet")) == 0 and (out / "report.html").is_file()
