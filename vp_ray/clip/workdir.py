"""The files of one clip between stages, under ``<output_dir>/.work/<clip_id>/``.

Stages pass each other paths, not arrays: a 49x480x720 clip is 50 MB of frames, and
passing it through Ray's object store for every queued clip would fill it. Arrays are
plain ``.npy`` files (no pickle), loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vp_ray.clip.atomic import atomic_path
from vp_ray.clip.masks import MaskRule
from vp_ray.clip.prompts import Box, Point
from vp_ray.clip.video import Placement
from vp_ray.config import ResizeMode

FRAMES = "frames.npy"          # uint8 [T, H, W, 3] RGB at the model's size
MASKS_RAW = "masks_raw.npy"    # bool [T, H, W]: the object, as given or segmented
MASKS = "masks.npy"            # bool [T, H, W]: dilated, what the inpainter fills
MASKED_VIDEO = "masked_video.npy"  # uint8 [T, H, W, 3]: the object blacked out (preprocess=reference)
INDICES = "indices.npy"        # int64 [T]: the source frame number of each frame
SOURCE_MASKS = "masks_source.npy"  # uint8 [T, H, ceil(W / 8)]: a mask file's masks at the source size, bits packed
RESULT = "result.npy"          # uint8 [T', H, W, 3]: T' <= T after an OOM retry shortened it
CLIP_INFO = "clip.json"        # ClipInfo: what the prepare stage decided for the clip


@dataclass(frozen=True)
class ClipInfo:
    """What the prepare stage decides for a clip once, for the stages after it: where the source
    frame lands in the model frame, the clicks and box SAM2 is given (model-frame pixels), and how
    the object masks become what the inpainter fills."""

    placement: Placement
    mask_rule: MaskRule
    points: list[Point] = dataclasses.field(default_factory=list)
    box: Box | None = None


def save_clip_info(work_dir: str | os.PathLike, info: ClipInfo) -> None:
    fields = dataclasses.asdict(info)
    fields["placement"]["mode"] = info.placement.mode.value
    with atomic_path(Path(work_dir) / CLIP_INFO) as tmp:
        Path(tmp).write_text(json.dumps(fields))


def load_clip_info(work_dir: str | os.PathLike) -> ClipInfo:
    fields = json.loads((Path(work_dir) / CLIP_INFO).read_text())
    placement = Placement(**{**fields["placement"], "mode": ResizeMode(fields["placement"]["mode"])})
    return ClipInfo(placement=placement, mask_rule=MaskRule(**fields["mask_rule"]),
                    points=[(x, y, label) for x, y, label in fields["points"]],
                    box=tuple(fields["box"]) if fields["box"] is not None else None)


def save_array(work_dir: str | os.PathLike, name: str, array: np.ndarray) -> None:
    """Write atomically so a killed worker never leaves a half-written array behind."""
    with atomic_path(Path(work_dir) / name) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def load_array(work_dir: str | os.PathLike, name: str) -> np.ndarray:
    return np.load(Path(work_dir) / name, allow_pickle=False)


def has_array(work_dir: str | os.PathLike, name: str) -> bool:
    return (Path(work_dir) / name).is_file()


RUN_MARK = "run.txt"            # the run that made the folder (its log folder's path)


def make_work_dir(output_dir: str | os.PathLike, clip_id: str, run: str | None = None) -> Path:
    """The clip's work folder, emptied if an earlier run left it (its files are stale).

    A folder this run made is kept as it is: Ray may run prepare again for a clip whose first
    try's output was lost with a node, while a later stage still reads that try's files (the
    arrays are rewritten atomically, to the same bytes) and the worker-death counters must
    survive. ``run`` names the run; ``None`` always starts afresh."""
    path = Path(output_dir) / ".work" / clip_id
    mark = path / RUN_MARK
    if run is not None and mark.is_file() and mark.read_text() == run:
        return path
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    if run is not None:
        with atomic_path(mark) as tmp:
            Path(tmp).write_text(run)
    return path


def remove_work_dir(work_dir: str | os.PathLike) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)


def store_masks(work_dir: str | os.PathLike, raw_masks: np.ndarray, masks: np.ndarray,
                masked_video: np.ndarray | None = None) -> None:
    """Save the object masks as given or segmented, dilated (what the inpainter fills), and the
    video the inpainter conditions on when it is not the frames blacked out with ``masks``."""
    save_array(work_dir, MASKS_RAW, raw_masks.astype(bool))
    save_array(work_dir, MASKS, masks.astype(bool))
    if masked_video is not None:
        save_array(work_dir, MASKED_VIDEO, masked_video)


def save_source_masks(work_dir: str | os.PathLike, masks: np.ndarray) -> None:
    """A mask file's masks as given, at the source size, so that the clip's all_masks.npz passes
    them through exactly (not back from the model's size). Packed 8 pixels a byte: 12.7 MB for 49
    frames of 1080p."""
    save_array(work_dir, SOURCE_MASKS, np.packbits(masks.astype(bool), axis=-1))


def load_source_masks(work_dir: str | os.PathLike, width: int) -> np.ndarray | None:
    """The masks ``save_source_masks`` kept (bool [T, H, width]), or None for masks made by SAM2."""
    if not has_array(work_dir, SOURCE_MASKS):
        return None
    return np.unpackbits(load_array(work_dir, SOURCE_MASKS), axis=-1, count=width).astype(bool)


def save_finished_row(work_dir: str | os.PathLike, stage: str, row: dict) -> None:
    """The row as ``stage`` finished it, beside the files it wrote (``finished_row``)."""
    with atomic_path(Path(work_dir) / f"{stage}.done.json") as tmp:
        Path(tmp).write_text(json.dumps(row, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def finished_row(work_dir: str | os.PathLike, stage: str) -> dict | None:
    """The row an earlier try of ``stage`` in this run finished, or None.

    A call's answer is lost if its worker dies after the call ended and before Ray had it (with
    ``cluster.overlap_clips``, the clip beside it may crash the process then). Ray runs the call
    again: the finished try's files and row are still here, so the clip is neither redone (a
    minute and more of GPU) nor charged a death it did not cause."""
    path = Path(work_dir) / f"{stage}.done.json"
    return json.loads(path.read_text()) if path.is_file() else None


def count_worker_attempt(work_dir: str | os.PathLike, stage: str, limit: int, shared: bool = False) -> None:
    """Bound the retries of a clip that kills its worker process (host OOM kill, segfault).

    Ray Data restarts dead actors and retries their calls without limit (its defaults,
    ``max_restarts=-1, max_task_retries=-1``; setting them is deprecated in Ray 2.60), so a clip
    that kills the process every time would never end. A counter file in the clip's work folder
    outlives the process; every earlier try counted there died (a finished one leaves
    ``finished_row``). A try ``shared`` with other clips in the process may have been killed by one
    of them: it is not charged, and the clip's next try runs alone. After ``limit`` charged deaths
    the next try is a failure row.
    """
    from vp_ray.errors import ClipError

    tries, charged = _attempts(work_dir, stage)
    if charged > limit:
        raise ClipError(f"the {stage} worker died {charged} time(s) while processing this clip alone "
                        "(host out-of-memory kill or crash); giving up", kind="worker_died")
    # Whole or not at all: the process may be killed mid-write (by the clip beside it in the same
    # actor), and an emptied counter would fail this clip with "invalid literal for int()".
    with atomic_path(Path(work_dir) / f"{stage}.attempts") as tmp:
        tmp.write_text(f"{tries + 1} {charged + (0 if shared else 1)}")


def worker_attempts(work_dir: str | os.PathLike, stage: str) -> int:
    """The tries of ``stage`` on this clip so far (``count_worker_attempt``); more than 0 before a
    try means its worker died in an earlier one."""
    return _attempts(work_dir, stage)[0]


def _attempts(work_dir: str | os.PathLike, stage: str) -> tuple[int, int]:
    """(tries, tries that ran alone) counted in the clip's work folder."""
    marker = Path(work_dir) / f"{stage}.attempts"
    if not marker.exists():
        return 0, 0
    counts = [int(word) for word in marker.read_text().split()]
    return counts[0], counts[-1]  # one number: a counter of every try as charged
