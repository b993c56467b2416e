"""A clip's final files under ``<output_dir>/clips/<clip_id>/``, committed all at once.

The files are written into a hidden temporary folder, ``meta.json`` last, and the folder
is renamed into place: a clip folder under its final name is always complete, and a
crashed run leaves only temporary folders, which the next run ignores and cleans up.
``meta.json`` records each file's size and the clip's config fingerprint, so a resumed
run can tell a valid result from a stale one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from vp_ray import __version__
from vp_ray.clip.atomic import TMP_MARK, atomic_path
from vp_ray.clip.masks import black_out
from vp_ray.clip.rows import RECORD_COLUMNS

RESULT_FILES = ("result.mp4", "result_vis.mp4")
MASK_FILES = ("mask.mp4", "all_masks.npz", "frame0_original.png", "frame0_with_mask.png", "mask0.png")
META = "meta.json"
# Record fields added after clips were first fingerprinted, with their "not given" value.
LATER_RECORD_FIELDS = {"dilate_size": -1}


def clip_dir(output_dir: str | os.PathLike, clip_id: str) -> Path:
    return Path(output_dir) / "clips" / clip_id


def fingerprint(settings: dict[str, Any], row: dict[str, Any]) -> str:
    """Hash of everything that decides this clip's files: its record and the ``settings`` that can
    change them (those its stages read: ``vp_ray.stages.ClipSettings``)."""
    # As stored in meta.json, so that a clip's record read back from it hashes the same. A record
    # field added later counts only when given, so that clips of earlier runs keep their hash.
    record = {k: json_value(row[k]) for k in RECORD_COLUMNS
              if k not in LATER_RECORD_FIELDS or row.get(k, LATER_RECORD_FIELDS[k]) != LATER_RECORD_FIELDS[k]}
    blob = json.dumps([record, settings], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def read_meta(output_dir: str | os.PathLike, clip_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((clip_dir(output_dir, clip_id) / META).read_text())
    except (OSError, ValueError):
        return None


def is_complete(output_dir: str | os.PathLike, clip_id: str, expected_fingerprint: str) -> bool:
    """A clip is done if its meta.json matches this run's settings and every file it lists is intact."""
    meta = read_meta(output_dir, clip_id)
    if not meta or meta.get("fingerprint") != expected_fingerprint:
        return False
    folder = clip_dir(output_dir, clip_id)
    return all((folder / name).is_file() and (folder / name).stat().st_size == size
               for name, size in meta.get("files", {}).items())


def commit_clip(output_dir: str | os.PathLike, clip_id: str, write_files: Callable[[Path], None],
                make_meta: Callable[[], dict[str, Any]]) -> Path:
    """Run ``write_files(tmp_folder)``, add meta.json (from ``make_meta()``, called once the files
    are written), and rename the folder into place."""
    final = clip_dir(output_dir, clip_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(final) as tmp:
        tmp.mkdir()
        write_files(tmp)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        meta = {**make_meta(), "files": files, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "vp_ray_version": __version__}
        meta = {k: json_value(v) for k, v in meta.items()}
        (tmp / META).write_text(json.dumps(meta, indent=2, allow_nan=False, default=str))
        if final.exists():
            shutil.rmtree(final)  # an older or incomplete result of the same clip
    return final


def remove_stale_temporaries(output_dir: str | os.PathLike) -> int:
    """Delete temporary clip folders left by a crashed run; returns how many."""
    clips = Path(output_dir) / "clips"
    stale = list(clips.glob(f".*{TMP_MARK}*")) if clips.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


# ----------------------------------------------------------------------------- pictures

def mask_frames(masks: np.ndarray) -> np.ndarray:
    return np.repeat(masks[..., None].astype(np.uint8) * 255, 3, axis=-1)


def comparison_frames(frames: np.ndarray, masks: np.ndarray, result: np.ndarray) -> np.ndarray:
    """original | masked | mask | result, side by side."""
    return np.concatenate([frames, black_out(frames, masks), mask_frames(masks), result], axis=2)


def overlay(frame: np.ndarray, mask: np.ndarray, points: list[list[float]] | None = None,
            box: list[float] | None = None) -> np.ndarray:
    """Frame 0 with the mask tinted red, positive clicks green, negative clicks red, the box blue."""
    out = frame.astype(np.float32)
    out[mask] = 0.5 * out[mask] + 0.5 * np.array([255, 0, 0], np.float32)
    out = np.ascontiguousarray(out.astype(np.uint8))
    radius = max(3, frame.shape[0] // 80)
    for x, y, label in points or []:
        colour = (0, 255, 0) if label == 1 else (255, 0, 0)
        cv2.circle(out, (int(round(x)), int(round(y))), radius, colour, -1)
        cv2.circle(out, (int(round(x)), int(round(y))), radius, (255, 255, 255), 1)
    if box:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 0, 255), 2)
    return out


def write_png(path: Path, rgb: np.ndarray) -> None:
    image = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def json_value(value: Any) -> Any:
    """A row value as JSON holds it: numpy scalars as Python numbers, NaN ("not given") as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
