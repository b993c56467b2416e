"""End to end: the demo dataset through the Ray Data pipeline with the classic inpainter."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import av
import numpy as np
import pandas as pd
import pytest
from conftest import PROGRAMS, REPO, compose_config

from vp_ray.clip import video
from vp_ray.evaluation import clip_scores
from vp_ray.runtime import graph, todo
from vp_ray.runtime.summary import format_summary
from vp_ray.stages.lineup import run_context

pytestmark = pytest.mark.slow
SMALL = ["model.height=120", "model.width=180", "dilate_size=4", "cluster.num_cpus=2"]


def demo_overrides(tmp_path, clips=3):
    return [f"output_dir={tmp_path / 'out'}", f"dataset.path={tmp_path / 'demo'}",
            f"dataset.demo_num_clips={clips}", *SMALL]


def decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec, pix_fmt = stream.codec_context.name, stream.codec_context.pix_fmt
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    return codec, pix_fmt, frames


def test_demo_run_writes_every_output_and_removes_the_object(ray_local, tmp_path):
    cfg = compose_config(demo_overrides(tmp_path))
    result = graph.run(cfg)

    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    failures = pd.read_parquet(tmp_path / "out" / "failures.parquet")
    assert len(failures) == 0, failures.to_dict("records")
    assert sorted(manifest.clip_id) == sorted(pd.read_csv(tmp_path / "demo" / "demo.csv").clip_id)
    assert not result.interrupted and result.ledger.duplicates() == []
    assert manifest.memory_plan.isna().all()   # the classic model plans no GPU memory
    assert manifest.attention_backend.isna().all()   # nor chooses an attention kernel
    assert manifest.compiled.isna().all()      # and compiles nothing

    demo = pd.read_csv(tmp_path / "demo" / "demo.csv").set_index("clip_id")
    for clip in manifest.to_dict("records"):
        folder = tmp_path / "out" / "clips" / clip["clip_id"]
        for name in ("result.mp4", "result_vis.mp4", "mask.mp4", "all_masks.npz", "meta.json",
                     "frame0_original.png", "frame0_with_mask.png", "mask0.png"):
            assert (folder / name).is_file(), name
        codec, pix_fmt, result_frames = decode(folder / "result.mp4")
        assert (codec, pix_fmt) == ("h264", "yuv420p")
        assert result_frames.shape == (clip["num_frames"], 120, 180, 3)
        _, _, panels = decode(folder / "result_vis.mp4")
        assert panels.shape == (clip["num_frames"], 120, 4 * 180, 3)
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["status"] == "ok" and meta["num_frames"] == clip["num_frames"]
        # One source of truth: the write time meta.json keeps is the manifest's, and was measured.
        assert meta["time_write_s"] == clip["time_write_s"] > 0
        # seconds is the duration a player shows: 24 demo frames at 8 fps last 3.0 s.
        assert clip["seconds"] == pytest.approx(clip["num_frames"] / clip["out_fps"]) == \
            pytest.approx(len(result_frames) / 8.0)

        # Outside the (dilated) mask the result is the input, up to codec error.
        masks = decode(folder / "mask.mp4")[2][..., 0] > 127
        original = panels[:, :, :180]
        outside = ~dilate(masks, 3)
        assert np.abs(result_frames.astype(int) - original)[outside].mean() < 2.0

        # Inside the mask the classic fill is close to the true background.
        truth = ground_truth(tmp_path / "demo" / demo.loc[clip["clip_id"], "ground_truth_path"],
                             clip, cfg)
        score = clip_scores.psnr(result_frames, truth, mask=masks)
        # Measured at 120x180, codec included: 29.4 dB (landscape: part of its background is
        # hidden in every frame, so cv2.inpaint guesses it), 41.8 (portrait), 41.4 (odd size).
        assert score > 27.0, (clip["clip_id"], score)


def dilate(masks, size):
    from vp_ray.clip.masks import dilate_masks

    return dilate_masks(masks, size)


def ground_truth(path, clip, cfg):
    """The clean background, through the same resampling and resizing as the input."""
    decoded = video.read_clip(str(path), target_fps=cfg.target_fps, max_seconds=cfg.max_seconds)
    frames = decoded.frames[: clip["num_frames"]]
    placement = video.placement_for(frames.shape[1], frames.shape[2], 120, 180, cfg.resize_mode)
    return video.fit_frames(frames, placement)


def test_rerun_skips_complete_clips_and_redoes_damaged_ones(ray_local, tmp_path):
    cfg = compose_config(demo_overrides(tmp_path, clips=2))
    graph.run(cfg)
    first = pd.read_parquet(tmp_path / "out" / "manifest.parquet").clip_id.tolist()
    damaged = tmp_path / "out" / "clips" / first[0] / "result.mp4"
    damaged.write_bytes(damaged.read_bytes()[:100])

    result = graph.run(cfg)
    statuses = dict(result.ledger.table("done")[["clip_id", "status"]].values.tolist())
    assert statuses == {first[0]: "ok", first[1]: "done_before"}
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert sorted(manifest.clip_id) == sorted(first)
    assert decode(damaged)[2].shape[0] == manifest.set_index("clip_id").loc[first[0], "num_frames"]


def test_launch_py_runs_the_demo_from_the_command_line(tmp_path, ray_address):
    command = [sys.executable, "launch.py", *demo_overrides(tmp_path, clips=2), f"cluster.address={ray_address}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "clips ok (this run)" in done.stdout and "clips failed" in done.stdout
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert len(manifest) == 2
    # The console: a few lines of ours (Ray Data's progress off by default), then the summary.
    console = (done.stderr + done.stdout).splitlines()
    before_summary = [line for line in done.stdout.split("-----")[0].splitlines() if line.strip()]
    assert len(before_summary) + len(done.stderr.splitlines()) <= 15, "\n".join(console)
    assert "clips 2/2 | ok 2 | failed 0" in done.stdout
    # Hydra's run dir sits in the output dir: the driver's log, each worker's, Ray Data's stats.
    run_dir = next((tmp_path / "out" / "logs").iterdir())
    assert (run_dir / "launch.log").is_file() and (run_dir / "ray_data_stats.txt").is_file()
    clip = manifest.clip_id[0]
    lines = [line for path in (run_dir / "workers").glob("*.log") for line in path.read_text().splitlines()
             if f"[{clip}]" in line]
    assert any("inpaint: done" in line for line in lines) and any("write: done" in line for line in lines)
    assert (tmp_path / "out" / "report.html").is_file()
    # The ledger's part files go once the summary is printed: the manifest holds their rows.
    assert not (tmp_path / "out" / ".ledger").exists() and not (tmp_path / "out" / ".todo").exists()


def test_typo_in_an_override_fails_with_a_clear_message():
    done = subprocess.run([sys.executable, "launch.py", "model.num_inference_step=3"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "Key 'num_inference_step' not in 'ClassicModelConfig'" in done.stderr


def test_too_few_cpus_for_the_actor_pools_fail_before_the_run_hangs():
    from vp_ray.errors import ConfigError

    graph.check_cpus(3, {"SAM2": 1, "inpainting": 1})
    with pytest.raises(ConfigError, match=r"has 2 CPU\(s\) but needs at least 3: the actor pools hold "
                                          r"SAM2 1, inpainting 1"):
        graph.check_cpus(2, {"SAM2": 1, "inpainting": 1})


def test_cpu_stages_do_not_import_the_model_libraries():
    """Prepare/write tasks run in fresh Ray workers: importing diffusers there cost ~7 s per worker."""
    code = ("import sys, vp_ray.stages.prepare, vp_ray.stages.write, vp_ray.stages.read; "
            "print(sorted(m for m in ('diffusers', 'transformers', 'sam2') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


def test_videopainter_on_a_tiny_tree_in_the_real_layout_paints_short_and_long_clips(ray_local, tmp_path):
    """model=videopainter itself (not model=tiny), pointed at `python -m vp_ray.tools.ckpt tiny` output, with
    ID resampling and its tiny VideoPainterID LoRA: a 9-frame clip (max_seconds=1 in its row), and
    15 s of video at max_seconds=12: 97 frames, two windows of 49 sharing frame 48."""
    from vp_ray.clip.demo import ensure_demo_dataset
    from vp_ray.tools.ckpt import main as ckpt_main

    assert ckpt_main(["tiny", "--root", str(tmp_path / "ckpt")]) == 0
    lora = tmp_path / "ckpt/VideoPainterID/checkpoints/pytorch_lora_weights.safetensors"
    rows = pd.read_csv(ensure_demo_dataset(tmp_path / "demo", num_clips=2, num_frames=120, height=96, width=144))
    for column in ("video_path", "mask_path", "ground_truth_path"):
        rows[column] = [str(tmp_path / "demo" / p) for p in rows[column]]
    rows.assign(max_seconds=[1.0, 12.0]).to_csv(tmp_path / "clips.csv", index=False)
    short, long = rows.clip_id
    cfg = compose_config([f"output_dir={tmp_path / 'out'}", "dataset=csv", f"dataset.path={tmp_path / 'clips.csv'}",
                          "model=videopainter", f"model.base_model_path={tmp_path / 'ckpt/CogVideoX-5b-I2V'}",
                          f"model.branch_path={tmp_path / 'ckpt/VideoPainter/checkpoints/branch'}",
                          "model.id_resampling=true", f"model.id_lora_path={lora}", "model.create_tiny_if_missing=true",
                          "model.height=64", "model.width=96", "model.num_gpus=0", "model.num_cpus=1",
                          "model.dtype=float32", "model.num_inference_steps=2", "dilate_size=2"])
    result = graph.run(cfg)
    assert result.ledger.done_count == 2 and not result.ledger.failed_count
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet").set_index("clip_id")
    assert (manifest.time_inpaint_s > 0).all() and not manifest.degraded.any()
    assert (manifest.step_s_median > 0).all() and (manifest.step_s_max >= manifest.step_s_median).all()
    assert (manifest.memory_plan == "resident").all()   # without a GPU every model stays where it is
    assert (manifest.attention_backend == "pytorch").all()   # without a GPU no kernel is timed or chosen
    # and compile_blocks=auto and compile_vae=auto stay eager
    assert (manifest.compiled == "off: auto, no GPU; VAE off: auto, no GPU").all()
    actors = manifest.inpaint_worker.nunique()
    summary = format_summary(result, str(tmp_path / "out"), wall_seconds=1.0).splitlines()
    memory_plan = next(line for line in summary if line.startswith("memory plan"))
    assert f"resident ({actors} actor{'s' * (actors > 1)})" in memory_plan
    assert "off: auto, no GPU" in next(line for line in summary if line.startswith("compiled (blocks; VAE)"))
    # Each clip's GPU timeline, in order; two clips at once in the actor, never two on its GPU.
    timeline = manifest[["gpu_started", "denoise_started", "denoise_finished", "gpu_finished"]]
    assert (timeline.diff(axis=1).iloc[:, 1:] >= 0).all().all() and (timeline.gpu_started > 0).all()
    phases = ["time_load_s", "time_prompt_s", "time_encode_s", "time_decode_s", "time_convert_s"]
    assert (manifest[phases] > 0).all().all()
    if actors == 1:
        first, second = manifest.sort_values("gpu_started").itertuples()
        assert second.gpu_started >= first.gpu_finished
        assert any(line.startswith("GPU idle between clips") for line in summary)
    assert manifest.loc[short, "num_frames"] == 9 and manifest.loc[long, "num_frames"] == 97
    assert manifest.loc[long, "seconds"] == 12.125
    for clip_id, frames in ((short, 9), (long, 97)):
        codec, _, decoded = decode(tmp_path / "out" / "clips" / clip_id / "result.mp4")
        assert codec == "h264" and decoded.shape[0] == frames
    assert np.load(tmp_path / "out" / "clips" / long / "all_masks.npz")["arr_0"].shape[0] == 97
    assert lora.is_file()


def launch(*overrides, timeout=600):
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    return subprocess.run([sys.executable, "launch.py", *overrides], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_invalid_enumerated_value_is_refused_before_ray_starts(tmp_path):
    done = launch("resize_mode=squash", f"output_dir={tmp_path / 'out'}", timeout=120)
    assert done.returncode != 0
    assert "Invalid value 'squash', expected one of [stretch, pad, crop]" in done.stderr
    assert "Ray" not in done.stdout + done.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("override,allowed", [
    ("model=videopainter model.memory_mode=resdent",
     "auto, resident, text_encoder_offload, model_offload, sequential_offload"),
    ("sam2.placement=shard", "auto, cpu, shared, dedicated"),
    ("dataset.prompt_coords=modl", "source, model"),
    ("model=videopainter model.first_frame_fill=flex", "flux, opencv, none"),
    ("model=videopainter model.attention_backend=fastest", "auto, pytorch, cudnn, flash, efficient, math"),
    ("dataset.layout=vp", "generic, vpdata"),
    ("model.inpaint_method=magic", "telea, ns"),
    ("sam2.device=tpu", "auto, cpu, cuda"),
    ("model=videopainter model.dtype=fp8", "bfloat16, float16, float32"),
    ("dataset.format=json", "csv, parquet, demo"),
])
def test_every_enumerated_setting_is_checked_when_the_config_is_composed(tmp_path, override, allowed):
    with pytest.raises(Exception) as raised:
        compose_config([f"output_dir={tmp_path}", *override.split()])
    chain = f"{raised.value} {raised.value.__cause__}"
    assert f"expected one of [{allowed}]" in chain, chain


def test_missing_mandatory_value_is_one_line_and_leaves_no_folder(tmp_path):
    done = launch("dataset=csv", f"output_dir={tmp_path / 'out'}", timeout=120)
    assert done.returncode == 2
    assert "missing value: dataset.path" in done.stderr and "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "out").exists()


def test_refused_run_leaves_no_logs_folder_behind(tmp_path):
    done = launch("dataset=csv", f"dataset.path={tmp_path / 'none.csv'}", f"output_dir={tmp_path / 'out'}",
                  timeout=120)
    assert done.returncode == 2 and "dataset file not found" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_run_where_every_clip_fails_exits_nonzero_and_says_why(tmp_path, ray_address):
    done = launch(*demo_overrides(tmp_path, clips=2), f"cluster.address={ray_address}", "min_frames=1000")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "ALL CLIPS FAILED" in done.stdout
    assert re.search(r"most common failure\s+bad_input at prepare \(2 clip\(s\)\), e\.g\. clip 'demo0", done.stdout)
    assert "at least 1000 are needed" in done.stdout
    # The run's log file holds our own lines and the summary, not only the console.
    log_file = next((tmp_path / "out" / "logs").glob("*/launch.log"))
    logged = log_file.read_text()
    assert "dataset: 2 clip(s)" in logged and "ALL CLIPS FAILED" in logged


def test_ragged_line_beyond_the_first_block_does_not_stop_the_read(ray_local, tmp_path):
    path = tmp_path / "clips.csv"
    rows = [f'c{i},{"v" * 40}{i}.mp4,"[[1, 2]]"' for i in range(25000)]
    path.write_text("\n".join(["clip_id,video_path,points", *rows, "late,b.mp4"]) + "\n")
    cfg = compose_config([f"output_dir={tmp_path / 'out'}", "dataset=csv", f"dataset.path={path}"])
    plan = todo.write_todo(cfg)
    plan = todo.skip_complete(cfg, run_context(cfg, plan), plan, pytest.fail)
    assert graph.read_dataset(plan).count() == 25000 and [r.line for r in plan.ragged] == [25002]


def test_dashboard_opens_with_the_token_the_readme_names():
    """README, "Ray: dashboard": a local instance wants `ray get-auth-token`'s token."""
    done = subprocess.run([sys.executable, str(PROGRAMS / "dashboard_token.py")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["401", "200"]
    assert "ray get-auth-token" in (REPO / "README.md").read_text()


def test_a_local_ray_whose_start_timed_out_is_started_again_without_the_failed_tries_processes(monkeypatch, caplog):
    """Ray waits a fixed 30 s for a new local instance's raylet; on a busy machine a user's `python
    launch.py` (and this suite's Ctrl-C test) failed with "The current node timed out during startup"."""
    tries, leftovers = [], []

    def init(address, **kwargs):
        tries.append(address)
        if len(tries) < 3:
            leftovers.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]))
            raise Exception("The current node timed out during startup. This could happen because ...")
        return "context"

    monkeypatch.setattr(graph.ray, "init", init)
    monkeypatch.setattr(graph.ray, "shutdown", lambda: None)
    with caplog.at_level("WARNING", logger=graph.log.name):
        assert graph.start_local({"num_cpus": 2}) == "context"
    assert tries == ["local"] * 3
    assert [p.wait(timeout=60) for p in leftovers] == [-9, -9]  # the failed tries' processes stopped
    assert "starting it again (try 3 of 3)" in caplog.text

    tries.clear()
    with pytest.raises(Exception, match="timed out during startup"):   # no fourth try
        monkeypatch.setattr(graph, "LOCAL_START_TRIES", 2)
        graph.start_local({})
    assert [p.wait(timeout=60) for p in leftovers[2:]] == [-9, -9]  # the last try's too
    def init_refused(address, **kwargs):
        raise ValueError("bad arg")

    monkeypatch.setattr(graph.ray, "init", init_refused)
    with pytest.raises(ValueError, match="bad arg"):   # any other error: at once
        graph.start_local({})


def test_a_cluster_address_left_by_a_killed_ray_start_is_not_joined(monkeypatch):
    """`ray start` records its address in /tmp/ray; killed without `ray stop`, the record stays, and
    ray.init(address=None) would wait on the dead cluster. Join it only while its GCS runs."""
    from ray._private import services

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: "10.0.0.7:6379")
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: set())
    assert graph.running_cluster() is None
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: {"10.0.0.7:6379"})
    assert graph.running_cluster() == "10.0.0.7:6379"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.9:6379")
    assert graph.running_cluster() == "10.0.0.9:6379"
    monkeypatch.setenv("RAY_ADDRESS", "local")   # as for ray.init: a new local instance, whatever runs
    assert graph.running_cluster() is None
