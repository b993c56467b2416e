"""First stage: raw dataset rows -> checked clip rows (or failed rows saying what is wrong)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from vp_ray import outputs, records
from vp_ray.errors import ClipError
from vp_ray.rows import DONE_BEFORE, ClipRecord, failed_row, new_row, rows_to_frame


class NormalizeRecords:
    """Checks each row, resolves its paths, and marks clips already complete in ``output_dir``.

    ``duplicates`` (id -> count, found by the driver's preflight) fails every row of an id
    that occurs twice: which of them the user meant is not ours to guess.
    """

    def __init__(self, cfg: dict[str, Any], base_dir: str, duplicates: dict[str, int]):
        self.cfg = cfg
        self.base_dir = base_dir
        self.duplicates = duplicates

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return rows_to_frame([self.normalize_one(raw) for raw in batch.to_dict("records")])

    def normalize_one(self, raw: dict[str, Any]) -> dict[str, Any]:
        try:
            record = records.normalize(raw, self.cfg["dataset"], self.base_dir)
        except ClipError as error:
            return failed_row(new_row(_placeholder(raw, self.cfg["dataset"]["layout"])), "read", error)
        row = new_row(record)
        if record.clip_id in self.duplicates:
            return failed_row(row, "read", ClipError(
                f"clip_id appears {self.duplicates[record.clip_id]} times in the dataset; ids must be unique"))
        if outputs.is_complete(self.cfg["output_dir"], record.clip_id, outputs.fingerprint(self.cfg, row)):
            row["status"] = DONE_BEFORE
        return row


def _placeholder(raw: dict[str, Any], layout: str) -> ClipRecord:
    """A record for a row too broken to normalize, so that its failure still names it.

    The id here is only a label in the failures table, never used as a path.
    """
    given, video = raw.get("clip_id"), raw.get("video_path", raw.get("path"))
    if given is not None:
        clip_id = _text(given)
    else:
        try:
            clip_id = records.clip_id_of(records.clean(raw), layout)
        except ClipError:
            clip_id = "row:" + ",".join(f"{k}={_text(v)}" for k, v in raw.items() if v is not None)[:120]
    return ClipRecord(clip_id=clip_id, video_path=_text(video) if video is not None else "")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
