"""Click and box prompts on frame 0: parsed, checked against the frame, mapped into the model frame.

Checked in the prepare stage, where the source frame's size is first known, so that a click
outside the frame fails the clip before any SAM2 model is loaded or run.
"""

from __future__ import annotations

import json
import math
from typing import Optional

from vp_ray.config import PromptCoords
from vp_ray.errors import ClipError, ConfigError

PROMPT_KINDS = ("points", "box")  # mask kinds whose masks SAM2 makes
Point = tuple[float, float, int]
Box = tuple[float, float, float, float]

def _outside(x: float, y: float, width: float, height: float) -> bool:
    return not (0 <= x <= width and 0 <= y <= height)


def _read_points(points_json: str) -> list[Point]:
    try:
        raw = json.loads(points_json) if points_json else []
        points = [(float(x), float(y), int(label)) for x, y, label in raw]
    except (ValueError, TypeError) as error:
        raise ClipError(f"points {points_json!r} are not JSON [[x, y, label], ...] ({error})") from None
    for x, y, label in points:
        if label not in (0, 1) or not (math.isfinite(x) and math.isfinite(y)):
            raise ClipError(f"point ({x:g}, {y:g}, {label}) needs finite x, y and label 1 (object) "
                            "or 0 (background)")
    return points


def _read_box(box_json: str) -> Optional[Box]:
    if not box_json:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in json.loads(box_json))
    except (ValueError, TypeError) as error:
        raise ClipError(f"box {box_json!r} is not JSON [x0, y0, x1, y1] ({error})") from None
    if not (x0 < x1 and y0 < y1):
        raise ClipError(f"box {box_json} needs x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def check_prompts(points: list[Point], box: Optional[Box], width: float, height: float,
                  frame: str = "frame") -> None:
    """Raise a ClipError naming any click or box corner outside the ``width x height`` frame."""
    if not points and box is None:
        raise ClipError("no click or box to segment from")
    for x, y, _ in points:
        if _outside(x, y, width, height):
            raise ClipError(f"click ({x:g}, {y:g}) lies outside the {width:g}x{height:g} {frame}")
    if box is not None and (_outside(*box[:2], width, height) or _outside(*box[2:], width, height)):
        raise ClipError(f"box ({', '.join(f'{v:g}' for v in box)}) goes outside the "
                        f"{width:g}x{height:g} {frame}")


def parse_prompts(points_json: str, box_json: str, placement=None,
                  coords: PromptCoords | str = PromptCoords.source) -> tuple[list[Point], Optional[Box]]:
    """A record's ``points`` and ``box`` JSON -> clicks ``[(x, y, label)]`` and a box
    ``(x0, y0, x1, y1)`` in the model frame's pixels.

    ``coords="source"``: the JSON holds source-video pixels; they are checked against the source
    frame and mapped through ``placement`` (a ``vp_ray.clip.video.Placement``). ``"model"``: they are
    model-frame pixels already and are returned as they are. (``coords``: the config's member, or its value.)
    """
    from vp_ray.clip.video import to_model_coords

    try:
        coords = PromptCoords(coords)
    except ValueError:
        raise ConfigError(f"prompt coordinates {coords!r} are not source or model") from None
    points, box = _read_points(points_json), _read_box(box_json)
    if placement is None:
        return points, box
    p = placement
    if coords is PromptCoords.model:
        check_prompts(points, box, p.width, p.height, "model frame")
        return points, box
    check_prompts(points, box, p.source_width, p.source_height, "source frame")
    mapped = []
    for x, y, label in points:
        mx, my = to_model_coords(x, y, p)
        if _outside(mx, my, p.width, p.height):  # only resize_mode=crop cuts parts of the source away
            raise ClipError(f"click ({x:g}, {y:g}) falls in the border that resize_mode={p.mode.value} "
                            f"cuts from the {p.source_width}x{p.source_height} source frame")
        mapped.append((mx, my, label))
    if box is not None:
        (x0, y0), (x1, y1) = to_model_coords(*box[:2], p), to_model_coords(*box[2:], p)
        box = (max(x0, 0.0), max(y0, 0.0), min(x1, float(p.width)), min(y1, float(p.height)))
        if not (box[0] < box[2] and box[1] < box[3]):
            raise ClipError(f"box {box_json} lies in the border that resize_mode={p.mode.value} cuts away")
    return mapped, box
