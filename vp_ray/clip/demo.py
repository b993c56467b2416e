"""The demo dataset: small synthetic clips whose clean background is known.

Each clip is a smooth coloured static background with a moving object composited over it.
The object's exact mask is saved as a VPData ``all_masks.npz`` and the clean background as
``background.mp4``, so results can be scored. Clips differ on purpose: one landscape at the
target size, one portrait (3:4, 480x360 by default), one of an awkward size (even, as H.264 4:2:0 requires, but
no multiple of 8), one at 24 fps (resampled to 8). In the first the object barely moves, so part
of the background is never visible and the classic inpainter must guess it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from vp_ray.clip.masks import save_vpdata_masks
from vp_ray.clip.video import write_video

# (name, height scale, width scale, fps multiple, object travel as a fraction of the width)
VARIANTS = [("landscape", 1.0, 1.0, 1, 0.1), ("portrait", 1.0, 0.5, 1, 0.6),
            ("odd_size", 0.75, 0.75, 1, 0.7), ("fps24", 1.0, 1.0, 3, 0.8)]


def background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth, colourful texture: a few low-frequency sinusoids and a gradient per channel."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    y, x = y / height, x / width
    channels = []
    for _ in range(3):
        value = 0.35 * x + 0.25 * y
        for _ in range(3):
            fx, fy, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
            value += 0.15 * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
        channels.append(value)
    image = np.stack(channels, axis=-1)
    image = (image - image.min()) / (image.max() - image.min())
    return (40 + 175 * image).astype(np.uint8)


def moving_object(height: int, width: int, count: int, travel: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Masks of a disc crossing the frame, and its colour."""
    radius = max(4, min(height, width) // 6)
    y0 = rng.uniform(0.35, 0.65) * height
    x_start = rng.uniform(0.2, 0.8 - travel * 0.6) * width if travel < 0.6 else 0.1 * width
    yy, xx = np.mgrid[0:height, 0:width]
    masks = []
    for t in range(count):
        cx = x_start + travel * width * t / max(1, count - 1)
        cy = y0 + 0.05 * height * np.sin(t / 3)
        masks.append((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2)
    return np.stack(masks), rng.integers(0, 256, size=3).astype(np.uint8)


def _is_complete(folder: Path, params: dict) -> bool:
    """Written with these parameters, and no file since deleted (the stamp is written last)."""
    csv, stamp = folder / "demo.csv", folder / "demo.json"
    try:
        if json.loads(stamp.read_text()) != params:
            return False
        rows = pd.read_csv(csv)
    except (OSError, ValueError):
        return False
    columns = ("video_path", "mask_path", "ground_truth_path")
    return all((folder / row[c]).is_file() for row in rows.to_dict("records") for c in columns)


def ensure_demo_dataset(folder: str | Path, *, num_clips: int = 4, num_frames: int = 24, fps: float = 8.0,
                        height: int = 480, width: int = 720, seed: int = 0) -> Path:
    """Write the demo clips and ``demo.csv`` under ``folder`` unless they are already there.

    Returns the CSV's path. Its columns follow the generic layout (paths relative to ``folder``).
    """
    folder = Path(folder)
    params = {"num_clips": num_clips, "num_frames": num_frames, "fps": fps, "height": height,
              "width": width, "seed": seed, "version": 1}
    csv = folder / "demo.csv"
    stamp = folder / "demo.json"
    if _is_complete(folder, params):
        return csv
    folder.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)  # an interrupted rewrite must not pass for a complete one
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(num_clips):
        name, hs, ws, fps_multiple, travel = VARIANTS[i % len(VARIANTS)]
        h, w = int(height * hs), int(width * ws)
        if name == "portrait":
            h, w = height, int(height * 0.75) // 2 * 2
        if name == "odd_size":  # even (H.264 needs it) but no multiple of 8 or 16
            h, w = h // 8 * 8 + 2, w // 8 * 8 + 2
        clip_fps, count = fps * fps_multiple, num_frames * fps_multiple
        clean = background(h, w, rng)
        masks, colour = moving_object(h, w, count, travel, rng)
        frames = np.where(masks[..., None], colour, clean[None]).astype(np.uint8)
        clip_id = f"demo{i:02d}_{name}"
        clip_dir = folder / clip_id
        clip_dir.mkdir(exist_ok=True)
        write_video(clip_dir / "video.mp4", frames, clip_fps)
        write_video(clip_dir / "background.mp4", np.repeat(clean[None], count, axis=0), clip_fps)
        save_vpdata_masks(clip_dir / "all_masks.npz", masks)
        rows.append({"clip_id": clip_id, "video_path": f"{clip_id}/video.mp4",
                     "prompt": "a smooth colourful background", "mask_kind": "npz",
                     "mask_path": f"{clip_id}/all_masks.npz", "mask_id": 1,
                     "ground_truth_path": f"{clip_id}/background.mp4"})
    pd.DataFrame(rows).to_csv(csv, index=False)
    stamp.write_text(json.dumps(params))
    return csv
