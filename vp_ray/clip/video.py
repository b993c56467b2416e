"""Video in and out with PyAV: decode, resample to a frame rate, fit to the model's size, encode H.264.

Frames are uint8 RGB arrays ``[T, H, W, 3]``, as displayed (rotation metadata applied).
No system ffmpeg is needed: PyAV ships its own libraries.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np
from PIL import Image

from vp_ray.clip.atomic import atomic_path
from vp_ray.config import Preprocess, ResizeMode
from vp_ray.errors import ClipError

MAX_FPS = 1000.0
# Containers may list a frame or two more than decode (edit lists); a truncated file loses more.
FRAME_COUNT_SLACK = 2
# Stands for "as long as the clip needs" when the container does not list its frame count.
UNKNOWN_LENGTH = 2**31


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    num_frames: int  # from the container; an estimate from the duration where it lists none (0: unknown)
    width: int       # as displayed (rotation applied)
    height: int
    rotation: int    # degrees counter-clockwise that turn the stored frames into displayed ones


@dataclass
class DecodedClip:
    frames: np.ndarray   # uint8 [T, H, W, 3] at the source size, as displayed
    indices: np.ndarray  # source frame numbers (from the file's first frame) of each output frame
    source_fps: float
    out_fps: float


# ----------------------------------------------------------------------------- decoding

def _open(path: str | os.PathLike):
    if not os.path.isfile(path):
        raise ClipError(f"video file not found: {path}", kind="decode")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, ValueError) as error:
        raise ClipError(f"cannot open video {path}: not a video, or corrupt ({error})",
                        kind="decode") from None
    if not container.streams.video:
        container.close()
        raise ClipError(f"{path} has no video stream", kind="decode")
    return container


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _probe(path: str | os.PathLike) -> tuple[VideoInfo, int]:
    """The video's info, and the frame count its container lists (0 when it lists none)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream))
        except (StopIteration, av.error.FFmpegError, ValueError):
            raise ClipError(f"{path} has no decodable frames (empty, corrupt or truncated)",
                            kind="decode") from None
        # Portrait phone videos store landscape frames plus a display rotation.
        rotation = int(round((first.rotation or 0) / 90)) * 90 % 360
        w, h = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        fps, listed = _stream_fps(stream), int(stream.frames or 0)
        seconds = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                   else (container.duration or 0) / av.time_base)
        estimate = listed or int(round(seconds * fps))
        return VideoInfo(fps=fps, num_frames=estimate, width=w, height=h, rotation=rotation), listed


def probe_video(path: str | os.PathLike) -> VideoInfo:
    return _probe(path)[0]


def _displayed(frame) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    turns = int(round((frame.rotation or 0) / 90)) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def _decode(path: str | os.PathLike, wanted: set[int] | None, stop: int | None) -> tuple[list, int]:
    """Decode frames ``0 .. stop-1``, keeping those in ``wanted`` (None: all).

    Returns the kept frames and how many frames were decoded (below ``stop`` only when the
    stream ended first). Stops at frame ``stop - 1``: a long video is not read to its end.
    """
    kept, count = [], 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if wanted is None or count in wanted:
                    kept.append(_displayed(frame))
                count += 1
                if count == stop:
                    break
        except (av.error.FFmpegError, ValueError) as error:
            raise ClipError(f"cannot decode {path} after {count} frame(s): corrupt or truncated "
                            f"({error})", kind="decode") from None
    return kept, count


def _check_complete(path, listed: int, decoded: int) -> None:
    if listed and decoded < listed - FRAME_COUNT_SLACK:
        raise ClipError(f"{path} is truncated or corrupt: its container lists {listed} frames but "
                        f"only {decoded} decode", kind="decode")


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Every frame of a video (or its first ``max_frames``), and its frame rate."""
    info, listed = _probe(path)
    frames, count = _decode(path, None, max_frames)
    if max_frames is None or count < max_frames:
        _check_complete(path, min(listed, max_frames or listed), count)
    if not frames:
        raise ClipError(f"{path} has no decodable frames", kind="decode")
    return np.stack(frames), info.fps


# ----------------------------------------------------------------------------- frame selection

def _check_fps(fps: float | None, source: str) -> float:
    if fps is None or not math.isfinite(fps) or not 0 < fps <= MAX_FPS:
        raise ClipError(f"fps {fps!r} ({source}) is not usable: expected 0 < fps <= {MAX_FPS:g}",
                        kind="bad_input")
    return float(fps)


def sample_indices(num_frames: int, source_fps: float, target_fps: float,
                   max_seconds: float) -> tuple[np.ndarray, float]:
    """Which source frames make the output clip, and its frame rate.

    Time-based: output frame k shows the source frame nearest to time k / target_fps.
    Sources slower than ``target_fps`` keep every frame at their own rate (nothing is
    duplicated). The clip is cut to ``round(max_seconds * out_fps) + 1`` frames, so 6.0 s
    at 8 fps is 49 frames. A shorter ``num_frames`` gives a prefix of a longer one's indices.
    """
    out_fps = min(source_fps, target_fps)
    limit = int(round(max_seconds * out_fps)) + 1
    step = source_fps / out_fps  # source frames per output frame, >= 1
    indices = np.floor(np.arange(limit) * step + 0.5).astype(np.int64)  # nearest, halves up
    return indices[indices < num_frames], float(out_fps)


def read_clip(path: str | os.PathLike, *, start_frame: int = 0, end_frame: int = -1,
              fps: float | None = None, target_fps: float = 8.0, max_seconds: float = 6.0) -> DecodedClip:
    """The frames of ``[start_frame, end_frame)`` resampled to ``target_fps`` and cut to ``max_seconds``.

    ``fps`` overrides the container's frame rate. ``end_frame=-1`` means to the end.
    """
    # 1. What the container says, checked.
    info, listed = _probe(path)
    source_fps = _check_fps(info.fps if fps is None else fps,
                            f"{'read from' if fps is None else 'given for'} {path}")
    if not max_seconds >= 0 or math.isinf(max_seconds):
        raise ClipError(f"max_seconds {max_seconds!r} for {path} is not a duration", kind="bad_input")
    if start_frame < 0 or 0 <= end_frame <= start_frame:
        raise ClipError(f"frame range [{start_frame}, {end_frame}) of {path} is empty or negative",
                        kind="bad_input")
    end = end_frame if end_frame >= 0 else None
    if listed:
        end = listed if end is None else min(end, listed)
        if start_frame >= end:
            raise ClipError(f"start_frame {start_frame} is beyond the end of {path} ({listed} frames)",
                            kind="bad_input")

    # 2. Plan on the listed length; a stream that ends early yields a prefix of the plan.
    planned, out_fps = sample_indices(UNKNOWN_LENGTH if end is None else end - start_frame,
                                      source_fps, target_fps, max_seconds)
    stop = start_frame + int(planned[-1]) + 1
    frames, decoded = _decode(path, set((planned + start_frame).tolist()), stop)

    # 3. Fewer frames than planned: the container over-counted, lists none, or the file is cut.
    if decoded < stop:
        _check_complete(path, min(listed, stop), decoded)
        if decoded <= start_frame:
            raise ClipError(f"start_frame {start_frame} is beyond the end of {path} "
                            f"({decoded} decodable frames)", kind="bad_input")
    indices = planned[: len(frames)]
    return DecodedClip(frames=np.stack(frames), indices=indices + start_frame,
                       source_fps=source_fps, out_fps=out_fps)


# ----------------------------------------------------------------------------- encoding

def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, crf: int = 17) -> None:
    """H.264 mp4 that browsers play (yuv420p, index up front), written under a temporary name
    in the same folder, then renamed: a reader never sees half a file.

    The same frames always give the same bytes: x264 runs on one thread. With its automatic thread
    count the stream depends on the CPUs the process sees, and even on one machine the same frames
    came out different under load (PyAV asks x264 for slice threads). One thread costs wall time,
    not CPU time: 49x480x720 took 2.07 s against 0.47 s on 16 idle cores (2.1 s of CPU either way),
    off the GPU's path in the write stage.

    yuv420p needs even sizes: an odd width or height is padded by repeating the last column/row.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"write_video needs uint8 [T, H, W, 3] frames, got {frames.dtype} {frames.shape}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"write_video needs a positive frame rate, got {fps!r}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1001)  # 29.97 stays 30000/1001-like, exact in the file
    with atomic_path(path) as tmp, \
            av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.codec_context.thread_count = 1  # reproducible (docstring)
        stream.options = {"crf": str(crf), "preset": "medium"}
        for number, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = number, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


# ----------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class Placement:
    """Where a source frame lands in the model's ``height x width`` frame.

    The source is resized to ``resized_height x resized_width`` and its top-left corner put at
    ``(offset_x, offset_y)`` in the model frame: positive offsets leave black bars (``pad``),
    negative ones cut the borders away (``crop``). ``stretch`` fills the frame, squashing the aspect.
    """

    source_height: int
    source_width: int
    height: int
    width: int
    mode: ResizeMode
    resized_height: int
    resized_width: int
    offset_x: int
    offset_y: int

    @property
    def scale_x(self) -> float:
        return self.resized_width / self.source_width

    @property
    def scale_y(self) -> float:
        return self.resized_height / self.source_height


def placement_for(source_height: int, source_width: int, height: int, width: int,
                  mode: ResizeMode | str = ResizeMode.stretch) -> Placement:
    """``mode``: the config's member, or its value."""
    if min(source_height, source_width, height, width) <= 0:
        raise ValueError(f"sizes must be positive: source {source_height}x{source_width}, "
                         f"model {height}x{width}")
    try:
        mode = ResizeMode(mode)
    except ValueError:
        raise ValueError(f"resize mode {mode!r} is not stretch, pad or crop") from None
    if mode is ResizeMode.stretch:
        rh, rw = height, width
    else:
        scale = (min if mode is ResizeMode.pad else max)(width / source_width, height / source_height)
        rh, rw = max(1, round(source_height * scale)), max(1, round(source_width * scale))
    return Placement(source_height, source_width, height, width, mode, rh, rw,
                     (width - rw) // 2, (height - rh) // 2)


# Resize filters: "lanczos" is PIL's Lanczos, as diffusers' processors resize the original's PIL frames
# (preprocess=reference); an OpenCV flag otherwise (preprocess=opencv, and restoring the source size).
LANCZOS = "lanczos"


def _resize(images: np.ndarray, width: int, height: int, interpolation: int | str) -> np.ndarray:
    if images.shape[1:3] == (height, width):
        return images
    if interpolation == LANCZOS:
        return np.stack([np.asarray(Image.fromarray(image).resize((width, height), Image.LANCZOS))
                         for image in images])
    return np.stack([cv2.resize(image, (width, height), interpolation=interpolation) for image in images])


def _paste(images: np.ndarray, height: int, width: int, x: int, y: int) -> np.ndarray:
    """``images`` with their top-left corner at (x, y) of black ``height x width`` canvases, clipped."""
    if images.shape[1:3] == (height, width) and x == y == 0:
        return images
    canvas = np.zeros((len(images), height, width, *images.shape[3:]), images.dtype)
    h, w = images.shape[1:3]
    y0, y1, x0, x1 = max(y, 0), min(y + h, height), max(x, 0), min(x + w, width)
    canvas[:, y0:y1, x0:x1] = images[:, y0 - y:y1 - y, x0 - x:x1 - x]
    return canvas


def _image_filter(shrinking: bool) -> int:
    return cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR  # area averaging avoids aliasing


def fit_frames(frames: np.ndarray, placement: Placement,
               preprocess: Preprocess | str = Preprocess.reference) -> np.ndarray:
    """Source frames -> model frames: PIL Lanczos as the original (``reference``), or OpenCV's
    area averaging when shrinking and bilinear when enlarging (``opencv``)."""
    p = placement
    if Preprocess(preprocess) is Preprocess.reference:
        interpolation = LANCZOS
    else:
        interpolation = _image_filter(p.scale_x < 1 or p.scale_y < 1)
    resized = _resize(frames, p.resized_width, p.resized_height, interpolation)
    return _paste(resized, p.height, p.width, p.offset_x, p.offset_y)


def fit_masks(masks: np.ndarray, placement: Placement,
              preprocess: Preprocess | str = Preprocess.reference) -> np.ndarray:
    """Source masks -> model masks, bool. ``reference``: as the original's mask processor, the 0/255
    mask resized with Lanczos and kept where it reaches half (>= 128); ``opencv``: nearest neighbour."""
    p = placement
    if Preprocess(preprocess) is Preprocess.reference:
        resized = _resize(masks.astype(np.uint8) * np.uint8(255), p.resized_width, p.resized_height, LANCZOS) >= 128
    else:
        resized = _resize(masks.astype(np.uint8), p.resized_width, p.resized_height, cv2.INTER_NEAREST)
    return _paste(resized, p.height, p.width, p.offset_x, p.offset_y).astype(bool)


def restore_frames(frames: np.ndarray, placement: Placement) -> np.ndarray:
    """Model frames -> the source's size and aspect (bars removed; borders a crop cut off come back black)."""
    p = placement
    resized = _paste(frames, p.resized_height, p.resized_width, -p.offset_x, -p.offset_y)
    return _resize(resized, p.source_width, p.source_height, _image_filter(p.scale_x > 1 or p.scale_y > 1))


def restore_masks(masks: np.ndarray, placement: Placement) -> np.ndarray:
    """Model masks -> the source's size and aspect, nearest neighbour, bool."""
    p = placement
    resized = _paste(masks.astype(np.uint8), p.resized_height, p.resized_width, -p.offset_x, -p.offset_y)
    return _resize(resized, p.source_width, p.source_height, cv2.INTER_NEAREST).astype(bool)


def to_model_coords(x: float, y: float, placement: Placement) -> tuple[float, float]:
    """A source-pixel coordinate (a click, a box corner) in the model frame's pixels."""
    return x * placement.scale_x + placement.offset_x, y * placement.scale_y + placement.offset_y
