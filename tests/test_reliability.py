"""Nothing lost: bad input, OOM, dying workers, a killed driver. Every record ends exactly once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, compose_config
from support import wait_for

from vp_ray.clip import video
from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.clip.masks import save_vpdata_masks
from vp_ray.models import gate
from vp_ray.runtime import graph

pytestmark = pytest.mark.slow
SMALL = ["model.height=64", "model.width=96", "dilate_size=2"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Four small demo clips: (csv path, its rows)."""
    folder = tmp_path_factory.mktemp("demo")
    csv = ensure_demo_dataset(folder, num_clips=4, num_frames=48, height=96, width=144, seed=3)
    return csv, pd.read_csv(csv)


def write_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def run(tmp_path, csv, *overrides, out="out"):
    cfg = compose_config([f"output_dir={tmp_path / out}", "dataset=csv", f"dataset.path={csv}",
                          *SMALL, *overrides])
    result = graph.run(cfg)
    manifest = pd.read_parquet(tmp_path / out / "manifest.parquet")
    failures = pd.read_parquet(tmp_path / out / "failures.parquet")
    return result, manifest, failures.set_index("clip_id")


def good_row(demo_csv, demo_rows, i, **fields):
    row = demo_rows.iloc[i].to_dict()
    for key in ("video_path", "mask_path", "ground_truth_path"):
        row[key] = str(demo_csv.parent / row[key])
    return {**row, **fields}


def test_a_dataset_of_bad_inputs_fails_each_clip_clearly_and_keeps_the_good_ones(ray_local, tmp_path, demo):
    csv, rows = demo
    good_video = good_row(csv, rows, 0)["video_path"]
    npz = good_row(csv, rows, 0)["mask_path"]
    frames, fps = video.read_video(good_video)
    h, w = frames.shape[1:3]

    (tmp_path / "corrupt.mp4").write_bytes(os.urandom(5000))
    data = (tmp_path / "truncated.mp4")
    data.write_bytes(open(good_video, "rb").read()[:1500])
    video.write_video(tmp_path / "one.mp4", frames[:1], fps)
    video.write_video(tmp_path / "short.mp4", frames[:4], fps)
    save_vpdata_masks(tmp_path / "wrong_shape.npz", np.ones((len(frames), h // 2, w), bool))
    save_vpdata_masks(tmp_path / "few_frames.npz", np.ones((2, h, w), bool))
    save_vpdata_masks(tmp_path / "empty.npz", np.zeros((len(frames), h, w), bool))
    np.savez(tmp_path / "empty_labels.npz", np.zeros((len(frames), h, w), np.uint8))
    base = {"mask_path": npz, "mask_id": 1, "video_path": good_video}
    expected = {  # clip_id -> (stage, words of the message)
        "missing_video": ("prepare", "not found", {"video_path": str(tmp_path / "nope.mp4")}),
        "corrupt": ("prepare", "corrupt", {"video_path": str(tmp_path / "corrupt.mp4")}),
        "truncated": ("prepare", "", {"video_path": str(data)}),
        "one_frame": ("prepare", "frame", {"video_path": str(tmp_path / "one.mp4")}),
        "too_short": ("prepare", "at least 9", {"video_path": str(tmp_path / "short.mp4")}),
        "fps_zero": ("read", "fps", {"fps": 0}),
        "fps_absurd": ("read", "fps", {"fps": 1e6}),
        "npz_missing": ("prepare", "not found", {"mask_path": str(tmp_path / "none.npz")}),
        "npz_shape": ("prepare", "shape", {"mask_path": str(tmp_path / "wrong_shape.npz")}),
        "npz_frames": ("prepare", "frames", {"mask_path": str(tmp_path / "few_frames.npz")}),
        "npz_no_id": ("prepare", "mask_id 7", {"mask_id": 7}),
        "empty_mask": ("prepare", "empty", {"mask_path": str(tmp_path / "empty.npz"), "mask_id": 1}),
        "dup": ("read", "appears 2 times", {}),
        "bad_text": ("read", "UTF-8", {"prompt": "BAD-TEXT"}),
    }
    bad_rows = [{**base, "clip_id": k, **v[2]} for k, v in expected.items()]
    bad_rows.append({**base, "clip_id": "dup"})
    good = [good_row(csv, rows, i) for i in range(2)]
    path = tmp_path / "mixed.csv"
    frame = pd.DataFrame(good + bad_rows + [{**base, "clip_id": "../escape"}])
    # Latin-1 "café" in a UTF-8 file: the byte 0xE9 alone is invalid UTF-8.
    path.write_bytes(frame.to_csv(index=False).encode().replace(b"BAD-TEXT", b"caf\xe9")
                     + b"ragged,nope.mp4\n")  # 2 fields under a longer header: not a row at all

    result, manifest, failures = run(tmp_path, path, "model=classic")

    inputs = len(frame) + 1
    assert len(manifest) + len(failures) == inputs
    assert sorted(manifest.clip_id) == sorted(r["clip_id"] for r in good)
    assert result.ledger.duplicates() == ["dup"]  # the two duplicate rows, each failed once
    for clip_id, (stage, words, _) in expected.items():
        failure = failures.loc[[clip_id]].iloc[0]
        assert failure.failed_stage == stage, (clip_id, failure.error)
        assert words.lower() in failure.error.lower(), (clip_id, failure.error)
        assert failure.error.startswith(f"clip '{clip_id}'")
    assert "not allowed" in failures.loc["../escape"].error
    assert failures.loc["ragged"].failed_stage == "read" and "field(s)" in failures.loc["ragged"].error
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out" / "escape").exists()
    assert_no_work_left(tmp_path / "out")
    # One failure can be read alone: its lines in the workers' logs carry its id.
    logs = "".join(path.read_text() for path in (tmp_path / "out" / "logs").glob("*/workers/*.log"))
    corrupt = [line for line in logs.splitlines() if "[corrupt]" in line]
    assert any("WARNING" in line and "prepare: failed:" in line for line in corrupt), corrupt


@pytest.fixture(scope="module")
def oom_run(ray_local, tmp_path_factory, demo):
    """The faulty model: OOM above 12 frames (40 once the memory saver is on), a ladder of 4 s and
    2 s; a clip that fits, one that needs the saver and a shorter rung, one with a model error. (The
    saver, once on, stays on in its actor: a clip that turned it on must run in its own run.)"""
    csv, rows = demo
    tmp = tmp_path_factory.mktemp("oom")
    clips = {
        "fits": good_row(csv, rows, 0, max_seconds=1.0),        # 9 frames: fits at once
        "shortened": good_row(csv, rows, 1, max_seconds=6.0),   # too long even with the saver: 4 s = 33 frames
        "model_bug": good_row(csv, rows, 2, max_seconds=6.0, prompt="[error] a model bug, not an OOM"),
    }
    path = write_csv(tmp / "oom.csv", [{**row, "clip_id": clip_id} for clip_id, row in clips.items()])
    result, manifest, failures = run(tmp, path, "model=faulty", "model.oom_above_frames=12",
                                     "model.oom_above_frames_with_saver=40", "retry.oom_max_seconds=[4.0,2.0]")
    return result, manifest.set_index("clip_id"), failures, tmp / "out"


@pytest.fixture(scope="module")
def crash_run(ray_local, tmp_path_factory, demo):
    """The faulty model: OOM on every try, a worker killed once, one killed every time (at most one
    death per clip)."""
    csv, rows = demo
    tmp = tmp_path_factory.mktemp("crash")
    clips = {
        "oom_always": good_row(csv, rows, 3, max_seconds=1.0, prompt="[oom] background"),
        "crash_once": good_row(csv, rows, 0, max_seconds=1.0, prompt="[crash-once] background"),
        "plain": good_row(csv, rows, 1, max_seconds=1.0),
        "crash_always": good_row(csv, rows, 2, max_seconds=1.0, prompt="[crash-always] background"),
    }
    path = write_csv(tmp / "crash.csv", [{**row, "clip_id": clip_id} for clip_id, row in clips.items()])
    result, manifest, failures = run(tmp, path, "model=faulty", f"model.fault_state_dir={tmp / 'faults'}",
                                     "retry.max_worker_deaths=1")
    return result, manifest.set_index("clip_id"), failures, tmp / "out"


def test_oom_uses_the_memory_saver_then_shorter_clips_then_fails(oom_run):
    _, manifest, failures, out = oom_run
    fits = manifest.loc["fits"]
    assert (fits.attempts, bool(fits.degraded)) == (1, False)
    shortened = manifest.loc["shortened"]
    assert bool(shortened.degraded) and shortened.effective_max_seconds in (4.0, 2.0)
    assert shortened.num_frames <= 33 and "memory saver" in shortened.warnings
    assert failures.loc["model_bug"].error_type == "ValueError"
    assert_no_work_left(out)  # the failed clip's prepared frames are gone too


def test_oom_on_every_rung_ends_as_an_oom_failure(crash_run):
    _, manifest, failures, _ = crash_run
    failure = failures.loc["oom_always"]
    assert "oom_always" not in manifest.index
    assert failure.error_type == "oom" and "CUDA out of memory after" in failure.error


def test_a_worker_killed_mid_clip_is_retried_and_the_clip_written_once(crash_run):
    result, manifest, failures, out = crash_run
    assert sorted(manifest.index) == ["crash_once", "plain"]
    assert failures.loc["crash_always"].error_type == "worker_died"
    assert result.ledger.duplicates() == []
    assert sorted(p.name for p in (out / "clips").iterdir()) == ["crash_once", "plain"]


def launch_held(spawn, tmp_path, csv_path, address="local", **popen):
    """``launch.py`` on ``csv_path`` (in a Ray of its own, or joining ``address``) with the faulty
    model letting 2 clips through and holding the next at its gate: once 2 clips are committed,
    nothing else moves."""
    command = [sys.executable, "launch.py", "dataset=csv", f"dataset.path={csv_path}",
               f"output_dir={tmp_path / 'out'}", f"cluster.address={address}", "cluster.num_cpus=2", *SMALL,
               "model=faulty", "model.hold_after_clips=2", f"model.fault_state_dir={tmp_path / 'gate'}"]
    proc = spawn(command, cwd=REPO, env={**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}, **popen)
    try:
        wait_for("2 clips committed and the third held in the model",
                 lambda: len(done_clips(tmp_path / "out" / "clips")) == 2 and gate.held(tmp_path / "gate"), proc=proc)
    except AssertionError as error:
        output = tmp_path / "output.txt"
        raise AssertionError(f"{error}\n{output.read_text()[-3000:] if output.is_file() else ''}") from None
    return command, proc


def test_a_killed_driver_resumes_without_redoing_finished_clips(ray_local, tmp_path, demo, spawn):
    """The killed run in a local Ray of its own (as a user's `python launch.py` starts one), the rerun
    in this process's Ray, while the killed one's agents still live."""
    csv, rows = demo
    path = write_csv(tmp_path / "many.csv", [good_row(csv, rows, i % 4, clip_id=f"c{i}") for i in range(8)])
    with open(tmp_path / "output.txt", "w") as log_file:  # read if the run ends before the state
        _, proc = launch_held(spawn, tmp_path, path, stdout=log_file, stderr=subprocess.STDOUT)
    os.kill(proc.pid, signal.SIGKILL)  # the driver alone, mid-run: Ray's agents outlive it a while
    proc.wait()
    clips_dir = tmp_path / "out" / "clips"
    finished_before = {c: (clips_dir / c / "meta.json").stat().st_mtime for c in done_clips(clips_dir)}
    assert len(finished_before) == 2

    # Rerun at once, while the killed run's Ray agents are still alive (its held clip stays held:
    # the gate is not opened, the rerun passes every clip; a setting no clip's files depend on).
    _, manifest, failures = run(tmp_path, path, "model=faulty", f"model.fault_state_dir={tmp_path / 'gate'}")
    manifest = manifest.set_index("clip_id")
    assert sorted(manifest.index) == [f"c{i}" for i in range(8)] and len(failures) == 0
    for clip_id, mtime in finished_before.items():
        assert manifest.loc[clip_id, "status"] == "done_before"
        assert (clips_dir / clip_id / "meta.json").stat().st_mtime == mtime  # not redone
    assert not [p for p in clips_dir.iterdir() if p.name.startswith(".")]  # no partial folders left


def test_ctrl_c_stops_cleanly_and_leaves_a_resumable_run(ray_local, tmp_path, demo, spawn):
    """The interrupted run in a local Ray of its own, as a user's `python launch.py` starts one (joining
    the session's Ray, it once went on for 2 minutes after SIGINT on a loaded machine: not understood yet)."""
    csv, rows = demo
    path = write_csv(tmp_path / "many.csv", [good_row(csv, rows, i % 4, clip_id=f"c{i}") for i in range(8)])
    # Its output to a file: a pipe nobody reads while the test waits could fill and stall the run.
    with open(tmp_path / "output.txt", "w") as log_file:
        _, proc = launch_held(spawn, tmp_path, path, stdout=log_file, stderr=subprocess.STDOUT)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=600)  # a guard only
    output = (tmp_path / "output.txt").read_text()
    assert proc.returncode == 130, output[-3000:]
    assert "INTERRUPTED" in output
    finished = done_clips(tmp_path / "out" / "clips")
    assert len(finished) == 2
    # Every committed clip is in the manifest and the summary, also those whose rows were still
    # on their way to the driver: what a resume would find done.
    assert sorted(pd.read_parquet(tmp_path / "out" / "manifest.parquet").clip_id) == finished
    assert re.search(r"clips ok \(this run\)\s+2\n", output), output[-3000:]

    # The same run resumed (here in this process's Ray): the 6 others are done, the 2 skipped.
    _, manifest, failures = run(tmp_path, path, "model=faulty", f"model.fault_state_dir={tmp_path / 'gate'}")
    manifest = manifest.set_index("clip_id")
    assert sorted(manifest.index) == [f"c{i}" for i in range(8)] and len(failures) == 0
    assert all(manifest.loc[c, "status"] == "done_before" for c in finished)
    assert (manifest.status == "ok").sum() == 6


def assert_no_work_left(output_dir):
    """Every clip ended (done or failed): none of their intermediate files may stay behind."""
    work = output_dir / ".work"
    assert not work.exists() or not list(work.iterdir()), list(work.iterdir())


def done_clips(clips_dir):
    if not clips_dir.is_dir():
        return []
    return sorted(p.name for p in clips_dir.iterdir() if (p / "meta.json").is_file())
