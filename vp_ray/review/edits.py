"""A reviewer's edits of one clip: checked where they come in (the review server, before anything is
written), and turned into the clip's record fields where they are used (a run, a tracked preview).

Clicks and a box are placed on the clip's ``frame0_original.png`` (its first frame as the model saw
it), and stored in that frame's pixels with its size. A run maps them to what its records hold under
``dataset.prompt_coords``: source pixels through the run's ``resize_mode`` (the inverse of
``vp_ray.clip.video.to_model_coords``), or model pixels.
"""

from __future__ import annotations

import json
import math
from typing import Any

from vp_ray.clip.records import MAX_DILATE_SIZE
from vp_ray.config import Config, PromptCoords
from vp_ray.review.store import EDIT_COLUMNS

EDITABLE = ("prompt", "seed", "dilate_size", "max_seconds", "points", "box")
MAX_PROMPT_CHARS = 2000
MAX_POINTS = 64
MAX_SEED = 2**31 - 1


class EditError(ValueError):
    """A malformed edit; the message says which field and why."""


def check_edits(edits: Any, frame_size: tuple[int, int] | None) -> dict[str, Any]:
    """The review row's edit columns for ``edits`` (a JSON object of the fields in ``EDITABLE``; a
    missing or null field keeps the dataset's value). ``frame_size``: (width, height) of the clip's
    frame0_original.png, None if it has none (then no click or box can be placed)."""
    if not isinstance(edits, dict):
        raise EditError("edits must be a JSON object")
    unknown = sorted(set(edits) - set(EDITABLE))
    if unknown:
        raise EditError(f"unknown edit field(s) {unknown}; editable: {list(EDITABLE)}")
    out: dict[str, Any] = {name: None for name in EDIT_COLUMNS}
    if edits.get("prompt") is not None:
        out["prompt"] = _prompt(edits["prompt"])
    if edits.get("seed") is not None:
        out["seed"] = _whole(edits["seed"], "seed", 0, MAX_SEED)
    if edits.get("dilate_size") is not None:
        out["dilate_size"] = _whole(edits["dilate_size"], "dilate_size", 0, MAX_DILATE_SIZE)
    if edits.get("max_seconds") is not None:
        value = _number(edits["max_seconds"], "max_seconds")
        if not 0 < value <= 3600:
            raise EditError(f"max_seconds {value:g} is out of range (0, 3600]")
        out["max_seconds"] = value
    points, box = edits.get("points"), edits.get("box")
    if points is not None or box is not None:
        if frame_size is None:
            raise EditError("this clip has no frame0_original.png to place a click or box on")
        width, height = frame_size
        if points is not None:
            out["points"] = json.dumps(_points(points, width, height))
        if box is not None:
            out["box"] = json.dumps(_box(box, width, height))
        out["frame_width"], out["frame_height"] = width, height
    return out


def has_edits(row: dict[str, Any]) -> bool:
    return any(row.get(name) is not None for name in EDITABLE)


def record_fields(row: dict[str, Any], source_size: tuple[int, int] | None, cfg: Config) -> dict[str, Any]:
    """The ``ClipRecord`` fields a review row's edits replace, for a run of config ``cfg``.
    ``source_size``: the clip's source (width, height) (its meta.json), needed for clicks."""
    fields: dict[str, Any] = {}
    for name in ("prompt", "seed", "dilate_size", "max_seconds"):
        if row.get(name) is not None:
            fields[name] = row[name]
    if row.get("points") is None and row.get("box") is None:
        return fields
    if source_size is None:
        raise EditError("the clip's source size is unknown (no meta.json): its click cannot be placed")
    points = json.loads(row["points"]) if row.get("points") else []
    box = json.loads(row["box"]) if row.get("box") else None
    points, box = to_record_coords(points, box, (row["frame_width"], row["frame_height"]), source_size, cfg)
    fields.update(mask_kind="points" if points else "box", mask_path="", mask_id=-1,
                  points=json.dumps(points) if points else "", box=json.dumps(box) if box else "")
    return fields


def to_record_coords(points: list, box: list | None, frame_size: tuple[int, int], source_size: tuple[int, int],
                     cfg: Config) -> tuple[list, list | None]:
    """Clicks and a box in frame0_original.png's pixels -> the coordinates a record holds in a run of
    ``cfg`` (``dataset.prompt_coords``: source pixels, or model pixels)."""
    from vp_ray.clip.video import placement_for

    frame_width, frame_height = frame_size
    if cfg.dataset.prompt_coords is PromptCoords.model:
        scale_x, scale_y = cfg.model.width / frame_width, cfg.model.height / frame_height

        def convert(x: float, y: float) -> list[float]:
            return [x * scale_x, y * scale_y]
    else:
        source_width, source_height = source_size
        p = placement_for(source_height, source_width, frame_height, frame_width, cfg.resize_mode)

        def convert(x: float, y: float) -> list[float]:
            return [(x - p.offset_x) / p.scale_x, (y - p.offset_y) / p.scale_y]
    mapped = [[*convert(x, y), int(label)] for x, y, label in points]
    if box is not None:
        box = [*convert(box[0], box[1]), *convert(box[2], box[3])]
    return mapped, box


def _prompt(value: Any) -> str:
    if not isinstance(value, str):
        raise EditError("prompt must be text")
    text = value.strip()
    if not text:
        raise EditError("prompt is empty (leave it out to keep the dataset's)")
    if len(text) > MAX_PROMPT_CHARS:
        raise EditError(f"prompt has {len(text)} characters; at most {MAX_PROMPT_CHARS}")
    if any(ord(c) < 32 for c in text):
        raise EditError("prompt holds control characters (a line break?)")
    return text


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EditError(f"{name} must be a finite number, not {json.dumps(value)[:40]}")
    return float(value)


def _whole(value: Any, name: str, low: int, high: int) -> int:
    number = _number(value, name)
    if number != int(number):
        raise EditError(f"{name} {number:g} is not a whole number")
    if not low <= number <= high:
        raise EditError(f"{name} {int(number)} is out of range [{low}, {high}]")
    return int(number)


def _inside(x: float, y: float, width: int, height: int, what: str) -> None:
    if not (0 <= x <= width and 0 <= y <= height):
        raise EditError(f"{what} ({x:g}, {y:g}) lies outside the {width}x{height} frame")


def _points(value: Any, width: int, height: int) -> list[list[float]]:
    if not isinstance(value, list) or not value:
        raise EditError("points must be a non-empty list of [x, y, label]")
    if len(value) > MAX_POINTS:
        raise EditError(f"{len(value)} points; at most {MAX_POINTS}")
    out = []
    for point in value:
        if not isinstance(point, list) or len(point) != 3:
            raise EditError(f"point {json.dumps(point)[:60]} is not [x, y, label]")
        x, y = _number(point[0], "a point's x"), _number(point[1], "a point's y")
        if point[2] not in (0, 1) or isinstance(point[2], bool):
            raise EditError(f"point label {json.dumps(point[2])} must be 1 (object) or 0 (background)")
        _inside(x, y, width, height, "click")
        out.append([x, y, int(point[2])])
    if not any(label == 1 for _, _, label in out):
        raise EditError("points need at least one click on the object (label 1)")
    return out


def _box(value: Any, width: int, height: int) -> list[float]:
    if not isinstance(value, list) or len(value) != 4:
        raise EditError("box must be [x0, y0, x1, y1]")
    x0, y0, x1, y1 = (_number(v, "a box corner") for v in value)
    if not (x0 < x1 and y0 < y1):
        raise EditError("box needs x0 < x1 and y0 < y1")
    _inside(x0, y0, width, height, "box corner")
    _inside(x1, y1, width, height, "box corner")
    return [x0, y0, x1, y1]
