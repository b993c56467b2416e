"""Video in and out with PyAV: decode, resample to a frame rate, fit to the model's size, encode H.264.

Frames are uint8 RGB arrays ``[T, H, W, 3]``. No system ffmpeg is needed (PyAV ships its own).
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vp_ray.errors import ClipError

MAX_FPS = 1000.0


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    num_frames: int  # from the container; may be an estimate (0 if unknown)
    width: int       # as displayed (rotation applied)
    height: int
    rotation: int


@dataclass
class DecodedClip:
    frames: np.ndarray   # uint8 [T, H, W, 3] at the source size, as displayed
    indices: np.ndarray  # source frame numbers (from the file's first frame) of each output frame
    source_fps: float
    out_fps: float


def _open(path: str | os.PathLike):
    if not os.path.isfile(path):
        raise ClipError(f"video file not found: {path}", kind="decode")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, ValueError) as error:
        raise ClipError(f"cannot open video {path}: not a video, or corrupt ({error})", kind="decode") from None
    if not container.streams.video:
        container.close()
        raise ClipError(f"{path} has no video stream", kind="decode")
    return container


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def probe_video(path: str | os.PathLike) -> VideoInfo:
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream))
        except (StopIteration, av.error.FFmpegError, ValueError):
            raise ClipError(f"{path} has no decodable frames", kind="decode") from None
        rotation = int(first.rotation or 0) % 360
        w, h = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        return VideoInfo(fps=_stream_fps(stream), num_frames=int(stream.frames or 0), width=w,
                         height=h, rotation=rotation)


def check_fps(fps: float, what: str) -> float:
    if fps is None or not math.isfinite(fps) or not (0 < fps <= MAX_FPS):
        raise ClipError(f"{what} frame rate {fps!r} is not usable (0 < fps <= {MAX_FPS:g})",
                        kind="bad_input")
    return float(fps)


def sample_indices(num_frames: int, source_fps: float, target_fps: float,
                   max_seconds: float) -> tuple[np.ndarray, float]:
    """Which source frames make the output clip, and its frame rate.

    Time-based: output frame k shows the source frame nearest to time k / target_fps.
    Sources slower than ``target_fps`` keep every frame at their own rate (nothing is
    duplicated). The clip is cut to ``round(max_seconds * out_fps) + 1`` frames, so 6.0 s
    at 8 fps is 49 frames.
    """
    out_fps = min(source_fps, target_fps)
    limit = int(round(max_seconds * out_fps)) + 1
    if out_fps == source_fps:
        indices = np.arange(num_frames)
    else:
        duration = num_frames / source_fps
        count = int(math.floor(duration * out_fps - 1e-9)) + 1
        indices = np.round(np.arange(count) * source_fps / out_fps).astype(np.int64)
        indices = indices[indices < num_frames]
    return indices[:limit].astype(np.int64), float(out_fps)


def _decode(path: str | os.PathLike, wanted: set[int] | None, stop: int | None):
    """Frames (RGB, as displayed) with their frame numbers, up to ``stop`` exclusive."""
    frames, numbers = [], []
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for number, frame in enumerate(container.decode(stream)):
                if stop is not None and number >= stop:
                    break
                if wanted is None or number in wanted:
                    frames.append(_rotate(frame.to_ndarray(format="rgb24"), int(frame.rotation or 0)))
                    numbers.append(number)
        except (av.error.FFmpegError, ValueError) as error:
            if not frames:
                raise ClipError(f"cannot decode {path}: corrupt or truncated ({error})", kind="decode") from None
            # A truncated tail: keep what decoded, the caller checks the count.
        return frames, numbers, _stream_fps(stream)


def _rotate(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Apply the display rotation (degrees counter-clockwise): phone videos store portrait sideways."""
    turns = (rotation % 360) // 90
    return np.ascontiguousarray(np.rot90(frame, k=turns)) if turns else frame


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Every frame of a video, and its frame rate."""
    frames, _, fps = _decode(path, None, None)
    if not frames:
        raise ClipError(f"{path} has no decodable frames", kind="decode")
    return np.stack(frames), fps


def read_clip(path: str | os.PathLike, *, start_frame: int = 0, end_frame: int = -1,
              fps: float | None = None, target_fps: float = 8.0, max_seconds: float = 6.0) -> DecodedClip:
    """The frames of ``[start_frame, end_frame)`` resampled to ``target_fps`` and cut to ``max_seconds``."""
    info = probe_video(path)
    source_fps = check_fps(fps if fps is not None else info.fps,
                           "given" if fps is not None else f"container ({path})")
    known = info.num_frames if end_frame < 0 else min(end_frame, info.num_frames or end_frame)
    if known and start_frame >= known:
        raise ClipError(f"start_frame {start_frame} is beyond the end of {path} ({known} frames)",
                        kind="bad_input")
    if known:
        indices, out_fps = sample_indices(known - start_frame, source_fps, target_fps, max_seconds)
        frames, numbers, _ = _decode(path, set((indices + start_frame).tolist()),
                                     int(indices[-1]) + start_frame + 1 if len(indices) else 0)
        if len(numbers) < len(indices):  # the container over-counted (truncated file): decode all
            known = 0
    if not known:
        all_frames, _, _ = _decode(path, None, None if end_frame < 0 else end_frame)
        available = len(all_frames) - start_frame
        if available <= 0:
            raise ClipError(f"{path} has {len(all_frames)} decodable frame(s); start_frame is {start_frame}",
                            kind="decode")
        indices, out_fps = sample_indices(available, source_fps, target_fps, max_seconds)
        frames = [all_frames[start_frame + i] for i in indices]
        numbers = (indices + start_frame).tolist()
    if not frames:
        raise ClipError(f"{path} has no decodable frames", kind="decode")
    return DecodedClip(frames=np.stack(frames), indices=np.asarray(numbers, np.int64),
                       source_fps=source_fps, out_fps=out_fps)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, crf: int = 17) -> None:
    """H.264 (yuv420p, plays in browsers) mp4, written under a temporary name then renamed.

    yuv420p needs even sizes: an odd width or height is padded by repeating the last column/row.
    """
    frames = np.asarray(frames, np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"write_video needs uint8 [T, H, W, 3] frames, got {frames.shape}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    rate = Fraction(fps).limit_denominator(1001)
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "medium"}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class Placement:
    """Where a source frame lands in the model's frame: ``stretch``, ``pad`` (letterbox) or ``crop``.

    ``scale_x/scale_y`` map source pixels to model pixels; ``offset_x/offset_y`` are the model-frame
    position of the source's top-left corner (positive: padding, negative: cropped away).
    """

    source_height: int
    source_width: int
    height: int
    width: int
    mode: str
    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float


def placement_for(source_height: int, source_width: int, height: int, width: int,
                  mode: str = "stretch") -> Placement:
    if mode == "stretch":
        sx, sy = width / source_width, height / source_height
    elif mode in ("pad", "crop"):
        pick = min if mode == "pad" else max
        sx = sy = pick(width / source_width, height / source_height)
    else:
        raise ValueError(f"resize mode {mode!r} is not stretch, pad or crop")
    return Placement(source_height, source_width, height, width, mode, sx, sy,
                     (width - source_width * sx) / 2, (height - source_height * sy) / 2)


def _affine(p: Placement) -> np.ndarray:
    return np.array([[p.scale_x, 0, p.offset_x], [0, p.scale_y, p.offset_y]], np.float64)


def _warp(images: np.ndarray, matrix: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    out = [cv2.warpAffine(image, matrix, size, flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0) for image in images]
    return np.stack(out)


def fit_frames(frames: np.ndarray, placement: Placement) -> np.ndarray:
    """Source frames -> model frames (area filter when shrinking, bilinear when growing)."""
    p = placement
    if (p.source_height, p.source_width) == (p.height, p.width) and p.mode == "stretch":
        return frames
    shrink = p.scale_x < 1 or p.scale_y < 1
    if p.mode == "stretch":
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return np.stack([cv2.resize(f, (p.width, p.height), interpolation=interpolation) for f in frames])
    return _warp(frames, _affine(p), (p.width, p.height), cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def fit_masks(masks: np.ndarray, placement: Placement) -> np.ndarray:
    """Source masks -> model masks, nearest neighbour, bool."""
    p = placement
    as_u8 = masks.astype(np.uint8)
    if p.mode == "stretch":
        out = np.stack([cv2.resize(m, (p.width, p.height), interpolation=cv2.INTER_NEAREST) for m in as_u8])
    else:
        out = _warp(as_u8, _affine(p), (p.width, p.height), cv2.INTER_NEAREST)
    return out.astype(bool)


def restore_frames(frames: np.ndarray, placement: Placement) -> np.ndarray:
    """Model frames -> the source's size and aspect (padding removed; cropped borders stay black)."""
    p = placement
    inverse = cv2.invertAffineTransform(_affine(p))
    return _warp(frames, inverse, (p.source_width, p.source_height), cv2.INTER_LINEAR)


def to_model_coords(x: float, y: float, placement: Placement) -> tuple[float, float]:
    """A source-pixel coordinate (e.g. a click) in the model frame's pixels."""
    return x * placement.scale_x + placement.offset_x, y * placement.scale_y + placement.offset_y
