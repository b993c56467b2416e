"""First stage: raw dataset rows -> checked clip rows (or failed rows saying what is wrong)."""

from __future__ import annotations

import csv
import dataclasses
from typing import Any

import pandas as pd

from vp_ray.clip import outputs, records
from vp_ray.clip.records import ClipRecord
from vp_ray.clip.rows import DONE_BEFORE, failed_row, new_row, rows_to_frame
from vp_ray.config import Layout
from vp_ray.errors import ClipError
from vp_ray.stages import ClipStage, Role


class ReadRecords(ClipStage):
    """Checks each row, resolves its paths, and marks clips already complete in ``output_dir``.

    The plan's ``duplicates`` (id -> count, found by the driver's preflight) fails every row of an
    id that occurs twice: which of them the user meant is not ours to guess.
    """

    name, title, role = "read", "checking the record", Role.check
    reads = ("dataset", "output_dir")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return rows_to_frame([self.read_one(raw) for raw in batch.to_dict("records")])

    def read_one(self, raw: dict[str, Any]) -> dict[str, Any]:
        try:
            record = records.normalize(raw, self.cfg.dataset, self.plan.base_dir)
            if record.clip_id in self.plan.edits:  # a reviewer's edits (vp_ray.review)
                record = dataclasses.replace(record, **self.plan.edits[record.clip_id])
        except ClipError as error:
            return failed_row(new_row(_placeholder(raw, self.cfg.dataset.layout)), self.name, error)
        row = new_row(record)
        if record.clip_id in self.plan.duplicates:
            return failed_row(row, self.name, ClipError(
                f"clip_id appears {self.plan.duplicates[record.clip_id]} times in the dataset; ids must be unique"))
        if record.clip_id not in self.plan.redo and \
                outputs.is_complete(self.cfg.output_dir, record.clip_id, self.run.clip_settings.fingerprint(row)):
            row["status"] = DONE_BEFORE
        return row


def ragged_row_failure(ragged: records.RaggedRow, columns: list[str], layout: Layout) -> dict[str, Any]:
    """The failure row of a CSV line with the wrong number of fields, named by its id if it has one."""
    fields = next(csv.reader([ragged.text]), [])
    raw = {column: value for column, value in zip(columns, fields) if column in records.ID_COLUMNS}
    record = _placeholder(raw, layout, fallback=f"line-{ragged.line}")
    return failed_row(new_row(record), "read", ClipError(
        f"CSV line {ragged.line} has {ragged.fields} field(s) but the header has {ragged.expected} "
        f"(a stray or missing comma, or an unquoted comma in a caption?): {ragged.text[:200]!r}"))


def _placeholder(raw: dict[str, Any], layout: Layout, fallback: str | None = None) -> ClipRecord:
    """A record for a row too broken to normalize, so that its failure still names it.

    The id comes from the id columns alone (a bad caption must not hide a good path); it is only
    a label in the failures table, never used as a path.
    """
    given, video = raw.get("clip_id") or None, raw.get("video_path", raw.get("path"))
    clip_id = records.row_id(raw, layout)
    if clip_id is None:
        if given is not None:
            clip_id = _text(given)
        else:
            clip_id = fallback or "row:" + ",".join(
                f"{k}={_text(v)}" for k, v in raw.items() if v is not None)[:120]
    return ClipRecord(clip_id=clip_id, video_path=_text(video) if video is not None else "")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
