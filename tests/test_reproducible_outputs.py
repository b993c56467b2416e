"""The same input and settings give the same files: result videos byte for byte, and a mask given as
a file comes back in all_masks.npz exactly as it went in."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from vp_ray.clip.demo import ensure_demo_dataset
from vp_ray.clip.video import write_video
from vp_ray.tools import single

ENCODE = ("import sys, numpy as np; from vp_ray.clip.video import write_video; "
          "write_video(sys.argv[2], np.load(sys.argv[1]), 8.0)")


def moving_texture(frames=12, height=128, width=192):
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height, 2 * width, 3), dtype=np.uint8)
    return np.stack([texture[:, 4 * t:4 * t + width] for t in range(frames)])


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_frames_encode_to_the_same_bytes_however_many_cpus_the_encoder_sees(tmp_path):
    frames = moving_texture()
    np.save(tmp_path / "frames.npy", frames)
    write_video(tmp_path / "a.mp4", frames, 8.0)
    write_video(tmp_path / "b.mp4", frames, 8.0)
    # Another process, which sees one CPU (x264's automatic thread count follows the CPUs it sees).
    one_cpu = sorted(os.sched_getaffinity(0))[:1]
    subprocess.run([sys.executable, "-c", ENCODE, str(tmp_path / "frames.npy"), str(tmp_path / "c.mp4")],
                   cwd=REPO, check=True, preexec_fn=lambda: os.sched_setaffinity(0, one_cpu))
    assert digest(tmp_path / "a.mp4") == digest(tmp_path / "b.mp4") == digest(tmp_path / "c.mp4")


@pytest.mark.parametrize("preprocess", ["reference", "opencv"])
def test_a_mask_file_comes_back_in_all_masks_npz_exactly(tmp_path, preprocess):
    """A portrait clip (96x72) stretched to the model's 64x96: its masks must not make that round trip.
    The label map holds two objects; mask_id 2 is the one to remove."""
    ensure_demo_dataset(tmp_path / "demo", num_clips=2, num_frames=9, height=96, width=144, seed=1)
    clip = tmp_path / "demo" / "demo01_portrait"
    labels = np.load(clip / "all_masks.npz")["arr_0"].astype(np.uint8) * 2
    labels[:, :10, :10] = 1  # another object
    np.savez_compressed(tmp_path / "labels.npz", arr_0=labels)
    out = tmp_path / "out"
    code = single.main(["--video", str(clip / "video.mp4"), "--mask", str(tmp_path / "labels.npz"), "--mask_id", "2",
                        "--output_dir", str(out), "--mask_only", "--model", "classic", "model.height=64",
                        "model.width=96", "dilate_size=4", f"preprocess={preprocess}"])
    assert code == 0
    written = np.load(out / "all_masks.npz")["arr_0"]
    assert written.shape == labels.shape  # 9 frames at 8 fps: every source frame used
    assert np.array_equal(written, (labels == 2).astype(np.uint8))
