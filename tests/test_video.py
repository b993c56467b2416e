"""Decoding, frame-rate resampling, H.264 writing and frame placement (vp_ray/clip/video.py)."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest

from vp_ray.clip import video
from vp_ray.errors import ClipError


def numbered_frames(count: int, height: int = 32, width: int = 48) -> np.ndarray:
    """Frame i is a flat grey of level 4 * i: its number can be read back through the codec."""
    return np.repeat((4 * np.arange(count, dtype=np.uint8))[:, None, None, None],
                     height * width * 3, axis=1).reshape(count, height, width, 3)


def frame_numbers(frames: np.ndarray) -> list[int]:
    return [int(round(f.mean() / 4)) for f in frames]


def smooth_frames(count: int, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 200 / width, y * 200 / height, (x + y) * 100 / (width + height)], axis=-1)
    return np.stack([base + 2 * t for t in range(count)]).astype(np.uint8)


def write_lossless(path, frames: np.ndarray, fps: int, rotation: int | None = None, codec="ffv1"):
    """A test input in any codec PyAV has (ffv1 in mkv: odd sizes, no frame count in the container)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def clip30(tmp_path_factory):
    """60 numbered frames at 30 fps."""
    path = tmp_path_factory.mktemp("video") / "clip30.mp4"
    video.write_video(path, numbered_frames(60), 30)
    return path


# ----------------------------------------------------------------------------- sample_indices

@pytest.mark.parametrize("source_fps, num_frames, expected_start, expected_count, out_fps", [
    (30, 300, [0, 4, 8, 11, 15], 49, 8.0),   # nearest of 0, 3.75, 7.5, 11.25, 15
    (24, 300, [0, 3, 6, 9, 12], 49, 8.0),
    (8, 300, [0, 1, 2, 3, 4], 49, 8.0),
    (5, 300, [0, 1, 2, 3, 4], 31, 5.0),      # slower than 8 fps: every frame, at 5 fps
    (30, 10, [0, 4, 8], 3, 8.0),             # a short source ends the clip early
])
def test_sample_indices_resamples_by_time(source_fps, num_frames, expected_start, expected_count, out_fps):
    indices, fps = video.sample_indices(num_frames, source_fps, 8.0, 6.0)
    assert indices[:5].tolist() == expected_start[:5]
    assert len(indices) == expected_count and fps == out_fps
    assert np.all(np.diff(indices) > 0) and indices[-1] < num_frames


def test_sample_indices_cuts_to_max_seconds():
    assert len(video.sample_indices(1000, 30, 8.0, 6.0)[0]) == 49
    assert len(video.sample_indices(1000, 30, 8.0, 2.0)[0]) == 17
    assert video.sample_indices(1000, 30, 8.0, 6.0)[0][-1] == 180  # 6 s at 30 fps


def test_a_shorter_source_gives_a_prefix_of_a_longer_ones_indices():
    long, _ = video.sample_indices(10_000, 29.97, 8.0, 6.0)
    for count in (1, 37, 100, 150):
        assert video.sample_indices(count, 29.97, 8.0, 6.0)[0].tolist() == [i for i in long if i < count]


# ----------------------------------------------------------------------------- read_clip

def test_read_clip_picks_the_resampled_frames(clip30):
    clip = video.read_clip(clip30, target_fps=8.0, max_seconds=6.0)
    assert clip.indices.tolist() == [0, 4, 8, 11, 15, 19, 23, 26, 30, 34, 38, 41, 45, 49, 53, 56]
    assert frame_numbers(clip.frames) == clip.indices.tolist()
    assert clip.frames.shape == (16, 32, 48, 3) and clip.frames.dtype == np.uint8
    assert (clip.source_fps, clip.out_fps) == (30.0, 8.0)


def test_read_clip_selects_the_source_range_first(clip30):
    clip = video.read_clip(clip30, start_frame=10, end_frame=40)
    assert clip.indices.tolist() == [10, 14, 18, 21, 25, 29, 33, 36]
    assert frame_numbers(clip.frames) == clip.indices.tolist()


def test_a_given_fps_overrides_the_containers(clip30):
    clip = video.read_clip(clip30, fps=16.0, max_seconds=1.0)
    assert clip.source_fps == 16.0 and clip.indices.tolist() == list(range(0, 18, 2))


@pytest.mark.parametrize("fps", [0.0, math.nan, -5.0, 1e6])
def test_an_unusable_fps_is_rejected_naming_it(clip30, fps):
    with pytest.raises(ClipError, match=f"fps {fps!r}") as error:
        video.read_clip(clip30, fps=fps)
    assert error.value.kind == "bad_input"


@pytest.mark.parametrize("kwargs, message", [
    ({"start_frame": 20, "end_frame": 10}, "empty or negative"),
    ({"start_frame": -1}, "empty or negative"),
    ({"max_seconds": math.nan}, "not a duration"),
])
def test_an_unusable_range_or_duration_is_a_bad_input(clip30, kwargs, message):
    with pytest.raises(ClipError, match=message) as error:
        video.read_clip(clip30, **kwargs)
    assert error.value.kind == "bad_input"


def test_reading_stops_after_the_last_needed_frame(clip30, tmp_path):
    # The tail of this file is gone: a clip that does not need it still reads.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip30.read_bytes()[: clip30.stat().st_size * 2 // 3])
    assert video.read_clip(cut, max_seconds=0.5).indices.tolist() == [0, 4, 8, 11, 15]
    with pytest.raises(ClipError, match="truncated"):
        video.read_clip(cut)


def test_odd_sized_lossless_source_without_a_frame_count(tmp_path):
    path = tmp_path / "odd.mkv"
    frames = np.random.default_rng(0).integers(0, 256, (20, 31, 45, 3), dtype=np.uint8)
    write_lossless(path, frames, 24)
    assert video.probe_video(path).num_frames == 20  # estimated from the duration
    clip = video.read_clip(path)
    assert clip.indices.tolist() == [0, 3, 6, 9, 12, 15, 18]
    np.testing.assert_array_equal(clip.frames, frames[clip.indices])
    full, fps = video.read_video(path)
    np.testing.assert_array_equal(full, frames)
    assert fps == 24.0


# ----------------------------------------------------------------------------- write_video

def test_write_read_round_trip_is_browser_playable_h264(tmp_path):
    frames = smooth_frames(12, 64, 96)
    path = tmp_path / "out.mp4"
    video.write_video(path, frames, 8.0)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert stream.frames == 12
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable while downloading
    decoded, fps = video.read_video(path)
    assert decoded.shape == frames.shape and fps == 8.0
    assert np.abs(decoded.astype(int) - frames).mean() < 2.0
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left behind


def test_fractional_fps_is_kept(tmp_path):
    path = tmp_path / "ntsc.mp4"
    video.write_video(path, smooth_frames(5, 32, 32), 30000 / 1001)
    assert video.probe_video(path).fps == pytest.approx(29.97, abs=1e-3)


def test_odd_sizes_are_padded_by_repeating_the_edge(tmp_path):
    frames = smooth_frames(4, 33, 47)
    frames[:, :, -1] = 255  # a bright last column, repeated into the padding
    path = tmp_path / "odd.mp4"
    video.write_video(path, frames, 8)
    decoded, _ = video.read_video(path)
    assert decoded.shape == (4, 34, 48, 3)
    assert np.abs(decoded[:, :33, :47].astype(int) - frames).mean() < 2.0
    assert decoded[:, :33, -1].mean() > 240


def test_write_video_rejects_float_frames(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        video.write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8, 3), np.float32), 8)


def test_portrait_video_keeps_its_orientation(tmp_path):
    path = tmp_path / "portrait.mp4"
    video.write_video(path, smooth_frames(9, 64, 32), 8)
    info = video.probe_video(path)
    assert (info.height, info.width, info.rotation) == (64, 32, 0)
    assert video.read_clip(path).frames.shape == (9, 64, 32, 3)


def test_rotation_metadata_is_applied(tmp_path):
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display rotation")
    stored = np.zeros((9, 32, 64, 3), np.uint8)
    stored[:, :16, :32] = (255, 0, 0)  # red top-left, as stored
    path = tmp_path / "phone.mp4"
    # -90: turn clockwise to display, what a phone held upright writes.
    write_lossless(path, stored, 8, rotation=-90, codec="libx264")
    info = video.probe_video(path)
    assert (info.height, info.width, info.rotation) == (64, 32, 270)
    frames = video.read_clip(path).frames
    assert frames.shape == (9, 64, 32, 3)
    assert frames[0, 5, -5, 0] > 200 and frames[0, 5, 5, 0] < 50  # red moved to the top-right


# ----------------------------------------------------------------------------- bad files

def zero_frame_video(path, format="avi"):
    """A header and an empty video track (mp4 drops an empty track; avi keeps it)."""
    with av.open(str(path), "w", format=format) as container:
        stream = container.add_stream("rawvideo" if format == "avi" else "libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()


@pytest.mark.parametrize("make, message", [
    (lambda p, good: None, "not found"),
    (lambda p, good: p.write_bytes(b"this is not a video" * 100), "corrupt"),
    (lambda p, good: p.write_bytes(good.read_bytes()[:1500]), "corrupt|truncated|no decodable"),
    (lambda p, good: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]), "truncated"),
    (lambda p, good: zero_frame_video(p), "no decodable frames"),
    (lambda p, good: zero_frame_video(p, "mp4"), "no video stream"),
])
def test_unreadable_videos_raise_a_clip_error_naming_the_file(tmp_path, clip30, make, message):
    path = tmp_path / "bad.mp4"
    make(path, clip30)
    with pytest.raises(ClipError, match=message) as error:
        video.read_clip(path)
    assert str(path) in str(error.value) and error.value.kind == "decode"


def test_start_frame_beyond_the_end_is_a_bad_input(clip30, tmp_path):
    with pytest.raises(ClipError, match="beyond the end") as error:
        video.read_clip(clip30, start_frame=60)
    assert error.value.kind == "bad_input"
    path = tmp_path / "unlisted.mkv"  # no frame count in the container: found out by decoding
    write_lossless(path, numbered_frames(10), 8)
    with pytest.raises(ClipError, match="beyond the end"):
        video.read_clip(path, start_frame=10)


# ----------------------------------------------------------------------------- placement

def test_stretch_resizes_and_squashes_the_aspect():
    p = video.placement_for(480, 1280, 64, 96, "stretch")
    frames = smooth_frames(2, 480, 1280)
    assert video.fit_frames(frames, p).shape == (2, 64, 96, 3)
    assert video.restore_frames(video.fit_frames(frames, p), p).shape == frames.shape
    assert video.to_model_coords(640, 240, p) == (48.0, 32.0)
    assert video.fit_frames(frames, video.placement_for(480, 1280, 480, 1280)) is frames


def test_pad_letterboxes_with_black_and_keeps_the_aspect():
    p = video.placement_for(100, 50, 60, 120, "pad")  # portrait source, landscape model
    fitted = video.fit_frames(np.full((1, 100, 50, 3), 200, np.uint8), p)
    assert fitted.shape == (1, 60, 120, 3)
    assert (p.resized_height, p.resized_width, p.offset_x, p.offset_y) == (60, 30, 45, 0)
    assert fitted[0, :, :45].max() == 0 and fitted[0, :, 75:].max() == 0 and fitted[0, :, 45:75].min() == 200
    restored = video.restore_frames(fitted, p)
    assert restored.shape == (1, 100, 50, 3) and restored.min() == 200
    assert video.to_model_coords(0, 0, p) == (45.0, 0.0) and video.to_model_coords(50, 100, p) == (75.0, 60.0)


def test_crop_keeps_the_centre_and_the_aspect():
    p = video.placement_for(100, 50, 60, 120, "crop")
    rows = np.repeat(np.arange(100, dtype=np.uint8)[None, :, None, None] * 2, 50, axis=2)
    source = np.repeat(rows, 3, axis=3)  # brightness = 2 * source row
    fitted = video.fit_frames(source, p)
    assert fitted.shape == (1, 60, 120, 3)
    assert 2 * 37 <= fitted[0, 0, 60, 0] <= 2 * 39 and 2 * 61 <= fitted[0, -1, 60, 0] <= 2 * 63
    restored = video.restore_frames(fitted, p)
    assert restored.shape == (1, 100, 50, 3)
    assert restored[0, :30].max() == 0 and restored[0, 70:].max() == 0  # cut off, back as black
    assert abs(int(restored[0, 50, 25, 0]) - 100) <= 3
    assert video.to_model_coords(25, 50, p) == (60.0, 30.0)  # the source centre is the model centre


@pytest.mark.parametrize("mode", ["stretch", "pad", "crop"])
def test_masks_are_fitted_with_nearest_neighbour(mode):
    masks = np.zeros((1, 100, 50), bool)
    masks[0, 40:60, 20:30] = True
    p = video.placement_for(100, 50, 60, 120, mode)
    fitted = video.fit_masks(masks, p)
    assert fitted.dtype == bool and fitted.shape == (1, 60, 120)
    x, y = video.to_model_coords(25, 50, p)  # the mask's centre stays in the mask
    assert fitted[0, int(y), int(x)]
    assert fitted.sum() == pytest.approx(masks.sum() * p.scale_x * p.scale_y, rel=0.25)
    restored = video.restore_masks(fitted, p)  # back at the source's size: the same object
    assert restored.dtype == bool and restored.shape == masks.shape
    assert (restored != masks).mean() < 0.01


def test_unknown_resize_mode_fails():
    with pytest.raises(ValueError, match="resize mode"):
        video.placement_for(10, 10, 10, 10, "zoom")
